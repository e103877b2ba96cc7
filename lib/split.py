"""02 split: hold out whole documents, and cut the rest into chunks that fit the model.

Lessons built in: full essays did not train at 2048 tokens of context, 500-character chunks
taught the model to write short essays, and chunks without titles meant it could not be
asked for "an essay titled X". So chunks are measured in the model's own tokens, a document
that fits stays whole, a longer one is cut at paragraph (else sentence) boundaries, and
every chunk starts with a header carrying the title and date.
"""
from __future__ import annotations

import random
import re

from lib.text import split_sentences


def document_header(doc: dict) -> str:
    """'Title: <title>\\nDate: <date>\\n\\n' (no Date line when the page has none). The
    same header later prompts the completion model for an essay by title."""
    lines = [f"Title: {doc['title']}"]
    if doc.get("date"):
        lines.append(f"Date: {doc['date']}")
    return "\n".join(lines) + "\n\n"


def document_body(doc: dict) -> str:
    """An essay's text, or an interview rendered as 'SPEAKER: text' paragraphs."""
    if doc.get("kind") == "interview":
        return "\n\n".join(f"{turn['speaker']}: {turn['text']}" for turn in doc["turns"])
    return doc["text"]


def persona_text(doc: dict) -> str:
    """What the person wrote or said in a document: an essay's text, or their own interview
    turns (paragraphs separated by a blank line), without the interviewers' words."""
    if doc.get("kind") == "interview":
        return "\n\n".join(t["text"].strip() for t in doc.get("turns") or [] if t.get("is_persona") and t.get("text"))
    return doc.get("text") or ""


def split_paragraphs(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def split_by_tokens(tokenizer, text: str, budget: int) -> list[str]:
    """Last resort for one sentence longer than the budget: cut it every `budget` tokens."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids[i:i + budget]) for i in range(0, len(ids), budget)]


def units_within(tokenizer, text: str, budget: int) -> list[tuple[str, str]]:
    """(piece, separator) units no longer than budget: paragraphs, or a long paragraph's
    sentences, or a long sentence's token windows."""
    units = []
    for paragraph in split_paragraphs(text):
        if count_tokens(tokenizer, paragraph) <= budget:
            units.append((paragraph, "\n\n"))
            continue
        sentences = split_sentences(paragraph)
        for i, sentence in enumerate(sentences):
            separator = "\n\n" if i == len(sentences) - 1 else " "
            if count_tokens(tokenizer, sentence) <= budget:
                units.append((sentence, separator))
            else:
                pieces = split_by_tokens(tokenizer, sentence, budget)
                units.extend((piece, "" if j < len(pieces) - 1 else separator) for j, piece in enumerate(pieces))
    return units


def pack_units(tokenizer, units: list[tuple[str, str]], budget: int, overlap_tokens: int) -> list[str]:
    """Greedily join units into bodies of at most `budget` tokens (checked on the joined
    text); with overlap, a body starts with the last units of the previous one."""
    bodies, current = [], []

    def joined(items):
        return "".join(piece + sep for piece, sep in items).strip()

    for unit in units:
        candidate = current + [unit]
        if current and count_tokens(tokenizer, joined(candidate)) > budget:
            bodies.append(joined(current))
            carried = []
            if overlap_tokens:
                for item in reversed(current):
                    if count_tokens(tokenizer, joined([item] + carried)) > overlap_tokens:
                        break
                    carried.insert(0, item)
            current = carried + [unit]
            if count_tokens(tokenizer, joined(current)) > budget:
                current = [unit]
        else:
            current = candidate
    if current:
        bodies.append(joined(current))
    return bodies


def split_into_chunks(doc: dict, tokenizer, max_tokens: int, end_token: str, overlap_tokens: int = 0) -> list[dict]:
    """Chunks of one document: header + body + end token, each at most max_tokens tokens."""
    header = document_header(doc)
    budget = max_tokens - count_tokens(tokenizer, header) - count_tokens(tokenizer, end_token) - 1
    if budget < 16:
        raise ValueError(f"document {doc['id']}: split.max_tokens={max_tokens} leaves no room after the header")
    body = document_body(doc)
    if count_tokens(tokenizer, body) <= budget:
        bodies = [body.strip()]
    else:
        bodies = pack_units(tokenizer, units_within(tokenizer, body, budget), budget, overlap_tokens)
    return [{"id": f"{doc['id']}#{n}", "doc_id": doc["id"], "title": doc["title"],
             "text": header + text + end_token} for n, text in enumerate(bodies)]


def choose_heldout(docs: list[dict], rule: str, count: int, seed: int) -> list[str]:
    """Ids of the whole documents held out for evaluation.

    newest: the latest by (year, month); among equal dates the earlier in the list (the
    site lists newest first); undated documents count as oldest. random: a seeded sample.
    """
    if count >= len(docs):
        raise ValueError(f"split.heldout_count={count} leaves no documents to train on ({len(docs)} in all)")
    if rule == "newest":
        order = sorted(range(len(docs)), key=lambda i: (-(docs[i].get("year") or 0), -(docs[i].get("month") or 0), i))
        return [docs[i]["id"] for i in order[:count]]
    if rule == "random":
        return sorted(random.Random(seed).sample(sorted(d["id"] for d in docs), count))
    raise ValueError(f"unknown held-out rule {rule!r}")


def split_documents(docs: list[dict], tokenizer, *, max_tokens: int, overlap_tokens: int, heldout_rule: str,
                    heldout_count: int, seed: int, end_token: str) -> dict:
    """Hold out whole documents, chunk the rest. Returns train/eval chunks, ids and counts."""
    ids = [doc["id"] for doc in docs]
    if len(set(ids)) != len(ids):
        raise ValueError("documents.jsonl has duplicate ids")
    heldout = set(choose_heldout(docs, heldout_rule, heldout_count, seed))
    train, evaluation, whole = [], [], 0
    for doc in docs:
        chunks = split_into_chunks(doc, tokenizer, max_tokens, end_token, overlap_tokens)
        whole += len(chunks) == 1
        (evaluation if doc["id"] in heldout else train).extend(chunks)
    return {
        "train": train, "eval": evaluation,
        "train_ids": [i for i in ids if i not in heldout], "heldout_ids": [i for i in ids if i in heldout],
        "whole_documents": whole,
    }
