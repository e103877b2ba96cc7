"""lib.transcripts on real interview transcripts (data/snapshot/trump, tests/fixtures/scrape/trump)."""
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from lib.essays import parse_essay_html
from lib.text import clean_stage_directions
from lib.transcripts import collect_interviews, parse_transcript
from test_fetch import LocalServer

ROOT = Path(__file__).resolve().parent.parent
SNAP = ROOT / "data/snapshot/trump"
FIX = ROOT / "tests/fixtures/scrape/trump"
PYTHON = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
PERSONA = "^(DONALD )?TRUMP$|^Donald Trump$|^Trump$"  # params/trump.yaml persona.speaker_regex
OREILLY = "2015-06-16 20.31.00 (Complete, As spoken) Interview with Bill O'Reilly, 'The O'Reilly Factor', Fox.txt"
HANNITY = "2016-02-18 22.00.00 (Complete, As spoken) Interview with Sean Hannity, 'The Sean Hannity Show', Fox.txt"
MORNING_JOE = ("2015-11-11 07.00.00 (Complete, As spoken) Interview with Mika Brzezinski, Joe Scarborough, "
               "Donald Trump Jr., Mike Barnicle, Sam Stein, Eric Trump, 'Morning Joe', MSNBC.txt")
TAPPER = "2016-06-03 16.30.00 (Complete, As spoken) Interview with Jake Tapper, Tiffany Trump, 'State of the Union', CNN.txt"
STATEMENT = FIX / "2016-09-09 00.00.00 (Complete, As written) Statement, 'Statement on Hillary Clinton'.txt"
# Trump / other speaking turns counted by the corpus' own MANIFEST.tsv (before merging turns
# that only a stage direction separated)
MANIFEST_TURNS = {
    OREILLY: (61, 61), HANNITY: (108, 109), MORNING_JOE: (83, 127), TAPPER: (92, 95),
    "2016-08-15 10.00.00 (Complete, As spoken) Interview with Chuck Todd, 'Meet the Press', NBC.txt": (122, 122),
    "2016-03-09 22.00.00 (Complete, As spoken) Interview with Sean Hannity, Tony Porta, Fayetteville, NC, "
    "'The Sean Hannity Show', Fox.txt": (117, 131),
}


def parse(name: str, persona: str = PERSONA) -> dict:
    path = SNAP / name
    return parse_transcript(path.read_bytes(), persona_regex=persona, source=str(path))


# ---------------------------------------------------------------------------------------
# format 1: the campaign corpus

def test_campaign_transcript_turns_and_metadata():
    doc = parse(OREILLY)
    assert doc["kind"] == "interview" and doc["file"] == OREILLY
    assert doc["title"] == "Interview with Bill O'Reilly, 'The O'Reilly Factor', Fox"
    assert (doc["date"], doc["year"], doc["month"]) == ("2015-06-16", 2015, 6)
    assert doc["id"] == "2015-06-16-20-31-00-complete-as-spoken-interview-with-bill-oreilly-the-oreilly-factor-fox"
    turns = doc["turns"]
    # an unlabelled paragraph continues the last speaker's turn
    assert turns[0] == {"speaker": "BILL O'REILLY", "is_persona": False,
                        "text": "So this is like the lightening round here.\n\n"
                                "You just tell me how you're going to solve these problems."}
    assert turns[1] == {"speaker": "DONALD TRUMP", "text": "OK.", "is_persona": True}
    assert turns[3]["text"].endswith("There's nobody bigger or better at the military than I am.")
    assert turns[3]["text"].count("\n\n") == 2
    # "(CROSSTALK)" between two of Trump's paragraphs is gone, and the turns still alternate
    assert "(CROSSTALK)" in (SNAP / OREILLY).read_text()
    assert turns[5]["text"].endswith("Let me just say something --")
    assert turns[6] == {"speaker": "BILL O'REILLY", "is_persona": False,
                        "text": "Ok. But you have to if you want to hit them hard you have to --"}
    assert all(a["speaker"] != b["speaker"] for a, b in zip(turns, turns[1:]))
    assert sum(t["is_persona"] for t in turns) == 61 and len(turns) == 122


def test_turn_counts_match_the_corpus_manifest():
    for name, (trump, other) in MANIFEST_TURNS.items():
        turns = parse(name)["turns"]
        persona = sum(t["is_persona"] for t in turns)
        assert trump - 1 <= persona <= trump, name
        assert other - 2 <= len(turns) - persona <= other, name


