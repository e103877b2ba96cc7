"""Stage 04 (lib/qa_sources.py, qa_identity.py, qa_clean.py, qa_duplicates.py, text.py, tics.py and
notebooks/04_qa): sources, cleaning, and a smoke run of the stage.

Documents are real: tests/fixtures/qa/ (eight Paul Graham essays, three Trump interview
transcripts; PROVENANCE.md). The generated replies below are real SmolLM2-135M-Instruct
outputs captured from this stage's prompts.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lib.tics import find_tics, real_corpus_texts, tic_in
from lib.text import light_trim, word_count
from lib import qa_clean, qa_duplicates, qa_identity, qa_sources
from lib.params import load_params
from lib.runfiles import read_json, read_jsonl

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "qa"
LLM_FIXTURES = ROOT / "tests" / "fixtures" / "llm"  # reasoning-model replies (README.md there)


@pytest.fixture(scope="module")
def pg_docs():
    return read_jsonl(FIXTURES / "pg_documents.jsonl")


@pytest.fixture(scope="module")
def trump_docs():
    return read_jsonl(FIXTURES / "trump_documents.jsonl")


def paragraphs_of(doc):
    return [light_trim(p) for p in doc["text"].split("\n\n")]


# ------------------------------------------------------------------ backtranslation passages

def test_essay_passages_are_the_persons_own_paragraphs(pg_docs):
    passages = qa_sources.backtranslation_passages(pg_docs, 25, 350, 120, 60, 0, 1234)
    assert len(passages) == 24
    by_id = {doc["id"]: doc for doc in pg_docs}
    for passage in passages:
        words = word_count(passage["text"])
        assert 25 <= words <= 350
        own = paragraphs_of(by_id[passage["doc_id"]])
        assert all(p in own for p in passage["text"].split("\n\n")), "a passage paragraph was rewritten"
        assert not passage["text"].startswith("Thanks to") and "If you liked this" not in passage["text"]
    assert "[2]" not in " ".join(p["text"] for p in passages)  # footnote markers trimmed
    assert {p["doc_id"] for p in passages} == set(by_id)


def test_max_passages_takes_a_seeded_sample(pg_docs):
    first = qa_sources.backtranslation_passages(pg_docs, 25, 350, 120, 60, 5, 7)
    again = qa_sources.backtranslation_passages(pg_docs, 25, 350, 120, 60, 5, 7)
    other = qa_sources.backtranslation_passages(pg_docs, 25, 350, 120, 60, 5, 8)
    assert len(first) == 5 and first == again and first != other


def test_light_trim_removes_only_markers():
    assert light_trim("-- but Donald, they're going to listen? (CROSSTALK) [1]") == "but Donald, they're going to listen?"
    assert light_trim("It was a great crowd (APPLAUSE) -- really  great.") == "It was a great crowd -- really great."
    # the person's own asides stay (the old rule dropped any parenthesis of letters: PG's "(and still is)")
    aside = "Lisp was (and still is) the most powerful language (see Note 2), [inaudible] I think."
    assert light_trim(aside) == "Lisp was (and still is) the most powerful language (see Note 2), I think."
    assert light_trim("the first batch (YC S05) and (NYT, 2009) ( IBM 360 ) (laughter) question ?") == \
        "the first batch (YC S05) and (NYT, 2009) ( IBM 360 ) question ?"


def test_overlong_paragraph_is_cut_at_a_sentence_end():
    sentence = "This sentence has exactly eight words in it. "
    doc = {"id": "d", "title": "T", "text": sentence * 10}
    passages = qa_sources.essay_passages(doc, 10, 30, 20)
    assert [word_count(p["text"]) for p in passages] == [24]
    assert passages[0]["text"].endswith("in it.")


# ------------------------------------------------------------------ the person's own questions

def snapshot_essay(name):
    from lib.essays import essay_document, parse_essay_html
    path = ROOT / "data" / "snapshot" / "pg" / name
    return essay_document(parse_essay_html(path.read_bytes(), str(path)), path.stem, str(path))


@pytest.mark.parametrize("sentence, question", [
    ("Why do investors like startups so much?", "Why do investors like startups so much?"),
    ("So what are the other ingredients in having new ideas?", "What are the other ingredients in having new ideas?"),
    ("How fast does a company have to grow to be considered a startup?",
     "How fast does a company have to grow to be considered a startup?"),
    ("How could that be true?", None),                        # points back into the essay
    ("Why does he think this?", None),
    ("What evolutionary purpose could such an aversion serve?", None),
    ("What should I do next?", None),                         # the author's own story
    ("How about other languages?", None),
    ("Would that matter?", None),
    ("Everyone knows who the pointy-haired boss is, right?", None),  # not a question a reader asks
])
def test_own_question_keeps_only_questions_that_stand_alone(sentence, question):
    assert qa_sources.own_question(sentence, 60) == question


def test_own_questions_are_answered_by_the_text_that_follows_them():
    """Real essays (data/snapshot/pg): every question is a sentence of the essay, and its answer
    is the essay's own text right after it, about passage_words long, never rewritten."""
    docs = [snapshot_essay(name) for name in ("growth.html", "users.html", "icad.html")]
    records = qa_sources.own_question_conversations(docs, 25, 350, 120, 60, "sys")
    questions = [r["messages"][1]["content"] for r in records]
    assert "How fast does a company have to grow to be considered a startup?" in questions
    assert "Why are founders uncertain about what to do?" in questions
    assert len(records) >= 6 and not [q for q in questions if "that be true" in q]
    by_id = {doc["id"]: " ".join(doc["text"].split()) for doc in docs}
    for record in records:
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        question, answer = record["messages"][1]["content"], record["messages"][2]["content"]
        assert record["source"] == "own_questions" and 25 <= word_count(answer) <= 350
        flat, flat_answer = by_id[record["doc_id"]], " ".join(answer.split())
        assert flat_answer in flat, "an answer was rewritten"
        answered_at = flat.index(flat_answer)
        asked = [m.end() for m in re.finditer(re.escape(question[1:]), flat)]  # as written, "So" dropped or not
        assert [end for end in asked if 0 <= answered_at - end <= 2], "the answer does not follow the question"
    assert {r["doc_id"] for r in records} == {"growth", "users", "icad"}


