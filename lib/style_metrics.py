"""Does generated text sound like the person? Style and degeneration measures.

All plain Python on word and character counts, so they run anywhere and can be checked by
hand on small texts:

- Style: Burrows' Delta over the person's most frequent words (a distance: 0 = same word
  habits) and the similarity of character 3-gram distributions (1 = same text), each
  normalised by `normalised_score` so the prompted base model scores 0 and the person's own
  held-out text scores 1.
- Degeneration: distinct-2 (share of unique word pairs) and the repeated n-gram rate (share
  of n-grams already said earlier in the same answer). The tic rate is lib.tics', ROUGE-L
  lib.eval_scores', the identity verdict lib.eval_identity's.

    python -m lib.style_metrics authorship PERSONA FILE [FILE ...]   # lib.eval_authorship
"""
from __future__ import annotations

import math
import re
import sys
from collections import Counter
from dataclasses import dataclass

from lib.text import is_word, word_tokens


def words(text: str) -> list[str]:
    """Lowercase word tokens, as stage 04 tokenizes (lib.text.word_tokens) without the punctuation:
    apostrophes stay inside words (don't, it's)."""
    return [token for token in word_tokens(text) if is_word(token)]


def ngrams(tokens: list, n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


# ---------------------------------------------------------------- style

def char_ngram_counts(text: str, n: int = 3) -> Counter:
    """Counts of character n-grams of the text with runs of whitespace made one space (case and
    punctuation kept: they are part of a style)."""
    flat = re.sub(r"\s+", " ", text).strip()
    return Counter(flat[i:i + n] for i in range(len(flat) - n + 1))


def char_ngram_similarity(text_a: str, text_b: str, n: int = 3) -> float:
    """Bhattacharyya coefficient of the two texts' character n-gram distributions,
    sum(sqrt(p * q)): 1.0 for the same text, 0.0 when they share no n-gram. (The square root
    keeps " th" and "the" from swamping the rarer n-grams that carry a style.)"""
    a, b = char_ngram_counts(text_a, n), char_ngram_counts(text_b, n)
    if not a or not b:
        raise ValueError(f"char_ngram_similarity: a text shorter than {n} characters")
    total_a, total_b = sum(a.values()), sum(b.values())
    return sum(math.sqrt(count * b[gram]) for gram, count in a.items() if gram in b) / math.sqrt(total_a * total_b)


@dataclass
class DeltaProfile:
    """The most frequent words of the person's corpus, with the mean and standard deviation of
    each word's relative frequency across pieces of that corpus (Burrows' z-scores)."""
    words: list[str]
    means: list[float]
    stds: list[float]


def split_into_pieces(texts: list[str], piece_words: int) -> list[list[str]]:
    """The texts' words cut into consecutive pieces of piece_words words (the short tail of
    each text is kept when it has at least half that many)."""
    pieces = []
    for text in texts:
        tokens = words(text)
        for start in range(0, len(tokens), piece_words):
            piece = tokens[start:start + piece_words]
            if len(piece) >= piece_words // 2:
                pieces.append(piece)
    return pieces


def relative_frequencies(tokens: list[str], vocabulary: list[str]) -> list[float]:
    counts = Counter(tokens)
    total = max(len(tokens), 1)
    return [counts[word] / total for word in vocabulary]


def delta_profile(corpus_texts: list[str], n_words: int = 100, piece_words: int = 300) -> DeltaProfile:
    """Build the Delta profile from the person's real text (the training documents): the
    n_words most frequent words, and their frequency mean/std over piece_words-word pieces."""
    pieces = split_into_pieces(corpus_texts, piece_words)
    if len(pieces) < 3:
        raise ValueError(f"delta_profile: the corpus gives {len(pieces)} pieces of {piece_words} words; "
                         "need at least 3 to estimate word-frequency spread")
    counts = Counter(word for piece in pieces for word in piece)
    vocabulary = [word for word, _ in counts.most_common(n_words)]
    table = [relative_frequencies(piece, vocabulary) for piece in pieces]
    means, stds = [], []
    for column in zip(*table):
        mean = sum(column) / len(column)
        means.append(mean)
        stds.append(math.sqrt(sum((x - mean) ** 2 for x in column) / (len(column) - 1)))
    keep = [i for i, std in enumerate(stds) if std > 0]
    return DeltaProfile([vocabulary[i] for i in keep], [means[i] for i in keep], [stds[i] for i in keep])


def burrows_delta(text_a: str, text_b: str, profile: DeltaProfile) -> float:
    """Burrows' Delta: mean absolute difference of the two texts' z-scored frequencies of the
    profile's words. 0.0 for the same text; about 1 or more between different authors."""
    tokens_a, tokens_b = words(text_a), words(text_b)
    if not tokens_a or not tokens_b:
        raise ValueError("burrows_delta: a text has no words")
    freq_a = relative_frequencies(tokens_a, profile.words)
    freq_b = relative_frequencies(tokens_b, profile.words)
    return sum(abs(fa - fb) / std for fa, fb, std in zip(freq_a, freq_b, profile.stds)) / len(profile.words)


def normalised_score(value: float, baseline: float, ceiling: float) -> float:
    """Place value on the scale baseline -> 0, ceiling -> 1 (works for distances, where the
    ceiling is smaller, and for similarities, where it is larger). Beyond either end the score
    goes below 0 or above 1."""
    if ceiling == baseline:
        raise ValueError(f"normalised_score: baseline and ceiling are both {baseline}; the scale is empty")
    return (value - baseline) / (ceiling - baseline)


def truncate_words(text: str, max_words: int) -> str:
    """The text cut after its first max_words whitespace-separated words."""
    parts = text.split()
    return text if len(parts) <= max_words else " ".join(parts[:max_words])


def style_distances(text: str, reference: str, profile: DeltaProfile, char_n: int = 3) -> dict:
    """Burrows' Delta (lower is closer) and character n-gram similarity (higher is closer) of
    text against the reference."""
    return {"delta": burrows_delta(text, reference, profile),
            "char_sim": char_ngram_similarity(text, reference, char_n)}


def word_windows(text: str, length: int) -> list[str]:
    """The text as consecutive, non-overlapping pieces of `length` words (the rest dropped)."""
    parts = text.split()
    return [" ".join(parts[i:i + length]) for i in range(0, len(parts) - length + 1, length)]


def mean_style_distances(text: str, length: int, reference: str, profile: DeltaProfile, char_n: int = 3) -> dict:
    """style_distances averaged over the text's windows of `length` words: a text much longer
    than `length` is measured on all of it, at that length."""
    windows = [style_distances(w, reference, profile, char_n) for w in word_windows(text, length)]
    return {key: sum(w[key] for w in windows) / len(windows) for key in ("delta", "char_sim")}


MIN_STYLE_WORDS = 100  # below this a text's word frequencies say next to nothing about style (at 60 words
# Trump's answers scored as high as Paul Graham's essays on a Trump-to-PG scale; from 250 they separate)


def style_scores(samples: dict[str, str], reference: str, own_text: str, baseline: str,
                 profile: DeltaProfile, char_n: int = 3) -> dict[str, dict]:
    """Style of each sample against the person's held-out reference text, normalised so the
    baseline sample scores 0 and own_text (the person's own held-out text not in the reference)
    scores 1.

    Both measures depend on length, so each sample is compared like with like: it, the
    baseline and own_text are cut to the shortest of the three (in words) and the sample is
    scored between those two cuts. A sample's score therefore depends only on its own text
    (adding, removing or retraining another system leaves it unchanged), and a system that
    answers briefly is not marked down for brevity alone. style_score is the mean of the Delta
    and character n-gram scores. Returns {name: {delta, char_sim, delta_score, char_score,
    style_score, words}} with an entry "own_text" for the ceiling itself; a sample of fewer
    than MIN_STYLE_WORDS words (or every sample, when the baseline or own_text is that short)
    gets None scores: too little text to place on the scale.
    """
    if baseline not in samples:
        raise ValueError(f"style_scores: baseline {baseline!r} is not among the samples {sorted(samples)}")
    limit = min(len(samples[baseline].split()), len(own_text.split()))  # under MIN_STYLE_WORDS: no scores at all
    scale = {}  # length -> (baseline, own_text) distances at that length, shared by samples of equal length
    scores = {}
    for name, text in [*samples.items(), ("own_text", own_text)]:
        length = min(len(text.split()), limit)
        if length < MIN_STYLE_WORDS:
            scores[name] = {"delta": None, "char_sim": None, "delta_score": None, "char_score": None,
                            "style_score": None, "words": length}
            continue
        if length not in scale:
            scale[length] = (mean_style_distances(samples[baseline], length, reference, profile, char_n),
                             mean_style_distances(own_text, length, reference, profile, char_n))
        low, high = scale[length]
        values = mean_style_distances(text, length, reference, profile, char_n)
        delta_score = normalised_score(values["delta"], low["delta"], high["delta"])
        char_score = normalised_score(values["char_sim"], low["char_sim"], high["char_sim"])
        scores[name] = {**values, "delta_score": delta_score, "char_score": char_score,
                        "style_score": (delta_score + char_score) / 2, "words": length}
    return scores


# ---------------------------------------------------------------- degeneration

def distinct_n(texts: list[str], n: int = 2) -> float:
    """Unique word n-grams / all word n-grams over the texts (n-grams never cross two texts):
    1.0 when nothing repeats, near 0 for one word said over and over."""
    grams = [gram for text in texts for gram in ngrams(words(text), n)]
    if not grams:
        raise ValueError(f"distinct_n: the texts have no {n}-grams")
    return len(set(grams)) / len(grams)


def repeated_ngram_rate(texts: list[str], n: int = 3) -> float:
    """Share of word n-grams that repeat an n-gram said earlier in the same text (pooled over
    texts): 0.0 without repeats; loops and stutters push it towards 1."""
    repeats = total = 0
    for text in texts:
        seen = set()
        for gram in ngrams(words(text), n):
            total += 1
            repeats += gram in seen
            seen.add(gram)
    if not total:
        raise ValueError(f"repeated_ngram_rate: the texts have no {n}-grams")
    return repeats / total


def main(argv=None) -> int:
    """python -m lib.style_metrics authorship PERSONA FILE [FILE ...] (lib/eval_authorship.py)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] != "authorship":
        print("usage: python -m lib.style_metrics authorship PERSONA FILE [FILE ...]", file=sys.stderr)
        return 2
    from lib.eval_authorship import cli

    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
