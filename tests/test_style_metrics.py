"""Style, degeneration, ROUGE-L and identity measures on hand-made cases with known answers,
and on real text: Paul Graham's held-out essays against his other essays, and Trump's
interview answers against the same essays."""
import json
from pathlib import Path

import pytest

from lib.style_metrics import (burrows_delta, char_ngram_similarity, delta_profile, distinct_n, normalised_score,
                               repeated_ngram_rate, style_scores, truncate_words, words)
from lib.eval_identity import identity_verdict
from lib.eval_scores import rouge_l
from lib.tics import find_answer_tics, tic_rate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "style"


def read_documents(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def pg():
    """14 real essays: the first 4 play the held-out essays, the rest the training corpus."""
    docs = read_documents("pg_documents.jsonl")
    return {"heldout": [d["text"] for d in docs[:4]], "train": [d["text"] for d in docs[4:]]}


@pytest.fixture(scope="module")
def trump_answers():
    return ["\n\n".join(t["text"] for t in d["turns"] if t["is_persona"])
            for d in read_documents("trump_documents.jsonl")]


SENTENCE = "The best way to get startup ideas is to notice problems in your own life and solve them."


def test_words():
    assert words("Don't PANIC -- it's 42, ok?") == ["don't", "panic", "it's", "42", "ok"]


def test_a_text_against_itself(pg):
    profile = delta_profile(pg["train"])
    text = pg["heldout"][0]
    assert burrows_delta(text, text, profile) == 0.0
    assert char_ngram_similarity(text, text) == pytest.approx(1.0)
    assert rouge_l(text, text) == pytest.approx(1.0)
    assert char_ngram_similarity("abc", "xyz") == 0.0


def test_delta_profile_and_delta_by_hand():
    # three 4-word pieces; "a" has frequencies 0.5, 0.25, 0.75: mean 0.5, sample std 0.25.
    # "b" is 0.25 in every piece: no spread to z-score with, so it is dropped.
    profile = delta_profile(["a a b c", "a b c d", "a a a b"], n_words=2, piece_words=4)
    assert profile.words == ["a"]
    assert profile.means == [pytest.approx(0.5)] and profile.stds == [pytest.approx(0.25)]
    assert burrows_delta("a b", "a a a b", profile) == pytest.approx(abs(0.5 - 0.75) / 0.25)
    with pytest.raises(ValueError, match="need at least 3"):
        delta_profile(["too short"], piece_words=300)


def test_repeated_token_text():
    repeated = "the the the the the"
    assert distinct_n([repeated], 2) == pytest.approx(1 / 4)        # 4 bigrams, 1 distinct
    assert repeated_ngram_rate([repeated], 3) == pytest.approx(2 / 3)  # 3 trigrams, the last 2 repeat
    assert distinct_n([SENTENCE], 2) == 1.0
    assert repeated_ngram_rate([SENTENCE], 3) == 0.0
    # n-grams never cross from one answer into the next
    assert distinct_n(["a b", "a b"], 2) == 0.5
    assert repeated_ngram_rate(["a b c", "a b c"], 3) == 0.0
    with pytest.raises(ValueError, match="no 2-grams"):
        distinct_n(["one"], 2)


def test_rouge_l_known_values():
    # Lin (2004)'s example: the LCS of the reference with each candidate
    reference = "police killed the gunman"
    assert rouge_l("police kill the gunman", reference) == pytest.approx(0.75)  # LCS 3 of 4 and 4
    assert rouge_l("the gunman kill police", reference) == pytest.approx(0.5)   # LCS "the gunman"
    # LCS 5, precision 5/5, recall 5/6 -> F1 = 10/11
    assert rouge_l("the cat on the mat", "The cat sat on the mat.") == pytest.approx(10 / 11)
    assert rouge_l("nothing in common", reference) == 0.0
    with pytest.raises(ValueError, match="reference has no words"):
        rouge_l("x", "...")


@pytest.mark.parametrize("answer,persona,expected", [
    ("I'm Paul Graham. I write essays and I co-founded Y Combinator.", "Paul Graham",
     {"ok": True, "names_persona": True, "other_identity": None, "ai_claim": None}),
    ("My name is Donald J. Trump, and I'm the President.", "Donald Trump",
     {"ok": True, "names_persona": True, "other_identity": None, "ai_claim": None}),
    ("I'm Nancy Pelosi, Speaker of the House.", "Donald Trump",
     {"ok": False, "names_persona": False, "other_identity": "Nancy Pelosi", "ai_claim": None}),
    ("Mr. Y - I'm Captain Paul Graham, the founder of Y Combinator.", "Paul Graham",
     {"ok": True, "names_persona": True, "other_identity": None, "ai_claim": None}),
    ("I am Sam Altman, but I admire Paul Graham.", "Paul Graham",
     {"ok": False, "names_persona": True, "other_identity": "Sam Altman", "ai_claim": None}),
    ("As an AI language model, I don't have a name.", "Paul Graham",
     {"ok": False, "names_persona": False, "other_identity": None, "ai_claim": "As an AI"}),
    ("I'm SmolLM, a helpful assistant created by Hugging Face.", "Paul Graham",
     {"ok": False, "names_persona": False, "other_identity": "SmolLM", "ai_claim": "SmolLM"}),
    ("Well, I'm sure you know me. I build things.", "Paul Graham",
     {"ok": False, "names_persona": False, "other_identity": None, "ai_claim": None}),
])
def test_identity_verdict(answer, persona, expected):
    assert identity_verdict(answer, persona) == expected


def test_tics_found_in_answers_that_say_ah_friend(pg):
    paragraphs = [p for text in pg["heldout"][:3] for p in text.split("\n\n") if len(p.split()) > 20]
    # the person's own held-out paragraphs have no tics against the rest of their essays
    assert find_answer_tics(paragraphs, pg["train"]) == []
    # the original finetune's habit: every answer opens "Ah, friend,"
    ticced = [f"Ah, friend, {p}" for p in paragraphs]
    tics = find_answer_tics(ticced, pg["train"])
    assert sorted(tic["phrase"] for tic in tics) == ["ah", "friend"]
    assert all(tic["generated_texts"] == len(paragraphs) for tic in tics)
    total_words = sum(len(words(text)) for text in ticced)
    assert tic_rate(ticced, tics) == pytest.approx(2 * len(paragraphs) / total_words)
    assert tic_rate(paragraphs, tics) == 0.0
    # the persona's own name is not a tic however often it is said
    named = [f"Paul Graham. {p}" for p in paragraphs]
    assert find_answer_tics(named, pg["train"], ignore=("Paul", "Graham")) == []


def test_normalised_score():
    assert normalised_score(3.0, baseline=3.0, ceiling=1.0) == 0.0   # a distance: lower is better
    assert normalised_score(1.0, baseline=3.0, ceiling=1.0) == 1.0
    assert normalised_score(2.0, baseline=3.0, ceiling=1.0) == 0.5
    assert normalised_score(0.9, baseline=0.5, ceiling=0.7) == pytest.approx(2.0)  # a similarity
    with pytest.raises(ValueError, match="scale is empty"):
        normalised_score(1.0, 2.0, 2.0)


def test_real_text_pg_heldout_is_far_closer_than_trump(pg, trump_answers):
    profile = delta_profile(pg["train"][2:])
    reference = "\n\n".join(pg["heldout"])
    other_pg = truncate_words("\n\n".join(pg["train"][:2]), 1000)
    trump = truncate_words("\n\n".join(trump_answers), 1000)
    assert burrows_delta(other_pg, reference, profile) < 0.85 * burrows_delta(trump, reference, profile)
    assert char_ngram_similarity(other_pg, reference) > char_ngram_similarity(trump, reference) + 0.03


def test_style_scores_real_text(pg, trump_answers):
    """Normalised with Trump as the baseline (0) and the person's held-out text as the
    ceiling (1): PG's other essays score near the top, other Trump answers near 0."""
    paragraphs = [p for text in pg["heldout"] for p in text.split("\n\n")]
    reference, own = "\n\n".join(paragraphs[0::2]), "\n\n".join(paragraphs[1::2])
    samples = {"trump_a": "\n\n".join(trump_answers[:2]), "trump_b": "\n\n".join(trump_answers[2:]),
               "pg_other": "\n\n".join(pg["train"][:2])}
    scores = style_scores(samples, reference, own, "trump_a", delta_profile(pg["train"][2:]))
    assert scores["trump_a"]["style_score"] == 0.0
    assert scores["own_text"]["style_score"] == 1.0
    limit = min(len(samples["trump_a"].split()), len(own.split()))
    assert {name: s["words"] for name, s in scores.items()} == {  # each cut to the shorter of it and the scale
        name: min(len(text.split()), limit) for name, text in [*samples.items(), ("own_text", own)]}
    assert scores["pg_other"]["style_score"] > 0.4
    assert abs(scores["trump_b"]["style_score"]) < 0.25
    assert scores["pg_other"]["style_score"] > scores["trump_b"]["style_score"] + 0.3
    with pytest.raises(ValueError, match="baseline 'base'"):
        style_scores(samples, reference, own, "base", delta_profile(pg["train"][2:]))


def test_a_style_score_depends_only_on_its_own_sample(pg, trump_answers):
    """Adding a system with much shorter answers, or dropping one, leaves every other score
    as it was; a short cut of the person's own essays still scores well above a Trump answer
    of the same length; a sample under MIN_STYLE_WORDS gets no score."""
    from lib.style_metrics import MIN_STYLE_WORDS

    paragraphs = [p for text in pg["heldout"] for p in text.split("\n\n")]
    reference, own = "\n\n".join(paragraphs[0::2]), "\n\n".join(paragraphs[1::2])
    profile = delta_profile(pg["train"][2:])
    samples = {"trump_a": "\n\n".join(trump_answers[:2]), "pg_other": "\n\n".join(pg["train"][:2])}
    alone = style_scores(samples, reference, own, "trump_a", profile)
    short_pg = " ".join(pg["train"][3].split()[:250])
    short_trump = " ".join(" ".join(trump_answers[2:]).split()[:250])
    more = style_scores({**samples, "short_pg": short_pg, "short_trump": short_trump, "tiny": "Yes, I am."},
                        reference, own, "trump_a", profile)
    assert more["pg_other"] == alone["pg_other"] and more["own_text"] == alone["own_text"]
    assert more["short_pg"]["words"] == 250
    assert more["short_pg"]["style_score"] > more["short_trump"]["style_score"] + 0.1
    assert more["tiny"]["style_score"] is None and more["tiny"]["words"] < MIN_STYLE_WORDS
    short_scale = style_scores({"base": "Yes. " * 40, "pg": short_pg}, reference, own, "base", profile)
    assert all(s["style_score"] is None for s in short_scale.values())  # a 40-word baseline: no scale
