"""Text basics shared by the stages: word counts, regex word tokens, sentence splitting and
trimming to whole sentences, stage directions removed from transcripts, the light trim
applied to the person's words, stopwords.

`word_tokens` are regex words and punctuation marks ("Ah, friend!" -> ah , friend !), not
model tokens (lib.split.count_tokens counts those).
"""
from __future__ import annotations

import re


def word_count(text: str) -> int:
    return len(text.split())


FOOTNOTE_MARKER = re.compile(r"\s?\[\d{1,2}\]")
SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)]))\s+(?=[A-Z0-9\"'“‘(])")


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph: a cut after . ! or ? (and a closing quote or bracket) where the
    next sentence starts with a capital, a digit, a quote or a bracket; quotes stay with their sentence."""
    return [part for part in SENTENCE_END.split(paragraph) if part.strip()]


STAGE_WORDS = (r"applause|laughter|laughs|laughing|crosstalk|cross-talk|inaudible|unintelligible|"
               r"indiscernible|cheers|cheering|booing|boos|music|silence|pause|chanting|"
               r"break in audio|audio gap|overtalk|off-mike|interrupted by|sic|ph")
STAGE_RE = re.compile(  # all-uppercase notes: (APPLAUSE), (BEGIN VIDEO CLIP), (INAUDIBLE.), [APPLAUSE]
    r"\((?=[^()]*[A-Z]{2})[^()a-z]{2,80}\)|\[(?=[^\[\]]*[A-Z]{2})[^\[\]a-z]{2,60}\]")
STAGE_WORDS_RE = re.compile(  # any case: (laughter), [inaudible], [Laughter.], (break in audio)
    rf"\(\s*(?:{STAGE_WORDS})(?![\w-])[^()]{{0,40}}\)|\[\s*(?:{STAGE_WORDS})(?![\w-])[^\[\]]{{0,40}}\]", re.I)


def clean_stage_directions(text: str) -> str:
    """Remove (APPLAUSE), (CROSSTALK), [inaudible], (laughter) ... and tidy the spaces left."""
    text = STAGE_RE.sub(" ", text)
    text = STAGE_WORDS_RE.sub(" ", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([,.;:!?])", r"\1", text)
    text = re.sub(r"(–|—|--) (?:–|—|--)(?= |$)", r"\1", text)  # "that – [inaudible] – for"
    return text.strip()


# in the person's own text (essays, posts) only what no writer writes: an all-caps note of
# letters alone ((APPLAUSE), [INAUDIBLE]) or a known stage word in any case ((laughter)).
# "(YC S05)", "(NYT, 2009)" and any aside in lowercase stay.
NOTE_IN_OWN_TEXT = re.compile(r"\s*[\(\[][A-Z][A-Z ,'-]{2,}[\)\]]")


def light_trim(text: str) -> str:
    """The only edits made to the person's words: footnote markers ([1]), stage directions
    ((APPLAUSE), [inaudible]: NOTE_IN_OWN_TEXT and STAGE_WORDS_RE, which keep the person's own
    asides in parentheses) and a transcript's leading "--" (the turn continues an interruption) removed,
    whitespace normalized."""
    text = FOOTNOTE_MARKER.sub("", text)
    text = STAGE_WORDS_RE.sub("", NOTE_IN_OWN_TEXT.sub("", text))
    return re.sub(r"^(?:-{2,}|[—–])\s*", "", " ".join(text.split()))


def trim_to_words(text: str, max_words: int) -> str | None:
    """The longest run of whole leading sentences within max_words (None if even the
    first sentence is longer). Text already within the limit is returned unchanged."""
    if word_count(text) <= max_words:
        return text
    kept, total = [], 0
    for sentence in split_sentences(text):
        n = word_count(sentence)
        if total + n > max_words:
            break
        kept.append(sentence)
        total += n
    return " ".join(kept) if kept else None


def trailing_sentences(text: str, max_words: int) -> str | None:
    """The longest run of whole trailing sentences within max_words (an interviewer's
    preamble is dropped, the question at the end kept)."""
    if word_count(text) <= max_words:
        return text
    kept, total = [], 0
    for sentence in reversed(split_sentences(text)):
        n = word_count(sentence)
        if total + n > max_words:
            break
        kept.insert(0, sentence)
        total += n
    return " ".join(kept) if kept else None


def sentence_case(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def period(text: str) -> str:
    text = text.strip()
    return text if re.search(r"[.!?]$", text) else text + "."


STOPWORDS = set("""
a an the and or but if then else of to in on at by for with from as into onto about over under up down out off
is are was were be been being am do does did doing done have has had having will would shall should can could
may might must i me my mine we us our you your yours he him his she her they them their it its this that these
those there here what which who whom whose why how when where not no nor so too very just than also all any
each some such only own same more most other both few s t don't doesn't didn't isn't aren't can't won't i'm
you're it's that's there's what's i've you've i'd you'd i'll you'll let's think tell explain describe share
give talk walk ask question questions
""".split())


TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def word_tokens(text: str) -> list[str]:
    """Lowercased words and single punctuation marks ("Ah, friend!" -> ah , friend !)."""
    return TOKEN.findall(text.lower().replace("’", "'").replace("‘", "'"))


def is_word(token: str) -> bool:
    return token[0].isalnum()

