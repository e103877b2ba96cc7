"""Speaker labels in transcripts: the shape of a speaker's name, and the layouts a label line
comes in (LABEL_LAYOUTS, tried in order; adding a layout is one entry there and one line in
tests/test_transcript_layouts.py):
  DONALD TRUMP: text                 the Trump Campaign Corpus, the seed interviews
  [00:00:12] DONALD TRUMP: text      timestamp before the label
  DONALD TRUMP (00:00:12): text      timestamp in the label
  Donald Trump: (00:09)              timestamp after the label, the text on the next lines
  Donald Trump<TAB>00:00:12<TAB>text tab-separated label, time and text (or time, label, text)
  Donald Trump  0:03                 label and time alone on a line (Otter-style exports)

A label is short (at most 4 words), at the start of a line, UPPERCASE ("BILL O'REILLY",
"SPEAKER_00", "JOHN McCAIN", "STEPHANOPOULOS (VOICE-OVER)", "WAYNE BEYER, RETIRED ATTORNEY")
or Title Case ("Speaker 1", "Sean Hannity"). Also here: the per-speaker table of a parsed
transcript and the warnings it gives (speaker_table, speaker_warnings).
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass

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


def accepted_labels(lines: list) -> tuple[list, list]:
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
