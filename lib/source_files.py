"""The person's source files as text: bytes decoded whatever their encoding (decode_text),
names made into ids (slugify, file_name_of), dates read from names and headers (parse_date,
metadata_from_name: the Trump Campaign Corpus' "YYYY-MM-DD HH.MM.SS (As Spoken) ..."), and
the error a source file that cannot be read raises (TranscriptError, naming the file).
"""
from __future__ import annotations

import codecs
import os
import re
from datetime import datetime
from urllib.parse import unquote, urlparse

CAMPAIGN_NAME_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})\s+(?P<time>\d{2}\.\d{2}\.\d{2})\s+"
    r"\((?:(?P<completeness>[^,()]+),\s*)?(?P<spoken>As [A-Za-z]+)\)\s+(?P<description>.+)$")


DATE_FORMATS = ("%Y-%m-%d", "%B %d %Y", "%b %d %Y", "%B %d, %Y", "%b %d, %Y", "%d %B %Y",
                "%d %b %Y", "%B %Y", "%b %Y", "%Y-%m", "%Y")


class TranscriptError(ValueError):
    """A transcript could not be parsed; the message names the file and the problem."""


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
