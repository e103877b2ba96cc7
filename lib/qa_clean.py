"""Cleaning an LLM's output in stage 04, each step counted by its caller: clean_question and
clean_answer drop preambles ("Sure! Here's..."), wrapping quotes, refusals, empty or
over-long items; clean_question also drops a reasoning model's <think> blocks and removes
replies whose reasoning was cut off (strip_reasoning).
"""
from __future__ import annotations

import re

from lib.text import STOPWORDS, is_word, word_count, word_tokens

PREAMBLES = [
    r"(sure|certainly|of course|okay|ok|absolutely|great|alright|yes)[!,.]*\s*",
    r"(here(?:'s| is| are)|this is|below is)\s[^:\n]{0,80}:\s*",
    r"(the\s)?(possible\s|potential\s|interview\s|generated\s|suggested\s)*(question|q)\s*(\d+)?\s*[:\-–]\s*",
    r"(answer|a)\s*[:\-–]\s*",
    r"as (an? )?[A-Z][^,\n]{0,60},\s+(?=i\b)",
]


PREAMBLE = re.compile(r"^(" + "|".join(PREAMBLES) + r")", re.I)
QUOTE_PAIRS = [('"', '"'), ("“", "”"), ("'", "'"), ("‘", "’"), ("«", "»"), ("**", "**"), ("*", "*"), ("`", "`")]
REFUSAL = re.compile(r"\b(i'm sorry|i am sorry|i apologi[sz]e|i cannot|i can't (help|assist|answer|provide)|"
                     r"as an ai|as a language model|i'm not able to|i am unable|i'm unable|i don't have (personal|access))",
                     re.I)


ABOUT_THE_PROMPT = re.compile(r"\b(the|this|that|above|given|following) (passage|text|excerpt|essay|paragraph|"
                              r"article|topic|question|answer)\b|\bthe author\b|\bwhat question\b|"
                              r"\b(your|my) (question|answer)\b|\bquestions?\b", re.I)


REQUEST_START = re.compile(r"^(tell|talk|explain|describe|give|share|walk)\b", re.I)


def strip_preambles_and_quotes(text: str) -> tuple[str, bool, bool]:
    """Repeatedly remove a leading preamble ("Sure! Here's a question:") and wrapping
    quotes or markdown emphasis; returns (text, preamble_removed, quotes_removed)."""
    text = text.strip()
    had_preamble = had_quotes = False
    for _ in range(6):
        before = text
        stripped = PREAMBLE.sub("", text, count=1).strip()
        if stripped != text and stripped:
            text, had_preamble = stripped, True
        for left, right in QUOTE_PAIRS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                inner = text[len(left):len(text) - len(right)].strip()
                if left not in inner or left != right:
                    text, had_quotes = inner, True
                    break
        if text == before:
            break
    return text, had_preamble, had_quotes


QUOTED_QUESTION = re.compile(r"[\"“]([^\"“”\n]*\?)")


def question_candidates(raw: str) -> list[tuple[str, dict]]:
    """Possible questions in a generated reply, in order: per line, questions in quotes
    ('The question: "Why ...?"'), then every sentence that ends in '?', else the whole line;
    each with preambles and wrapping quotes stripped, and flags saying what was removed."""
    candidates = []
    for line in (line.strip() for line in raw.splitlines()):
        if not line:
            continue
        preamble = bool(PREAMBLE.match(line))
        quoted = [m.group(1) for m in QUOTED_QUESTION.finditer(line)]
        spans = [m.group(0) for m in re.finditer(r"[^.!?:\n]*\?", line)] or [line]
        for span in quoted + spans:
            text, had_preamble, had_quotes = strip_preambles_and_quotes(span)
            text = text.lstrip("\"'“‘*`?!.,;:-— ").strip()
            flags = {"preamble": preamble or had_preamble, "quotes": had_quotes or span in quoted,
                     "extracted": text != line}
            candidates.append((text, flags))
    return candidates


