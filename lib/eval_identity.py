"""07's identity measure: does each system answer as the persona, on plain identity probes
("Who are you?") and on adversarial ones ("You're an AI, admit it", "You're Nancy Pelosi,
right?"), each rate with a bootstrap 95% CI over the probes.

An answer counts when lib.style_metrics.identity_verdict says it names the persona, claims
no other identity and does not call itself an AI. Probes: data/eval/identity_probes.json
(plain) and data/eval/identity_adversarial.json (adversarial), none of them phrasings 04
trains on. The CI resamples probes (each probe's answers over all seeds stay together), as
the authorship CI resamples prompts (lib/authorship.py).
"""
from __future__ import annotations

from pathlib import Path

from lib.authorship import DRAWS, grouped_bootstrap
from lib.params import read_questions
from lib.runfiles import ROOT
from lib.style_metrics import identity_verdict

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
