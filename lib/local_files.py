"""A persona from your own files: read a folder into the chain's documents.

01 calls read_folder when params say ``persona.kind: folder`` and ``scrape.folder: PATH``.
Every file under the folder (recursively, in name order) is read by its type:

  documents (kind "essay"):   .md/.markdown (front matter and "# Title" give title and date;
                              markdown-it-py reads the markup), .html/.htm (a paulgraham.com
                              page through lib.scrape's own parser, any other page through
                              trafilatura), .pdf (pypdf, layout mode: blank lines between
                              paragraphs; the PDF's Title and CreationDate), .txt (plain text)
  interviews (kind "interview"): .srt/.vtt subtitles and speaker-labelled .txt transcripts
                              (lib.transcripts), the persona's turns found by speaker_regex
  chats (kind "interview"):   a WhatsApp .txt export or a Telegram result.json (lib.chats);
                              the person's messages answer the other party's before them

A .txt file is a WhatsApp export when its lines start with WhatsApp's timestamps, a
transcript when it has speaker labels and a turn by the persona, else a document. Files that
are empty, binary, unreadable, unsupported or unparsable are skipped, each with its reason;
the rest are read. Each file used is copied into the run folder (``copy_to``), and
provenance (file, sha256, bytes, kind, document id) is returned for sources.jsonl.

    python -m lib.local_files FOLDER [--persona REGEX] [--name NAME]   # JSON line per document
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

from lib.runfiles import file_sha256
from lib.source_files import TranscriptError, decode_text, parse_date, slugify
from lib.transcripts import parse_transcript

DOCUMENT_SUFFIXES = (".md", ".markdown", ".html", ".htm", ".pdf", ".txt")
INTERVIEW_SUFFIXES = (".srt", ".vtt")
CHAT_SUFFIXES = (".json",)
SUPPORTED = DOCUMENT_SUFFIXES + INTERVIEW_SUFFIXES + CHAT_SUFFIXES
FRONT_MATTER_RE = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


class SourceError(ValueError):
    """A folder gave nothing usable; the message names the folder and every skipped file."""


class SkipFile(ValueError):
    """This file is not used; the message is the reason."""


# ---------------------------------------------------------------------------------------
# documents

def essay(doc_id: str, title: str, date: str | None, text: str, source: str, file: str, notes: str = "") -> dict:
    """The chain's essay document (the shape lib.essays.essay_document gives)."""
    iso, year, month = parse_date(date) if date else (None, None, None)
    return {"id": doc_id, "kind": "essay", "title": title, "date": iso, "year": year, "month": month,
            "source": source, "file": file, "text": text, "notes": notes}


def paragraphs_of_plain_text(text: str, unwrap: bool = True) -> list[str]:
    """Blank-line separated paragraphs; with unwrap, a paragraph's lines join with spaces
    (hard-wrapped text), except after a hyphen ending a line, which joins without one:
    "independent-\nminded" -> "independent-minded" (a typesetter's hyphenation keeps its hyphen)."""
    paras = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if unwrap:
            joined = lines[0]
            for line in lines[1:]:
                if re.search(r"[a-z]-$", joined) and not joined.endswith("--") and line[:1].islower():
                    joined += line
                else:
                    joined += " " + line
            paras.append(" ".join(joined.split()))
        else:
            paras.append("\n".join(lines))
    return paras


def front_matter(text: str) -> tuple[dict, str]:
    """YAML front matter ("---\\ntitle: ...\\n---") as a dict, and the text after it."""
    match = FRONT_MATTER_RE.match(text)
    if not match:
        return {}, text
    import yaml
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return {}, text
    return (meta if isinstance(meta, dict) else {}), text[match.end():]


def markdown_paragraphs(text: str) -> tuple[str | None, list[str]]:
    """(first level-1 heading or None, the other blocks as plain-text paragraphs).

    markdown-it-py (CommonMark) parses the markup; each block's inline text is kept without
    its syntax (emphasis, links, code ticks); soft breaks become spaces, hard breaks newlines.
    """
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    title, paras, heading = None, [], None
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            heading = token.tag
        elif token.type == "heading_close":
            heading = None
        elif token.type in ("fence", "code_block"):
            paras.append(token.content.rstrip("\n"))
        elif token.type == "inline":
            parts = []
            for child in token.children or []:
                if child.type in ("text", "code_inline"):
                    parts.append(child.content)
                elif child.type == "softbreak":
                    parts.append(" ")
                elif child.type == "hardbreak":
                    parts.append("\n")
                elif child.type == "image":
                    parts.append(child.content)
            para = "".join(parts).strip()
            if not para:
                continue
            if heading == "h1" and title is None and not paras:
                title = para
            else:
                paras.append(para)
    return title, paras