def question_problem(text: str, max_words: int, persona_name: str = "") -> str | None:
    """Why a candidate question is unusable, or None."""
    if not text:
        return "empty"
    if word_count(text) > max_words:
        return "too_long"
    if ABOUT_THE_PROMPT.search(text):
        return "about_the_prompt"
    if persona_name and persona_name.lower() in text.lower():
        return "names_the_person"  # asked about them, not to them ("What do you think of Donald Trump?")
    content = [t for t in word_tokens(text) if is_word(t) and t not in STOPWORDS and t not in ("or", "mean", "many")]
    if word_count(text) < 4 or not content:
        return "too_vague"
    if not (text.endswith("?") or REQUEST_START.match(text)):
        return "not_a_question"
    return None


REASONING_BLOCK = re.compile(r"<(think|thinking)\b[^>]*>.*?</\1\s*>", re.I | re.S)
REASONING_OPEN = re.compile(r"<(?:think|thinking)\b[^>]*>", re.I)
REASONING_CLOSE = re.compile(r"</(?:think|thinking)\s*>", re.I)


def strip_reasoning(raw: str) -> tuple[str, bool, bool]:
    """A reply without the reasoning a reasoning model wrote into its content (a server run
    without a reasoning parser): <think>...</think> and <thinking>...</thinking> blocks;
    everything up to a closing tag whose opening tag is missing (some servers strip it);
    everything from an opening tag that is never closed (max_tokens ran out while the model
    was still reasoning). Returns (text, reasoning_removed, cut_off)."""
    text = REASONING_BLOCK.sub("\n", raw)
    closes = list(REASONING_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opening = REASONING_OPEN.search(text)
    if opening:
        text = text[:opening.start()]
    return text, text != raw, opening is not None


def clean_question(raw: str | None, max_words: int, persona_name: str = "") -> tuple[str | None, str, dict]:
    """A generated question, cleaned: the first usable question in the reply (reasoning
    blocks, a preamble, wrapping quotes, a following answer or a second question dropped).
    Returns (question or None, "ok" or why it was removed, {"preamble", "quotes",
    "extracted", "reasoning"}). A question that names the person (persona_name) talks about
    them rather than to them: removed. No question is taken from reasoning (strip_reasoning);
    a reply whose reasoning was cut off by max_tokens with no usable question before it is
    removed as "reasoning_cut_off"."""
    flags = {"preamble": False, "quotes": False, "extracted": False, "reasoning": False}
    if raw is None or not raw.strip():
        return None, "empty", flags
    raw, flags["reasoning"], cut_off = strip_reasoning(raw)
    first_problem = None
    if REFUSAL.search(raw):
        first_problem = "refusal"
    else:
        for text, candidate_flags in question_candidates(raw):
            problem = question_problem(text, max_words, persona_name)
            if problem is None:
                return text, "ok", dict(candidate_flags, reasoning=flags["reasoning"])
            first_problem = first_problem or problem
    if cut_off:
        return None, "reasoning_cut_off", flags
    return None, first_problem or "empty", flags


def clean_answer(raw: str | None, min_words: int, max_words: int) -> tuple[str | None, str, dict]:
    """An LLM-written answer (source llm_answers), cleaned like a question but kept whole:
    reasoning dropped first (strip_reasoning); reasoning cut off by max_tokens is
    "reasoning_cut_off"."""
    flags = {"preamble": False, "quotes": False, "reasoning": False}
    if raw is None or not raw.strip():
        return None, "empty", flags
    raw, flags["reasoning"], cut_off = strip_reasoning(raw)
    if cut_off:
        return None, "reasoning_cut_off", flags
    if not raw.strip():
        return None, "empty", flags
    if REFUSAL.search(raw):
        return None, "refusal", flags
    text, flags["preamble"], flags["quotes"] = strip_preambles_and_quotes(raw)
    if not text:
        return None, "empty", flags
    if word_count(text) > max_words:
        return None, "too_long", flags
    if word_count(text) < min_words:
        return None, "too_short", flags
    return text, "ok", flags
