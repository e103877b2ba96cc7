"""Transcript layouts users really have (tests/fixtures/transcripts, copied from the shared
cases), their unseen siblings, and the warnings that keep other people's words out of the
persona's turns."""
import re
import subprocess

import pytest

from lib.speaker_labels import LABEL_LAYOUTS, match_label
from lib.transcripts import parse_transcript
from test_transcripts import PERSONA, PYTHON, ROOT, SNAP

CASES = ROOT / "tests/fixtures/transcripts"
TIMESTAMP_RE = re.compile(r"\d{1,2}:\d{2}")


def parse_text(text: str, name: str = "sibling.txt", persona: str = PERSONA) -> dict:
    return parse_transcript(text, persona_regex=persona, source=name)


def parse_case(name: str) -> dict:
    path = CASES / name
    return parse_transcript(path.read_bytes(), persona_regex=PERSONA, source=str(path))


def persona_texts(doc: dict) -> list[str]:
    return [t["text"] for t in doc["turns"] if t["is_persona"]]


def test_every_layout_reads_its_own_example():
    for layout in LABEL_LAYOUTS:
        example = layout.example.split("   [")[0]
        label = match_label(example)
        assert label is not None and label.layout == layout.name, (layout.name, example, label)
        assert label.name in ("DONALD TRUMP", "Donald Trump")
        assert not TIMESTAMP_RE.search(label.rest)


def test_labels_with_digits_keep_the_interviewer_out_of_the_persona_turn():
    doc = parse_case("speaker_digit.txt")
    assert [t["speaker"] for t in doc["turns"]] == ["Speaker 1", "Donald Trump"] * 2
    assert persona_texts(doc) == ["Thank you, great to be here.", "Fix trade. Our deals are terrible."]
    assert doc["warnings"] == []


@pytest.mark.parametrize("interviewer", ["SPEAKER_00", "Speaker 2", "SPEAKER 1", "Speaker #3", "Guest_2"])
def test_diarization_labels_are_speakers(interviewer):
    persona_label = "SPEAKER_01" if interviewer.isupper() else "Donald Trump"
    text = (f"{interviewer}: So what would you change first?\n{persona_label}: Trade, believe me.\n"
            f"{interviewer}: And then?\n{persona_label}: Then the border.\n")
    doc = parse_text(text, persona=f"^{persona_label}$")
    assert [t["speaker"] for t in doc["turns"]] == [interviewer, persona_label] * 2
    assert persona_texts(doc) == ["Trade, believe me.", "Then the border."]


def test_label_then_timestamp_then_text_on_the_next_line():
    doc = parse_case("rev_style.txt")
    assert [t["speaker"] for t in doc["turns"]] == ["Speaker 1", "Donald Trump"] * 3
    assert persona_texts(doc) == [
        "Thank you. It's a great honor to be here, a tremendous crowd.",
        "The first thing, we renegotiate. We have deals that are a disaster, total disaster.",
        "Very quickly. You'd be amazed how fast."]
    assert not any(TIMESTAMP_RE.search(t["text"]) for t in doc["turns"])


@pytest.mark.parametrize("template", [
    "{name}: (00:00:09)\n{text}\n",      # hours too
    "{name}: [00:09]\n{text}\n",          # square brackets
    "{name}  0:09\n{text}\n",             # Otter: label and time alone on a line, no colon
    "{name} (00:09):\n{text}\n",          # time inside the label, text below
    "[00:00:09] {name}: {text}\n",        # time before the label
    "00:00:09 {name}: {text}\n",          # bare time before the label
    "{name} (00:00:09): {text}\n",        # time inside the label
    "{name} [00:09]: {text}\n",
    "{name}:\t00:00:09\t{text}\n",        # tab-separated label, time, text
    "{name}\t00:00:09\t{text}\n",
    "00:00:09\t{name}\t{text}\n",         # tab-separated time, label, text
])
def test_timestamped_label_layouts(template):
    turns = [("Jake Tapper", "Welcome back. What is your plan on trade?"),
             ("Donald Trump", "We renegotiate everything, 10:30 in the morning if we have to."),
             ("Jake Tapper", "Even NAFTA?"),
             ("Donald Trump", "Especially NAFTA, a disaster.")]
    doc = parse_text("".join(template.format(name=n, text=t) for n, t in turns))
    assert [(t["speaker"], t["text"]) for t in doc["turns"]] == turns


def test_timestamps_inside_a_turn_are_removed():
    text = ("HOST: [00:00:01] Welcome.\nDONALD TRUMP: Thank you. [00:00:04]\n[00:00:09] It's great to be here.\n"
            "(00:00:15)\nReally great.\nHOST: Thanks.\n")
    doc = parse_text(text)
    assert doc["turns"][1]["text"] == "Thank you.\n\nIt's great to be here.\n\nReally great."
    assert doc["turns"][0]["text"] == "Welcome."


def test_timestamp_in_the_label_is_not_a_reason_to_drop_the_interview():
    doc = parse_case("ts_in_label.txt")
    assert [t["speaker"] for t in doc["turns"]] == ["HOST", "DONALD TRUMP"] * 2
    assert persona_texts(doc) == ["Thank you very much, great to be here.",
                                  "They said the same thing before. We proved them wrong every single time."]


