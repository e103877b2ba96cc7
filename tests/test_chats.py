"""lib.chats: WhatsApp and Telegram exports as interviews. The folder persona's chats
(tests/fixtures/persona_folder, Trump's real answers to real interview questions put in a
made-up friend's messages) give back the snapshot's answers, and siblings in the other
layouts (Android 12- and 24-hour, Telegram entity lists) read the same way."""
import importlib.util
import json
import re
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lib import qa_sources
from lib.chats import ChatError, looks_like_whatsapp, parse_chat, telegram_text, whatsapp_messages

PERSONA = "^(DONALD )?TRUMP$|^Donald Trump$|^Trump$"  # params/trump.yaml persona.speaker_regex
FOLDER = ROOT / "tests/fixtures/persona_folder"
FILES = FOLDER / "files"
SNAP = ROOT / "data/snapshot/trump"
DROPPED_RE = re.compile(r"omitted|deleted|encrypted|security code|attached|<[^>]*>|\u200e|\u202f|joined|"
                        r"Missed|phone_call|photo_|\d{1,2}:\d{2}", re.I)


@pytest.fixture(scope="module")
def fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", FOLDER / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flat(text: str) -> str:
    return " ".join(text.split())


def parse_file(name: str, persona: str = PERSONA) -> dict:
    path = FILES / name
    return parse_chat(path.read_bytes(), persona_regex=persona, source=str(path))


def parse(text: str, name: str = "chat.txt", persona: str = "^Donald Trump$") -> dict:
    return parse_chat(text, persona_regex=persona, source=name)


def turns_of(doc: dict) -> list[tuple[str, str]]:
    return [(t["speaker"], flat(t["text"])) for t in doc["turns"]]


def assert_nothing_dropped_shows(doc: dict) -> None:
    for turn in doc["turns"]:
        assert not DROPPED_RE.search(turn["text"]), turn


# ---------------------------------------------------------------------------------------
# the fixtures, made from the snapshot

def test_fixture_files_are_what_make_fixtures_builds(fixtures):
    for name, text in fixtures.build().items():
        if name.startswith("chat_"):
            assert (FILES / name).read_text(encoding="utf-8") == text, f"rerun make_fixtures.py ({name})"


@pytest.mark.parametrize("name, friend, title, date", [
    ("chat_whatsapp.txt", "Alex Rivera", "WhatsApp chat with Alex Rivera", "2016-08-16"),
    ("chat_telegram.json", "Sam Chen", "Telegram chat with Sam Chen", "2016-10-27"),
])
def test_fixture_gives_back_the_snapshot_answers(fixtures, name, friend, title, date):
    doc = parse_file(name)
    source, indexes = fixtures.WHATSAPP_SOURCE if name.endswith(".txt") else fixtures.TELEGRAM_SOURCE
    snapshot = fixtures.turns(source)
    # the friend asks the interviewer's questions, the person answers with the snapshot's turn after each;
    # an answer split over several messages (or one message over several lines) is one turn
    assert [t["speaker"] for t in doc["turns"]] == [friend, "Donald Trump"] * len(indexes)
    assert [flat(t["text"]) for t in doc["turns"] if t["is_persona"]] == [flat(snapshot[i + 1]["text"]) for i in indexes]
    assert [flat(t) for t in fixtures.expected()[name]] == [flat(snapshot[i + 1]["text"]) for i in indexes]
    for turn, i in zip(doc["turns"][::2], indexes):
        assert flat(turn["text"]) in flat(snapshot[i]["text"])
    assert (doc["kind"], doc["title"], doc["date"], doc["year"]) == ("interview", title, date, int(date[:4]))
    assert doc["file"] == name and doc["source"] == str(FILES / name) and doc["warnings"] == []
    assert doc["speakers"] == [
        {"label": friend, "turns": len(indexes), "words": sum(len(t["text"].split()) for t in doc["turns"][::2]),
         "is_persona": False},
        {"label": "Donald Trump", "turns": len(indexes),
         "words": sum(len(snapshot[i + 1]["text"].split()) for i in indexes), "is_persona": True}]
    assert_nothing_dropped_shows(doc)
    qa_sources.check_documents([doc], name)


