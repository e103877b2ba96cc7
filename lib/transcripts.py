"""Interview transcripts: parse speaker-labelled text into turns, and collect interviews.

A label line may come in any of LABEL_LAYOUTS, tried in order; adding a layout is one entry
there and one line in tests/test_transcript_layouts.py:
  DONALD TRUMP: text                 the Trump Campaign Corpus, the seed interviews
  [00:00:12] DONALD TRUMP: text      timestamp before the label
  DONALD TRUMP (00:00:12): text      timestamp in the label
  Donald Trump: (00:09)              timestamp after the label, the text on the next lines
  Donald Trump<TAB>00:00:12<TAB>text tab-separated label, time and text (or time, label, text)
  Donald Trump  0:03                 label and time alone on a line (Otter-style exports)
Timestamps are removed from all text. An unlabelled paragraph continues the last speaker's
turn, except after a crowd's one-line interjection ("AUDIENCE: Lock her up!"), where it goes
back to the speaker before. "# url: ..." / "# date: ..." header lines give metadata.

A label is short (at most 4 words), at the start of a line, UPPERCASE ("BILL O'REILLY",
"SPEAKER_00", "JOHN McCAIN", "STEPHANOPOULOS (VOICE-OVER)", "WAYNE BEYER, RETIRED ATTORNEY")
or Title Case ("Speaker 1", "Sean Hannity"); a Title Case label must occur at least twice
in the file, so "Listen: ..." or "Question: ..." in running text is not taken for a
speaker; in a file where no label occurs twice only a label on the first line counts (a
speech: "DONALD TRUMP: ..."). A line that looks like a label but is not taken as one is
reported in the document's warnings, never merged silently, as are labels that contain the
persona's name but miss the persona regex, and a bare surname counted as the persona beside
a full name that is not. Stage directions ((APPLAUSE), (CROSSTALK), [inaudible], ...) are
removed, empty turns dropped, consecutive turns of one speaker merged.

Subtitles (.srt SubRip, .vtt WebVTT; found by name or content, see is_subtitles) are read
by read_subtitles into the same "Name: text" lines first: cue numbers, timings, tags and
NOTE/STYLE/REGION blocks go, WebVTT voice tags (<v Name>) and "NAME:" labels in cue text
give the speaker, and a cue without one continues the last speaker's turn.

    python -m lib.transcripts parse data/snapshot/trump/wwe.txt --persona '^(DONALD )?TRUMP$'
    python -m lib.transcripts parse FILE... --persona REGEX --speakers   # one line per speaker
"""
from __future__ import annotations

import argparse
import codecs
import collections
import html
import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from lib.fetch import DEFAULT_USER_AGENT, Fetcher, FetchError

LABEL_STOPWORDS = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "listen", "remember", "note", "notes", "update", "updated", "correction", "source", "sources",
    "editor's note", "transcript", "example", "look", "see", "now", "and", "but", "so", "yes",
    "no", "well", "ok", "okay", "here", "there", "this", "that", "the", "what", "why", "how",
    "when", "where", "who", "first", "second", "third", "finally", "also", "again", "today",
    "tonight", "end", "begin", "photo", "video", "http", "https", "re", "subject", "from", "to",
    "date", "url", "title", "quote",
}
CROWD_LABELS = {  # UPPERCASE labels of a crowd: a speaker even when said once, for that line only
    "AUDIENCE", "AUDIENCE MEMBER", "AUDIENCE MEMBERS", "CROWD", "PROTESTER", "PROTESTERS",
}
NOT_LABEL_START = {"number", "and", "but", "so", "or", "point", "step", "rule", "lesson", "part", "chapter",
                   "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "last", "next"}
STAGE_WORDS = (r"applause|laughter|laughs|laughing|crosstalk|cross-talk|inaudible|unintelligible|"
               r"indiscernible|cheers|cheering|booing|boos|music|silence|pause|chanting|"
               r"break in audio|audio gap|overtalk|off-mike|interrupted by|sic|ph")
STAGE_RE = re.compile(  # all-uppercase notes: (APPLAUSE), (BEGIN VIDEO CLIP), (INAUDIBLE.), [APPLAUSE]
    r"\((?=[^()]*[A-Z]{2})[^()a-z]{2,80}\)|\[(?=[^\[\]]*[A-Z]{2})[^\[\]a-z]{2,60}\]")
STAGE_WORDS_RE = re.compile(  # any case: (laughter), [inaudible], [Laughter.], (break in audio)
    rf"\(\s*(?:{STAGE_WORDS})(?![\w-])[^()]{{0,40}}\)|\[\s*(?:{STAGE_WORDS})(?![\w-])[^\[\]]{{0,40}}\]", re.I)
HEADER_RE = re.compile(r"^#\s*([A-Za-z_ ]+?)\s*:\s*(.*?)\s*$")
CAMPAIGN_NAME_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})\s+(?P<time>\d{2}\.\d{2}\.\d{2})\s+"
    r"\((?:(?P<completeness>[^,()]+),\s*)?(?P<spoken>As [A-Za-z]+)\)\s+(?P<description>.+)$")
DATE_FORMATS = ("%Y-%m-%d", "%B %d %Y", "%b %d %Y", "%B %d, %Y", "%b %d, %Y", "%d %B %Y",
                "%d %b %Y", "%B %Y", "%b %Y", "%Y-%m", "%Y")


class TranscriptError(ValueError):
    """A transcript could not be parsed; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------
# small helpers

def decode_text(data, name: str = "<transcript>") -> str:
    """bytes -> str (UTF-8, else Windows-1252); raises TranscriptError on empty or binary input."""
    if isinstance(data, bytes):
        if b"\x00" in data[:65536]:
            raise TranscriptError(f"{name}: binary data, not a text transcript")
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            data = data.decode("cp1252", errors="replace")
    if not data or not data.strip():
        raise TranscriptError(f"{name}: empty file")
    sample = data[:65536]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    if "\x00" in sample or controls > len(sample) * 0.01 or sample.count("\ufffd") > len(sample) * 0.01:
        raise TranscriptError(f"{name}: binary data, not a text transcript")
    return data.replace("\r\n", "\n").replace("\r", "\n")


def slugify(text: str, max_len: int = 120) -> str:
    """Lowercase ASCII id: runs of other characters become "-"."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "").replace("’", "")).strip("-")
    return slug[:max_len].rstrip("-") or "transcript"