def test_a_label_with_the_persona_name_that_the_regex_misses_is_reported():
    doc = parse_case("name_variants.txt")
    speakers = {s["label"]: s for s in doc["speakers"]}
    assert speakers["PRESIDENT TRUMP"] == {"label": "PRESIDENT TRUMP", "turns": 2, "words": 15, "is_persona": False}
    assert speakers["TRUMP"]["is_persona"] and speakers["HOST"]["turns"] == 3
    assert any("'PRESIDENT TRUMP'" in w and "name_variants.txt" in w for w in doc["warnings"]), doc["warnings"]
    # a sibling with no bare surname: the variant alone is still reported
    doc = parse_text("HOST: Welcome.\nDONALD TRUMP: Thanks.\nHOST: And?\nMR. TRUMP: Jobs.\n")
    assert [w for w in doc["warnings"] if "'MR. TRUMP'" in w and "speaker_regex" in w]


def test_a_bare_surname_beside_a_full_name_is_reported_with_both_labels():
    doc = parse_case("same_surname.txt")
    assert len(doc["warnings"]) == 1
    assert "'TRUMP'" in doc["warnings"][0] and "'ERIC TRUMP'" in doc["warnings"][0]
    assert doc["warnings"][0].startswith(str(CASES / "same_surname.txt") + ": ")
    # a sibling: the family's other names, title-case labels
    doc = parse_text("Host: Ivanka, welcome.\nIvanka Trump: Thank you.\nHost: And you, sir?\nTrump: Great.\n"
                     "Host: Ivanka?\nIvanka Trump: Yes.\nHost: Thanks.\nTrump: Thank you.\n")
    assert any("'Trump'" in w and "'Ivanka Trump'" in w for w in doc["warnings"])


def test_a_line_that_looks_like_a_label_but_is_not_read_as_one_is_reported():
    text = ("JAKE TAPPER: Your plan?\nDONALD TRUMP: We build.\nSpeaker B (translated): Is that real?\n"
            "JAKE TAPPER: Go on.\nDONALD TRUMP: Very real.\n")
    doc = parse_text(text)
    assert persona_texts(doc)[0] == "We build.\n\nSpeaker B (translated): Is that real?"  # kept, but...
    assert doc["warnings"] == [
        "sibling.txt: line 3: 'Speaker B (translated):' looks like a speaker label but was not read as one, "
        "so the line is text of DONALD TRUMP's turn (the persona)"]
    # prose with a colon is not reported
    doc = parse_text("DONALD TRUMP: I said: believe me.\nNumber One: we win.\nHOST: Thanks.\nDONALD TRUMP: Bye.\n")
    assert doc["warnings"] == []


def test_a_crowd_interjection_does_not_take_the_speech_that_follows():
    text = ("DONALD TRUMP: Thank you, Florida.\n\nAUDIENCE: Lock her up! Lock her up!\n\n"
            "She shouldn't be allowed to run for president.\n\nWe will win.\n")
    doc = parse_text(text)
    assert [(t["speaker"], t["text"]) for t in doc["turns"]] == [
        ("DONALD TRUMP", "Thank you, Florida."), ("AUDIENCE", "Lock her up! Lock her up!"),
        ("DONALD TRUMP", "She shouldn't be allowed to run for president.\n\nWe will win.")]


def test_snapshot_speakers_and_warnings():
    """The committed snapshot: every speaker is reported, and the only warnings are Trump's
    family, whose labels carry his surname and are rightly not him."""
    warnings, persona_turns = [], 0
    for path in sorted(SNAP.glob("*.txt")):
        doc = parse_transcript(path.read_bytes(), persona_regex=PERSONA, source=path.name, persona_name="Donald Trump")
        assert sum(s["turns"] for s in doc["speakers"]) == len(doc["turns"])
        assert sum(s["words"] for s in doc["speakers"]) == sum(len(t["text"].split()) for t in doc["turns"])
        warnings += doc["warnings"]
        persona_turns += sum(t["is_persona"] for t in doc["turns"])
    named = sorted(re.search(r": '([^']+)'", w).group(1) for w in warnings)
    assert named == ["DONALD TRUMP JR.", "ERIC TRUMP", "MELANIA TRUMP", "TIFFANY TRUMP"]
    assert persona_turns == 2379  # as before layouts and warnings: none lost or gained


def test_cli_reports_speakers_and_warnings_on_stderr():
    files = [str(CASES / "same_surname.txt"), str(CASES / "name_variants.txt")]
    proc = subprocess.run([PYTHON, "-m", "lib.transcripts", "parse", *files, "--persona", PERSONA, "--speakers"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = [__import__("json").loads(line) for line in proc.stdout.splitlines()]
    assert {(r["file"], r["label"]) for r in rows} >= {(files[0], "ERIC TRUMP"), (files[1], "PRESIDENT TRUMP")}
    warnings = proc.stderr.splitlines()
    assert warnings and all(line.startswith("warning: ") for line in warnings)
    assert any(files[0] in line for line in warnings) and any(files[1] in line for line in warnings)
