"""Chat exports as interviews: the person's messages answer the other party's before them.

Two formats, told apart by parse_chat (neither is formally specified; these are the files
WhatsApp's "Export chat" > "Without media" and Telegram Desktop's "Export chat history" >
"Machine-readable JSON" write):

- WhatsApp "Export chat" text (without media), in either layout:
      [31/12/2023, 21:41:07] Alex Rivera: message        (iOS)
      12/31/23, 9:41 PM - Alex Rivera: message           (Android; 24-hour "31/12/2023, 21:41 - ")
  A line without a timestamp continues the message before it. The marks WhatsApp inserts
  (U+200E LEFT-TO-RIGHT MARK before media and system text, U+202F NARROW NO-BREAK SPACE
  before AM/PM, other direction marks) are removed. Day/month order is decided per file:
  a 4-digit first field is year-first; else if any first field is over 12 the file is
  day-first, else if any second field is over 12 it is month-first; else (every date
  ambiguous) month-first when times have AM/PM (US exports), day-first otherwise.
- Telegram Desktop "Export chat history" JSON (result.json): {"name", "type", "id",
  "messages": [{"type": "message" | "service", "date": "2023-12-31T21:41:07", "from",
  "text": str | [str | {"type", "text"}], "photo" / "file" / "media_type" ...}]}.

Dropped, never a turn: media ("<Media omitted>", "image omitted", "<attached: ...>", a
Telegram photo, file or sticker without a caption: a caption is kept), deleted messages
("This message was deleted"), calls, WhatsApp's system lines (end-to-end encryption notice,
security code changes, joined/left/added, and on iOS any message whose text starts with
U+200E, WhatsApp's mark for those), Telegram service messages, forwarded messages and
messages sent via a bot (not the sender's own words), and empty text. "<This message was
edited>" is removed from the end of a message.

Consecutive messages of one sender are one turn (joined with newlines), so the person's
messages after the other party's become the answer to them; which sender is the person is
the persona's speaker_regex (re.search, ignoring case). The document has the shape
lib.transcripts.parse_transcript returns (kind "interview"), so lib.qa_sources.interview_conversations
turns it into (question, answer) conversations.

    python -m lib.chats parse FILE... --persona REGEX [--speakers]   # one JSON line per turn
"""
from __future__ import annotations

import collections
import json
import re
import sys
from datetime import datetime

from lib.source_files import TranscriptError, decode_text, file_name_of, slugify
from lib.speaker_labels import speaker_table, speaker_warnings


