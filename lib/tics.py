"""Tics: phrases over-represented in generated text compared with the person's real text
("friend", "Ah,"), found by find_tics (04 drops the records that carry one; 07 reports
tic_rate on each system's answers with the same detector).
"""
from __future__ import annotations

import math
import re
from collections import Counter

from lib.text import STOPWORDS, is_word, word_tokens


def candidate_phrases(toks: list[str], max_n: int = 3):
    """Word n-grams (1..max_n) that could be a tic: no leading stopword or punctuation,
    no trailing stopword, at least one content word; a trailing comma or exclamation mark
    is allowed ("ah ,"), other punctuation is not (every question ends in "?")."""
    for n in range(1, max_n + 1):
        for i in range(len(toks) - n + 1):
            gram = toks[i:i + n]
            if not is_word(gram[0]) or gram[0] in STOPWORDS:
                continue
            if any(not is_word(t) for t in gram[:-1]) or (not is_word(gram[-1]) and gram[-1] not in ",!"):
                continue
            if is_word(gram[-1]) and gram[-1] in STOPWORDS:
                continue
            if not any(is_word(t) and t not in STOPWORDS for t in gram):
                continue
            yield " ".join(gram)


def display_phrase(phrase: str) -> str:
    """'ah ,' -> 'ah,'"""
    return re.sub(r" ([^\sa-z0-9])", r"\1", phrase)


def phrase_sets(texts: list[str], max_n: int = 3) -> list[set]:
    """The candidate phrases of each text."""
    return [set(candidate_phrases(word_tokens(text), max_n)) for text in texts]


def real_corpus_texts(documents: list[dict]) -> list[str]:
    """The person's real text that generated text is compared with: essay paragraphs, and
    every turn of the interviews (both sides are real speech)."""
    texts = []
    for doc in documents:
        if doc.get("kind") == "interview":
            texts += [t["text"] for t in doc.get("turns") or [] if t.get("text")]
        else:
            texts += [p for p in re.split(r"\n\s*\n", doc.get("text") or "") if p.strip()]
    return texts


def find_tics(generated: list[str], real: list[str], min_count: int, min_ratio: float,
              grounding: list[str] | None = None, max_n: int = 3, top: int = 25) -> list[dict]:
    """Phrases over-represented in generated text compared with the real corpus.

    A phrase counts in a generated text only when that text's grounding (the passage a
    question was written for, the prompt an answer was written to) does not contain it:
    "writing" in a question about a passage on writing is the topic, not a tic. Rates are
    the share of texts containing the phrase (generated texts vs real paragraphs/turns, so
    short questions and long paragraphs compare fairly); ratio = generated share /
    ((real texts with it + 1) / (real texts + 1)). A phrase is a tic when it is in at
    least min_count generated texts and its ratio is at least min_ratio.

    Returns up to `top` rows by ratio, each {"phrase", "key", "generated_texts",
    "real_texts", "ratio", "tic"}; a longer phrase containing a flagged one is left out.
    """
    if not generated:
        return []
    grounded = phrase_sets(grounding, max_n) if grounding is not None else [set()] * len(generated)
    in_generated = Counter()
    for phrases, ground in zip(phrase_sets(generated, max_n), grounded):
        in_generated.update(phrases - ground)
    in_real = Counter(p for phrases in phrase_sets(real, max_n) for p in phrases)
    rows = []
    for phrase, n_texts in in_generated.items():
        if n_texts < min_count:
            continue
        ratio = (n_texts / len(generated)) / ((in_real[phrase] + 1) / (len(real) + 1))
        rows.append({"phrase": display_phrase(phrase), "key": phrase, "generated_texts": n_texts,
                     "real_texts": in_real[phrase], "ratio": round(ratio, 1), "tic": ratio >= min_ratio})
    rows.sort(key=lambda r: (-r["ratio"], -r["generated_texts"], r["phrase"]))
    flagged = [r["key"] for r in rows if r["tic"]]
    kept = [row for row in rows
            if not any(f != row["key"] and f" {f} " in f" {row['key']} " for f in flagged)]
    return kept[:top] if top else kept


def has_phrase(text: str, phrase_key: str) -> bool:
    """Does text contain the phrase (a find_tics "key"), on token boundaries?"""
    return f" {phrase_key} " in " " + " ".join(word_tokens(text)) + " "


def tic_in(text: str, tics: list[dict], grounding: str = "") -> str | None:
    """The first flagged tic that text contains and its grounding does not, or None."""
    for row in tics:
        if row["tic"] and has_phrase(text, row["key"]) and not has_phrase(grounding, row["key"]):
            return row["phrase"]
    return None


def find_answer_tics(generated: list[str], real_texts: list[str], min_ratio: float = 5.0, min_texts: int = 3,
                     min_text_share: float = 0.3, ignore: tuple[str, ...] = ()) -> list[dict]:
    """Tics of the generated texts: phrases at least min_ratio times more frequent than in the
    person's real text, recurring across answers (in at least min_texts texts and
    min_text_share of them) rather than belonging to one answer's topic. Phrases with a word
    from `ignore` (the persona's name) never count.

    The detector is stage 04's (find_tics), so 07 measures with the same notion of a tic
    that 04 filters its training data with. Returns its flagged rows ({phrase, key, ratio,
    generated_texts, ...}).
    """
    need_texts = max(min_texts, math.ceil(min_text_share * len(generated)))
    ignored = {word.lower() for word in ignore}
    rows = find_tics(generated, real_texts, min_count=need_texts, min_ratio=min_ratio, top=0)
    return [row for row in rows if row["tic"] and not ignored & set(row["key"].split())]


def tic_rate(generated: list[str], tics: list[dict]) -> float:
    """Share of the generated words that are part of a tic phrase (0.0 without tics)."""
    phrases = [row["key"].split() for row in tics]
    covered = total = 0
    for text in generated:
        toks = word_tokens(text)
        marked = [False] * len(toks)
        for phrase in phrases:
            n = len(phrase)
            for i in range(len(toks) - n + 1):
                if toks[i:i + n] == phrase:
                    marked[i:i + n] = [True] * n
        total += sum(is_word(tok) for tok in toks)
        covered += sum(m and is_word(tok) for m, tok in zip(marked, toks))
    if not total:
        raise ValueError("tic_rate: the generated texts have no words")
    return covered / total
