"""Subtitles (.srt SubRip, .vtt WebVTT; found by name or content, see is_subtitles) read into
"Name: text" lines that lib.transcripts parses (read_subtitles): cue numbers, timings, tags
and NOTE/STYLE/REGION blocks go, WebVTT voice tags (<v Name>) and "NAME:" labels in cue text
give the speaker, and a cue without one continues the last speaker's turn.
"""
from __future__ import annotations

import collections
import html
import re
from dataclasses import dataclass

from lib.source_files import TranscriptError, decode_text, file_name_of
from lib.speaker_labels import CROWD_LABELS, Label, speaker_name

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

    def accepted(label: str, title_case: bool) -> bool:  # as accepted_labels does for a .txt
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
