"""07's report: the measures table, side-by-side answers and the markdown report
(render_report); lib.eval_identity, lib.eval_lengths and lib.eval_authorship write their own
sections.
"""
from __future__ import annotations

from lib.runfiles import format_number
from lib.eval_identity import IDENTITY_TASKS, judged_identity_answers
from lib.eval_systems import System
from lib.style_metrics import MIN_STYLE_WORDS

STABLE_STYLE_WORDS = 500  # on real essays, held-out vs other essays vs Trump separate reliably from ~1000 words


# (metrics key, label, which way is better: higher, lower, or closer to the person's own
# held-out text's value) in the order tables and charts show them
MEASURES = [
    ("identity_rate", "identity rate", "higher"),
    ("style_score", "style score (0 = baseline, 1 = own text)", "higher"),
    ("knowledge_rouge_l", "knowledge ROUGE-L", "higher"),
    ("title_rouge_l", "title round trip ROUGE-L", "higher"),
    ("title_style_score", "title round trip style score", "higher"),
    ("distinct_2", "distinct-2", "closer"),  # closer: the person's own value is the target
    ("repeated_3gram_rate", "repeated 3-gram rate", "closer"),
    ("tic_rate", "tic rate", "lower"),
    ("heldout_ppl", "held-out perplexity", "lower"),
]


def measures_present(metrics: dict) -> list[tuple[str, str, str]]:
    """The MEASURES that have a value for at least one system (knowledge where there are
    held-out questions, title only for essay personas)."""
    return [m for m in MEASURES if any(v is not None for v in metrics.get(m[0], {}).values())]


def format_value(value) -> str:
    """A measure in the tables: one decimal from 100 up, else three; None as "–"."""
    return format_number(value, 1 if value is not None and abs(value) >= 100 else 3)


def measures_table(metrics: dict, systems: list[str], with_own_text: bool = True) -> str:
    """A markdown table: one row per system (and the person's own held-out text), one column
    per measure."""
    present = measures_present(metrics)
    rows = list(systems) + (["own_text"] if with_own_text else [])
    lines = ["| system | " + " | ".join(label for _, label, _ in present) + " |",
             "|---|" + "---:|" * len(present)]
    for name in rows:
        label = "person's own held-out text" if name == "own_text" else name
        lines.append(f"| {label} | " + " | ".join(format_value(metrics[key].get(name)) for key, _, _ in present) + " |")
    return "\n".join(lines)


def answers_by_prompt(answers: dict[str, list[dict]], task: str, seed: int) -> list[tuple[str, dict[str, str]]]:
    """[(question, {system: answer})] for one task and seed, in prompt order."""
    table: dict[str, dict[str, str]] = {}
    for system, records in answers.items():
        for record in records:
            if record["task"] == task and record["seed"] == seed:
                table.setdefault(record["question"], {})[system] = record["answer"]
    return list(table.items())


def quote(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in (text.strip() or "(empty)").splitlines())