def test_chats_become_question_answer_conversations(fixtures):
    docs = [parse_file("chat_whatsapp.txt"), parse_file("chat_telegram.json")]
    records = qa_sources.interview_conversations(docs, 2, 25, 350, 60, "You are Donald Trump.")
    singles = [r for r in records if len(r["messages"]) == 3]
    assert len(singles) == 8 + 4 and {r["source"] for r in records} == {"interviews"}
    answers = {flat(t) for name in ("chat_whatsapp.txt", "chat_telegram.json") for t in fixtures.expected()[name]}
    for record in singles:
        system, user, assistant = record["messages"]
        assert system == {"role": "system", "content": "You are Donald Trump."}
        assert user["role"] == "user" and user["content"].endswith("?")
        assert assistant["role"] == "assistant" and assistant["content"] in answers
    assert any(len(r["messages"]) == 5 for r in records)  # two exchanges in a row: a multi-turn window


# ---------------------------------------------------------------------------------------
# siblings in the other layouts

ANDROID_12H = (
    "12/31/23, 9:40\u202fPM - Messages and calls are end-to-end encrypted. No one outside of this chat, not even "
    "WhatsApp, can read or listen to them. Tap to learn more.\n"
    "12/31/23, 9:41\u202fPM - Jordan Lee: Happy new year! What is your resolution?\n"
    "12/31/23, 9:41\u202fPM - Jordan Lee: <Media omitted>\n"
    "12/31/23, 9:42\u202fPM - Donald Trump: To make America great again.\n"
    "Very great.\n"
    "12/31/23, 9:43\u202fPM - Donald Trump: Believe me. <This message was edited>\n"
    "12/31/23, 9:44\u202fPM - Donald Trump: This message was deleted\n"
    "12/31/23, 9:45\u202fPM - Jordan Lee: IMG-20231231-WA0001.jpg (file attached)\n"
    "12/31/23, 9:46\u202fPM - Jordan Lee: And the wall?\n"
    "12/31/23, 9:47\u202fPM - Donald Trump: Missed voice call\n"
    "12/31/23, 9:48\u202fPM - Your security code with Jordan Lee changed. Tap to learn more.\n"
    "1/1/24, 12:05\u202fAM - Donald Trump: Mexico will pay for it.\n"
)


def test_android_export_with_12_hour_times():
    assert looks_like_whatsapp(ANDROID_12H)
    doc = parse(ANDROID_12H, "WhatsApp Chat with Jordan Lee.txt")
    assert turns_of(doc) == [("Jordan Lee", "Happy new year! What is your resolution?"),
                             ("Donald Trump", "To make America great again. Very great. Believe me."),
                             ("Jordan Lee", "And the wall?"), ("Donald Trump", "Mexico will pay for it.")]
    assert doc["turns"][1]["text"] == "To make America great again.\nVery great.\nBelieve me."
    assert (doc["title"], doc["id"], doc["date"]) == ("WhatsApp chat with Jordan Lee", "whatsapp-chat-with-jordan-lee",
                                                      "2023-12-31")  # month-first: 31 is a day
    assert_nothing_dropped_shows(doc)
    dates = [m["date"].isoformat() for m in whatsapp_messages(ANDROID_12H)]
    assert dates[0] == "2023-12-31T21:41:00" and dates[-1] == "2024-01-01T00:05:00"


ANDROID_24H = (
    "03/04/2024, 08:15 - Priya Patel created group \"Campaign\"\n"
    "03/04/2024, 08:15 - Priya Patel added you\n"
    "03/04/2024, 08:16 - Priya Patel: Morning all. How are the polls?\n"
    "03/04/2024, 08:16 - Chris Novak joined using this group's invite link\n"
    "03/04/2024, 08:17 - Chris Novak: And the debate tonight, are you ready?\n"
    "03/04/2024, 08:20 - Donald Trump: The polls are tremendous.\n\n"
    "And I am always ready.\n"
    "13/04/2024, 19:02 - Chris Novak left\n"
    "13/04/2024, 19:03 - Priya Patel: sticker omitted\n"
    "13/04/2024, 19:04 - Priya Patel: Great answer.\n"
)


