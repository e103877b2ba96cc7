"""Interview transcripts: parse speaker-labelled text into turns, and collect interviews.

Three layouts are read by the same parser:
  1. the Trump Campaign Corpus: paragraphs labelled "DONALD TRUMP: ...", "JAKE TAPPER: ...",
     "UNIDENTIFIED: ..."; an unlabelled paragraph continues the last speaker's turn;
  2. the seed interviews: "# url: ..." / "# date: ..." header lines, then one
     "Speaker A: ..." / "TRUMP: ..." line per turn (unlabelled lines continue the turn);
  3. mixed-case labels such as "Sean Hannity: ...".
A label is short (at most 4 words), at the start of a line, UPPERCASE ("BILL O'REILLY",
"MR.", "STEPHANOPOULOS (VOICE-OVER)", "WAYNE BEYER, RETIRED ATTORNEY") or Title Case
("Speaker A", "Sean Hannity"); a Title Case label must occur at least twice in the file, so
"Listen: ..." or "Question: ..." in running text is not taken for a speaker; in a file where
no label occurs twice only a label on the first line counts (a speech: "DONALD TRUMP: ..."). Stage directions
((APPLAUSE), (CROSSTALK), [inaudible], ...) are removed, empty turns dropped, consecutive
turns of one speaker merged.

    python -m lib.transcripts parse data/snapshot/trump/wwe.txt --persona '^(DONALD )?TRUMP$'
"""
from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from lib.fetch import DEFAULT_USER_AGENT, Fetcher, FetchError

UPPER_WORD = r"[A-Z][A-Z0-9.'’\-]*"
TITLE_WORD = r"[A-Z][A-Za-z0-9.'’\-]*"
LABEL_RE = re.compile(
    r"^(?P<name>"
    rf"(?P<upper>{UPPER_WORD}(?:[ \t]+{UPPER_WORD}){{0,3}})"
    rf"|(?P<title>{TITLE_WORD}(?:[ \t]+(?:{TITLE_WORD}|van|von|de|der|da|del|la|le|al|bin)){{0,3}})"
    r")"
    r"(?P<paren>[ \t]*\([A-Z][A-Z \-]*\))?"
    r"(?P<desc>,[ \t]*[A-Z0-9\"'][A-Z0-9 .,'’\"&\-]{0,60})?"
    r"[ \t]?:(?:[ \t]+|$)(?P<rest>.*)$")
