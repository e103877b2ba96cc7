"""02 split on real essays and interviews, with the real SmolLM2 tokenizer."""
from pathlib import Path

import pytest

from lib.models import end_of_text_token
from lib.split import (choose_heldout, count_tokens, document_header, split_documents, split_into_chunks,
                       split_paragraphs)
from lib.text import split_sentences

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def essays():
    """Real essays parsed from the committed snapshot pages."""
    from lib.essays import parse_essay_html
    pages = sorted((ROOT / "data/snapshot/pg").glob("*.html"))
    docs = []
    for page in pages:
        if page.name in ("articles.html", "index.html"):
            continue
        doc = parse_essay_html(page.read_bytes(), str(page))
        docs.append({"id": page.stem, "kind": "essay", **doc})
    assert len(docs) >= 20
    return docs


def test_header_carries_title_and_date():
    assert document_header({"title": "How to Do Great Work", "date": "July 2023"}) == \
        "Title: How to Do Great Work\nDate: July 2023\n\n"
    assert document_header({"title": "Fix", "date": None}) == "Title: Fix\n\n"


def test_sentences_and_paragraphs():
    assert split_paragraphs("a\n\n\nb\n \nc") == ["a", "b", "c"]
    assert split_sentences('He said "stop." Then he left. 3 more? Yes.') == \
        ['He said "stop."', "Then he left.", "3 more?", "Yes."]


def test_short_document_stays_whole(tokenizer):
    doc = {"id": "x", "title": "T", "date": "May 2001", "text": "One paragraph.\n\nAnother one."}
    chunks = split_into_chunks(doc, tokenizer, 256, "<|endoftext|>")
    assert [c["text"] for c in chunks] == ["Title: T\nDate: May 2001\n\nOne paragraph.\n\nAnother one.<|endoftext|>"]


@pytest.mark.parametrize("max_tokens", [256, 512])
def test_real_essays_chunk_within_budget_at_paragraph_boundaries(essays, tokenizer, max_tokens):
    end = end_of_text_token(tokenizer)
    for doc in essays[:12]:
        chunks = split_into_chunks(doc, tokenizer, max_tokens, end)
        header = document_header(doc)
        paragraphs = set(split_paragraphs(doc["text"]))
        for chunk in chunks:
            assert count_tokens(tokenizer, chunk["text"]) <= max_tokens
            assert chunk["text"].startswith(header) and chunk["text"].endswith(end)
            body = chunk["text"][len(header):-len(end)]
            # a chunk is whole paragraphs, except where one paragraph alone exceeds the budget
            for part in split_paragraphs(body):
                assert part in paragraphs or count_tokens(tokenizer, max(
                    (p for p in paragraphs if part in p), key=len, default=part)) > max_tokens - 40
        # nothing lost: every word of the essay is in some chunk, in order
        words = " ".join(c["text"][len(header):-len(end)] for c in chunks).split()
        assert words == doc["text"].split()


def test_overlap_repeats_the_end_of_the_previous_chunk(essays, tokenizer):
    doc = max(essays, key=lambda d: len(d["text"]))
    chunks = split_into_chunks(doc, tokenizer, 256, "<|endoftext|>", overlap_tokens=100)
    assert len(chunks) > 2
    header = document_header(doc)
    repeated = 0
    for before, after in zip(chunks, chunks[1:]):
        first_paragraph = after["text"][len(header):].split("\n\n")[0]
        repeated += first_paragraph in before["text"]
    assert repeated >= 1


def test_heldout_newest_and_random():
    docs = [{"id": "a", "year": 2005, "month": 3}, {"id": "b", "year": 2023, "month": 7},
            {"id": "c", "year": None, "month": None}, {"id": "d", "year": 2023, "month": 7},
            {"id": "e", "year": 2020, "month": 1}]
    assert choose_heldout(docs, "newest", 3, 0) == ["b", "d", "e"]
    first = choose_heldout(docs, "random", 2, 7)
    assert first == choose_heldout(docs, "random", 2, 7) and len(set(first)) == 2
    with pytest.raises(ValueError, match="leaves no documents to train on"):
        choose_heldout(docs, "newest", 5, 0)


def test_heldout_documents_never_reach_train(essays, tokenizer):
    result = split_documents(essays, tokenizer, max_tokens=256, overlap_tokens=0, heldout_rule="newest",
                             heldout_count=3, seed=1, end_token="<|endoftext|>")
    train_docs = {c["doc_id"] for c in result["train"]}
    eval_docs = {c["doc_id"] for c in result["eval"]}
    assert eval_docs == set(result["heldout_ids"]) and len(eval_docs) == 3
    assert not train_docs & eval_docs
    newest = max(essays, key=lambda d: (d["year"] or 0, d["month"] or 0))
    assert newest["id"] in result["heldout_ids"]


def test_interview_renders_speakers():
    from lib.split import document_body
    doc = {"id": "i", "kind": "interview", "title": "Interview", "date": "2016",
           "turns": [{"speaker": "JAKE TAPPER", "text": "Why?"}, {"speaker": "DONALD TRUMP", "text": "Because."}]}
    assert document_body(doc) == "JAKE TAPPER: Why?\n\nDONALD TRUMP: Because."
