"""lib.local_files: a persona from a folder of the user's own files (tests/fixtures/persona_folder,
built from the committed snapshots; see its PROVENANCE.md)."""
import json
import os
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lib.local_files import SourceError, read_file, read_folder
from lib.scrape import collect_essays

FOLDER = ROOT / "tests/fixtures/persona_folder/files"
TRUMP = "^(DONALD )?TRUMP$|^Donald Trump$|^Trump$"


@pytest.fixture(scope="module")
def crawled():
    """The crawler's documents for the same essays (lib.scrape on data/snapshot/pg)."""
    docs, _ = collect_essays(base_url="http://www.paulgraham.com/", cache_dir=ROOT / ".cache/test-local-files",
                             snapshot_dir=ROOT / "data/snapshot/pg", offline=True, log=lambda *a: None)
    return {d["id"]: d for d in docs}


@pytest.mark.parametrize("suffix", [".md", ".html", ".pdf"])
def test_documents_match_the_crawlers_text(crawled, suffix):
    files = sorted(FOLDER.glob(f"*{suffix}"))
    assert files
    for path in files:
        doc = read_file(path, path.name, path.stem, persona_regex="")
        ref = crawled[path.stem]
        assert doc["kind"] == "essay" and doc["title"] == ref["title"], path.name
        assert doc["text"] == ref["text"], path.name
        assert doc["source"] == doc["file"] == path.name
    if suffix == ".md":  # the front matter's date
        assert read_file(FOLDER / "want.md", "want.md", "want", persona_regex="")["year"] == 2022


def test_plain_text_and_transcript_txt_are_told_apart(tmp_path):
    essay = tmp_path / "letter.txt"
    essay.write_text("A Letter Home\n\nDear all, the weather is fine and\nthe work goes well.\n\nMore soon.\n")
    doc = read_file(essay, "letter.txt", "letter", persona_regex=TRUMP)
    assert (doc["kind"], doc["title"], doc["text"]) == ("essay", "A Letter Home",
                                                      "Dear all, the weather is fine and the work goes well.\n\nMore soon.")
    transcript = tmp_path / "show.txt"
    transcript.write_text("HOST: Welcome.\nDONALD TRUMP: Thank you.\nHOST: Bye.\nDONALD TRUMP: Bye.\n")
    doc = read_file(transcript, "show.txt", "show", persona_regex=TRUMP)
    assert doc["kind"] == "interview" and [t["is_persona"] for t in doc["turns"]] == [False, True, False, True]


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_read(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "good.md").write_text("# A Title\n\nSome words of mine, in a paragraph.\n")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blob.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "notes.docx").write_bytes(b"PK\x03\x04 not really")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "gone.md").symlink_to(folder / "missing.md")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (folder / "sub").mkdir()
    (folder / "sub" / "more.txt").write_text("More of my words, plain text, no title line here.\n")
    copy = tmp_path / "copy"
    docs, info = read_folder(folder, copy_to=copy, log=lambda *a: None)
    assert [d["id"] for d in docs] == ["good", "sub-more"]
    assert docs[0]["title"] == "A Title" and docs[0]["text"] == "Some words of mine, in a paragraph."
    reasons = {s["file"]: s["reason"] for s in info["skipped"]}
    assert set(reasons) == {"empty.txt", "blob.txt", "notes.docx", ".DS_Store", "gone.md", "broken.pdf"}
    assert reasons["empty.txt"] == "empty file"
    assert "binary" in reasons["blob.txt"]
    assert reasons["notes.docx"] == "unsupported file type .docx"
    assert reasons[".DS_Store"] == "hidden file"
    assert reasons["gone.md"].startswith("unreadable")
    assert reasons["broken.pdf"].startswith("unreadable PDF")
    assert sorted((copy).rglob("*.*")) == [copy / "good.md", copy / "sub" / "more.txt"]
    provenance = {p["file"]: p for p in info["provenance"]}
    assert provenance["good.md"]["sha256"] == __import__("hashlib").sha256((folder / "good.md").read_bytes()).hexdigest()
    assert info["by_kind"] == {"essay": 2}


def test_a_folder_with_nothing_usable_names_the_folder(tmp_path):
    (tmp_path / "a.docx").write_bytes(b"x")
    (tmp_path / "b.txt").write_bytes(b"")
    with pytest.raises(SourceError, match=rf"{tmp_path}: no usable files \(2 skipped: a.docx: unsupported"):
        read_folder(tmp_path, log=lambda *a: None)
    with pytest.raises(SourceError, match="not a folder"):
        read_folder(tmp_path / "nope", log=lambda *a: None)


def test_a_transcript_without_a_speaker_regex_is_skipped_with_the_fix(tmp_path):
    (tmp_path / "talk.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nHOST: Hello.\n")
    (tmp_path / "essay.md").write_text("# T\n\nWords.\n")
    docs, info = read_folder(tmp_path, persona_regex="", log=lambda *a: None)
    assert [d["id"] for d in docs] == ["essay"]
    assert "persona.speaker_regex" in info["skipped"][0]["reason"]


def test_cli_prints_documents_and_skips(tmp_path):
    (tmp_path / "essay.md").write_text("# T\n\nWords of mine.\n")
    (tmp_path / "x.bin").write_bytes(b"\x00")
    proc = subprocess.run([PYTHON, "-m", "lib.local_files", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == "Words of mine."
    assert "skipped: x.bin: unsupported file type .bin" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([PYTHON, "-m", "lib.local_files", str(empty)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and f"error: {empty}: no usable files" in proc.stderr


def test_01_on_a_folder_with_nothing_usable_stops_naming_it_and_writes_no_documents(tmp_path):
    folder = tmp_path / "letters"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4 broken")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    params = tmp_path / "params"
    env = {**os.environ, "PERSONA_PARAMS_DIR": str(params), "RUNS_DIR": str(tmp_path / "runs"),
           "RESULTS_DIR": str(tmp_path / "results")}
    params.mkdir()
    (params / "nobody_usable.yaml").write_text(
        f'persona: {{name: "Ada Lovelace", kind: folder, profile_card: {{name: "Ada Lovelace"}}}}\n'
        f'scrape: {{folder: "{folder}"}}\n')
    proc = subprocess.run([PYTHON, "-m", "lib.runner", "nobody_usable", "01_scrape", "--profile", "smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"{folder}: no usable files (2 skipped: photo.jpg: unsupported file type .jpg; scan.pdf: unreadable PDF" in output
    assert not (tmp_path / "runs" / "nobody_usable" / "01_scrape" / "documents.jsonl").exists()
