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


def test_make_persona_keeps_the_regex_as_typed_and_a_changed_folder_reruns_01(tmp_path):
    """`make persona ... SPEAKER='...$|...$'` writes the regex unchanged; then 01 runs, is
    skipped when nothing changed, and runs again when a file in the folder changes."""
    import yaml

    folder = tmp_path / "letters"
    folder.mkdir()
    (folder / "one.md").write_text("# One\n\nMy first letter, with enough words to be a document.\n")
    params = tmp_path / "params"
    env = {**os.environ, "PERSONA_PARAMS_DIR": str(params), "RUNS_DIR": str(tmp_path / "runs"),
           "RESULTS_DIR": str(tmp_path / "results"), "OFFLINE": "1"}
    speaker = "^Ada$|^Ada Lovelace$"
    made = subprocess.run(["make", "-s", "-o", ".venv/.installed", "persona", "NAME=ada_test", f"FOLDER={folder}",
                           "FULL_NAME=Ada Lovelace", f"SPEAKER={speaker}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    written = yaml.safe_load((params / "ada_test.yaml").read_text())
    assert written["persona"]["speaker_regex"] == speaker and written["persona"]["name"] == "Ada Lovelace"

    def scrape():
        proc = subprocess.run([PYTHON, "-m", "lib.runner", "ada_test", "01_scrape", "--profile", "smoke"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout + proc.stderr

    assert "01_scrape      ran" in scrape()
    assert "unchanged since its last run" in scrape()
    (folder / "two.md").write_text("# Two\n\nA second letter, added after the first run of the chain.\n")
    assert "01_scrape      ran" in scrape()
    documents = (tmp_path / "runs" / "ada_test" / "01_scrape" / "documents.jsonl").read_text().splitlines()
    assert len(documents) == 2


def test_a_transcript_that_misses_the_regex_is_skipped_never_read_as_the_persons_text(tmp_path):
    (tmp_path / "show.txt").write_text("HOST: Welcome, Mr. President.\nPRESIDENT TRUMP: Thank you.\n"
                                       "HOST: Jobs?\nPRESIDENT TRUMP: Jobs, jobs, jobs.\n")
    (tmp_path / "essay.md").write_text("# T\n\nWords of mine.\n")
    docs, info = read_folder(tmp_path, persona_regex="^(DONALD )?TRUMP$", log=lambda *a: None)
    assert [d["id"] for d in docs] == ["essay"]
    assert info["skipped"][0]["file"] == "show.txt" and "no turn by the persona" in info["skipped"][0]["reason"]
    assert "PRESIDENT TRUMP" in info["skipped"][0]["reason"]  # the speakers it found, to fix the regex


def test_a_whatsapp_export_of_long_messages_is_a_chat(tmp_path):
    paragraphs = "\n".join(f"A line of a long message, number {i}, written the way I write." for i in range(8))
    (tmp_path / "chat.txt").write_text(
        f"[01/02/2024, 10:00:00] Sam Chen: What do you think about writing every day?\n"
        f"[01/02/2024, 10:05:00] Ada Lovelace: {paragraphs}\n"
        f"[01/02/2024, 10:09:00] Sam Chen: And on weekends?\n"
        f"[01/02/2024, 10:12:00] Ada Lovelace: {paragraphs}\n")
    docs, _ = read_folder(tmp_path, persona_regex="^Ada Lovelace$", log=lambda *a: None)
    assert docs[0]["kind"] == "interview" and [t["is_persona"] for t in docs[0]["turns"]] == [False, True, False, True]
    assert "10:05" not in docs[0]["turns"][1]["text"]


def test_a_pdf_whose_date_pypdf_cannot_read_is_still_read(tmp_path):
    import pypdf

    writer = pypdf.PdfWriter(clone_from=FOLDER / "orth.pdf")
    writer.add_metadata({"/CreationDate": "Mon Jan 1 2019"})
    with open(tmp_path / "orth.pdf", "wb") as handle:
        writer.write(handle)
    docs, info = read_folder(tmp_path, log=lambda *a: None)
    assert info["skipped"] == [] and docs[0]["title"] == "Orthodox Privilege" and docs[0]["date"] is None