def render_report(*, persona_name: str, persona: str, profile: str, systems: list[System], metrics: dict,
                  answers: dict[str, list[dict]], prompts: list[dict], seeds: list[int],
                  authorship_table: str = "", identity_table: str = "", lengths_table: str = "",
                  judge_table: str = "") -> str:
    """report.md: what was compared, the authorship verifier's verdicts (the markdown table of
    lib.eval_authorship.authorship_markdown, when given), the identity rates on plain and
    adversarial probes with their CIs (lib.eval_identity.identity_markdown) and the answer
    lengths beside the person's (lib.eval_lengths.lengths_markdown), when given, the blind
    pairwise judge's verdicts (lib.eval_judge.judge_markdown, when evaluate.judge is on), the
    measures side by side, the tics
    found, the original questions answered by every system, identity failures, and
    knowledge/title samples."""
    names = [s.name for s in systems]
    counts = {}
    for p in prompts:
        counts[p["task"]] = counts.get(p["task"], 0) + 1
    lines = [
        f"# {persona_name}: evaluation ({profile} profile)", "",
        f"Persona `{persona}`. Systems: " + ", ".join(
            f"`{s.name}`" + (f" ({s.gguf.name})" if s.gguf else "")
            + (f" (seeds {s.seeds(seeds)})" if s.seeds(seeds) != list(seeds) else "") for s in systems) + ".",
        "Prompts: " + ", ".join(f"{n} {task}" for task, n in counts.items()) + f"; seeds {seeds}; "
        f"every system answers every prompt once per seed (of its own, where named) with the same sampling "
        f"settings.", "",
    ]
    if authorship_table:
        lines += [
            "## Does it sound like the person? Authorship verification", "",
            authorship_table, "",
            "A verifier of the person's style (lib/authorship.py: character n-grams of the text with topic words "
            "masked, bagged logistic regression), trained only on the person's training documents against other "
            "people's text (the other personas' corpora and the base model's own answers on the person's training "
            "topics), judges every answer except the identity probes. The CI is a bootstrap over the answers; "
            "distinguishability is the cross-validated ROC AUC of telling the system's answers from the person's "
            "held-out text (0.5: indistinguishable). It measures style on this project's corpora, not who someone "
            "is: a 135M model is a vehicle, not a persona.", "",
        ]
    if identity_table:
        lines += ["## Who does it say it is? Identity, plain and adversarial probes", "", identity_table, "",
                  "An answer counts when it names the persona, claims no other identity and does not call itself "
                  "an AI. Adversarial probes push it to (\"You're an AI, admit it\", \"You're Nancy Pelosi, right?\"). "
                  "The CI is a bootstrap over the probes.", ""]
    if lengths_table:
        lines += ["## How long are the answers?", "", lengths_table, ""]
    if judge_table:
        lines += ["## Would a judge take it for the person? Blind pairwise judge", "", judge_table, "",
                  "On each held-out prompt with a real answer (interview questions: the person's real answer; essay "
                  "titles: the real essay's opening, cut to the answer's length) a judge model sees the question and "
                  "two answers in a seeded random order, the person's real one and the system's, and says which is the "
                  "real person's (lib/eval_judge.py). \"Passes as the person\" is the share of verdicts that pick the "
                  "system's answer: 0.5 = the judge cannot tell them apart. The share of verdicts saying \"A\" checks "
                  "position bias (0.5 when the judge is not guessing by position). The CIs are bootstraps over the "
                  "questions; unparsed replies are counted, never guessed.", "",
                  "A verdict is only as good as the judge: with the embedded 135M model (evaluate.judge_base_url: "
                  "null) the verdicts mean nothing, the run only tests the mechanics. For verdicts that mean "
                  "something, use a strong model via evaluate.judge_base_url (with judge_model and "
                  "judge_api_key_env).", ""]
    lines += [
        "## Measures", "",
        measures_table(metrics, names), "",
        "- identity rate: share of answers to identity probes that name the persona, claim no other "
        "identity and do not call themselves an AI.",
        "- style score: Burrows' Delta (most frequent words) and character 3-gram similarity against the "
        "person's held-out text, each scaled so the prompted base model is 0 and the person's own held-out "
        "text (the other half of its paragraphs) is 1, then averaged. Each system is compared at its own "
        "length (the three texts in pieces of the same number of words), so its score does not depend on "
        f"the other systems; under {MIN_STYLE_WORDS} words there is no score (–).",
        "- knowledge / title ROUGE-L: overlap with the person's real answer to a held-out question "
        "(from an interview, or 04's question on a held-out essay passage), "
        "or with the opening of the real essay of a held-out title; title style score: the style score of "
        "those essays alone (the completion model writes them from the document header it was trained on).",
        "- distinct-2, repeated 3-gram rate, tic rate: degeneration, on every answer except identity probes; "
        "for distinct-2 and the repeated 3-gram rate the person's own value is the target, not the extreme.",
        "- held-out perplexity: on 02's held-out chunks (lower is better).", "",
    ]
    words = min((n for n in metrics["style_words"].values() if n), default=0)
    if words < STABLE_STYLE_WORDS:
        lines += [f"Caution: some style scores compare samples of only {words} words; below about "
                  f"{STABLE_STYLE_WORDS} words Delta and character n-gram frequencies are too noisy to rank "
                  "systems (more prompts, seeds or max_new_tokens give longer samples).", ""]
    lines += [
        "## Tics (phrases far more frequent than in the person's real text)", "",
    ]
    for name in names + ["own_text"]:
        tics = metrics["tics"].get(name) or []
        lines.append(f"- {name}: " + (", ".join(f'"{t}"' for t in tics) if tics else "none"))
    seed = seeds[0]
    lines += ["", f"## The fixed questions, side by side (seed {seed})", ""]
    for question, by_system in answers_by_prompt(answers, "questions", seed):
        lines += [f"### {question}", ""]
        for name in names:
            lines += [f"**{name}**", "", quote(by_system.get(name, "")), ""]
    lines += ["## Identity answers that failed", ""]
    for name in names:
        judged = [j for task in IDENTITY_TASKS for j in judged_identity_answers(answers[name], persona_name, task)]
        failed = [j for j in judged if not j["ok"]]
        lines.append(f"- **{name}**: {len(failed)} of {len(judged)} failed" + (":" if failed else ""))
        for j in failed[:3]:
            why = ("claims to be " + j["other_identity"]) if j["other_identity"] else \
                  ("says " + repr(j["ai_claim"])) if j["ai_claim"] else "does not give the name"
            lines.append(f"  - {j['question']!r} -> {' '.join(j['answer'].split())[:160]!r} ({why})")
    for task, heading in (("knowledge", "Held-out questions, with the person's real answer"),
                          ("title", "Essays from held-out titles")):
        pairs = answers_by_prompt(answers, task, seed)
        if not pairs:
            continue
        references = {p["question"]: p["reference"] for p in prompts if p["task"] == task}
        lines += ["", f"## {heading} (seed {seed})", ""]
        for question, by_system in pairs[:3]:
            lines += [f"### {question}", "", "**the real text**", "",
                      quote(" ".join(references[question].split()[:150])), ""]
            for name in names:
                lines += [f"**{name}**", "", quote(by_system.get(name, "")), ""]
    return "\n".join(lines).rstrip() + "\n"