def test_stage_directions_removed_everywhere():
    raw = "\n".join(p.read_text(encoding="utf-8") for p in sorted(SNAP.glob("*.txt")))
    for direction in ("(APPLAUSE)", "(CROSSTALK)", "(LAUGHTER)", "(INAUDIBLE)", "(COMMERCIAL BREAK)",
                      "[inaudible]", "[Laughter.]"):
        assert direction in raw, direction
    for path in sorted(SNAP.glob("*.txt")):
        doc = parse(path.name)
        for turn in doc["turns"]:
            assert turn["text"] and turn["text"] == turn["text"].strip()
            assert not re.search(r"\((APPLAUSE|CROSSTALK|LAUGHTER|INAUDIBLE|COMMERCIAL BREAK|BEGIN VIDEO CLIP)\)",
                                 turn["text"]), path.name
            assert "[inaudible]" not in turn["text"] and "[Laughter.]" not in turn["text"]
    # parenthesised words that are speech stay: "401(k)", "(Steinle)"
    assert clean_stage_directions("a 401(k) plan (APPLAUSE) for (Steinle) [inaudible] all") == \
        "a 401(k) plan for (Steinle) all"
    assert clean_stage_directions("a (phone call) with (sick people) (laughs)") == "a (phone call) with (sick people)"
    politico = next(t for t in parse("politico.txt")["turns"] if t["text"].startswith("Does that"))
    assert politico["text"] == "Does that – for businesses?"  # "Does that – [inaudible] – for businesses?"


def test_sentences_with_a_colon_are_not_speakers():
    raw = (SNAP / TAPPER).read_text()
    assert "\nThey went to the judge and they said: Your Honor" in raw
    assert "\nAnd he said: No, I won't dismiss the case" in raw
    doc = parse(TAPPER)
    assert {t["speaker"] for t in doc["turns"]} == {"JAKE TAPPER", "DONALD TRUMP", "TIFFANY TRUMP"}
    turn = next(t for t in doc["turns"] if "They went to the judge and they said: Your Honor" in t["text"])
    assert turn["speaker"] == "DONALD TRUMP"
    # across the snapshot every speaker is a short label
    for path in sorted(SNAP.glob("*.txt")):
        for turn in parse(path.name)["turns"]:
            assert len(turn["speaker"].split()) <= 4 and ":" not in turn["speaker"], (path.name, turn["speaker"])


def test_persona_regex_matches_only_the_persona():
    doc = parse(MORNING_JOE)
    persona = {t["speaker"] for t in doc["turns"] if t["is_persona"]}
    others = {t["speaker"] for t in doc["turns"] if not t["is_persona"]}
    assert persona == {"DONALD TRUMP"}
    assert {"DONALD TRUMP JR.", "ERIC TRUMP", "MIKA BRZEZINSKI", "JOE SCARBOROUGH"} <= others
    # a loose regex would take the family for the candidate: the regex decides, case-insensitively
    loose = parse(MORNING_JOE, persona="trump")
    assert {t["speaker"] for t in loose["turns"] if t["is_persona"]} >= {"DONALD TRUMP", "DONALD TRUMP JR.", "ERIC TRUMP"}
    assert {t["speaker"] for t in parse("wwe.txt", persona="^trump$")["turns"] if t["is_persona"]} == {"TRUMP"}


# ---------------------------------------------------------------------------------------
# format 2: the seed interviews

