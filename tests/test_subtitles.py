"""Subtitles (.srt SubRip, .vtt WebVTT) as interview transcripts: the folder persona's fixtures
(tests/fixtures/persona_folder, built from the Trump snapshot by make_fixtures.py) give back
the snapshot's turns, and siblings in other layouts (broadcast ">>" captions, dialogue
dashes, <v.loud> voices, NOTE/STYLE/REGION blocks, tags) read the same way."""
import importlib.util
import json
import re
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lib.subtitles import UNNAMED_SPEAKER, is_subtitles, read_subtitles, subtitles_to_text
from lib.source_files import TranscriptError
from lib.transcripts import parse_transcript

PERSONA = "^(DONALD )?TRUMP$|^Donald Trump$|^Trump$"  # params/trump.yaml persona.speaker_regex
FOLDER = ROOT / "tests/fixtures/persona_folder"
FILES = FOLDER / "files"
LEFTOVER_RE = re.compile(r"-->|\d{1,2}:\d{2}[:.,]\d{2}|<[^>]*>|\{\\|&[a-z]+;|^\d+$|\bWEBVTT\b|\bNOTE\b|♪", re.M)


def make_fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", FOLDER / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixtures():
    return make_fixtures()


def flat(text: str) -> str:
    return " ".join(text.split())


def parse_file(name: str) -> dict:
    path = FILES / name
    return parse_transcript(path.read_bytes(), persona_regex=PERSONA, source=str(path))


def parse_text(text: str, name: str = "talk.srt", persona: str = PERSONA) -> dict:
    return parse_transcript(text, persona_regex=persona, source=name)


def turns_of(doc: dict) -> list[tuple[str, str]]:
    return [(t["speaker"], t["text"]) for t in doc["turns"]]


def assert_clean(doc: dict) -> None:
    """No timing, cue number, tag, escape or header left in any turn."""
    for turn in doc["turns"]:
        assert not LEFTOVER_RE.search(turn["text"]), turn


# ---------------------------------------------------------------------------------------
# the fixtures, made from the snapshot

def test_fixture_files_are_what_make_fixtures_builds(fixtures):
    for name, text in fixtures.build().items():
        if name.endswith((".srt", ".vtt")):
            assert (FILES / name).read_text(encoding="utf-8") == text, f"rerun make_fixtures.py ({name})"


@pytest.mark.parametrize("name, speakers", [("interview.srt", ("ANDERSON COOPER", "DONALD TRUMP")),
                                            ("interview.vtt", ("Chris Cuomo", "Donald Trump"))])
def test_fixture_gives_back_the_snapshot_turns(fixtures, name, speakers):
    doc = parse_file(name)
    source, first, count = fixtures.SRT_SOURCE if name.endswith(".srt") else fixtures.VTT_SOURCE
    snapshot = fixtures.turns(source)[first:first + count]
    # every turn, split over several cues (a cue without a label continues the turn), comes back whole
    assert [(t["speaker"].upper(), flat(t["text"])) for t in doc["turns"]] == \
           [(t["speaker"], flat(t["text"])) for t in snapshot]
    assert [flat(t["text"]) for t in doc["turns"] if t["is_persona"]] == [flat(t) for t in fixtures.expected()[name]]
    assert [s["label"] for s in doc["speakers"]] == list(speakers)
    assert doc["speakers"][1]["is_persona"] and not doc["speakers"][0]["is_persona"]
    assert (doc["kind"], doc["title"], doc["file"]) == ("interview", "interview", name)
    assert doc["warnings"] == []
    assert_clean(doc)
    # a cue's lines are joined with spaces, not kept as line breaks
    assert all("\n" not in t["text"] for t in doc["turns"])