class ChatError(ValueError):
    """A chat export could not be read; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------
# WhatsApp

INVISIBLE_MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"))
WIDE_SPACES = {ord("\u202f"): " ", ord("\u00a0"): " ", ord("\u2009"): " "}
WA_DATE = r"(?P<d1>\d{1,4})[/.\-](?P<d2>\d{1,2})[/.\-](?P<d3>\d{2,4})"
WA_TIME = (r"(?P<hour>\d{1,2})[:.](?P<minute>\d{2})(?:[:.](?P<second>\d{2}))?"
           r"(?:\s?(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?")
WHATSAPP_LINE_RES = (
    re.compile(rf"^\[{WA_DATE},?\s+{WA_TIME}\]\s*(?P<rest>.*)$"),    # iOS
    re.compile(rf"^{WA_DATE},?\s+{WA_TIME}\s+[-–]\s+(?P<rest>.*)$"),  # Android
)
WA_SENDER_RE = re.compile(r"^(?P<sender>[^:\n]{1,80}?):(?:[ \t]+|$)(?P<text>.*)$", re.S)
WA_EDITED_RE = re.compile(r"\s*<\s*this message was edited\s*>\s*$", re.I)
WA_DROPPED_RE = re.compile(  # media, deleted messages, calls and notices that come with a sender
    r"^(?:<media omitted>"
    r"|(?:.*\s)?(?:image|video|audio|sticker|gif|document|contact card|photo|voice message|media) omitted"
    r"|<attached:[^>]*>|.+\s\(file attached\)"
    r"|this message was deleted\.?|you deleted this message\.?|this message was deleted by .*"
    r"|(?:missed )?(?:group )?(?:voice|video) call(?:,.*)?|(?:voice|video) call,.*|null"
    r"|messages and calls are end-to-end encrypted.*|messages to this group are now secured.*"
    r"|your security code with .* changed.*|waiting for this message.*"
    r"|(?:live )?location: https?://\S+|live location shared.*|poll:.*|view once (?:photo|video|message).*)$",
    re.I | re.S)


def _clean_line(line: str) -> str:
    return line.translate(INVISIBLE_MARKS).translate(WIDE_SPACES).rstrip()


def _whatsapp_match(line: str):
    for pattern in WHATSAPP_LINE_RES:
        match = pattern.match(line)
        if match:
            return match
    return None


def looks_like_whatsapp(text) -> bool:
    """True when text (str or bytes) is a WhatsApp text export: its first non-empty line
    starts with a WhatsApp timestamp ("[31/12/2023, 21:41:07] " or "12/31/23, 9:41 PM - ")
    and so do at least 3 lines (or every line of a shorter file); the rest are continuation
    lines of multi-line messages, however many a person who writes paragraphs has. A
    transcript's "[00:01:02] NAME:" lines have no date, so never count."""
    if isinstance(text, bytes):
        try:
            text = decode_text(text)
        except TranscriptError:
            return False
    lines = [_clean_line(line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines or not _whatsapp_match(lines[0]):
        return False
    return sum(1 for line in lines if _whatsapp_match(line)) >= min(3, len(lines))


def _date_order(matches: list) -> str:
    """"ymd", "dmy" or "mdy" for a file's timestamp matches (see the module docstring)."""
    if any(len(m.group("d1")) == 4 for m in matches):
        return "ymd"
    if any(int(m.group("d1")) > 12 for m in matches):
        return "dmy"
    if any(int(m.group("d2")) > 12 for m in matches):
        return "mdy"
    return "mdy" if any(m.group("ampm") for m in matches) else "dmy"


def _when(match, order: str) -> datetime | None:
    d1, d2, d3 = (int(match.group(k)) for k in ("d1", "d2", "d3"))
    year, month, day = {"ymd": (d1, d2, d3), "dmy": (d3, d2, d1), "mdy": (d3, d1, d2)}[order]
    if year < 100:
        year += 2000
    hour, minute = int(match.group("hour")), int(match.group("minute"))
    ampm = (match.group("ampm") or "").replace(".", "").replace(" ", "").lower()
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    try:
        return datetime(year, month, day, hour, minute, int(match.group("second") or 0))
    except ValueError:
        return None


def whatsapp_messages(text: str, name: str = "<chat>") -> list[dict]:
    """The messages of a WhatsApp text export: [{"sender", "text", "date": datetime | None}],
    in file order, media, system lines and deleted messages dropped (see the module
    docstring). Raises ChatError naming the file when no line has a WhatsApp timestamp."""
    entries = []  # [match, iOS system mark?, [lines]]
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.translate(WIDE_SPACES).rstrip()
        match = _whatsapp_match(line.lstrip("\u200e\u200f\ufeff").translate(INVISIBLE_MARKS).strip())
        if match:
            rest = line.lstrip("\u200e\u200f\ufeff")
            rest = rest[rest.find("]") + 1:] if rest.startswith("[") else rest.split(" - ", 1)[-1]
            sender = WA_SENDER_RE.match(rest.strip())
            marked = bool(sender) and sender.group("text").startswith(("\u200e", "\u200f"))
            entries.append([match, marked, [match.group("rest").strip()]])
        elif entries:
            entries[-1][2].append(_clean_line(line))
    if not entries:
        raise ChatError(f"{name}: not a WhatsApp export (no line starts with a date and time like "
                        "'[31/12/2023, 21:41:07]' or '12/31/23, 9:41 PM - ')")
    order = _date_order([entry[0] for entry in entries])
    messages = []
    for match, marked, lines in entries:
        sender = WA_SENDER_RE.match(lines[0])
        if not sender or marked:
            continue  # a system line ("Alex left", "Messages and calls are end-to-end encrypted")
        body = "\n".join([sender.group("text")] + lines[1:])
        body = WA_EDITED_RE.sub("", re.sub(r"\n{3,}", "\n\n", body)).strip()
        if not body or WA_DROPPED_RE.match(body):
            continue
        who = " ".join(sender.group("sender").split()).lstrip("~ ")  # "~ Alex": a group member not in contacts
        messages.append({"sender": who or sender.group("sender").strip(), "text": body,
                         "date": _when(match, order)})
    return messages


# ---------------------------------------------------------------------------------------
# Telegram

TELEGRAM_PERSONAL_TYPES = ("personal_chat", "bot_chat")


def telegram_text(value) -> str:
    """A Telegram message's "text" (a string, or a list of strings and {"type", "text"}
    entities: bold, link, mention ...) as plain text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part if isinstance(part, str) else str(part.get("text", "")) if isinstance(part, dict) else ""
                       for part in value)
    return ""


def telegram_messages(chat: dict, name: str = "<chat>") -> list[dict]:
    """The messages of one Telegram chat export: [{"sender", "text", "date": datetime |
    None}], service messages, media without a caption, forwarded messages, messages via a
    bot and empty text dropped. Raises ChatError naming the file for a full account export
    (several chats) or a JSON object without a "messages" list."""
    if "messages" not in chat and isinstance(chat.get("chats"), dict):
        chats = chat["chats"].get("list") or []
        names = ", ".join(str(c.get("name")) for c in chats[:5] if isinstance(c, dict))
        raise ChatError(f"{name}: a full Telegram account export ({len(chats)} chats: {names}); export one chat "
                        "(the chat's menu > Export chat history, JSON) and use its result.json")
    if not isinstance(chat.get("messages"), list):
        raise ChatError(f"{name}: JSON but not a Telegram chat export (no 'messages' list)")
    messages = []
    for message in chat["messages"]:
        if not isinstance(message, dict) or message.get("type") != "message":
            continue  # service messages: calls, pins, joins, history cleared ...
        if message.get("forwarded_from") or message.get("via_bot"):
            continue
        text = telegram_text(message.get("text") if "text" in message else message.get("text_entities"))
        text = re.sub(r"\n{3,}", "\n\n", text.translate(INVISIBLE_MARKS)).strip()
        if not text:
            continue  # a photo, sticker, voice message or file without a caption
        sender = message.get("from") or message.get("from_id") or "Deleted Account"
        try:
            when = datetime.fromisoformat(str(message.get("date")))
        except ValueError:
            when = None
        messages.append({"sender": " ".join(str(sender).split()), "text": text, "date": when})
    return messages


# ---------------------------------------------------------------------------------------
# the document

def chat_document(messages: list[dict], *, persona_regex: str, source: str, title: str, doc_id: str,
                  persona_name: str = "") -> dict:
    """Messages -> the interview document parse_transcript returns: {"id", "kind":
    "interview", "title", "date", "year", "month", "source", "file", "turns": [{"speaker",
    "text", "is_persona"}], "speakers", "warnings"}. Consecutive messages of one sender are
    one turn; date is the first message's (ISO, day only). Raises ChatError naming the file
    when there are no messages or no sender matches persona_regex (listing the senders and
    their message counts, most first)."""
    name = str(source)
    if not messages:
        raise ChatError(f"{name}: no messages with text (only media, system lines or nothing)")
    persona = re.compile(persona_regex, re.I)
    counts = collections.Counter(m["sender"] for m in messages)
    if not any(persona.search(sender) for sender in counts):
        senders = ", ".join(f"{s} ({n} message{'s' if n != 1 else ''})" for s, n in counts.most_common())
        raise ChatError(f"{name}: no sender matches persona.speaker_regex {persona_regex!r}; senders: {senders}")
    turns: list[dict] = []
    for message in messages:
        if turns and turns[-1]["speaker"] == message["sender"]:
            turns[-1]["text"] += "\n" + message["text"]
        else:
            turns.append({"speaker": message["sender"], "text": message["text"],
                          "is_persona": bool(persona.search(message["sender"]))})
    speakers = speaker_table(turns)
    warnings = speaker_warnings(name, speakers, persona_regex, persona_name)
    persona_senders = [s["label"] for s in speakers if s["is_persona"]]
    if len(persona_senders) > 1:
        warnings.append(f"{name}: {len(persona_senders)} senders match persona.speaker_regex {persona_regex!r} "
                        f"({', '.join(persona_senders)}); all are counted as the persona")
    first = next((m["date"] for m in messages if m["date"]), None)
    return {"id": doc_id, "kind": "interview", "title": title,
            "date": first.date().isoformat() if first else None,
            "year": first.year if first else None, "month": first.month if first else None,
            "source": name, "file": file_name_of(name), "turns": turns, "speakers": speakers,
            "warnings": warnings}


def _others(messages: list[dict], persona_regex: str) -> list[str]:
    persona = re.compile(persona_regex, re.I)
    return list(dict.fromkeys(m["sender"] for m in messages if not persona.search(m["sender"])))


def _names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} others" if len(names) > 3 else "")


def parse_chat(data, *, persona_regex: str, source: str, persona_name: str = "") -> dict:
    """Parse a chat export (bytes or str): Telegram JSON (a JSON object) or WhatsApp text
    (looks_like_whatsapp), into the document chat_document returns.

    Title: "WhatsApp chat with X" (X from an export name "WhatsApp Chat with X.txt" /
    "WhatsApp Chat - X.txt", else the other senders); for Telegram, "Telegram chat with X"
    for a personal chat, else the chat's name. id: the file stem (slugified; Telegram's
    default "result" becomes "telegram-" and the chat's name). Raises ChatError (a ValueError)
    naming the file for empty or binary input, a file that is neither format, invalid JSON,
    no messages left after dropping media and system lines, or no sender matching
    persona_regex (the message lists the senders with their message counts).
    """
    name = str(source)
    try:
        text = decode_text(data, name)
    except TranscriptError as err:
        raise ChatError(str(err)) from None
    file_name = file_name_of(name)
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    if text.lstrip().startswith("{"):
        try:
            chat = json.loads(text)
        except json.JSONDecodeError as err:
            raise ChatError(f"{name}: not a chat export: invalid JSON ({err})") from None
        if not isinstance(chat, dict):
            raise ChatError(f"{name}: JSON but not a Telegram chat export (not an object with 'messages')")
        messages = telegram_messages(chat, name)
        chat_name = str(chat.get("name") or "") or _names(_others(messages, persona_regex)) or stem
        title = (f"Telegram chat with {chat_name}" if chat.get("type") in TELEGRAM_PERSONAL_TYPES
                 else chat_name)
        doc_id = slugify(f"telegram {chat_name}" if stem.lower() == "result" else stem)
        return chat_document(messages, persona_regex=persona_regex, source=name, title=title, doc_id=doc_id,
                             persona_name=persona_name)
    if not looks_like_whatsapp(text):
        if text.lstrip().startswith("["):
            try:
                json.loads(text)
                raise ChatError(f"{name}: JSON but not a Telegram chat export (not an object with 'messages')")
            except json.JSONDecodeError:
                pass
        raise ChatError(f"{name}: not a chat export: neither Telegram JSON (result.json) nor a WhatsApp text "
                        "export (lines like '[31/12/2023, 21:41:07] Name: ...' or '12/31/23, 9:41 PM - Name: ...')")
    messages = whatsapp_messages(text, name)
    named = re.match(r"^WhatsApp Chat(?: with|\s*-)\s+(.+)$", stem, re.I)
    other = named.group(1).strip() if named else _names(_others(messages, persona_regex))
    title = f"WhatsApp chat with {other}" if other else "WhatsApp chat"
    return chat_document(messages, persona_regex=persona_regex, source=name, title=title, doc_id=slugify(stem),
                         persona_name=persona_name)


# ---------------------------------------------------------------------------------------
# command line

def main(argv=None) -> int:
    """python -m lib.chats parse FILE... --persona REGEX [--speakers]: one JSON object per
    turn (or per sender); warnings go to stderr as "warning: FILE: ..." lines."""
    from lib.transcripts import parse_files_cli

    return parse_files_cli(argv, prog="python -m lib.chats", description=__doc__.split("\n\n")[0],
                           parse=parse_chat, what="chat exports")


if __name__ == "__main__":
    sys.exit(main())