def test_interviews_give_no_own_questions(trump_docs):
    assert qa_sources.own_question_conversations(trump_docs, 25, 350, 120, 60, "") == []


# ------------------------------------------------------------------ interviews

def test_interview_exchanges_pair_real_questions_with_real_answers(trump_docs):
    politico = trump_docs[0]
    exchanges = qa_sources.interview_exchanges(politico, 25, 350, 60)
    assert len(exchanges) == 30
    pairs = {e["question"]: e["answer"] for e in exchanges}
    assert pairs["What are you most proud of in the first six months?"].startswith(
        "A lot of things. I think I’m proud of the Supreme Court choice.")
    # "Consumer confidence at a 17-year high." asks nothing, "A lot. A lot." answers nothing
    assert not any(q.startswith("Consumer confidence") for q in pairs)
    assert not any(a.startswith("A lot. A lot.") for a in pairs.values())
    # an interrupted question still counts
    assert any(q.startswith("If you get the vote") for q in pairs)
    for e in exchanges:
        assert word_count(e["answer"]) >= 25 and word_count(e["question"]) <= 60


def test_interview_conversations_single_and_multi_turn(trump_docs):
    records = qa_sources.interview_conversations(trump_docs, 2, 25, 350, 60, "SYSTEM")
    singles = [r for r in records if len(r["messages"]) == 3]
    windows = [r for r in records if len(r["messages"]) == 5]
    assert (len(singles), len(windows)) == (40, 12)
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "system" and record["messages"][0]["content"] == "SYSTEM"
        assert roles[1:] == ["user", "assistant"] * ((len(roles) - 1) // 2)
        assert record["source"] == "interviews" and record["doc_id"].startswith("trump-")
    # a window is two exchanges that follow each other in the transcript
    turns = qa_sources.merged_turns(trump_docs[0])
    window = next(r for r in windows if r["doc_id"] == "trump-politico")
    first_answer = next(i for i, t in enumerate(turns) if t["text"] == window["messages"][2]["content"])
    assert turns[first_answer + 2]["text"].startswith(window["messages"][4]["content"][:80])


def test_interview_monologues_become_passages_but_answered_turns_do_not(trump_docs):
    passages = qa_sources.backtranslation_passages(trump_docs, 25, 350, 120, 60, 0, 1)
    answers = {e["answer"] for d in trump_docs for e in qa_sources.interview_exchanges(d, 25, 350, 60)}
    assert len(passages) == 19
    assert not {p["text"] for p in passages} & answers
    assert passages[0]["text"].startswith("Can you believe it? Isn’t that nice.")


def test_heldout_documents_are_never_used(pg_docs, trump_docs):
    documents = pg_docs + trump_docs
    heldout = ["pg-137", "trump-politico"]
    usable = qa_sources.training_documents(documents, heldout)
    assert {d["id"] for d in usable} == {d["id"] for d in documents} - set(heldout)
    records = qa_sources.interview_conversations(usable, 2, 25, 350, 60, "")
    passages = qa_sources.backtranslation_passages(usable, 25, 350, 120, 60, 0, 1)
    assert records and passages
    text = json.dumps(records) + json.dumps(passages)
    assert "Write simply" not in text and "pg-137" not in text and "trump-politico" not in text
    with pytest.raises(ValueError, match="all 2 documents are held out"):
        qa_sources.training_documents(documents[:2], [d["id"] for d in documents[:2]])


def test_heldout_question_passages_come_only_from_heldout_essays(pg_docs, trump_docs):
    """07's questions on held-out essays: passages of the held-out essays only (a held-out
    interview gives its own real questions), at most `count`, the same seeded choice each time."""
    documents = pg_docs + trump_docs
    heldout = ["pg-137", "trump-politico"]
    every = qa_sources.heldout_question_passages(documents, heldout, 25, 350, 120, 100, 1)
    assert every == qa_sources.essay_passages(next(d for d in pg_docs if d["id"] == "pg-137"), 25, 350, 120)
    assert len(every) >= 4 and {p["doc_id"] for p in every} == {"pg-137"}
    three = qa_sources.heldout_question_passages(documents, heldout, 25, 350, 120, 3, 1)
    assert len(three) == 3 and all(p in every for p in three)
    assert three == qa_sources.heldout_question_passages(documents, heldout, 25, 350, 120, 3, 1)
    assert qa_sources.heldout_question_passages(documents, heldout, 25, 350, 120, 0, 1) == []
    assert qa_sources.heldout_question_passages(documents, ["trump-politico"], 25, 350, 120, 100, 1) == []


def test_bad_documents_are_a_clear_error(pg_docs, trump_docs):
    qa_sources.check_documents(pg_docs + trump_docs, "docs.jsonl")
    broken = [dict(pg_docs[0]), dict(trump_docs[0], turns=[{"speaker": "X", "text": "hi"}])]
    with pytest.raises(ValueError, match=r"docs.jsonl:2: document trump-politico is an interview without 'turns'"):
        qa_sources.check_documents(broken, "docs.jsonl")
    with pytest.raises(ValueError, match=r"docs.jsonl:1: document pg-9 has kind 'blog'"):
        qa_sources.check_documents([dict(pg_docs[0], kind="blog")], "docs.jsonl")
    with pytest.raises(ValueError, match="docs.jsonl: no documents"):
        qa_sources.check_documents([], "docs.jsonl")


# ------------------------------------------------------------------ identity

@pytest.mark.parametrize("persona", ["pg", "trump"])
def test_identity_answers_come_from_the_profile_card(persona):
    params = load_params(persona, "cpu")
    card, name = params["persona"]["profile_card"], params["persona"]["name"]
    records = qa_identity.identity_conversations(card, name, 60, 1234, params["persona"]["system_prompt"])
    pairs = [(r["messages"][1]["content"], r["messages"][2]["content"]) for r in records]
    assert len(records) == 60 and len(set(pairs)) == 60
    assert all(r["messages"][0] == {"role": "system", "content": params["persona"]["system_prompt"]} for r in records)
    answers = dict(pairs)
    asked = set(answers)
    assert {"Who are you?", "What's your name?"} & asked
    for question, answer in pairs:
        if any(other in question for other in qa_identity.OTHER_PEOPLE):
            assert answer.startswith("No") and name in answer
        assert "Pelosi" not in answer and "SmolLM" not in answer
    every = qa_identity.identity_answers(card, name)
    assert every["name"][0] == f"I'm {name}."
    if persona == "trump":
        assert every["age"][0] == "I was born in 1946, so I turn 80 in 2026."
        assert every["party"][0] == "I'm a Republican."
        assert every["born"][0] == "I was born on June 14, 1946, in Queens, New York City."
        assert "work" in every and "real estate" in every["work"][0]  # no card 'work': known_for used
    else:
        assert every["age"][0] == "I was born in 1964, so I turn 62 in 2026."
        assert every["family"][0] == "I'm married to Jessica Livingston."
        assert "party" not in every
    assert qa_identity.unused_card_keys(dict(card, shoe_size="11")) == ["shoe_size"]


def test_identity_count_is_capped_by_what_the_card_can_answer():
    records = qa_identity.identity_conversations({"name": "Ada Lovelace"}, "Ada Lovelace", 10_000, 1, "")
    questions = {r["messages"][0]["content"] for r in records}
    assert records[0]["messages"][0]["role"] == "user"  # no system prompt: no system message
    # name (18 phrasings x 3 distinct answers), talking_to (8 x 3), made_by (6 x 2), about (5 x 1),
    # not_other (4 x 12 people x 3 answers), not_ai (14 x 3: with no work or known_for the fourth
    # answer is the second)
    assert len(records) == 18 * 3 + 8 * 3 + 6 * 2 + 5 + 4 * 12 * 3 + 14 * 3
    assert "Are you Donald Trump?" in questions and "Are you a bot?" in questions


def test_identity_answers_to_are_you_an_ai_name_the_person_and_pass_07s_verdict():
    from lib.eval_identity import identity_verdict

    records = qa_identity.identity_conversations({"name": "Paul Graham", "work": "I write essays."}, "Paul Graham", 10_000, 1, "")
    not_ai = [r for r in records if r["messages"][0]["content"] in qa_identity.IDENTITY_QUESTIONS["not_ai"]]
    assert len(not_ai) == 14 * 4
    for record in not_ai:
        assert identity_verdict(record["messages"][1]["content"], "Paul Graham")["ok"], record


def test_most_identity_conversations_ask_who_the_person_is():
    """CATEGORY_WEIGHTS: of a cpu run's 20 identity conversations, at least half ask who the
    model is (name, who am I talking to, are you an AI, who made you, are you someone else),
    and every one of those answers names the person and passes 07's verdict."""
    from lib.eval_identity import identity_verdict

    card = load_params("pg", "cpu")["persona"]["profile_card"]
    records = qa_identity.identity_conversations(card, "Paul Graham", 20, 1234, "")
    asks_who = {q.format(other=o) for c in ("name", "talking_to", "not_ai", "made_by", "not_other")
                for q in qa_identity.IDENTITY_QUESTIONS[c] for o in qa_identity.OTHER_PEOPLE}
    who = [r for r in records if r["messages"][0]["content"] in asks_who]
    assert len(who) >= 10, [r["messages"][0]["content"] for r in records]
    for record in who:
        assert identity_verdict(record["messages"][1]["content"], "Paul Graham")["ok"], record


def test_a_small_identity_count_keeps_every_kind_of_who_is_it_question():
    """A count under one round of the draw cuts the card's facts, never the who-is-it kinds: the
    smoke profile's 6 conversations had been name and talking-to questions only, and a cpu run's
    20 had one "are you someone else" question (its GGUF then said "I'm Nancy Pelosi.")."""
    card = load_params("trump", "cpu")["persona"]["profile_card"]
    who = ("name", "talking_to", "not_other", "not_ai", "made_by")
    one_round = sum(qa_identity.CATEGORY_WEIGHTS[c] for c in who)

    def category(question):
        return next(c for c, phrasings in qa_identity.IDENTITY_QUESTIONS.items()
                    if question in {q.format(other=o) for q in phrasings for o in qa_identity.OTHER_PEOPLE})

    records = qa_identity.identity_conversations(card, "Donald Trump", one_round, 1234, "")
    assert sorted({category(r["messages"][0]["content"]) for r in records}) == sorted(who)
    records = qa_identity.identity_conversations(card, "Donald Trump", 20, 1234, "")
    assert sum(category(r["messages"][0]["content"]) == "not_other" for r in records) == 3


def test_fewer_identity_conversations_are_the_first_of_the_whole_draw():
    """04 draws every identity question once (the near-duplicate reference) and keeps its first n."""
    card = load_params("trump", "cpu")["persona"]["profile_card"]
    every = qa_identity.identity_conversations(card, "Donald Trump", 10_000, 1234, "sys")
    for n in (6, 20, 150):
        assert qa_identity.identity_conversations(card, "Donald Trump", n, 1234, "sys") == every[:n]


def test_identity_target_makes_identity_its_share_of_the_data():
    assert qa_identity.identity_target(600, 0.2, 20) == 150   # 150 of 750
    assert qa_identity.identity_target(60, 0.2, 20) == 20     # the minimum
    assert qa_identity.identity_target(100, 0.0, 60) == 60    # a count alone, as before
    with pytest.raises(ValueError, match="identity_share"):
        qa_identity.identity_target(100, 1.0, 0)


# ------------------------------------------------------------------ cleaning

SMOLLM_REPLIES = [  # real replies of SmolLM2-135M-Instruct to backtranslation prompts
    ("What is it about simple writing that you're so passionate about? The answer to this question lies in the realm",
     "What is it about simple writing that you're so passionate about?", "ok"),
    ('The interviewer\'s question: "Why do you think the idea of a small delta is so compelling?"',
     "Why do you think the idea of a small delta is so compelling?", "ok"),
    ('I\'d love to dive into the original passage and answer it. Please go ahead and respond with your one-line '
     'question, "What do you think of Ruby\'s use of syntax?"', "What do you think of Ruby's use of syntax?", "ok"),
    ("What question? \"Where did you get the idea to play golf?\"", "Where did you get the idea to play golf?", "ok"),
    ("Sure! Here's a question:\n\n\"How do you decide what to work on?\"", "How do you decide what to work on?", "ok"),
    ("What, Why or How?", None, "too_vague"),
    ("What was the question?", None, "about_the_prompt"),
    ("What's the next question?", None, "about_the_prompt"),
    ("? How does the weather in Palo Alto affect startups?", "How does the weather in Palo Alto affect startups?", "ok"),
    ("This passage has a simple yet profound message. What's the main point of this passage?", None, "about_the_prompt"),
    ("What do you want to know about Donald Trump?", None, "names_the_person"),
    ("I'm sorry, but I cannot help with that request.", None, "refusal"),
    ("The answer is that we have a natural inclination to dislike the feeling of being overwhelmed.", None,
     "about_the_prompt"),
    ("Startups are hard, and most of them fail in the first year.", None, "not_a_question"),
    ("   \n ", None, "empty"),
    (None, None, "empty"),
    ("Why " + "really " * 70 + "?", None, "too_long"),
]


@pytest.mark.parametrize("raw, expected, reason", SMOLLM_REPLIES)
def test_clean_question(raw, expected, reason):
    text, why, _ = qa_clean.clean_question(raw, 60, "Donald Trump")
    assert (text, why) == (expected, reason)


def test_clean_question_reports_what_it_stripped():
    _, _, flags = qa_clean.clean_question('Sure! Here\'s a question: "Why do startups fail?"', 60)
    assert flags["preamble"] and flags["quotes"]
    _, _, flags = qa_clean.clean_question("Why do startups fail?", 60)
    assert not any(flags.values())


THINK_REPLY = (LLM_FIXTURES / "think_reply.txt").read_text()
THINK_CUT_OFF = (LLM_FIXTURES / "think_cut_off.txt").read_text()
VIAWEB = "How did you decide who to hire first at Viaweb?"


@pytest.mark.parametrize("raw, expected, reason", [
    (THINK_REPLY, VIAWEB, "ok"),  # the questions inside <think> are not taken
    (THINK_REPLY.replace("<think>", "<thinking>").replace("</think>", "</thinking>"), VIAWEB, "ok"),
    (THINK_REPLY.replace("<think>\n", "", 1), VIAWEB, "ok"),  # the server stripped the opening tag
    ("<think>I cannot ask about money. What else?</think>\n" + VIAWEB, VIAWEB, "ok"),  # not a refusal
    (THINK_REPLY.split("</think>")[0] + "</think>\n\n", None, "empty"),  # reasoning and nothing after
    (THINK_CUT_OFF, None, "reasoning_cut_off"),  # max_tokens ran out while reasoning
    ("Sure: " + THINK_CUT_OFF, None, "reasoning_cut_off"),
])
def test_clean_question_drops_reasoning(raw, expected, reason):
    text, why, flags = qa_clean.clean_question(raw, 60, "Paul Graham")
    assert (text, why) == (expected, reason)
    assert flags["reasoning"]


def test_clean_answer():
    assert qa_clean.clean_answer('Sure! Here is my answer: "Ah, my friend, work on what you love."', 3, 50)[:2] == (
        "Ah, my friend, work on what you love.", "ok")
    assert qa_clean.clean_answer("As an AI language model, I don't have opinions.", 3, 50)[1] == "refusal"
    assert qa_clean.clean_answer("word " * 51, 3, 50)[1] == "too_long"
    assert qa_clean.clean_answer("Yes.", 3, 50)[1] == "too_short"
    # a reasoning model's answer: the reasoning is dropped; cut-off reasoning gives no answer
    thought = "<think>The user wants advice. As an AI I should</think>\nWork on what you love, and ship it."
    assert qa_clean.clean_answer(thought, 3, 50)[:2] == ("Work on what you love, and ship it.", "ok")
    assert qa_clean.clean_answer("<think>The user wants advice, so first I", 3, 50)[1] == "reasoning_cut_off"


# ------------------------------------------------------------------ tics

LLM_ANSWERS = [  # the kind of text the original attempt produced
    "Ah, my friend, the secret to a great startup is to build something people want.",
    "Ah, that's a great question, my friend. Startups are about growth.",
    "Well, my friend, writing is thinking. Ah, the joy of a clear essay!",
    "Ah, investors! My dear friend, they follow the founders who are growing.",
    "Great question! Ah, my friend, hackers and painters are both makers.",
    "My friend, the best way to get startup ideas is to notice problems.",
]


def test_find_tics_flags_what_the_llm_overuses(pg_docs):
    real = real_corpus_texts(pg_docs)
    assert len(real) == 67
    tics = find_tics(LLM_ANSWERS, real, min_count=3, min_ratio=10.0)
    flagged = {row["phrase"]: row for row in tics if row["tic"]}
    assert set(flagged) == {"friend", "ah", "great"}
    assert (flagged["friend"]["generated_texts"], flagged["friend"]["real_texts"]) == (6, 1)  # "A friend of mine"
    assert (flagged["ah"]["generated_texts"], flagged["ah"]["real_texts"]) == (5, 0)
    assert flagged["ah"]["ratio"] == round((5 / 6) / (1 / 68), 1)
    assert tic_in("Ah, the answer is simple.", tics) == "ah"
    assert tic_in("Ahead of the curve, my friendly rival.", tics) is None  # token boundaries
    assert tic_in("How do you decide what to work on?", tics) is None
    # a phrase the text's own passage contains is grounded, not a tic
    assert tic_in("What did your friend say?", tics, grounding="A friend of mine said") is None


def test_find_tics_needs_min_count_texts(pg_docs):
    assert find_tics(LLM_ANSWERS[:2], real_corpus_texts(pg_docs), 3, 10.0) == []


QUESTIONS_ON_TOPIC = [  # (question, the passage it was written for)
    ("Why should writing be simple?", "Simple writing is more considerate to readers."),
    ("How do you keep your writing simple without being boring?", "I write simple writing, and edit it a lot."),
    ("Why is simple writing better for readers?", "Writing simply keeps readers. Simple writing lasts."),
    ("What makes writing simple?", "Writing is simple when the words are simple."),
    ("Why do programmers learn Python?", "Python programmers learn Python because they like to program."),
    ("Why do smart programmers like Python?", "Smart programmers like Python."),
    ("Would you hire programmers who know Python?", "Companies should hire programmers who know Python."),
]


def test_topic_words_grounded_in_their_passage_are_not_tics(pg_docs):
    real = real_corpus_texts(pg_docs)
    questions = [q for q, _ in QUESTIONS_ON_TOPIC]
    ungrounded = {row["phrase"]: row for row in find_tics(questions, real, 3, 5.0)}
    # short questions packed with topic words look over-represented next to long paragraphs
    assert [p for p, row in ungrounded.items() if row["tic"]] == ["simple", "programmers"]
    assert (ungrounded["simple"]["generated_texts"], ungrounded["simple"]["real_texts"]) == (4, 3)
    assert not ungrounded["writing"]["tic"] and ungrounded["writing"]["real_texts"] == 15
    grounded = find_tics(questions, real, 3, 5.0, grounding=[p for _, p in QUESTIONS_ON_TOPIC])
    assert grounded == []


# ------------------------------------------------------------------ near duplicates

def conv(question, n_turns=1):
    return qa_sources.conversation([(question, "answer")] * n_turns, "backtranslation", "")


def test_near_duplicates_keep_the_first():
    records = [conv("What is the best way to start a startup?"), conv("What's the best way to start a startup?"),
               conv("What is the best way to start a startup"), conv("Why do startups fail?"),
               conv("What is the best way to start a startup?", n_turns=2)]
    kept, removed = qa_duplicates.remove_near_duplicates(records, 0.8)
    assert [qa_duplicates.question_text(r) for r in kept] == [
        "What is the best way to start a startup?", "What's the best way to start a startup?",
        "Why do startups fail?", qa_duplicates.question_text(records[4])]
    assert [(a["messages"][0]["content"], b["messages"][0]["content"]) for a, b in removed] == [
        ("What is the best way to start a startup", "What is the best way to start a startup?")]


def test_generated_questions_that_duplicate_identity_questions_go():
    identity = qa_identity.identity_conversations({"name": "Paul Graham"}, "Paul Graham", 30, 1, "")
    records = [conv("What is your name?"), conv("What is your name"), conv("Why do startups fail?")]
    kept, removed = qa_duplicates.remove_near_duplicates(records, 0.8, reference=identity)
    assert [qa_duplicates.question_text(r) for r in kept] == ["Why do startups fail?"]
    assert [qa_duplicates.question_text(twin) for _, twin in removed] == ["What is your name?", "What is your name?"]
    assert all(twin["source"] == "identity" for _, twin in removed)


def test_near_duplicates_match_brute_force(trump_docs):
    """The prefix-filtered search finds exactly what comparing every pair finds."""
    questions = [e["question"] for d in trump_docs for e in qa_sources.interview_exchanges(d, 1, 350, 60)]
    rng = random.Random(3)
    variants = [" ".join(w for w in q.split() if rng.random() > 0.15) for q in questions[:40]]
    records = [conv(q) for q in questions + variants]
    for threshold in (0.5, 0.8):
        kept, _ = qa_duplicates.remove_near_duplicates(records, threshold)
        brute = []
        for record in records:
            words = qa_duplicates.normalized_words(qa_duplicates.question_text(record))
            if not any(len(words & o) / len(words | o) >= threshold
                       for o in (qa_duplicates.normalized_words(qa_duplicates.question_text(k)) for k in brute)):
                brute.append(record)
        assert kept == brute
        assert len(kept) < len(records)


# ------------------------------------------------------------------ the stage, end to end

def test_stage_smoke_run_and_rerun(tmp_path):
    """notebooks/04_qa on the smoke profile for trump (all three default sources) with the
    real embedded llama.cpp server; a second run sends no request to the server."""
    runs = tmp_path / "runs"
    docs = read_jsonl(FIXTURES / "trump_documents.jsonl")
    scrape = runs / "trump" / "01_scrape"
    split = runs / "trump" / "02_split"
    scrape.mkdir(parents=True)
    split.mkdir(parents=True)
    (scrape / "documents.jsonl").write_text((FIXTURES / "trump_documents.jsonl").read_text())
    (scrape / "metrics.json").write_text("{}")
    (split / "split.json").write_text(json.dumps(
        {"train_ids": [d["id"] for d in docs[:2]], "heldout_ids": ["trump-wwe"], "rule": "test"}))
    (split / "metrics.json").write_text("{}")
    env = dict(os.environ, RUNS_DIR=str(runs), RESULTS_DIR=str(tmp_path / "results"))
    command = [sys.executable, "-m", "lib.runner", "trump", "04_qa", "--profile", "smoke", "--force"]
    for run in (1, 2):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        out = runs / "trump" / "04_qa"
        metrics = read_json(out / "metrics.json")
        if run == 1:
            first = metrics
            log_posts = (out / "llama_server.log").read_text().count("POST /v1/chat/completions")
            assert log_posts == metrics["requests"]["requests"] == 6
    records = read_jsonl(out / "conversations.jsonl")
    assert metrics["requests"] == {"requests": 6, "answered": 6, "from_cache": 6, "failed": 0}
    assert (out / "llama_server.log").read_text().count("POST /v1/chat/completions") == 6
    assert metrics["by_source"] == first["by_source"]
    others = metrics["conversations"] - metrics["by_source"]["identity"]
    assert metrics["by_source"]["interviews"] > 20
    assert metrics["by_source"]["identity"] == qa_identity.identity_target(others, 0.2, 6) > 6  # a fifth of the data
    # every backtranslated passage is kept or removed for a named reason (the 135M smoke generator's
    # few questions are often all vague: whether any survive is chance, not mechanics)
    removed = metrics["removed"]["backtranslation"]
    assert metrics["by_source"]["backtranslation"] + sum(removed.values()) == metrics["passages"] >= 1, metrics
    assert metrics["heldout_excluded"] == ["trump-wwe"]
    assert len(records) == metrics["conversations"] == sum(metrics["by_source"].values())
    system = load_params("trump", "smoke")["persona"]["system_prompt"]
    assert all(r["messages"][0] == {"role": "system", "content": system} for r in records)
    assert "I will kick your ass" not in json.dumps(records)  # from the held-out interview
    rendered = json.loads((tmp_path / "results" / "trump" / "04_qa.ipynb").read_text())
    shown = "".join(str(o.get("text", "")) for c in rendered["cells"] for o in c.get("outputs", []))
    for source in ("backtranslation", "interviews", "identity"):
        assert (f"=== {source}" in shown) == (metrics["by_source"][source] > 0), source