def test_the_cli_prints_the_same_turns_for_subtitles_as_for_their_txt(tmp_path):
    files, txts = [str(FILES / "interview.srt"), str(FILES / "interview.vtt")], []
    for file in files:
        txt = tmp_path / (file.rsplit("/", 1)[1].replace(".", "_") + ".txt")
        txt.write_text(subtitles_to_text((FILES / file).read_bytes(), file))
        txts.append(str(txt))
    proc = subprocess.run([PYTHON, "-m", "lib.transcripts", "parse", *files, *txts, "--persona", PERSONA],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    by_file = {f: [{k: v for k, v in r.items() if k != "file"} for r in rows if r["file"] == f] for f in files + txts}
    assert by_file[files[0]] == by_file[txts[0]] and len(by_file[files[0]]) == 12
    assert by_file[files[1]] == by_file[txts[1]] and len(by_file[files[1]]) == 12
    assert by_file[files[0]][1] == {"speaker": "DONALD TRUMP", "is_persona": True,
                                    "text": "I -- I haven't seen it. I really don't know. I haven't seen it. I have only --."}
    speakers = subprocess.run([PYTHON, "-m", "lib.transcripts", "parse", files[1], "--persona", PERSONA, "--speakers"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert [json.loads(line)["label"] for line in speakers.stdout.splitlines()] == ["Chris Cuomo", "Donald Trump"]


# ---------------------------------------------------------------------------------------
# siblings in other layouts

BROADCAST_SRT = """\
1
00:00:01,000 --> 00:00:03,500
>> JAKE TAPPER: WELCOME BACK.
>> DONALD TRUMP: THANK YOU, JAKE.

2
00:00:03,600 --> 00:00:06,000
<i>>> JAKE TAPPER: WHAT ABOUT</i>
THE WALL?
3
00:00:06,100 --> 00:00:09,000
{\\an8}>> DONALD TRUMP: WE'RE GOING TO BUILD IT,
<font color="#ffffff">BELIEVE ME.</font>

4
00:00:09,100 --> 00:00:10,000
[ APPLAUSE ]

5
00:00:10,100 --> 00:00:12,000
AND MEXICO WILL PAY.

6
00:00:12,100 --> 00:00:13,500
>> WHO ELSE?
"""


def test_broadcast_captions_with_chevrons_and_tags():
    doc = parse_text(BROADCAST_SRT, "tapper.srt")
    assert turns_of(doc) == [
        ("JAKE TAPPER", "WELCOME BACK."), ("DONALD TRUMP", "THANK YOU, JAKE."),
        ("JAKE TAPPER", "WHAT ABOUT THE WALL?"),
        # a cue without a label continues the turn; a missing blank line before "3" is no text
        ("DONALD TRUMP", "WE'RE GOING TO BUILD IT, BELIEVE ME. AND MEXICO WILL PAY."),
        (UNNAMED_SPEAKER, "WHO ELSE?"),  # a bare ">>" is a new speaker, never the persona
    ]
    assert [t["is_persona"] for t in doc["turns"]] == [False, True, False, True, False]
    assert_clean(doc)
    assert len(doc["warnings"]) == 1 and "tapper.srt" in doc["warnings"][0] and "without a name" in doc["warnings"][0]


VOICES_VTT = """\
WEBVTT - an interview

STYLE
::cue(v[voice="Donald Trump"]) { color: red }

NOTE the voices are named in the tags,
not in the text

REGION
id:bottom
width:40%

intro
00:00.500 --> 00:02.000 region:bottom
<v.loud Sean Hannity><b>Mr. Trump</b>, welcome &amp; thank you.</v>

00:02.000 --> 00:05.000
<v.loud.slow Donald Trump>Thank <00:00:02.500><c.yellow>you</c>, Sean.
<00:00:03.000>It's &lt;really&gt; great.</v> <v Sean Hannity>Great.</v>

NOTE a comment between cues

3
00:05.000 --> 00:06.500
<v Donald Trump>We will win</v>

00:06.500 --> 00:08.000
so much. <i>(LAUGHTER)</i>

00:08.000 --> 00:09.000
<v bob>Hi there.
<v Donald Trump>Hello, Bob.
"""


def test_webvtt_voices_classes_and_blocks_are_read():
    doc = parse_text(VOICES_VTT, "hannity.vtt")
    assert turns_of(doc) == [
        ("Sean Hannity", "Mr. Trump, welcome & thank you."),
        ("Donald Trump", "Thank you, Sean. It's <really> great."),
        ("Sean Hannity", "Great."),
        ("Donald Trump", "We will win so much."),  # the next cue has no voice: the same turn
        ("bob", "Hi there."),  # a voice name needs no speaker label's shape
        ("Donald Trump", "Hello, Bob."),
    ]
    assert doc["warnings"] == []
    for turn in doc["turns"]:  # no timing, tag or NOTE text ("<really>" is the escaped text, kept)
        assert not re.search(r"-->|\d:\d\d|<(?!really>)[^>]*>|&amp;|NOTE|region|::cue", turn["text"]), turn


def test_dialogue_dashes_give_each_line_its_speaker():
    srt = ("1\n00:00:01,000 --> 00:00:03,000\n- ANDERSON COOPER: Do the ratings worry you?\n"
           "- DONALD TRUMP: I don't think so.\n\n"
           "2\n00:00:03,000 --> 00:00:05,000\nI have turned a lot of them around -- believe me.\n\n"
           "3\n00:00:05,000 --> 00:00:06,000\n- ANDERSON COOPER: Really?\n- Yes.\n")
    doc = parse_text(srt, "cooper.srt")
    assert turns_of(doc) == [("ANDERSON COOPER", "Do the ratings worry you?"),
                             ("DONALD TRUMP", "I don't think so. I have turned a lot of them around -- believe me."),
                             ("ANDERSON COOPER", "Really?"), (UNNAMED_SPEAKER, "Yes.")]


def test_subrip_is_found_by_its_content_under_any_name():
    srt = "1\n00:00:01,000 --> 00:00:02,000\nHOST: Hello.\n\n2\n00:00:02,000 --> 00:00:03,000\nDONALD TRUMP: Hi.\n"
    assert is_subtitles(srt, "talk.txt") and is_subtitles("WEBVTT\n\n00:01.000 --> 00:02.000\nx\n")
    assert is_subtitles("anything", "https://example.com/a/talk.VTT")
    assert not is_subtitles("HOST: Hello.\n[00:00:12] DONALD TRUMP: Hi.\n", "talk.txt")
    doc = parse_text(srt.encode(), "talk.txt")
    assert turns_of(doc) == [("HOST", "Hello."), ("DONALD TRUMP", "Hi.")]


def test_a_title_case_label_said_once_is_text_and_reported():
    srt = ("1\n00:00:01,000 --> 00:00:02,000\nDonald Trump: We have to be strong.\n\n"
           "2\n00:00:02,000 --> 00:00:03,000\nListen: really strong.\n\n"
           "3\n00:00:03,000 --> 00:00:04,000\nQuestion: who pays?\n\n"
           "4\n00:00:04,000 --> 00:00:05,000\nDonald Trump: Mexico.\n")
    doc = parse_text(srt, "speech.srt")
    assert [t["speaker"] for t in doc["turns"]] == ["Donald Trump"]
    assert flat(doc["turns"][0]["text"]) == "We have to be strong. Listen: really strong. Question: who pays? Mexico."
    assert len(doc["warnings"]) == 1
    assert "speech.srt: line 11: 'Question:' looks like a speaker label" in doc["warnings"][0]


def test_cues_before_the_first_speaker_are_skipped_with_a_warning():
    vtt = ("WEBVTT\nDate: 2016-08-19\n\n00:01.000 --> 00:02.000\n[MUSIC]\n\n00:02.000 --> 00:03.000\n"
           "Welcome to the show.\n\n00:03.000 --> 00:04.000\n<v Chris Cuomo>Thanks for coming.\n\n"
           "00:04.000 --> 00:05.000\n<v Donald Trump>Thank you.\n")
    doc = parse_text(vtt, "cuomo.vtt")
    assert turns_of(doc) == [("Chris Cuomo", "Thanks for coming."), ("Donald Trump", "Thank you.")]
    assert (doc["date"], doc["year"], doc["month"]) == ("2016-08-19", 2016, 8)  # a "Date:" header line
    assert len(doc["warnings"]) == 1 and "cuomo.vtt: 1 cue line(s) before the first named speaker" in doc["warnings"][0]


@pytest.mark.parametrize("name, text", [
    ("plain.srt", "1\n00:00:01,000 --> 00:00:02,000\nWe will win.\n\n2\n00:00:02,000 --> 00:00:03,000\n"
                  "So much winning.\n"),
    ("plain.vtt", "WEBVTT\n\n00:01.000 --> 00:02.000\n<i>We will win.</i>\n\n00:02.000 --> 00:03.000\n>> So much.\n"),
])
def test_subtitles_that_name_no_speaker_are_refused(name, text):
    with pytest.raises(TranscriptError, match=rf"^{re.escape(name)}: the subtitles name no speakers .*whose words"):
        parse_text(text, name)


def test_empty_subtitles_and_a_missing_persona_are_errors():
    with pytest.raises(TranscriptError, match="empty.vtt: no subtitle cues with text"):
        parse_text("WEBVTT\n\nNOTE nothing here\n", "empty.vtt")
    with pytest.raises(TranscriptError, match=r"host.srt: no turn by the persona .*speakers: HOST"):
        parse_text("1\n00:00:01,000 --> 00:00:02,000\nHOST: Hello.\n", "host.srt")


def test_read_subtitles_gives_labelled_lines_and_their_source_lines():
    subs = read_subtitles(BROADCAST_SRT, "tapper.srt")
    assert subs.lines[:3] == ["JAKE TAPPER: WELCOME BACK.", "DONALD TRUMP: THANK YOU, JAKE.",
                              "JAKE TAPPER: WHAT ABOUT THE WALL?"]
    assert subs.numbers[:3] == [3, 4, 8]
    assert subs.speakers == ["JAKE TAPPER", "DONALD TRUMP", UNNAMED_SPEAKER]
    assert all(label is None or line.startswith(label.name + ":") for line, label in zip(subs.lines, subs.labels))