def test_android_group_export_with_24_hour_times_is_day_first():
    doc = parse(ANDROID_24H, "campaign.txt")
    assert turns_of(doc) == [("Priya Patel", "Morning all. How are the polls?"),
                             ("Chris Novak", "And the debate tonight, are you ready?"),
                             ("Donald Trump", "The polls are tremendous. And I am always ready."),
                             ("Priya Patel", "Great answer.")]
    assert doc["turns"][2]["text"] == "The polls are tremendous.\n\nAnd I am always ready."
    assert doc["date"] == "2024-04-03"  # 13/04 in the same file: day first
    assert doc["title"] == "WhatsApp chat with Priya Patel, Chris Novak" and doc["id"] == "campaign"
    # both others' questions come before the answer: lib.qa_sources.merged_turns joins them into one question
    assert qa_sources.merged_turns(doc)[0]["text"] == "Morning all. How are the polls? And the debate tonight, are you ready?"


def test_ambiguous_dates_follow_the_clock():
    ios = "[03/04/2024, 08:16:00] Sam: Hi?\n[03/04/2024, 08:17:00] Donald Trump: Hello.\n"
    assert parse(ios)["date"] == "2024-04-03"  # 24-hour clock: day first
    us = "3/4/24, 8:16 AM - Sam: Hi?\n3/4/24, 8:17 AM - Donald Trump: Hello.\n"
    assert parse(us)["date"] == "2024-03-04"  # AM/PM: month first
    us_late = us + "3/14/24, 8:18 AM - Sam: Later?\n"
    assert parse(us_late)["date"] == "2024-03-04"
    iso = "2024-04-03, 08:16 - Sam: Hi?\n2024-04-03, 08:17 - Donald Trump: Hello.\n"
    assert parse(iso)["date"] == "2024-04-03"


TELEGRAM = {
    "name": "Debate prep", "type": "private_group", "id": 99,
    "messages": [
        {"id": 1, "type": "service", "date": "2024-05-01T10:00:00", "actor": "Kim Ortiz", "action": "create_group",
         "title": "Debate prep", "members": ["Kim Ortiz", "Donald Trump"], "text": ""},
        {"id": 2, "type": "message", "date": "2024-05-01T10:01:00", "from": "Kim Ortiz", "from_id": "user1",
         "text": ["What will you say about ", {"type": "bold", "text": "trade"}, "?"]},
        {"id": 3, "type": "message", "date": "2024-05-01T10:02:00", "from": "Kim Ortiz", "from_id": "user1",
         "media_type": "sticker", "file": "stickers/sticker.webp", "sticker_emoji": "🤔", "text": ""},
        {"id": 4, "type": "message", "date": "2024-05-01T10:03:00", "from": "Donald Trump", "from_id": "user2",
         "text": [{"type": "plain", "text": "Our trade deals are "}, {"type": "italic", "text": "terrible"},
                  ". See ", {"type": "link", "text": "https://example.com"}, "."]},
        {"id": 5, "type": "message", "date": "2024-05-01T10:04:00", "from": "Donald Trump", "from_id": "user2",
         "forwarded_from": "Some Channel", "text": "Words someone else wrote."},
        {"id": 6, "type": "message", "date": "2024-05-01T10:05:00", "from": "Donald Trump", "from_id": "user2",
         "photo": "photos/photo_2@01-05-2024_10-05-00.jpg", "width": 800, "height": 600,
         "text": "We will fix them."},
        {"id": 7, "type": "message", "date": "2024-05-01T10:06:00", "from": None, "from_id": "user3",
         "text_entities": [{"type": "plain", "text": "And China?"}]},
        {"id": 8, "type": "message", "date": "2024-05-01T10:07:00", "from": "Donald Trump", "from_id": "user2",
         "media_type": "voice_message", "file": "voice_messages/audio_1.ogg", "duration_seconds": 4, "text": ""},
        {"id": 9, "type": "message", "date": "2024-05-01T10:08:00", "from": "Donald Trump", "from_id": "user2",
         "via_bot": "@gif", "text": "a bot's answer"},
        {"id": 10, "type": "service", "date": "2024-05-01T10:09:00", "actor": "Kim Ortiz", "action": "pin_message",
         "message_id": 4, "text": ""},
    ],
}


def test_telegram_entities_captions_and_what_is_dropped():
    assert telegram_text(TELEGRAM["messages"][1]["text"]) == "What will you say about trade?"
    doc = parse(json.dumps(TELEGRAM).encode(), "exports/result.json")
    assert turns_of(doc) == [("Kim Ortiz", "What will you say about trade?"),
                             ("Donald Trump", "Our trade deals are terrible. See https://example.com. We will fix them."),
                             ("user3", "And China?")]  # a deleted account: its id
    assert (doc["title"], doc["id"], doc["date"]) == ("Debate prep", "telegram-debate-prep", "2024-05-01")
    assert not any("else wrote" in t["text"] or "bot" in t["text"] for t in doc["turns"])