def read_markdown(raw: bytes, rel: str, doc_id: str) -> dict:
    text = decode_text(raw, rel)
    meta, body = front_matter(text)
    heading, paras = markdown_paragraphs(body)
    if not paras:
        raise SkipFile("no text after the title and markup")
    title = str(meta.get("title") or heading or Path(rel).stem.replace("_", " ").replace("-", " "))
    date = meta.get("date")
    return essay(doc_id, title, str(date) if date else None, "\n\n".join(paras), rel, rel)


def read_html(raw: bytes, rel: str, doc_id: str) -> dict:
    from bs4 import BeautifulSoup

    from lib.essays import ParseError, decode_page, find_essay_body, parse_essay_html

    html = decode_page(raw, rel).text
    if find_essay_body(BeautifulSoup(html, "html.parser")) is not None:  # a paulgraham.com page
        try:
            page = parse_essay_html(html, rel)
        except ParseError as err:
            raise SkipFile(str(err).removeprefix(f"{rel}: ")) from None
        return essay(doc_id, page["title"], page["date"], page["text"], rel, rel, page["notes"])
    import trafilatura

    found = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False, include_tables=False,
                                        include_images=False, favor_precision=True)
    text = getattr(found, "text", None) if found is not None else None
    if not text or not text.strip():
        raise SkipFile("no article text found in the page (trafilatura)")
    title = getattr(found, "title", None) or Path(rel).stem
    paras = [" ".join(line.split()) for line in text.split("\n") if line.strip()]
    if paras and paras[0] == title:
        paras = paras[1:]
    return essay(doc_id, title, getattr(found, "date", None), "\n\n".join(paras), rel, rel)


def join_pages(pages: list[str]) -> str:
    """Pages' text joined; a paragraph a page break cut (no sentence end before the break,
    a lowercase word after it) is joined again."""
    text = ""
    for page in (p.strip() for p in pages):
        if not page:
            continue
        if text and not re.search(r"[.!?:\"”’)\]]$", text) and page[:1].islower():
            text += "\n" + page
        else:
            text += ("\n\n" if text else "") + page
    return text


def read_pdf(raw: bytes, rel: str, doc_id: str) -> dict:
    import io

    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
        pages = [page.extract_text(extraction_mode="layout") or "" for page in reader.pages]
        meta = reader.metadata or {}
    except Exception as err:  # pypdf raises many types for broken files
        raise SkipFile(f"unreadable PDF ({type(err).__name__}: {err})") from None
    paras = [p for p in paragraphs_of_plain_text(join_pages(pages)) if not re.fullmatch(r"\d{1,4}", p)]
    if not paras:
        raise SkipFile("no text layer (a scanned PDF needs OCR first)")
    title = (meta.get("/Title") or "").strip()
    if not title and len(paras[0]) <= 100 and not paras[0].endswith("."):
        title = paras[0]
    if paras and paras[0] == title:
        paras = paras[1:]
    try:
        created = getattr(meta, "creation_date", None)
    except ValueError:  # pypdf cannot read every producer's date format ("Mon Jan 1 2019")
        created = None
    date = created.strftime("%Y-%m-%d") if isinstance(created, datetime) else None
    return essay(doc_id, title or Path(rel).stem, date, "\n\n".join(paras), rel, rel)


def read_plain_text(text: str, rel: str, doc_id: str) -> dict:
    paras = paragraphs_of_plain_text(text)
    title = Path(rel).stem.replace("_", " ")
    if len(paras) > 1 and len(paras[0]) <= 100 and not paras[0].endswith((".", "?", "!")):
        title, paras = paras[0], paras[1:]
    return essay(doc_id, title, None, "\n\n".join(paras), rel, rel)


# ---------------------------------------------------------------------------------------
# one file

def has_speaker_labels(raw: bytes, rel: str) -> bool:
    """Whether lib.transcripts reads speaker labels in the file (whoever the speakers are)."""
    try:
        parse_transcript(raw, persona_regex=r"(?!)", source=rel)
    except TranscriptError as err:
        return "no turn by the persona" in str(err)
    return True


