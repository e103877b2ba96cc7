"""Paul Graham essays: parse paulgraham.com pages.

    parse_articles_index(html_bytes, base_url)  -> [{"slug", "title", "url"}, ...] in page order
    parse_essay_html(raw_bytes, url_or_path)     -> {"title", "date", "year", "month", "text", "notes", "source"}

Pages are served without a charset: most are ASCII/UTF-8, some are Windows-1252 (0x97 em
dash, 0x92 quote), and some are UTF-8 with a few stray Windows-1252 bytes. decode_page tries
UTF-8 strictly, else reads the bytes as (sloppy) Windows-1252, then lets ftfy's encoding fixes
(and only those) turn whatever is still mojibake back into UTF-8 per byte sequence; a page that
needed this is reported as repaired. The essay body is the
largest <font face="verdana"> block; promo boxes ("Want to start a startup?", "Watch how this
essay was written", book and Hacker News boxes), footnote markers [1], the "Thanks to ..."
line and translation links are dropped; the Notes section is kept apart in ``notes``.
"""
from __future__ import annotations

import codecs
import re
from typing import NamedTuple
from urllib.parse import urljoin, urlparse

import ftfy
import ftfy.bad_codecs  # noqa: F401  (registers the sloppy-windows-1252 codec)
from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction

from lib.records import Document

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

DATE_LINE_RE = re.compile(r"^(?:(%s)\s+((?:19|20)\d\d)\b[^\n]{0,60}|((?:19|20)\d\d))$" % "|".join(MONTHS))
FOOTNOTE_MARK_RE = re.compile(r"[ \t]*\[\s*\d{1,3}\s*\]")
NOTE_START_RE = re.compile(r"^\[1\]\s")
PROMO_BOX_RE = re.compile(
    r"^(Want to start a startup\?|Watch how this essay was|You'll find this essay and \d+ others"
    r"|Like to build things\?|New: )", re.I)


TRANSLATION_PARA_RE = re.compile(
    r"(?:\s*(?:and\s+)?[A-Z][\w()\-]*(?:\s+[\w()\-]+){0,3}\s+Translations?\s*[,.;]?)+\s*", re.S)


