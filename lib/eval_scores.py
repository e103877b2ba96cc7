"""07's scores per system: identity rate (plain probes), overlap with the person's real text
(ROUGE-L F1: knowledge answers against the real answers, title essays against the real
opening), Burrows' Delta and character 3-gram style scores (lib.style_metrics), distinct-2,
the repeated 3-gram rate and the tic rate (lib.tics).
"""
from __future__ import annotations

from lib.eval_identity import IDENTITY_TASKS, judged_identity_answers
from lib.eval_prompts import reference_and_own_text
from lib.eval_systems import BASELINE
from lib.split import persona_text, split_paragraphs
from lib.style_metrics import delta_profile, distinct_n, repeated_ngram_rate, style_scores, words
from lib.tics import find_answer_tics, real_corpus_texts, tic_rate

# ---------------------------------------------------------------- overlap (ROUGE-L)

def longest_common_subsequence(a: list, b: list) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lowercase words: the longest common subsequence's harmonic mean of
    precision (over the candidate) and recall (over the reference)."""
    cand, ref = words(candidate), words(reference)
    if not ref:
        raise ValueError("rouge_l: the reference has no words")
    lcs = longest_common_subsequence(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def identity_scores(answers: list[dict], persona_name: str) -> tuple[float, list[dict]]:
    """(share of the plain identity probes' answers that answer as the persona, the verdict
    per answer); lib.eval_identity gives both probe kinds with CIs."""
    judged = judged_identity_answers(answers, persona_name, "identity")
    if not judged:
        raise ValueError("no identity answers to score")
    return sum(j["ok"] for j in judged) / len(judged), judged


def overlap_scores(answers: list[dict], prompts: list[dict]) -> dict[str, float | None]:
    """Mean ROUGE-L F1 per task against the real text: knowledge answers against the person's
    real answers; title essays against the real essay's opening of the same length."""
    references = {p["id"]: p["reference"] for p in prompts if p.get("reference")}
    by_task: dict[str, list[float]] = {"knowledge": [], "title": []}
    for a in answers:
        if a["task"] not in by_task:
            continue
        reference = references[a["id"]]
        if a["task"] == "title":
            reference = " ".join(reference.split()[:max(len(a["answer"].split()), 50)])
        by_task[a["task"]].append(rouge_l(a["answer"], reference))
    return {task: (sum(v) / len(v) if v else None) for task, v in by_task.items()}


def style_texts(answers: list[dict]) -> list[str]:
    """The answers in the person's voice that style and degeneration are measured on: every
    answer except the identity probes (whose short self-introductions are scored on their own)."""
    return [a["answer"] for a in answers if a["task"] not in IDENTITY_TASKS and a["answer"].strip()]


def score_systems(answers: dict[str, list[dict]], prompts: list[dict], heldout_docs: list[dict],
                  train_docs: list[dict], persona_name: str) -> dict:
    """All measures, per system (and for the person's own held-out text where it applies):
    identity_rate, style_score (+ delta, char_sim and their scores), distinct_2,
    repeated_3gram_rate, tic_rate and tics, knowledge_rouge_l, title_rouge_l, and
    title_style_score (the style of the title round trip's essays alone)."""
    reference, own = reference_and_own_text(heldout_docs)
    profile = delta_profile([persona_text(d) for d in train_docs])
    real_corpus = real_corpus_texts(train_docs)
    texts = {name: style_texts(a) for name, a in answers.items()}
    empty = [name for name, t in texts.items() if not t]
    if empty:
        raise ValueError(f"systems {empty} produced only empty answers; nothing to measure style on")
    style = style_scores({name: "\n\n".join(t) for name, t in texts.items()}, reference, own, BASELINE, profile)
    own_pieces = split_paragraphs(own)
    name_words = tuple(persona_name.split())
    metrics = {key: {} for key in ("identity_rate", "style_score", "delta", "char_sim", "delta_score", "char_score",
                                   "style_words", "distinct_2", "repeated_3gram_rate", "tic_rate", "tics",
                                   "knowledge_rouge_l", "title_rouge_l", "title_style_score")}
    for name, system_texts in list(texts.items()) + [("own_text", own_pieces)]:
        tics = find_answer_tics(system_texts, real_corpus, ignore=name_words)
        metrics["tic_rate"][name] = tic_rate(system_texts, tics)
        metrics["tics"][name] = [t["phrase"] for t in tics][:10]
        metrics["distinct_2"][name] = distinct_n(system_texts, 2)
        metrics["repeated_3gram_rate"][name] = repeated_ngram_rate(system_texts, 3)
        for key in ("style_score", "delta", "char_sim", "delta_score", "char_score"):
            metrics[key][name] = style[name][key]
        metrics["style_words"][name] = style[name]["words"]
    for name, system_answers in answers.items():
        metrics["identity_rate"][name] = identity_scores(system_answers, persona_name)[0]
        overlap = overlap_scores(system_answers, prompts)
        metrics["knowledge_rouge_l"][name] = overlap["knowledge"]
        metrics["title_rouge_l"][name] = overlap["title"]
    essays = {name: "\n\n".join(a["answer"] for a in system_answers if a["task"] == "title")
              for name, system_answers in answers.items()}
    if all(text.split() for text in essays.values()):
        essay_style = style_scores(essays, reference, own, BASELINE, profile)
        metrics["title_style_score"] = {name: essay_style[name]["style_score"] for name in [*essays, "own_text"]}
    return metrics