def parse_date(text: str) -> tuple[str | None, int | None, int | None]:
    """A free-form date ("may 11 2023", "2017", "2016-03-31") -> (iso_or_raw, year, month)."""
    if not text:
        return None, None, None
    clean = " ".join(text.replace(",", " , ").split()).replace(" ,", ",")
    for fmt in DATE_FORMATS:
        for candidate in (clean, clean.replace(",", "")):
            try:
                when = datetime.strptime(candidate.title() if "%b" in fmt.lower() else candidate, fmt)
            except ValueError:
                continue
            if fmt == "%Y":
                return f"{when.year:04d}", when.year, None
            if fmt in ("%B %Y", "%b %Y", "%Y-%m"):
                return f"{when.year:04d}-{when.month:02d}", when.year, when.month
            return when.strftime("%Y-%m-%d"), when.year, when.month
    year = re.search(r"\b(19|20)\d{2}\b", text)
    return text.strip(), (int(year.group(0)) if year else None), None


def file_name_of(source: str) -> str:
    """The file name of a path or URL (URL-decoded)."""
    path = urlparse(source).path if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.I) else source
    return unquote(os.path.basename(path.rstrip("/"))) or source


def metadata_from_name(name: str) -> dict:
    """Title/date from a campaign-corpus file name, else from the file stem.

    "2015-06-16 20.31.00 (Complete, As spoken) Interview with Bill O'Reilly, 'The O'Reilly
    Factor', Fox.txt" -> title "Interview with Bill O'Reilly, 'The O'Reilly Factor', Fox",
    date "2015-06-16"; "ccn_town_hall.txt" -> title "ccn town hall", no date. A .srt or .vtt
    extension is dropped like .txt.
    """
    stem = name[:-4] if name.lower().endswith((".txt", ".srt", ".vtt")) else name
    match = CAMPAIGN_NAME_RE.match(stem)
    if match:
        date, year, month = parse_date(match.group("date"))
        return {"title": match.group("description").strip(), "date": date, "year": year,
                "month": month, "as_spoken": match.group("spoken").lower() == "as spoken"}
    return {"title": stem.replace("_", " ").strip(), "date": None, "year": None, "month": None}


