"""Interview transcripts: parse speaker-labelled text into turns (parse_transcript), and
collect a persona's interviews from the snapshot or the web (collect_interviews).

Labels are read as lib.speaker_labels describes (LABEL_LAYOUTS); subtitles (.srt, .vtt) are
first turned into "Name: text" lines by lib.subtitles. Timestamps are removed from all text.
An unlabelled paragraph continues the last speaker's turn, except after a crowd's one-line
interjection ("AUDIENCE: Lock her up!"), where it goes back to the speaker before.
"# url: ..." / "# date: ..." header lines give metadata.

A Title Case label must occur at least twice in the file, so "Listen: ..." or "Question:
..." in running text is not taken for a speaker; in a file where no label occurs twice only
a label on the first line counts (a speech: "DONALD TRUMP: ..."). A line that looks like a
label but is not taken as one is reported in the document's warnings, never merged
silently, as are labels that contain the persona's name but miss the persona regex, and a
bare surname counted as the persona beside a full name that is not. Stage directions
((APPLAUSE), (CROSSTALK), [inaudible], ...) are removed (lib.text.clean_stage_directions),
empty turns dropped, consecutive turns of one speaker merged.

    python -m lib.transcripts parse data/snapshot/trump/wwe.txt --persona '^(DONALD )?TRUMP$'
    python -m lib.transcripts parse FILE... --persona REGEX --speakers   # one line per speaker
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from lib.fetch import DEFAULT_USER_AGENT, Fetcher, FetchError
from lib.records import Document
from lib.runfiles import display_path
from lib.source_files import TranscriptError, decode_text, file_name_of, metadata_from_name, parse_date, slugify
from lib.speaker_labels import (CROWD_LABELS, accepted_labels, looks_like_label, speaker_table, speaker_warnings,
                                strip_timestamps, worth_reporting)
from lib.subtitles import is_subtitles, read_subtitles
from lib.text import clean_stage_directions

HEADER_RE = re.compile(r"^#\s*([A-Za-z_ ]+?)\s*:\s*(.*?)\s*$")


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


def parse_transcript(text, *, persona_regex: str, source: str, persona_name: str = "") -> Document:
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
        labels, _ = accepted_labels(lines)
        split_lines, split_numbers = _split_glued_labels(lines, numbers, labels)
        if len(split_lines) != len(lines):
            lines, numbers = split_lines, split_numbers
        labels, rejected = accepted_labels(lines)
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
                       log=print) -> tuple[list[Document], dict]:
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
        log(f"OFFLINE: using the committed snapshot in {display_path(snapshot_dir)} ({len(files)} transcripts)"
            + (f" [{info['reason']}]" if info["reason"] and not offline else ""))
        for path in files:
            info["cached"] += 1
            before = len(documents)
            parse_one(path.read_bytes(), str(path))
            if len(documents) > before and path.name in sources and documents[-1]["source"] == str(path):
                documents[-1]["source"] = sources[path.name]
    info["documents"] = len(documents)
    return documents, info


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