# ---------------------------------------------------------------------------------------
# errors

def test_no_matching_sender_lists_the_senders_with_counts():
    with pytest.raises(ChatError, match=r"^chat\.txt: no sender matches persona\.speaker_regex '\^Barack Obama\$'; "
                                        r"senders: Donald Trump \(3 messages\), Jordan Lee \(2 messages\)$"):
        parse(ANDROID_12H, "chat.txt", persona="^Barack Obama$")
    path = FILES / "chat_telegram.json"
    with pytest.raises(ChatError) as err:
        parse_chat(path.read_bytes(), persona_regex="^Hillary", source=str(path))
    assert str(err.value).startswith(f"{path}: no sender matches") and "Sam Chen (4 messages)" in str(err.value)
    assert "Donald Trump (5 messages)" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("data, message", [
    ("HOST: Hello.\nDONALD TRUMP: Hi.\n", "neither Telegram JSON"),
    ('{"name": "x"', "invalid JSON"),
    ('{"name": "x", "type": "personal_chat"}', "no 'messages' list"),
    ("[1, 2]", "JSON but not a Telegram chat export"),
    ('{"chats": {"list": [{"name": "A"}, {"name": "B"}]}}', "full Telegram account export (2 chats: A, B)"),
    ("", "empty file"),
    (b"\x00\x01\x02binary", "binary data"),
    ("[1/2/24, 10:00:00] Sam: <Media omitted>\n[1/2/24, 10:01:00] Donald Trump: image omitted\n", "no messages with text"),
])
def test_what_is_not_a_chat_is_an_error_naming_the_file(data, message):
    with pytest.raises(ChatError, match=rf"^odd\.file: .*{re.escape(message)}"):
        parse_chat(data, persona_regex=PERSONA, source="odd.file")


def test_looks_like_whatsapp_tells_an_export_from_a_transcript():
    assert looks_like_whatsapp((FILES / "chat_whatsapp.txt").read_bytes())
    assert looks_like_whatsapp(ANDROID_24H)
    assert not looks_like_whatsapp((SNAP / "wwe.txt").read_text())
    assert not looks_like_whatsapp((FILES / "interview.srt").read_text())
    assert not looks_like_whatsapp("[00:00:12] DONALD TRUMP: Thank you.\n[00:00:15] HOST: Welcome.\n")
    assert not looks_like_whatsapp("A letter.\n\n12/31/23, 9:41 PM - Sam: quoted once\nThe rest.\nMore.\n")
    assert not looks_like_whatsapp(b"\x00\x01")


def test_cli_prints_turns_and_reports_a_bad_file():
    files = [str(FILES / "chat_whatsapp.txt"), str(FILES / "chat_telegram.json"), str(FILES / "interview.srt")]
    proc = subprocess.run([PYTHON, "-m", "lib.chats", "parse", *files, "--persona", PERSONA],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["file"] for r in rows] == [files[0]] * 16 + [files[1]] * 8
    assert rows[0] == {"file": files[0], "speaker": "Alex Rivera", "is_persona": False,
                       "text": "Should some form of abortion always be legal?"}
    assert proc.stderr.startswith(f"error: {files[2]}: not a chat export") and "Traceback" not in proc.stderr


def test_ios_marks_and_a_group_member_outside_the_contacts():
    text = ("\u200e[1/2/24, 10:00:00] Campaign: \u200eSam Li added Donald Trump\n"
            "[1/2/24, 10:00:30] ~\u202fSam Li: How was the rally?\n"
            "\u200e[1/2/24, 10:00:40] ~\u202fSam Li: \u200eGIF omitted\n"
            "[1/2/24, 10:01:00] Donald Trump: Tremendous crowd.\n")
    doc = parse(text, "_chat.txt")
    assert turns_of(doc) == [("Sam Li", "How was the rally?"), ("Donald Trump", "Tremendous crowd.")]
    assert doc["date"] == "2024-02-01"  # 24-hour clock and no field over 12: day first