def clean_stage_directions(text: str) -> str:
    """Remove (APPLAUSE), (CROSSTALK), [inaudible], (laughter) ... and tidy the spaces left."""
    text = STAGE_RE.sub(" ", text)
    text = STAGE_WORDS_RE.sub(" ", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([,.;:!?])", r"\1", text)
    text = re.sub(r"(–|—|--) (?:–|—|--)(?= |$)", r"\1", text)  # "that – [inaudible] – for"
    return text.strip()


# ---------------------------------------------------------------------------------------
# speaker labels: the name's shape, and the layouts a label line comes in

TIMESTAMP = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?"
TS = rf"(?:\[{TIMESTAMP}\]|\({TIMESTAMP}\)|{TIMESTAMP})"  # [00:00:12], (00:09), 0:03
BRACKETED_TS_RE = re.compile(rf"[ \t]*(?:\[{TIMESTAMP}\]|\({TIMESTAMP}\))[ \t]*")
LEADING_TS_RE = re.compile(rf"^(?:\[{TIMESTAMP}\]|\({TIMESTAMP}\)|\d{{1,2}}:\d{{2}}:\d{{2}}(?:[.,]\d{{1,3}})?)[ \t]+")
ONLY_TS_RE = re.compile(rf"^\s*(?:{TS}\s*)+$")

UPPER_WORD = r"(?:Ma?c|D[aei]|L[ae])?[A-Z][A-Z0-9_.'’\-]*"  # DONALD, O'REILLY, SPEAKER_00, MR., McCAIN, DeSANTIS
TITLE_WORD = r"[A-Z][A-Za-z0-9_.'’\-]*"      # Donald, Speaker, McCain
NUMBER_WORD = r"\#?\d{1,3}"                   # the 1 of "Speaker 1", "SPEAKER #2"
NAME_RE = re.compile(
    r"^(?P<name>"
    rf"(?P<upper>{UPPER_WORD}(?:[ \t]+(?:{UPPER_WORD}|{NUMBER_WORD})){{0,3}})"
    rf"|(?P<title>{TITLE_WORD}(?:[ \t]+(?:{TITLE_WORD}|{NUMBER_WORD}|van|von|de|der|da|del|la|le|al|bin)){{0,3}})"
    r")"
    r"(?P<paren>[ \t]*\([A-Z][A-Z \-]*\))?"
    r"(?P<desc>,[ \t]*[A-Z0-9\"'][A-Z0-9 .,'’\"&\-]{0,60})?$")
LOOKS_LIKE_LABEL_RE = re.compile(r"^(?P<label>[^\s:a-z][^:]{0,40}?)[ \t]?:(?:[ \t]|$)")


@dataclass(frozen=True)
class LabelLayout:
    """One way a speaker label is written on a line: ``pattern`` captures ``label`` (the raw
    name, timestamp removed) and ``rest`` (the turn's text on that line, possibly empty)."""
    name: str
    pattern: re.Pattern
    example: str


def _layout(name: str, pattern: str, example: str) -> LabelLayout:
    return LabelLayout(name, re.compile(pattern), example)


_LABEL = r"(?P<label>[^\s:\t\[\]][^:\t\[\]]{0,99}?)"
_AFTER_COLON = r"[ \t]?:(?:[ \t]+|$)(?P<rest>.*)$"
LABEL_LAYOUTS = (  # tried in order; the first whose label has a speaker name's shape wins
    _layout("timestamp before label", rf"^{TS}[ \t]+{_LABEL}{_AFTER_COLON}",
            "[00:00:12] DONALD TRUMP: Thank you."),
    _layout("timestamp in label", rf"^{_LABEL}[ \t]*(?:\[{TIMESTAMP}\]|\({TIMESTAMP}\)){_AFTER_COLON}",
            "DONALD TRUMP (00:00:12): Thank you."),
    _layout("timestamp after label", rf"^{_LABEL}[ \t]?:[ \t]*(?:\[{TIMESTAMP}\]|\({TIMESTAMP}\)|{TIMESTAMP}(?=\t|$))"
            r"(?:[ \t]+(?P<rest>.*))?$",
            "Donald Trump: (00:09)   [the text on the next line]"),
    _layout("tab-separated label, time, text", rf"^{_LABEL}:?\t+{TS}(?:\t+(?P<rest>.*))?$",
            "Donald Trump\t00:00:12\tThank you."),
    _layout("tab-separated time, label, text", rf"^{TS}\t+{_LABEL}:?(?:\t+(?P<rest>.*))?$",
            "00:00:12\tDonald Trump\tThank you."),
    _layout("label and time alone on a line", rf"^{_LABEL}[ \t]+{TS}[ \t]*$",
            "Donald Trump  0:03   [the text on the next line]"),
    _layout("label", rf"^{_LABEL}{_AFTER_COLON}", "DONALD TRUMP: Thank you."),
)


@dataclass(frozen=True)
class Label:
    """A speaker label found at the start of a line."""
    name: str          # "DONALD TRUMP", spaces normalised
    title_case: bool   # "Donald Trump" (must recur to count) rather than "DONALD TRUMP"
    rest: str          # the text after the label on the same line
    layout: str        # LabelLayout.name


def speaker_name(raw: str) -> tuple[str, bool] | None:
    """(name, is_title_case) when raw has a speaker label's shape, else None.

    UPPERCASE: 1-4 words ("BILL O'REILLY", "SPEAKER_00", "MR.", "SPEAKER 2"), optionally with a
    "(VOICE-OVER)" note and a ", RETIRED ATTORNEY" description. Title Case: 1-4 words ("Speaker
    1", "Sean Hannity", "Ludwig van Beethoven"), no description. Stopwords ("Listen", "Note",
    "Well") and single-letter names (except Q and A) are not names.
    """
    match = NAME_RE.match(raw.strip())
    if not match:
        return None
    name = " ".join(match.group("name").split())
    if name.lower().rstrip(".") in LABEL_STOPWORDS or name.lower() in LABEL_STOPWORDS:
        return None
    if match.group("upper"):
        if len(re.sub(r"[^A-Z]", "", name)) < 2 and name not in ("Q", "A"):
            return None
        return name, False
    if match.group("desc"):
        return None
    if any(w.isupper() and len(w) > 1 and not w.startswith("#") for w in name.split()):
        return None  # "Mr. TRUMP" style: odd, skip
    return name, True


def match_label(line: str) -> Label | None:
    """The speaker label at the start of line, in any of LABEL_LAYOUTS, else None."""
    line = line.strip()
    for layout in LABEL_LAYOUTS:
        match = layout.pattern.match(line)
        if not match:
            continue
        named = speaker_name(match.group("label"))
        if named:
            return Label(named[0], named[1], (match.groupdict().get("rest") or "").strip(), layout.name)
    return None


def looks_like_label(line: str) -> str | None:
    """The would-be label of a line that starts like "Some Name: ..." (every word capitalised
    or a number, at most 5 words), else None; used to report labels the parser did not take."""
    match = LOOKS_LIKE_LABEL_RE.match(BRACKETED_TS_RE.sub(" ", line).strip())
    if not match:
        return None
    label = " ".join(match.group("label").split())
    words = label.split()
    if (len(words) > 5 or not re.search(r"[A-Za-z]", label) or label.endswith((",", ".", "!", "?"))
            or any(w[0].islower() for w in words)):
        return None
    return label


def worth_reporting(label: str) -> bool:
    """False for would-be labels that are plainly prose: "Number One:", "Fourth:", "Listen:"."""
    return label.lower() not in LABEL_STOPWORDS and label.split()[0].lower().strip("()") not in NOT_LABEL_START


def _accepted_labels(lines: list) -> tuple[list, list]:
    """For each line, its Label if it counts as one, else None; and the labels matched but not
    counted, as (line index, Label).

    A label counts if it occurs at least twice in the file; or, for an UPPERCASE label, if the
    file has a recurring uppercase label, if it has two or more words ("DONALD TRUMP"), or if
    it is on one of the first two non-empty lines, or if it is a crowd (CROWD_LABELS). So
    "APL: ..." or "Listen: ..." in prose is not a speaker, while "AUDIENCE: ..." said once in
    a speech is.
    """
    labels = [match_label(line) for line in lines]
    counts = collections.Counter(label.name for label in labels if label)
    recurring_upper = any(counts[label.name] >= 2 and not label.title_case for label in labels if label)
    first_lines = [i for i, line in enumerate(lines) if line.strip()][:2]
    accepted, rejected = [], []
    for i, label in enumerate(labels):
        ok = label is not None and (
            counts[label.name] >= 2
            or (not label.title_case and (recurring_upper or len(label.name.split()) >= 2 or i in first_lines
                                          or label.name in CROWD_LABELS)))
        accepted.append(label if ok else None)
        if label is not None and not ok:
            rejected.append((i, label))
    return accepted, rejected


def strip_timestamps(line: str) -> str:
    """A text line without its timestamps: "[00:01:02] and so" -> "and so"; "(00:09)" -> ""."""
    if ONLY_TS_RE.match(line):
        return ""
    line = LEADING_TS_RE.sub("", line.strip())
    return BRACKETED_TS_RE.sub(" ", line).strip()


def persona_name_words(persona_regex: str, persona_name: str = "") -> set[str]:
    """Lowercase words of 3+ letters in the persona's name and in the regex's literal text:
    "^(DONALD )?TRUMP$" -> {"donald", "trump"}."""
    return {w.lower() for w in re.findall(r"[A-Za-z]{3,}", f"{persona_name} {persona_regex}")}


def speaker_table(turns: list[dict]) -> list[dict]:
    """[{"label", "turns", "words", "is_persona"}] per speaker, in order of first turn."""
    table: dict[str, dict] = {}
    for turn in turns:
        row = table.setdefault(turn["speaker"], {"label": turn["speaker"], "turns": 0, "words": 0,
                                                 "is_persona": turn["is_persona"]})
        row["turns"] += 1
        row["words"] += len(turn["text"].split())
    return list(table.values())


def speaker_warnings(name: str, speakers: list[dict], persona_regex: str, persona_name: str = "") -> list[str]:
    """Warnings about who counts as the persona, each naming the file:

    - a bare one-word label counted as the persona ("TRUMP") shares its word with a longer
      label that is not ("ERIC TRUMP"): the bare label may be either speaker;
    - a label containing a word of the persona's name ("PRESIDENT TRUMP") does not match the
      persona regex, so its turns are not counted as the persona.
    """
    words = persona_name_words(persona_regex, persona_name)
    persona_labels = [s for s in speakers if s["is_persona"]]
    other_labels = [s for s in speakers if not s["is_persona"]]
    warnings, named = [], set()

    def label_words(label):
        return {w.strip(".,'’\"()").lower() for w in label.split()}

    for bare in (s for s in persona_labels if len(s["label"].split()) == 1):
        for full in other_labels:
            if len(full["label"].split()) >= 2 and label_words(bare["label"]) <= label_words(full["label"]):
                named.add(full["label"])
                warnings.append(
                    f"{name}: {bare['label']!r} ({bare['turns']} turns, counted as the persona) and "
                    f"{full['label']!r} ({full['turns']} turns, not counted) share a name: a bare "
                    f"{bare['label']!r} may be either speaker; check the file, and make "
                    f"persona.speaker_regex say which")
    for other in other_labels:
        if other["label"] not in named and label_words(other["label"]) & words:
            warnings.append(
                f"{name}: {other['label']!r} ({other['turns']} turns, {other['words']} words) contains the "
                f"persona's name but does not match persona.speaker_regex {persona_regex!r}, so it is not "
                f"counted as the persona; if it is them, widen the regex")
    return warnings


# ---------------------------------------------------------------------------------------
# subtitles: SubRip (.srt) and WebVTT (.vtt) cues -> "Name: text" lines
#
# References: WebVTT, W3C Candidate Recommendation (https://www.w3.org/TR/webvtt1/): the
# "WEBVTT" header, cue blocks (optional identifier line, "00:00:01.000 --> 00:00:02.000
# settings" timing line, text lines up to a blank line), NOTE/STYLE/REGION blocks, voice
# spans <v Name> and <v.class Name> (closed by </v> or the cue's end), class <c.x>, <i>, <b>,
# <u>, <ruby>/<rt>, <lang xx> spans, timestamp tags <00:00:01.000>, and &amp;-style escapes.
# SubRip (no formal spec; https://en.wikipedia.org/wiki/SubRip): blocks of a cue number,
# a "00:00:01,000 --> 00:00:02,000" line and text lines, separated by blank lines; HTML-like
# <i>/<b>/<u>/<font> tags and {\an8}-style position codes in the text. Dialogue markers
# used in both: "- NAME: text" (one line per speaker in a cue) and ">> NAME: text"
# (broadcast closed captions, where a bare ">>" marks a change of speaker).

CUE_TIME = r"(?:\d{1,3}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?"
CUE_TIMING_RE = re.compile(rf"^\s*{CUE_TIME}\s*-->\s*{CUE_TIME}(?:\s.*)?$")
WEBVTT_RE = re.compile(r"\A\ufeff?WEBVTT(?:[ \t][^\n]*)?(?:\n|\Z)")
SRT_START_RE = re.compile(rf"\A\ufeff?\s*\d+[ \t]*\n[ \t]*{CUE_TIME}[ \t]*-->[ \t]*{CUE_TIME}")
SUBTITLE_SUFFIXES = (".srt", ".vtt")
VTT_BLOCK_RE = re.compile(r"^(?:NOTE|STYLE|REGION)(?:[ \t]|$)")
VOICE_TAG_RE = re.compile(r"<v(?:\.[^\s>]*)?(?:[ \t]+([^>]*))?>")
VOICE_SPLIT_RE = re.compile(r"(<v(?:\.[^\s>]*)?(?:[ \t]+[^>]*)?>|</v>)")
OTHER_TAG_RE = re.compile(r"</?(?:[a-zA-Z][^>]*|\d[\d:.]*)?>|\{\\[^{}]*\}")  # <i>, </c>, <00:00:01.000>, {\an8}
RUBY_TEXT_RE = re.compile(r"<rt(?:\.[^>]*)?>.*?</rt>", re.S)
SOUND_ONLY_RE = re.compile(r"^\s*(?:\[[^\[\]]*\]|\([^()]*\)|[♪♫#*\s]+)\s*$")
SPEAKER_MARK_RE = re.compile(r"(?:^|(?<=\s))(?:>|&gt;){2,}\s*")  # ">>" (WebVTT: "&gt;&gt;") anywhere: a new speaker
DIALOGUE_DASH_RE = re.compile(r"^[-–—](?![-–—])\s+")  # "- text": a new speaker (not "-- text")
CUE_LABEL_RE = re.compile(r"^(?P<label>[^:<>\s][^:<>]{0,59}?)[ \t]*:(?:[ \t]+(?P<rest>.*)|[ \t]*)$")
UNNAMED_SPEAKER = "UNNAMED SPEAKER"


@dataclass(frozen=True)
class Subtitles:
    """Subtitle cues read as a speaker-labelled transcript (see read_subtitles)."""
    lines: list        # "Name: text" lines (a turn's text on one line), or text lines of a would-be label
    numbers: list      # for each line, the subtitle file's line number where its text starts
    labels: list       # for each line, its Label (layout "subtitle cue") or None
    speakers: list     # the speaker names, in order of first turn
    headers: dict      # WebVTT header lines "Key: value", lowercased keys ("kind", "language", "date")
    warnings: list     # each naming the file


def is_subtitles(text: str, name: str = "") -> bool:
    """True for subtitle text: a .srt/.vtt name, a "WEBVTT" first line, or SubRip's start
    (a cue number line, then a "00:00:01,000 --> 00:00:02,000" line)."""
    return (file_name_of(str(name)).lower().endswith(SUBTITLE_SUFFIXES)
            or bool(WEBVTT_RE.match(text)) or bool(SRT_START_RE.match(text)))


def _subtitle_blocks(lines: list) -> tuple[list, dict]:
    """The cues of subtitle lines: ([(first text line number, [text lines])], WebVTT headers).

    Blocks are separated by blank lines. The WEBVTT header block gives headers; NOTE, STYLE
    and REGION blocks are skipped; in a cue block, lines before the timing line (a SubRip cue
    number, a WebVTT cue identifier) are skipped, and a cue number left before the next timing
    line (a missing blank line) too. A block without a timing line continues the cue before
    (a blank line inside a SubRip cue), unless it is only a number.
    """
    blocks, block, headers = [], [], {}
    for number, line in enumerate(lines, 1):
        if line.strip():
            block.append((number, line.rstrip()))
        elif block:
            blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    cues = []
    for index, block in enumerate(blocks):
        first = block[0][1].lstrip("\ufeff")
        if index == 0 and first.startswith("WEBVTT"):
            for _, line in block[1:]:
                key, sep, value = line.partition(":")
                if sep and "-->" not in line:
                    headers[key.strip().lower()] = value.strip()
            if not any(CUE_TIMING_RE.match(line) for _, line in block):
                continue
        if VTT_BLOCK_RE.match(first) and not any(CUE_TIMING_RE.match(line) for _, line in block):
            continue
        timings = [i for i, (_, line) in enumerate(block) if CUE_TIMING_RE.match(line)]
        if not timings:
            if cues and not all(line.strip().isdigit() for _, line in block):
                cues[-1][1].extend(line for _, line in block)
            continue
        for k, at in enumerate(timings):
            end = timings[k + 1] if k + 1 < len(timings) else len(block)
            text = block[at + 1:end]
            if k + 1 < len(timings) and text and text[-1][1].strip().isdigit():
                text = text[:-1]  # the next cue's number
            if text:
                cues.append((text[0][0], [line for _, line in text]))
    return cues, headers


def _cue_segments(cue_lines: list) -> list:
    """A cue's text lines split where the speaker may change: [(line offset, voice, marker,
    text)]. voice: the name of the WebVTT voice span the text is in (<v Name> up to </v> or
    the cue's end), else None; marker: True for text after ">>" or a line's leading dialogue
    dash ("- "). Other tags are removed (so "<i>>> NAME:" is a marker and a label)."""
    segments, voice = [], None
    for offset, line in enumerate(cue_lines):
        at_line_start = True
        for token in VOICE_SPLIT_RE.split(line):
            if token == "</v>":
                voice = None
                continue
            tag = VOICE_TAG_RE.fullmatch(token)
            if tag:
                voice = " ".join((tag.group(1) or "").replace(":", " ").split()) or None
                continue
            token = OTHER_TAG_RE.sub("", RUBY_TEXT_RE.sub("", token))
            for k, chunk in enumerate(SPEAKER_MARK_RE.split(token)):
                marker = k > 0
                if at_line_start and not marker and DIALOGUE_DASH_RE.match(chunk.lstrip()):
                    chunk, marker = DIALOGUE_DASH_RE.sub("", chunk.lstrip(), count=1), True
                if chunk.strip():
                    at_line_start = False
                if chunk.strip() or marker:
                    segments.append((offset, voice, marker, chunk))
    return segments


def _cue_text(text: str) -> str:
    """Cue text without tags, escapes or sound-only notes ("[door slams]", "♪ ♪")."""
    text = OTHER_TAG_RE.sub("", RUBY_TEXT_RE.sub("", text))
    text = " ".join(html.unescape(text).replace("\u200e", "").replace("\u200f", "").split())
    return "" if SOUND_ONLY_RE.match(text) else text.strip("♪♫ ")


def read_subtitles(text: str, name: str = "<subtitles>") -> Subtitles:
    """Read SubRip or WebVTT subtitle text as a speaker-labelled transcript.

    Cue numbers, timing lines, the WEBVTT header, NOTE/STYLE/REGION blocks and tags (<i>,
    <b>, <c.x>, <00:00:01.000>, {\\an8}) are removed, &amp;-escapes decoded, sound-only notes
    ("[applause]", "♪ ♪") dropped. The speaker of a cue's text is, in order: a "NAME:" label
    at the start of a line (after an optional "- " or ">> " marker; the name has a speaker
    label's shape, see speaker_name, and counts as a .txt transcript's label does: it occurs
    at least twice, is a voice name or the first cue's label, or is UPPERCASE with two or more
    words, a crowd, or in a file with a recurring UPPERCASE label), a WebVTT voice tag (<v Name>,
    <v.loud Name>), else the last speaker (a cue without a speaker continues their turn). A
    ">>" or "- " marker without a name starts a turn of UNNAMED_SPEAKER (a warning counts
    them), so another person's words never join the persona's turn. A cue's lines, and the
    cues of one speaker that follow each other, are joined with spaces into one line: one
    turn. Cues before the first named speaker are skipped (a warning counts them); a line
    that starts like a label not taken as one goes on its own line, where parse_transcript
    reports it.

    Returns Subtitles(lines, numbers, labels, speakers, headers, warnings), lines as
    "Name: text". Raises TranscriptError naming the file when no cue has text, or when the
    subtitles name no speakers (no voice tag, no label), so whose words they are is unknown.
    """
    cues, headers = _subtitle_blocks(text.split("\n"))
    if not any(line.strip() for _, cue in cues for line in cue):
        raise TranscriptError(f"{name}: no subtitle cues with text (no '00:00:01,000 --> 00:00:02,000' timing "
                              "line followed by text)")
    raw = []  # (line number, voice, marker, label-or-None, title_case, text)
    for first, cue_lines in cues:
        for offset, voice, marker, chunk in _cue_segments(cue_lines):
            chunk = _cue_text(chunk)
            label = CUE_LABEL_RE.match(chunk)
            named = speaker_name(label.group("label")) if label else None
            if named:
                raw.append((first + offset, voice, marker, named[0], named[1], (label.group("rest") or "").strip()))
            elif chunk or marker:
                raw.append((first + offset, voice, marker, None, False, chunk))
    voices = {r[1] for r in raw if r[1]}
    counts = collections.Counter(r[3] for r in raw if r[3])
    recurring_upper = any(counts[r[3]] >= 2 for r in raw if r[3] and not r[4])
    first_label = next((r[3] for r in raw[:1] if r[3]), None)

    def accepted(label: str, title_case: bool) -> bool:  # as _accepted_labels does for a .txt
        if counts[label] >= 2 or label in voices or label == first_label:
            return True
        return not title_case and (recurring_upper or len(label.split()) >= 2 or label in CROWD_LABELS)

    if not voices and not counts:
        raise TranscriptError(f"{name}: the subtitles name no speakers (no <v Name> voice tags, no 'NAME:' labels "
                              "in the cues), so whose words they are cannot be told")

    lines, numbers, labels, order = [], [], [], []
    speaker = None
    unnamed = skipped = 0
    for number, voice, marker, label, title_case, chunk in raw:
        would_be = None
        if label and accepted(label, title_case):
            who = label
        else:
            if label:  # not taken as a speaker ("Listen: ..." said once): text, reported by parse_transcript
                would_be, chunk = label, f"{label}: {chunk}".strip()
            who = voice if voice else (UNNAMED_SPEAKER if marker else speaker)
            if marker and not voice:
                unnamed += 1
        if who is None:
            skipped += bool(chunk)
            continue
        if who != speaker or not lines:
            lines.append(f"{who}:")
            numbers.append(number)
            labels.append(Label(who, False, "", "subtitle cue"))
            if who not in order:
                order.append(who)
            speaker = who
        if not chunk:
            continue
        if would_be:
            lines.append(chunk)
            numbers.append(number)
            labels.append(None)
        else:
            lines[-1] = f"{lines[-1]} {chunk}"
            if labels[-1] is not None:
                labels[-1] = Label(who, False, lines[-1][len(who) + 1:].strip(), "subtitle cue")
    warnings = []
    if not order:
        raise TranscriptError(f"{name}: the subtitles name no speakers with text, so whose words they are "
                              "cannot be told")
    if skipped:
        warnings.append(f"{name}: {skipped} cue line(s) before the first named speaker were skipped (no voice tag "
                        "or 'NAME:' label says whose words they are)")
    if unnamed:
        warnings.append(f"{name}: {unnamed} cue line(s) mark a new speaker ('>>' or '- ') without a name; their "
                        f"text is counted as {UNNAMED_SPEAKER!r}, not as the persona")
    return Subtitles(lines, numbers, labels, order, headers, warnings)


def subtitles_to_text(text, name: str = "<subtitles>") -> str:
    """Subtitle text (str or bytes) -> the speaker-labelled transcript read_subtitles makes,
    one "Name: text" line per turn (for a look at what parse_transcript reads)."""
    subtitles = read_subtitles(decode_text(text, name), name)
    return "\n".join(subtitles.lines) + "\n"


# ---------------------------------------------------------------------------------------
# parsing

def _split_glued_labels(lines: list, numbers: list, labels: list) -> tuple[list, list]:
    """Split a known UPPERCASE label glued after a sentence onto its own line:
    "...Great Again.DONALD TRUMP: Thank you." -> two lines."""
    glued = sorted({label.name for label in labels if label and not label.title_case and len(label.name) >= 4},
                   key=len, reverse=True)
    if not glued:
        return lines, numbers
    glued_re = re.compile(r"(?<=[.!?)\"'”’\-])(?=(?:%s)[ \t]?:[ \t])" % "|".join(re.escape(n) for n in glued))
    new_lines, new_numbers = [], []
    for line, number in zip(lines, numbers):
        parts = glued_re.split(line)
        new_lines.extend(parts)
        new_numbers.extend([number] * len(parts))
    return new_lines, new_numbers


def parse_transcript(text, *, persona_regex: str, source: str, persona_name: str = "") -> dict:
    """Parse a transcript (str or bytes) into a document with speaker turns.

    Returns {"id", "kind": "interview", "title", "date", "year", "month", "source", "file",
    "turns": [{"speaker", "text", "is_persona"}], "speakers": [{"label", "turns", "words",
    "is_persona"}], "warnings": [str]}. is_persona is re.search(persona_regex, speaker, re.I).
    A label line may come in any of LABEL_LAYOUTS (timestamps before, inside or after the
    label, tab-separated, or the label alone with the text on the next lines); timestamps are
    removed from all text. ``warnings`` (each naming the file) lists lines that look like a
    label but were kept as text, and speaker_warnings (labels with the persona's name that
    the regex misses, a bare surname beside a full name); persona_name adds its words to
    those the regex gives. Title and date come from a campaign-corpus file name
    ("2015-06-16 20.31.00 (Complete, As spoken) Interview with ...txt"), else from the
    "# url:" / "# date:" header lines and the file stem; source is the "# url:" header when
    there is one, else the given source. Raises TranscriptError (a ValueError) naming the
    source for empty or binary input, text without speaker labels, or no persona turn.

    Subtitles (is_subtitles: a .srt/.vtt source name, a WEBVTT header, or SubRip's
    "1\n00:00:01,000 --> ..." start) are read by read_subtitles first: each speaker turn
    becomes a "Name: text" line (voice tags and "NAME:" labels give the speaker; cue numbers,
    timings and tags are removed), its warnings come first, and a WebVTT "Date:" header line
    gives the date; subtitles that name no speaker raise TranscriptError.
    """
    name = str(source)
    text = decode_text(text, name)
    subtitles = read_subtitles(text, name) if is_subtitles(text, name) else None
    if subtitles:  # labels known from the cues; the same turn handling from here on
        lines, numbers, labels = list(subtitles.lines), list(subtitles.numbers), list(subtitles.labels)
        headers, rejected_at = dict(subtitles.headers), {}
    else:
        lines = text.split("\n")
        numbers = list(range(1, len(lines) + 1))
        headers = {}
        while lines and (not lines[0].strip() or HEADER_RE.match(lines[0].strip())):
            numbers.pop(0)
            header = HEADER_RE.match(lines.pop(0).strip())
            if header:
                headers[header.group(1).strip().lower()] = header.group(2)
        # stage directions glued before a label: "(APPLAUSE)DONALD TRUMP: ..."
        lines = [re.sub(r"^\s*(?:\([^()a-z]{2,60}\)\s*)+(?=[A-Z][A-Za-z .'’\-]{0,40}:)", "", line)
                 for line in lines]
        labels, _ = _accepted_labels(lines)
        split_lines, split_numbers = _split_glued_labels(lines, numbers, labels)
        if len(split_lines) != len(lines):
            lines, numbers = split_lines, split_numbers
        labels, rejected = _accepted_labels(lines)
        rejected_at = dict(rejected)

    turns: list[dict] = []
    unread: list[tuple[int, str, str | None]] = []  # (line number, would-be label, whose turn it joined)
    speaker = resume = None  # resume: whose turn goes on after a crowd's one-line interjection
    for line, number, label, i in zip(lines, numbers, labels, range(len(lines))):
        line = line.strip()
        if not line:
            continue
        if label:
            resume = speaker if label.name in CROWD_LABELS and speaker not in CROWD_LABELS else None
            speaker = label.name
            turns.append({"speaker": speaker, "paras": []})
            line = label.rest
        else:
            would_be = rejected_at[i].name if i in rejected_at else looks_like_label(line)
            if would_be and worth_reporting(would_be):
                unread.append((number, would_be, speaker))
            if resume:
                speaker, resume = resume, None
                turns.append({"speaker": speaker, "paras": []})
        if speaker is None:
            continue  # text before the first label (a title, a note): not part of any turn
        cleaned = clean_stage_directions(strip_timestamps(line))
        if cleaned:
            turns[-1]["paras"].append(cleaned)
    if not turns:
        raise TranscriptError(f"{name}: not a transcript (no speaker labels like 'NAME: ...' found)")
    merged: list[dict] = []
    for turn in turns:
        if not turn["paras"]:
            continue
        if merged and merged[-1]["speaker"] == turn["speaker"]:
            merged[-1]["paras"].extend(turn["paras"])
        else:
            merged.append({"speaker": turn["speaker"], "paras": list(turn["paras"])})
    persona = re.compile(persona_regex, re.I)
    out_turns = [{"speaker": t["speaker"], "text": "\n\n".join(t["paras"]),
                  "is_persona": bool(persona.search(t["speaker"]))} for t in merged]
    if not out_turns:
        raise TranscriptError(f"{name}: not a transcript (every turn is empty after removing stage directions)")
    if not any(t["is_persona"] for t in out_turns):
        speakers = sorted({t["speaker"] for t in out_turns})
        raise TranscriptError(f"{name}: no turn by the persona (no speaker matches {persona_regex!r}; "
                              f"speakers: {', '.join(speakers[:8])})")

    speakers = speaker_table(out_turns)
    warnings = [f"{name}: line {number}: {would_be + ':'!r} looks like a speaker label but was not read as one, "
                f"so the line is text of {whose + chr(39) + 's turn' if whose else 'no turn (before the first label)'}"
                f"{' (the persona)' if whose and persona.search(whose) else ''}"
                for number, would_be, whose in unread]
    warnings += speaker_warnings(name, speakers, persona_regex, persona_name)
    if subtitles:
        warnings = subtitles.warnings + warnings

    file_name = file_name_of(name)
    meta = metadata_from_name(file_name)
    if meta["date"] is None and headers.get("date"):
        meta["date"], meta["year"], meta["month"] = parse_date(headers["date"])
    doc_source = headers.get("url") or name
    stem = file_name[:-4] if file_name.lower().endswith(".txt") else file_name
    return {"id": slugify(stem), "kind": "interview", "title": meta["title"], "date": meta["date"],
            "year": meta["year"], "month": meta["month"], "source": doc_source, "file": file_name,
            "turns": out_turns, "speakers": speakers, "warnings": warnings}


# ---------------------------------------------------------------------------------------
# collecting

def _display(path) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else str(path)
    except ValueError:
        return str(path)


def read_snapshot_sources(snapshot_dir: Path) -> dict:
    """file name -> original URL, from snapshot_dir/SOURCES.tsv (file<TAB>url) when present."""
    path = Path(snapshot_dir) / "SOURCES.tsv"
    sources = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 2 and parts[0]:
                sources[parts[0]] = parts[1]
    return sources


def collect_interviews(*, urls, cache_dir, snapshot_dir, offline: bool = False, persona_regex: str,
                       persona_name: str = "", delay_s: float = 1.0, user_agent: str = DEFAULT_USER_AGENT, retries: int = 3,
                       timeout_s: float = 20.0, max_documents: int = 0, backoff_s: float = 1.0,
                       log=print) -> tuple[list[dict], dict]:
    """Collect interview documents: fetch raw transcript text URLs, else read the snapshot.

    Online (urls given, offline False): every URL is fetched through lib.fetch (cached in
    cache_dir) and parsed. If the first request fails with a connection error or timeout
    (network unreachable), if no URL is given, or with offline=True, the committed
    snapshot (snapshot_dir/*.txt, by name) is read instead and ``log`` says so. Files that
    fail to fetch or parse are logged and skipped. max_documents: the first N (0 = all).
    Each document's speaker warnings (see parse_transcript) are printed to stderr as
    "warning: FILE: ..." lines and gathered in info["warnings"].

    Returns (documents, info); documents as parse_transcript returns them; info: {"mode":
    "online" | "snapshot", "reason", "listed", "documents", "fetched", "cached",
    "skipped_404", "failed", "parse_failed", "errors", "warnings"}.
    """
    snapshot_dir = Path(snapshot_dir)
    urls = list(urls or [])
    if max_documents:
        urls = urls[:max_documents]
    info = {"mode": "online", "reason": "", "snapshot_dir": str(snapshot_dir), "listed": len(urls),
            "documents": 0, "fetched": 0, "cached": 0, "skipped_404": 0, "failed": 0,
            "parse_failed": 0, "errors": [], "warnings": []}
    documents: list[dict] = []

    def parse_one(data, source):
        try:
            document = parse_transcript(data, persona_regex=persona_regex, source=source,
                                        persona_name=persona_name)
        except ValueError as err:
            info["parse_failed"] += 1
            info["errors"].append(f"parse {err}")
            log(f"skipped (parse error) {err}")
            return
        documents.append(document)
        for warning in document["warnings"]:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        info["warnings"].extend(document["warnings"])

    use_snapshot = offline or not urls
    info["reason"] = "offline=True" if offline else ("no transcript URLs given" if not urls else "")
    if not use_snapshot:
        fetcher = Fetcher(cache_dir, delay_s=delay_s, user_agent=user_agent, retries=retries,
                          timeout_s=timeout_s, backoff_s=backoff_s)
        for i, url in enumerate(urls):
            was_cached = fetcher.is_cached(url)
            try:
                data = fetcher.get(url)
            except FetchError as err:
                if i == 0 and not documents and err.kind in ("connection", "timeout"):
                    info["reason"] = f"network unreachable: {err}"
                    use_snapshot = True
                    break
                info["failed"] += 1
                info["errors"].append(f"fetch {url}: {err}")
                log(f"FAILED {url}: {err}")
                continue
            if data is None:
                info["skipped_404"] += 1
                log(f"skipped {url}: HTTP 4xx")
                continue
            info["cached" if was_cached else "fetched"] += 1
            parse_one(data, url)
    if use_snapshot:
        info["mode"] = "snapshot"
        files = sorted(snapshot_dir.glob("*.txt"))
        if max_documents:
            files = files[:max_documents]
        info["listed"] = len(files)
        sources = read_snapshot_sources(snapshot_dir)
        log(f"OFFLINE: using the committed snapshot in {_display(snapshot_dir)} ({len(files)} transcripts)"
            + (f" [{info['reason']}]" if info["reason"] and not offline else ""))
        for path in files:
            info["cached"] += 1
            before = len(documents)
            parse_one(path.read_bytes(), str(path))
            if len(documents) > before and path.name in sources and documents[-1]["source"] == str(path):
                documents[-1]["source"] = sources[path.name]
    info["documents"] = len(documents)
    return documents, info


# ---------------------------------------------------------------------------------------
# command line

def parse_files_cli(argv, *, prog: str, description: str, parse, what: str) -> int:
    """The `parse FILE... --persona REGEX [--speakers]` command of a speaker-turn reader
    (transcripts here, chats in lib.chats): parse(bytes, persona_regex=, source=) -> a
    document; one JSON object per turn (or per speaker) on stdout, warnings on stderr as
    "warning: FILE: ..." lines, a per-file error that does not stop the other files; exit 1
    when a file failed, 2 for a bad regex."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    p_parse = sub.add_parser("parse", help=f"parse {what}, print one JSON line per turn")
    p_parse.add_argument("files", nargs="+")
    p_parse.add_argument("--persona", required=True, help="regex matching the persona's speaker labels / sender")
    p_parse.add_argument("--speakers", action="store_true",
                         help="print one JSON line per speaker (label, turns, words, is_persona) instead of per turn")
    args = parser.parse_args(argv)
    try:
        re.compile(args.persona)
    except re.error as err:
        print(f"error: --persona {args.persona!r} is not a valid regex: {err}", file=sys.stderr)
        return 2
    failed = 0
    for file in args.files:
        try:
            doc = parse(Path(file).read_bytes(), persona_regex=args.persona, source=file)
        except (OSError, ValueError) as err:
            failed += 1
            message = str(err) if str(file) in str(err) else f"{file}: {err}"
            print(f"error: {message}", file=sys.stderr)
            continue
        for warning in doc["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        for row in doc["speakers"] if args.speakers else doc["turns"]:
            print(json.dumps({"file": file, **row}, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def main(argv=None) -> int:
    """python -m lib.transcripts parse FILE... --persona REGEX [--speakers]: one JSON object per
    turn (or per speaker); warnings go to stderr as "warning: FILE: ..." lines."""
    return parse_files_cli(argv, prog="python -m lib.transcripts", description=__doc__.split("\n\n")[0],
                           parse=parse_transcript, what="transcript files")


if __name__ == "__main__":
    sys.exit(main())