def test_seed_interview_with_headers():
    doc = parse("ccn_town_hall.txt")
    assert doc["source"] == "https://edition.cnn.com/2023/05/11/politics/transcript-cnn-town-hall-trump/index.html"
    assert (doc["title"], doc["date"], doc["year"], doc["month"]) == ("ccn town hall", "2023-05-11", 2023, 5)
    assert doc["id"] == "ccn-town-hall" and doc["file"] == "ccn_town_hall.txt"
    assert doc["turns"][:2] == [
        {"speaker": "COLLINS", "text": "How are you? Thank you for being here tonight.", "is_persona": False},
        {"speaker": "TRUMP", "text": "How nice to see you.", "is_persona": True}]
    # the unlabelled line after "TRUMP: They are in charge. ..." continues Trump's turn
    turn = next(t for t in doc["turns"] if t["text"].startswith("They are in charge. Well, I offered them National Guard."))
    assert turn["speaker"] == "TRUMP"
    assert turn["text"].split("\n\n")[1] == "And they turned me down. And, in fact, she turned me down."
    # "WAYNE BEYER, RETIRED ATTORNEY:" is a label with a description
    assert any(t["speaker"] == "WAYNE BEYER" and t["text"] == "Thank you for coming, Mr. President."
               for t in doc["turns"])
    assert not any(t["text"].startswith("#") for t in doc["turns"])

    politico = parse("politico.txt")
    assert (politico["date"], politico["year"], politico["month"]) == ("2017", 2017, None)
    assert {t["speaker"] for t in politico["turns"]} == {"Speaker A", "TRUMP", "MR.", "STAFF"}
    assert "That was not a – that was not a correct –" in [t["text"] for t in politico["turns"] if t["speaker"] == "MR."]
    assert politico["turns"][1]["text"].startswith("Can you believe it? Isn’t that nice.")


def test_seed_interview_without_headers_merges_same_speaker_lines():
    doc = parse("wwe.txt")
    assert (doc["title"], doc["date"], doc["year"], doc["month"]) == ("wwe", None, None, None)
    assert doc["source"] == str(SNAP / "wwe.txt")
    assert [t["speaker"] for t in doc["turns"][:4]] == ["Speaker A", "TRUMP", "Speaker A", "TRUMP"]
    # "Speaker A: Wow." and the next "Speaker A: Wait a minute. ..." are one turn
    assert doc["turns"][2]["text"].startswith("Wow.\n\nWait a minute. I know you have an ego")
    assert all(a["speaker"] != b["speaker"] for a, b in zip(doc["turns"], doc["turns"][1:]))


# ---------------------------------------------------------------------------------------
# format 3: mixed-case labels

def test_mixed_case_labels_parse_like_uppercase_ones():
    raw = (SNAP / HANNITY).read_text()
    mixed = re.sub(r"^(SEAN HANNITY|DONALD TRUMP):", lambda m: m.group(1).title() + ":", raw, flags=re.M)
    assert "\nSean Hannity: " in mixed and "\nDonald Trump: " in mixed and "SEAN HANNITY:" not in mixed
    upper = parse(HANNITY)
    doc = parse_transcript(mixed, persona_regex=PERSONA, source=HANNITY)
    assert [t["text"] for t in doc["turns"]] == [t["text"] for t in upper["turns"]]
    assert [t["speaker"] for t in doc["turns"]] == [t["speaker"].title() for t in upper["turns"]]
    assert [t["is_persona"] for t in doc["turns"]] == [t["is_persona"] for t in upper["turns"]]
    assert doc["turns"][0]["speaker"] == "Sean Hannity" and doc["turns"][1]["speaker"] == "Donald Trump"
    assert doc["title"] == "Interview with Sean Hannity, 'The Sean Hannity Show', Fox" and doc["date"] == "2016-02-18"


# ---------------------------------------------------------------------------------------
# bad input

def test_bad_input_raises_value_error_naming_the_file(tmp_path):
    essay = parse_essay_html((ROOT / "data/snapshot/pg/fix.html").read_bytes(), "fix.html")["text"]
    assert "Algol: Assembly language is too low-level." in essay  # colons, but no speakers
    cases = {
        "empty.txt": (b"", "empty file"),
        "binary.txt": (gzip.compress((SNAP / "wwe.txt").read_bytes()), "binary data"),
        "essay.txt": (essay.encode(), "not a transcript"),
    }
    for name, (data, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError) as err:
            parse_transcript(path.read_bytes(), persona_regex=PERSONA, source=str(path))
        assert str(path) in str(err.value) and problem in str(err.value), (name, str(err.value))
    with pytest.raises(ValueError) as err:
        parse_transcript(STATEMENT.read_bytes(), persona_regex=PERSONA, source=str(STATEMENT))
    assert str(STATEMENT) in str(err.value) and "no turn by the persona" in str(err.value)
    assert "JASON MILLER" in str(err.value)


