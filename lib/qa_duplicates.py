"""Near-duplicate questions in stage 04's chat data: only the first of a group of questions
whose word sets overlap (Jaccard) by the threshold or more is kept.
"""
from __future__ import annotations

import math
from collections import Counter

from lib.text import is_word, word_tokens


def question_text(record: dict) -> str:
    """Everything the user side says in a conversation."""
    return " ".join(m["content"] for m in record["messages"] if m["role"] == "user")


def normalized_words(text: str) -> frozenset:
    return frozenset(t for t in word_tokens(text) if is_word(t))


def remove_near_duplicates(records: list[dict], threshold: float,
                           reference: list[dict] = ()) -> tuple[list[dict], list[tuple[dict, dict]]]:
    """Keep the first of every group of records whose questions (question_text) have a
    word-set Jaccard similarity >= threshold; only conversations with the same number of
    user turns are compared (a multi-turn window is no duplicate of its first exchange).
    `reference` records (identity) come first and always stay, so a generated "What is
    your name?" paired with an essay passage is removed. Returns (kept records, without
    the reference ones, [(removed, kept_twin)]). Exact, with a prefix filter so it stays
    fast on thousands of questions."""
    n_reference = len(reference)
    records = list(reference) + list(records)
    sets = [normalized_words(question_text(r)) for r in records]
    turns = [sum(m["role"] == "user" for m in r["messages"]) for r in records]
    frequency = Counter(t for s in sets for t in s)
    index: dict[str, list[int]] = {}
    kept, removed = [], []
    for i, (record, words) in enumerate(zip(records, sets)):
        if not words:
            if i >= n_reference:
                kept.append(record)
            continue
        ordered = sorted(words, key=lambda t: (frequency[t], t))
        prefix = ordered[:len(ordered) - math.ceil(threshold * len(ordered)) + 1]
        twin = None
        for candidate in () if i < n_reference else {j for t in prefix for j in index.get((turns[i], t), ())}:
            other = sets[candidate]
            if len(words & other) / len(words | other) >= threshold:
                twin = candidate
                break
        if twin is not None:
            removed.append((record, records[twin]))
            continue
        if i >= n_reference:
            kept.append(record)
        for t in prefix:
            index.setdefault((turns[i], t), []).append(i)
    return kept, removed