TRAILER_RE = re.compile(r"^(Related:?|More Info:?|Comment on this essay\.?|See also:.{0,100}|New: .{0,80})$")
THANKS_PARA_RE = re.compile(r"^Thanks:? to\b.{0,800}\b(drafts?|reading|read)\b", re.S)
BLOCK_TAGS = {"p", "div", "table", "blockquote", "ul", "ol", "li", "center", "hr",
              "h1", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd"}


PRE_TAGS = {"pre", "xmp"}
SKIP_TAGS = {"script", "style", "img", "map", "area", "link", "meta", "head", "title", "noscript"}
NOTES_MARK = "\x00NOTES\x00"
THANKS_MARK = "\x00THANKS\x00"
PRE_MARK = "\x00PRE\x00"
NON_ESSAY_SLUGS = {"index", "articles", "rss"}


class ParseError(ValueError):
    """A page could not be parsed; the message names the file and the problem."""


class Decoded(NamedTuple):
    """A decoded page: text, the encoding read ("utf-8", "cp1252" or "utf-8+cp1252" for a UTF-8
    page with stray Windows-1252 bytes) and whether mojibake had to be repaired."""
    text: str
    encoding: str
    repaired: bool


def decode_page(raw: bytes, name: str = "<page>") -> Decoded:
    """Decode a page. Returns Decoded(text, encoding, repaired).

    Bytes that are valid UTF-8 are read as UTF-8; only stray bytes fall back to Windows-1252
    (bytes it leaves undefined, 0x81 0x8d 0x8f 0x90 0x9d, to Latin-1). A page that is valid UTF-8
    throughout is decoded strictly, anything else as ftfy's sloppy-windows-1252; then ftfy's
    encoding fixes alone (ftfy.fix_encoding: no quote uncurling, no normalization) re-decode the
    UTF-8 sequences that came out as mojibake ("â€™" -> "’"), which also repairs text that was
    UTF-8-encoded twice upstream. repaired is True when those fixes changed anything.
    Raises ParseError for an empty file or binary data (NUL bytes, many control bytes).
    """
    if not raw or not raw.strip():
        raise ParseError(f"{name}: empty file")
    sample = raw[:65536]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in sample or controls > len(sample) * 0.01:
        raise ParseError(f"{name}: binary data, not an HTML page")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = raw.decode("sloppy-windows-1252"), "cp1252"
    fixed = ftfy.fix_encoding(text)
    if fixed == text:
        return Decoded(text, encoding, False)
    return Decoded(fixed, "utf-8+cp1252" if encoding == "cp1252" else encoding, True)


def parse_articles_index(html_bytes: bytes, base_url: str) -> list[dict]:
    """The essays listed on articles.html, in page order: [{"slug", "title", "url"}].

    Only links to *.html pages on the site itself; index.html, articles.html and rss.html,
    external links and the "If you're not sure which to read" picks at the top are skipped
    (the essay list is the table holding the most essay links). Each slug appears once.
    """
    text = decode_page(html_bytes, "articles index").text
    soup = BeautifulSoup(text, "html.parser")
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    site = urlparse(base_url).netloc.lower().removeprefix("www.")
    found = []
    for a in soup.find_all("a", href=True):
        url = urljoin(base_url, a["href"].strip())
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or parsed.netloc.lower().removeprefix("www.") != site:
            continue
        name = parsed.path.rsplit("/", 1)[-1]
        if not name.endswith(".html") or "/" in parsed.path.strip("/"):
            continue
        slug = name[: -len(".html")]
        title = " ".join(a.get_text(" ").split())
        if not slug or slug in NON_ESSAY_SLUGS or not title:
            continue
        found.append((a.find_parent("table"), {"slug": slug, "title": title, "url": urljoin(base_url, name)}))
    if not found:
        return []
    counts: dict = {}
    for table, _ in found:
        counts[id(table)] = counts.get(id(table), 0) + 1
    best = max(counts, key=counts.get)
    if counts[best] * 2 >= len(found):  # the essay list: keep only its links
        found = [item for item in found if id(item[0]) == best]
    seen, entries = set(), []
    for _, entry in found:
        if entry["slug"] not in seen:
            seen.add(entry["slug"])
            entries.append(entry)
    return entries


def _is_verdana(tag) -> bool:
    return tag.name == "font" and "verdana" in (tag.get("face") or "").lower()


def find_essay_body(soup):
    """The <font face="verdana"> element holding the essay: the one with the most text."""
    fonts = [f for f in soup.find_all(_is_verdana) if not f.find_parent(_is_verdana)]
    if not fonts:
        return None
    return max(fonts, key=lambda f: len(f.get_text(" ", strip=True)))


def _render(node, out: list) -> None:
    """Append the text of node's children to out, with "\\n" for <br> and "\\n\\n" around blocks."""
    for child in node.children:
        if isinstance(child, (Comment, Doctype, Declaration, ProcessingInstruction)):
            continue
        if isinstance(child, NavigableString):
            out.append(re.sub(r"\s+", " ", str(child)))
            continue
        name = child.name
        if name in SKIP_TAGS:
            continue
        if name == "br":
            out.append("\n")
        elif name in PRE_TAGS:
            blocks = re.split(r"\n[ \t]*\n", _pre_text(child).replace("\r", "").strip("\n"))
            out.append("\n\n" + "\n\n".join(
                "\n".join(PRE_MARK + line.rstrip() for line in block.split("\n") if line.strip())
                for block in blocks) + "\n\n")
        elif name == "b" and not out_has_text_since_break(out) and child.get_text(strip=True).rstrip(":") in ("Notes", "Note"):
            out.append("\n\n" + NOTES_MARK + "\n\n")
        elif name == "b" and not out_has_text_since_break(out) and child.get_text(strip=True).rstrip(":") == "Thanks":
            out.append("\n\n" + THANKS_MARK + "Thanks")
        elif name == "li":
            out.append("\n\n")
            parent = child.find_parent(["ol", "ul"])
            if parent is not None and parent.name == "ol":
                number = len(child.find_previous_siblings("li")) + 1
                out.append(f"{number}. ")
            _render(child, out)
            out.append("\n\n")
        elif name == "tr":  # one line per table row, the rows kept in one paragraph
            if out_has_text_since_break(out):
                out.append("\n")
            _render(child, out)
            out.append("\n")
        elif name in ("td", "th"):
            out.append(" ")
            _render(child, out)
            out.append(" ")
        elif name in BLOCK_TAGS:
            out.append("\n\n")
            _render(child, out)
            out.append("\n\n")
        else:
            _render(child, out)


def _pre_text(node) -> str:
    """The text of a <pre>/<xmp> element verbatim, with "\\n" for <br>."""
    parts = []
    for child in node.descendants:
        if isinstance(child, (Comment, Doctype, Declaration, ProcessingInstruction)):
            continue
        if isinstance(child, NavigableString):
            if not any(p.name in SKIP_TAGS for p in child.parents if p is not node):
                parts.append(str(child))
        elif child.name == "br":
            parts.append("\n")
    return "".join(parts)


def out_has_text_since_break(out: list) -> bool:
    """True if something other than whitespace was written since the last line break."""
    for piece in reversed(out):
        if "\n" in piece:
            return bool(piece.rsplit("\n", 1)[-1].strip())
        if piece.strip():
            return True
    return False


def _paragraphs(raw_text: str) -> list[str]:
    """Split rendered text into paragraphs; lines inside a paragraph are kept, spaces tidied."""
    paras = []
    for block in re.split(r"\n[ \t\xa0]*\n", raw_text.replace("\xa0", " ")):
        lines = []
        for line in block.split("\n"):
            if line.lstrip(" ").startswith(PRE_MARK):  # keep the mark: see _finish_paragraph
                lines.append(line.lstrip(" ").rstrip())
            else:
                line = re.sub(r"[ \t]+", " ", line).strip()
                if line:
                    lines.append(line)
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            paras.append("\n".join(lines))
    return paras


def _finish_paragraph(para: str, drop_markers: bool) -> str:
    """Final form of a paragraph: footnote markers removed (outside <pre> lines) when asked,
    the <pre> marks taken off."""
    lines = []
    for line in para.split("\n"):
        if line.startswith(PRE_MARK):
            lines.append(line[len(PRE_MARK):])
        else:
            lines.append(FOOTNOTE_MARK_RE.sub("", line).strip() if drop_markers else line)
    return "\n".join(line for line in lines if line.strip()).strip("\n")


def is_translation_paragraph(para: str) -> bool:
    """True for a paragraph made only of links like "Japanese Translation, Spanish Translation"."""
    return "Translation" in para and len(para) < 600 and TRANSLATION_PARA_RE.fullmatch(para) is not None


def split_date(paras: list[str]) -> tuple[str | None, int | None, int | None, list[str]]:
    """Find the date line ("March 2006, rev August 2009", or a bare year "1993") among the
    first three paragraphs; month is None for a bare year.

    Returns (date_line, year, month, remaining_paragraphs); (None, None, None, paras) if none.
    """
    for i, para in enumerate(paras[:3]):
        first, _, rest = para.partition("\n")
        match = DATE_LINE_RE.match(first.strip())
        if match:
            remaining = paras[:i] + ([rest] if rest.strip() else []) + paras[i + 1:]
            if match.group(3):  # a bare year ("1993", progbot.html)
                return first.strip(), int(match.group(3)), None, remaining
            return first.strip(), int(match.group(2)), MONTHS.index(match.group(1)) + 1, remaining
    return None, None, None, paras


def parse_essay_html(raw_bytes: bytes | str, url_or_path: str) -> dict:
    """Parse one essay page (its bytes, or its text from decode_page) into
    {"title", "date", "year", "month", "text", "notes", "source"}.

    text: the essay, paragraphs separated by one blank line, without the date line, footnote
    markers, promo boxes, images, navigation, the "Thanks to" line or translation links.
    notes: the Notes section ("" if none), footnote numbers kept ("[1] ...").
    Raises ParseError (a ValueError) naming url_or_path for an empty file, binary data,
    truncated HTML or a page without an essay body.
    """
    name = str(url_or_path)
    html = raw_bytes if isinstance(raw_bytes, str) else decode_page(raw_bytes, name).text
    if "</html>" not in html[-4096:].lower() and "</body>" not in html[-4096:].lower():
        raise ParseError(f"{name}: truncated HTML (no closing </body> or </html> tag)")
    soup = BeautifulSoup(html, "html.parser")
    if soup.find(["html", "body", "font", "p", "table"]) is None:
        raise ParseError(f"{name}: not an HTML page (no HTML elements found)")
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if title_tag else ""
    body = find_essay_body(soup)
    if body is None or not body.get_text(strip=True):
        raise ParseError(f"{name}: no essay body (no <font face=\"verdana\"> block with text)")
    for table in body.find_all("table"):
        if getattr(table, "decomposed", False):
            continue
        if PROMO_BOX_RE.match(" ".join(table.get_text(" ").split())):
            table.decompose()
    out: list = []
    _render(body, out)
    paras = _paragraphs("".join(out))
    date, year, month, paras = split_date(paras)
    text_paras, note_paras, in_notes = [], [], False
    for para in paras:
        if para == NOTES_MARK:
            in_notes = True
            continue
        if para.startswith(THANKS_MARK):
            continue
        if is_translation_paragraph(para):
            continue
        (note_paras if in_notes else text_paras).append(para)
    if not in_notes:  # notes without a "Notes" heading (progbot, road, ...): from "[1] ..." on
        start = next((i for i, p in enumerate(text_paras) if i > 0 and NOTE_START_RE.match(p)), None)
        if start is not None:
            text_paras, note_paras = text_paras[:start], text_paras[start:]
    for paras_list in (text_paras, note_paras):
        if "Related:" in paras_list:  # links to other pages follow: not part of the essay
            del paras_list[paras_list.index("Related:"):]
        # an unbolded "Thanks to X for reading drafts" line among the last paragraphs
        for i in range(len(paras_list) - 1, max(-1, len(paras_list) - 3), -1):
            if THANKS_PARA_RE.match(paras_list[i]):
                del paras_list[i]
        while paras_list and TRAILER_RE.match(paras_list[-1]):
            paras_list.pop()
    text_paras = [p for p in (_finish_paragraph(p, True) for p in text_paras) if p]
    note_paras = [p for p in (_finish_paragraph(p, False) for p in note_paras) if p]
    text = "\n\n".join(text_paras).strip()
    if not text:
        raise ParseError(f"{name}: no essay body (the text is empty after cleaning)")
    if not title:
        title = text.split("\n", 1)[0][:80]
    return {"title": title, "date": date, "year": year, "month": month,
            "text": text, "notes": "\n\n".join(note_paras).strip(), "source": name}


def essay_document(page: dict, slug: str, url: str) -> Document:
    """The pipeline's document for a parsed page (see collect_essays)."""
    return {"id": slug, "kind": "essay", "title": page["title"], "date": page["date"],
            "year": page["year"], "month": page["month"], "source": url,
            "text": page["text"], "notes": page["notes"]}