def test_cli_prints_turns_and_reports_a_bad_file():
    files = [str(SNAP / "wwe.txt"), str(STATEMENT), str(SNAP / OREILLY)]
    proc = subprocess.run([PYTHON, "-m", "lib.transcripts", "parse", *files, "--persona", PERSONA],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 11 + 122
    assert set(rows[0]) == {"file", "speaker", "text", "is_persona"}
    assert rows[0] == {"file": files[0], "speaker": "Speaker A", "text": "Why are you here?", "is_persona": False}
    assert rows[1]["speaker"] == "TRUMP" and rows[1]["is_persona"] is True
    assert rows[11]["file"] == files[2] and rows[12] == {"file": files[2], "speaker": "DONALD TRUMP",
                                                         "text": "OK.", "is_persona": True}
    assert "Statement on Hillary Clinton" in proc.stderr and "no turn by the persona" in proc.stderr
    assert "Traceback" not in proc.stderr

    ok = subprocess.run([PYTHON, "-m", "lib.transcripts", "parse", str(SNAP / "wwe.txt"), "--persona", "^trump$"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 11 and ok.stderr == ""


# ---------------------------------------------------------------------------------------
# collecting

def test_collect_offline_reads_the_snapshot(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    messages = []
    docs, info = collect_interviews(urls=[], cache_dir=tmp_path / "cache", snapshot_dir="data/snapshot/trump",
                                    offline=True, persona_regex=PERSONA, delay_s=0, retries=0, timeout_s=1,
                                    max_documents=0, log=messages.append)
    assert messages == ["OFFLINE: using the committed snapshot in data/snapshot/trump (25 transcripts)"]
    assert info["mode"] == "snapshot" and info["documents"] == 25 and info["parse_failed"] == 0
    by_file = {d["file"]: d for d in docs}
    assert by_file[OREILLY]["source"] == ("https://raw.githubusercontent.com/unendin/Trump_Campaign_Corpus/"
                                          "bd194ff0e32703152902433760b060f91c713f64/text/" + quote(OREILLY))
    assert by_file["politico.txt"]["source"].startswith("https://www.politico.com/story/2017/08/01/")
    assert by_file["wwe.txt"]["source"].startswith("https://raw.githubusercontent.com/vossenwout/")
    assert len({d["id"] for d in docs}) == 25
    assert all(any(t["is_persona"] for t in d["turns"]) for d in docs)
    assert sum(len(d["turns"]) for d in docs) > 4500

    few, info = collect_interviews(urls=[], cache_dir=tmp_path, snapshot_dir=SNAP, offline=True,
                                   persona_regex=PERSONA, max_documents=2, log=messages.append)
    assert [d["file"] for d in few] == [OREILLY, "2015-06-17 00.00.00 (Complete, As spoken) Interview with Sean "
                                        "Hannity, 'The Sean Hannity Show', Fox.txt"]


def test_collect_online_then_from_cache_and_unreachable_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with LocalServer(SNAP) as site:
        urls = [site.url + quote(OREILLY), site.url + "wwe.txt", site.url + "missing.txt",
                site.url + "flaky/" + quote(HANNITY)]
        messages = []
        kw = dict(urls=urls, cache_dir=tmp_path / "cache", snapshot_dir=SNAP, offline=False,
                  persona_regex=PERSONA, delay_s=0, user_agent="persona-llm-test", retries=2, timeout_s=5,
                  backoff_s=0.01, max_documents=0, log=messages.append)
        docs, info = collect_interviews(**kw)
        assert info["mode"] == "online" and info["fetched"] == 3 and info["skipped_404"] == 1
        assert [d["file"] for d in docs] == [OREILLY, "wwe.txt", HANNITY]
        assert docs[0]["source"] == urls[0] and docs[0]["title"].startswith("Interview with Bill O'Reilly")
        assert docs[2]["date"] == "2016-02-18" and len(docs[2]["turns"]) == 217
        made = site.count()
        again, info = collect_interviews(**kw)
        assert site.count() == made and info["cached"] == 3 and again == docs

    messages = []
    docs, info = collect_interviews(urls=["http://127.0.0.1:9/wwe.txt"], cache_dir=tmp_path / "c2",
                                    snapshot_dir="data/snapshot/trump", offline=False, persona_regex=PERSONA,
                                    delay_s=0, retries=0, timeout_s=2, max_documents=0, log=messages.append)
    assert info["mode"] == "snapshot" and "network unreachable" in info["reason"]
    assert messages[0].startswith("OFFLINE: using the committed snapshot in data/snapshot/trump (25 transcripts)")
    assert len(docs) == 25
