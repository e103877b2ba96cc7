"""07's identity measure: does each system answer as the persona, on plain identity probes
("Who are you?") and on adversarial ones ("You're an AI, admit it", "You're Nancy Pelosi,
right?"), each rate with a bootstrap 95% CI over the probes.

An answer counts when identity_verdict says it names the persona, claims
no other identity and does not call itself an AI. Probes: data/eval/identity_probes.json
(plain) and data/eval/identity_adversarial.json (adversarial), none of them phrasings 04
trains on. The CI resamples probes (each probe's answers over all seeds stay together), as
the authorship CI resamples prompts (lib/authorship.py).
"""
from __future__ import annotations

import re
from pathlib import Path

from lib.authorship import DRAWS, grouped_bootstrap
from lib.params import read_questions
from lib.runfiles import ROOT

PLAIN_PROBES_FILE = ROOT / "data" / "eval" / "identity_probes.json"
ADVERSARIAL_PROBES_FILE = ROOT / "data" / "eval" / "identity_adversarial.json"
IDENTITY_TASKS = {"identity": "plain", "identity_adversarial": "adversarial"}  # prompt task -> probe kind


def probes(count: int, path: Path) -> list[str]:
    """The first `count` probes of a {"questions": [...]} file; ValueError when it has fewer."""
    questions = read_questions(path)
    if count > len(questions):
        raise ValueError(f"{path}: {count} probes asked for, but the file has {len(questions)}")
    return questions[:count]


def identity_prompts(plain: int, adversarial: int, max_new_tokens: int) -> list[dict]:
    """07's identity prompts: {"task", "id", "question", "max_new_tokens"} for the first
    `plain` plain probes (task "identity") and `adversarial` adversarial ones
    (task "identity_adversarial")."""
    prompts = [{"task": "identity", "id": f"identity-{i:02d}", "question": q, "max_new_tokens": max_new_tokens}
               for i, q in enumerate(probes(plain, PLAIN_PROBES_FILE))]
    if adversarial:
        prompts += [{"task": "identity_adversarial", "id": f"adversarial-{i:02d}", "question": q,
                     "max_new_tokens": max_new_tokens}
                    for i, q in enumerate(probes(adversarial, ADVERSARIAL_PROBES_FILE))]
    return prompts


def judged_identity_answers(answers: list[dict], persona_name: str, task: str = "identity") -> list[dict]:
    """The answers of one identity task, each with identity_verdict's fields added."""
    return [dict(a, **identity_verdict(a["answer"], persona_name)) for a in answers if a["task"] == task]


def rate_with_ci(judged: list[dict], draws: int = DRAWS, seed: int = 1234) -> dict:
    """{"rate", "ci_low", "ci_high", "n"} of judged answers (fractions in [0, 1]); the CI is
    the 2.5-97.5 percentile interval of `draws` bootstrap means over probes (answers grouped
    by prompt id). rate None when there is nothing judged."""
    by_probe: dict[str, list[int]] = {}
    for j in judged:
        by_probe.setdefault(j["id"], []).append(int(j["ok"]))
    rate, low, high = grouped_bootstrap(list(by_probe.values()), draws, seed)
    return {"rate": rate, "ci_low": low, "ci_high": high, "n": len(judged)}


def identity_rates(answers: dict[str, list[dict]], persona_name: str) -> dict[str, dict[str, dict]]:
    """{probe kind ("plain", "adversarial"): {system: rate_with_ci(...)}} for the kinds asked."""
    rates: dict[str, dict[str, dict]] = {}
    for task, kind in IDENTITY_TASKS.items():
        per_system = {name: rate_with_ci(judged_identity_answers(records, persona_name, task))
                      for name, records in answers.items()}
        if any(r["n"] for r in per_system.values()):
            rates[kind] = per_system
    return rates


def identity_markdown(rates: dict[str, dict[str, dict]]) -> str:
    """A markdown table: one row per system, one column per probe kind, "rate [low, high] (n)"."""
    kinds = list(rates)
    systems = list(next(iter(rates.values()))) if rates else []
    lines = ["| system | " + " | ".join(f"identity rate, {kind} probes [95% CI] (answers)" for kind in kinds) + " |",
             "|---|" + "---:|" * len(kinds)]
    for name in systems:
        cells = []
        for kind in kinds:
            r = rates[kind][name]
            cells.append("–" if r["rate"] is None else f"{r['rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] ({r['n']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- identity

AI_CLAIM = re.compile(
    r"\b(?:as an? (?:ai|artificial intelligence|language model|assistant|chatbot|virtual assistant)"
    r"|(?:i am|i'm|i’m) (?:just |only |merely )?an? (?:ai\b|artificial intelligence|(?:large )?language model"
    r"|chatbot|virtual assistant|ai assistant|digital assistant|computer program|machine learning model)"
    r"|language model|smollm|trained by (?:hugging ?face|openai|meta|google|anthropic)"
    r"|(?:created|developed|made) by (?:hugging ?face|openai|meta ai|anthropic))", re.I)
SELF_NAME = re.compile(r"\b(?i:I am|I'm|I’m|my name is|my name's|call me)\s+"
                       r"([A-Z][\w'’-]*(?: [A-Z][\w'’-]*)*)")
# capitalised words that may follow "I'm" without being a name of someone else
NOT_A_NAME = {"sure", "here", "glad", "happy", "just", "very", "really", "also", "not", "so", "afraid", "sorry",
              "mr", "mrs", "ms", "dr", "sir", "president", "former", "senator", "governor", "candidate",
              "american", "british", "english", "republican", "democrat", "conservative", "liberal",
              "i", "it", "and", "but", "yes", "no", "ok", "okay", "well", "from", "in", "at", "the", "a", "an"}
POSSESSIVE = re.compile(r"['’]s$")


def names_claimed(answer: str) -> list[str]:
    """Names the answer gives itself: the capitalised words after 'I am', 'I'm', 'my name is'
    or 'call me' (initials, titles and words like 'Sure' or 'President' skipped)."""
    claimed = []
    for match in SELF_NAME.finditer(answer):
        parts = [POSSESSIVE.sub("", part) for part in match.group(1).split()]
        parts = [part for part in parts if len(part) > 1 and part.lower() not in NOT_A_NAME]
        if parts:
            claimed.append(" ".join(parts))
    return claimed


def identity_verdict(answer: str, persona_name: str) -> dict:
    """Whether an answer to an identity question answers as the persona: it names them (their
    surname, or their full name), claims no other name, and does not call itself an AI or
    language model. Returns {ok, names_persona, other_identity, ai_claim}."""
    name_parts = persona_name.split()
    if not name_parts:
        raise ValueError("identity_verdict: persona_name is empty")
    surname = re.compile(rf"\b{re.escape(name_parts[-1])}\b", re.I)
    names_persona = bool(surname.search(answer))
    # a claimed name is the persona's when it carries the surname ("Captain Paul Graham") or is
    # made of the persona's names only ("Donald" from "Donald J. Trump"); anything else is another identity
    own = {part.lower() for part in name_parts}
    others = [name for name in names_claimed(answer)
              if name_parts[-1].lower() not in name.lower().split() and not set(name.lower().split()) <= own]
    ai = AI_CLAIM.search(answer)
    return {"ok": names_persona and not others and ai is None, "names_persona": names_persona,
            "other_identity": others[0] if others else None, "ai_claim": ai.group(0) if ai else None}
