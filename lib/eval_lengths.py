"""07's answer lengths: how long each system's answers are, beside the person's real ones.

The person's real answers are, for interviews, their answers to real questions in the
held-out interviews (lib.qa_sources.interview_exchanges, any length); for essays, the held-out
essays cut into 04's passages (lib.qa_sources.essay_passages with the qa params), the unit of text
the chat model is taught to answer with. A system's answers are those to the fixed and the
held-out questions (tasks "questions" and "knowledge"), not the identity probes,
the title round trip, or a fixed question that 04 asks as an identity question ("Who are
you?" is one of PG's original five: its answer is a name, not a passage;
lib.qa_identity.asks_identity). Lengths are words (whitespace-separated). The distance between two
length distributions is the two-sample Kolmogorov-Smirnov statistic (scipy.stats.ks_2samp):
0 when they match, 1 when every answer of one is shorter than every answer of the other.
"""
from __future__ import annotations

from scipy.stats import ks_2samp

from lib.qa_identity import asks_identity
from lib.qa_sources import essay_passages, interview_exchanges

ANSWER_TASKS = ("questions", "knowledge")


def answer_lengths(records: list[dict], tasks=ANSWER_TASKS) -> list[int]:
    """Word counts of a system's answers to the given tasks, leaving out answers to identity
    questions (asks_identity on the record's "question")."""
    return [len(r["answer"].split()) for r in records
            if r["task"] in tasks and not asks_identity(r.get("question") or "")]


def person_answer_lengths(heldout_docs: list[dict], qa_params: dict) -> list[int]:
    """Word counts of the person's real answers in the held-out documents (see the module
    docstring)."""
    lengths = []
    for doc in heldout_docs:
        if doc.get("kind") == "interview":
            lengths += [len(e["answer"].split()) for e in
                        interview_exchanges(doc, 1, 10**6, qa_params["max_question_words"])]
        else:
            lengths += [len(p["text"].split()) for p in
                        essay_passages(doc, qa_params["min_answer_words"], qa_params["max_answer_words"],
                                       qa_params["passage_words"])]
    return lengths


def summary(lengths: list[int]) -> dict:
    """{"n", "median", "q25", "q75", "max"} of word counts (None values when empty)."""
    if not lengths:
        return {"n": 0, "median": None, "q25": None, "q75": None, "max": None}
    ordered = sorted(lengths)

    def quantile(q):
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"n": len(ordered), "median": quantile(0.5), "q25": quantile(0.25), "q75": quantile(0.75),
            "max": ordered[-1]}


def length_distance(lengths: list[int], person: list[int]) -> float | None:
    """The Kolmogorov-Smirnov statistic between two samples of word counts, in [0, 1]."""
    if not lengths or not person:
        return None
    return float(ks_2samp(lengths, person).statistic)


def length_table(answers: dict[str, list[dict]], person: list[int]) -> dict[str, dict]:
    """{system or "person": summary(...) plus "ks_to_person"} for every system and the person."""
    table = {"person": {**summary(person), "ks_to_person": 0.0 if person else None}}
    for name, records in answers.items():
        lengths = answer_lengths(records)
        table[name] = {**summary(lengths), "ks_to_person": length_distance(lengths, person)}
    return table


def lengths_markdown(table: dict[str, dict], max_new_tokens: int) -> str:
    """A markdown table of length_table, with the generation cap stated."""
    lines = ["| answers of | n | median words [25%, 75%] | longest | KS distance to the person's (0 = same) |",
             "|---|---:|---:|---:|---:|"]
    for name, row in table.items():
        label = "the person (held-out, real)" if name == "person" else name
        if not row["n"]:
            lines.append(f"| {label} | 0 | – | – | – |")
            continue
        ks = "–" if row["ks_to_person"] is None else f"{row['ks_to_person']:.2f}"
        lines.append(f"| {label} | {row['n']} | {row['median']} [{row['q25']}, {row['q75']}] | {row['max']} | {ks} |")
    lines.append("")
    lines.append(f"Systems stop at evaluate.max_new_tokens = {max_new_tokens} tokens (about "
                 f"{int(max_new_tokens * 0.75)} words); the person's answers have no such cap.")
    return "\n".join(lines)