def read_file(path: Path, rel: str, doc_id: str, *, persona_regex: str, persona_name: str = "") -> dict:
    """One file -> one document (see the module docstring). Raises SkipFile with the reason."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise SkipFile(f"unsupported file type {suffix or '(no extension)'}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SkipFile(f"unreadable: {err.strerror or err}") from None
    if not raw.strip():
        raise SkipFile("empty file")
    if suffix == ".pdf":
        return read_pdf(raw, rel, doc_id)
    try:
        text = decode_text(raw, rel)
    except TranscriptError as err:
        raise SkipFile(str(err).removeprefix(f"{rel}: ")) from None
    speaker_kind = suffix in INTERVIEW_SUFFIXES + CHAT_SUFFIXES
    if suffix in (".md", ".markdown"):
        return read_markdown(raw, rel, doc_id)
    if suffix in (".html", ".htm"):
        return read_html(raw, rel, doc_id)
    from lib import chats

    is_chat = suffix in CHAT_SUFFIXES or chats.looks_like_whatsapp(text)
    if (speaker_kind or is_chat) and not persona_regex:
        raise SkipFile(f"a {'chat' if is_chat else 'transcript'} needs persona.speaker_regex to say which "
                       "speaker is the person")
    if not (speaker_kind or is_chat) and not has_speaker_labels(raw, rel):
        return read_plain_text(text, rel, doc_id)  # .txt without speaker labels: the person's own text
    if not persona_regex:
        raise SkipFile("a transcript (it has speaker labels) needs persona.speaker_regex to say which "
                       "speaker is the person")
    try:
        if is_chat:
            doc = chats.parse_chat(raw, persona_regex=persona_regex, source=rel)
        else:  # a labelled .txt that yields no turn of the person is skipped, never read as their text
            doc = parse_transcript(raw, persona_regex=persona_regex, source=rel, persona_name=persona_name)
    except ValueError as err:
        raise SkipFile(str(err).removeprefix(f"{rel}: ")) from None
    return {**doc, "id": doc_id, "source": rel, "file": rel}


# ---------------------------------------------------------------------------------------
# a folder

def read_folder(folder, *, persona_regex: str = "", persona_name: str = "", copy_to=None,
                max_documents: int = 0, log=print) -> tuple[list[dict], dict]:
    """Read every file under folder into documents (see the module docstring).

    persona_regex: the persona's speaker label or chat sender (re.search, ignoring case);
    needed for transcripts and chats, not for documents. copy_to: a folder the used files
    are copied into (their relative paths kept). max_documents: the first N (0 = all).

    Returns (documents, info) where info is {"mode": "folder", "folder", "listed",
    "documents", "by_kind": {"essay": n, "interview": n}, "skipped": [{"file", "reason"}],
    "warnings": [str], "provenance": [{"file", "sha256", "bytes", "kind", "id"}]}.
    Raises SourceError naming the folder when it is missing or nothing in it is usable.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise SourceError(f"{folder}: not a folder (scrape.folder)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    info = {"mode": "folder", "folder": str(folder), "listed": len(files), "documents": 0,
            "by_kind": {}, "skipped": [], "warnings": [], "provenance": []}
    documents, used_ids = [], set()
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if max_documents and len(documents) >= max_documents:
            break
        if any(part.startswith(".") for part in Path(rel).parts):
            info["skipped"].append({"file": rel, "reason": "hidden file"})
            continue
        doc_id = slugify(str(Path(rel).with_suffix("")))
        while doc_id in used_ids:
            doc_id += "-2"
        try:
            doc = read_file(path, rel, doc_id, persona_regex=persona_regex, persona_name=persona_name)
        except SkipFile as err:
            info["skipped"].append({"file": rel, "reason": str(err)})
            log(f"skipped {rel}: {err}")
            continue
        except Exception as err:  # noqa: BLE001 - a reader library's own failure on one file skips that file
            reason = f"could not be read ({type(err).__name__}: {err})"
            info["skipped"].append({"file": rel, "reason": reason})
            log(f"skipped {rel}: {reason}")
            continue
        used_ids.add(doc_id)
        documents.append(doc)
        for warning in doc.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
            info["warnings"].append(warning)
        info["by_kind"][doc["kind"]] = info["by_kind"].get(doc["kind"], 0) + 1
        info["provenance"].append({"file": rel, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                                   "kind": doc["kind"], "id": doc_id})
        if copy_to is not None:
            target = Path(copy_to) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    info["documents"] = len(documents)
    if not documents:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in info["skipped"][:20]) or "the folder is empty"
        raise SourceError(f"{folder}: no usable files ({len(info['skipped'])} skipped: {reasons})")
    return documents, info


def main(argv=None) -> int:
    """python -m lib.local_files FOLDER [--persona REGEX] [--name NAME]: one JSON line per document."""
    parser = argparse.ArgumentParser(prog="python -m lib.local_files", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--persona", default="", help="regex of the persona's speaker label / chat sender")
    parser.add_argument("--name", default="", help="the persona's name (for speaker warnings)")
    args = parser.parse_args(argv)
    try:
        documents, info = read_folder(args.folder, persona_regex=args.persona, persona_name=args.name,
                                      log=lambda message: print(message, file=sys.stderr))
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for doc in documents:
        print(json.dumps(doc, ensure_ascii=False), flush=True)
    for skipped in info["skipped"]:
        print(f"skipped: {skipped['file']}: {skipped['reason']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