LABEL_STOPWORDS = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "listen", "remember", "note", "notes", "update", "updated", "correction", "source", "sources",
    "editor's note", "transcript", "example", "look", "see", "now", "and", "but", "so", "yes",
    "no", "well", "ok", "okay", "here", "there", "this", "that", "the", "what", "why", "how",
    "when", "where", "who", "first", "second", "third", "finally", "also", "again", "today",
    "tonight", "end", "begin", "photo", "video", "http", "https", "re", "subject", "from", "to",
    "date", "url", "title", "quote",
}
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
    date "2015-06-16"; "ccn_town_hall.txt" -> title "ccn town hall", no date.
    """
    stem = name[:-4] if name.lower().endswith(".txt") else name
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


def _match_label(line: str):
    """(speaker, is_title_case, rest) if the line starts with a speaker label, else None."""
    match = LABEL_RE.match(line)
    if not match:
        return None
    name = " ".join(match.group("name").split())
    if name.lower().rstrip(".") in LABEL_STOPWORDS or name.lower() in LABEL_STOPWORDS:
        return None
    if match.group("upper"):
        letters = re.sub(r"[^A-Z]", "", name)
        if len(letters) < 2 and name not in ("Q", "A"):
            return None
        return name, False, match.group("rest")
    if match.group("desc"):
        return None
    words = name.split()
    if any(w.isupper() and len(w) > 1 for w in words):  # "Mr. TRUMP" style: odd, skip
        return None
    return name, True, match.group("rest")


def _accepted_labels(lines: list) -> list:
    """For each line, its (speaker, is_title_case, rest) label if it counts as one, else None.

    A label counts if it occurs at least twice in the file; or, for an UPPERCASE label, if the
    file has a recurring uppercase label, if it has two or more words ("DONALD TRUMP"), or if
    it is on one of the first two non-empty lines. So "APL: ..." or "Listen: ..." in prose is
    not a speaker, while "AUDIENCE: ..." said once in an interview is.
    """
    labels = [_match_label(line.strip()) for line in lines]
    counts: dict = {}
    for label in labels:
        if label:
            counts[label[0]] = counts.get(label[0], 0) + 1
    recurring_upper = any(counts[label[0]] >= 2 and not label[1] for label in labels if label)
    first_lines = [i for i, line in enumerate(lines) if line.strip()][:2]
    accepted = []
    for i, label in enumerate(labels):
        ok = label is not None and (
            counts[label[0]] >= 2
            or (not label[1] and (recurring_upper or len(label[0].split()) >= 2 or i in first_lines)))
        accepted.append(label if ok else None)
    return accepted


# ---------------------------------------------------------------------------------------
# parsing

def parse_transcript(text, *, persona_regex: str, source: str) -> dict:
    """Parse a transcript (str or bytes) into a document with speaker turns.

    Returns {"id", "kind": "interview", "title", "date", "year", "month", "source", "file",
    "turns": [{"speaker", "text", "is_persona"}]}. is_persona is
    re.search(persona_regex, speaker, re.I). Title and date come from a campaign-corpus file
    name ("2015-06-16 20.31.00 (Complete, As spoken) Interview with ...txt"), else from the
    "# url:" / "# date:" header lines and the file stem; source is the "# url:" header when
    there is one, else the given source. Raises TranscriptError (a ValueError) naming the
    source for empty or binary input, text without speaker labels, or no persona turn.
    """
    name = str(source)
    text = decode_text(text, name)
    lines = text.split("\n")
    headers = {}
    while lines and (not lines[0].strip() or HEADER_RE.match(lines[0].strip())):
        header = HEADER_RE.match(lines.pop(0).strip())
        if header:
            headers[header.group(1).strip().lower()] = header.group(2)
    # stage directions glued before a label: "(APPLAUSE)DONALD TRUMP: ..."
    lines = [re.sub(r"^\s*(?:\([^()a-z]{2,60}\)\s*)+(?=[A-Z][A-Za-z .'’\-]{0,40}:)", "", line)
             for line in lines]
    labels = _accepted_labels(lines)
    upper_names = {label[0] for label in labels if label and not label[1]}
    # a known uppercase label glued after a sentence: "...Great Again.DONALD TRUMP: Thank you."
    glued = sorted((n for n in upper_names if len(n) >= 4), key=len, reverse=True)
    if glued:
        glued_re = re.compile(r"(?<=[.!?)\"'”’\-])(?=(?:%s)[ \t]?:[ \t])"
                              % "|".join(re.escape(n) for n in glued))
        new_lines = []
        for line in lines:
            new_lines.extend(glued_re.split(line))
        if len(new_lines) != len(lines):
            lines = new_lines
            labels = _accepted_labels(lines)

    turns: list[dict] = []
    speaker = None
    for line, label in zip(lines, labels):
        line = line.strip()
        if not line:
            continue
        if label:
            speaker, rest = label[0], label[2]
            turns.append({"speaker": speaker, "paras": []})
            line = rest
        if speaker is None:
            continue  # text before the first label (a title, a note): not part of any turn
        cleaned = clean_stage_directions(line)
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

    file_name = file_name_of(name)
    meta = metadata_from_name(file_name)
    if meta["date"] is None and headers.get("date"):
        meta["date"], meta["year"], meta["month"] = parse_date(headers["date"])
    doc_source = headers.get("url") or name
    stem = file_name[:-4] if file_name.lower().endswith(".txt") else file_name
    return {"id": slugify(stem), "kind": "interview", "title": meta["title"], "date": meta["date"],
            "year": meta["year"], "month": meta["month"], "source": doc_source, "file": file_name,
            "turns": out_turns}


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
                       delay_s: float = 1.0, user_agent: str = DEFAULT_USER_AGENT, retries: int = 3,
                       timeout_s: float = 20.0, max_documents: int = 0, backoff_s: float = 1.0,
                       log=print) -> tuple[list[dict], dict]:
    """Collect interview documents: fetch raw transcript text URLs, else read the snapshot.

    Online (urls given, offline False): every URL is fetched through lib.fetch (cached in
    cache_dir) and parsed. If the first request fails with a connection error or timeout
    (network unreachable), if no URL is given, or with offline=True, the committed
    snapshot (snapshot_dir/*.txt, by name) is read instead and ``log`` says so. Files that
    fail to fetch or parse are logged and skipped. max_documents: the first N (0 = all).

    Returns (documents, info); documents as parse_transcript returns them; info: {"mode":
    "online" | "snapshot", "reason", "listed", "documents", "fetched", "cached",
    "skipped_404", "failed", "parse_failed", "errors"}.
    """
    snapshot_dir = Path(snapshot_dir)
    urls = list(urls or [])
    if max_documents:
        urls = urls[:max_documents]
    info = {"mode": "online", "reason": "", "snapshot_dir": str(snapshot_dir), "listed": len(urls),
            "documents": 0, "fetched": 0, "cached": 0, "skipped_404": 0, "failed": 0,
            "parse_failed": 0, "errors": []}
    documents: list[dict] = []

    def parse_one(data, source):
        try:
            documents.append(parse_transcript(data, persona_regex=persona_regex, source=source))
        except ValueError as err:
            info["parse_failed"] += 1
            info["errors"].append(f"parse {err}")
            log(f"skipped (parse error) {err}")

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

def main(argv=None) -> int:
    """python -m lib.transcripts parse FILE... --persona REGEX : one JSON object per turn."""
    parser = argparse.ArgumentParser(prog="python -m lib.transcripts", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_parse = sub.add_parser("parse", help="parse transcript files, print one JSON line per turn")
    p_parse.add_argument("files", nargs="+")
    p_parse.add_argument("--persona", required=True, help="regex matching the persona's speaker labels")
    args = parser.parse_args(argv)
    try:
        re.compile(args.persona)
    except re.error as err:
        print(f"error: --persona {args.persona!r} is not a valid regex: {err}", file=sys.stderr)
        return 2
    failed = 0
    for file in args.files:
        try:
            doc = parse_transcript(Path(file).read_bytes(), persona_regex=args.persona, source=file)
        except (OSError, ValueError) as err:
            failed += 1
            message = str(err) if str(file) in str(err) else f"{file}: {err}"
            print(f"error: {message}", file=sys.stderr)
            continue
        for turn in doc["turns"]:
            print(json.dumps({"file": file, **turn}, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
