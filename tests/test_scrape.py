"""lib.scrape on real paulgraham.com pages (data/snapshot/pg, tests/fixtures/scrape)."""
import csv
import difflib
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lib.scrape import collect_essays
from lib.essays import parse_articles_index, parse_essay_html
from test_fetch import LocalServer

ROOT = Path(__file__).resolve().parent.parent
SNAP = ROOT / "data/snapshot/pg"
FIX = ROOT / "tests/fixtures/scrape"
PYTHON = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
BASE = "http://www.paulgraham.com/"
CP1252_PAGES = ["users", "nft", "worked", "ace", "makersschedule", "top", "orth"]
SNAPSHOT_SLUGS = sorted(p.stem for p in SNAP.glob("*.html") if p.stem != "articles")


def parse(slug: str) -> dict:
    path = SNAP / f"{slug}.html"
    return parse_essay_html(path.read_bytes(), str(path))


@pytest.fixture(scope="module")
def pages():
    return {slug: parse(slug) for slug in SNAPSHOT_SLUGS}


# ---------------------------------------------------------------------------------------
# articles.html

def test_articles_index_lists_essays_in_page_order():
    entries = parse_articles_index((SNAP / "articles.html").read_bytes(), BASE)
    slugs = [e["slug"] for e in entries]
    assert len(entries) == 228 and len(set(slugs)) == 228
    assert entries[0] == {"slug": "field", "title": "The Shape of the Essay Field", "url": BASE + "field.html"}
    # the "If you're not sure which to read" picks at the top do not move essays up the list
    assert slugs.index("greatwork") == 12 and slugs.index("read") == 14 and slugs.index("kids") == 47
    assert slugs[-1] == "prop62"
    assert not {"index", "articles", "rss"} & set(slugs)
    assert all(e["url"] == f"{BASE}{e['slug']}.html" for e in entries)
    assert set(SNAPSHOT_SLUGS) <= set(slugs)


# ---------------------------------------------------------------------------------------
# essay pages: the edge cases of the real data

def test_promo_box_removed_but_essay_kept(pages):
    raw = (SNAP / "13sentences.html").read_text()
    assert "Want to start a startup?" in raw and "Watch how this essay was" in raw
    page = pages["13sentences"]
    assert page["title"] == "Startups in 13 Sentences"
    assert page["date"] == "February 2009" and (page["year"], page["month"]) == (2009, 2)
    assert page["text"].startswith("One of the things I always tell startups is a principle I learned "
                                   "from Paul Buchheit: it's better to make a few people really happy")
    assert "1. Pick good cofounders." in page["text"]
    assert page["text"].endswith("having just ten users who love you will keep you going.")
    for slug in ("13sentences", "makersschedule", "top", "investors", "icad", "growth"):
        assert "Want to start a startup" not in pages[slug]["text"] + pages[slug]["notes"], slug
        assert len(pages[slug]["text"]) > 3000, slug
    assert "Hackers & Painters" not in pages["spam"]["text"] and "Try Hacker News" not in pages["spam"]["text"]


def test_footnote_markers_removed_and_notes_kept_apart(pages):
    page = pages["13sentences"]
    assert "changing your cofounders is hard. And the success of a startup" in page["text"]
    assert not re.search(r"\[\d+\]", page["text"])
    assert "Notes" not in page["text"].split("\n\n")
    assert page["notes"].split("\n\n") == [
        "[1] Strictly speaking it's impossible without a time machine.",
        "[2] In practice it's more like a ragged comb.",
        "[3] Joe thinks one of the founders of Hewlett Packard said it first, but he doesn't remember which.",
        "[4] They'd be interchangeable if markets stood still. Since they don't, working twice as fast is "
        "better than having twice as much time."]
    for slug, page in pages.items():
        assert not re.search(r"(^|[\s.,;:!?\"')])\[\d+\]", page["text"], re.M), slug
    # code keeps its brackets; notes with no "Notes" heading start at "[1] "
    assert "  s = [n]\n  def bar(i):\n    s[0] += i\n    return s[0]" in pages["icad"]["text"]
    assert pages["progbot"]["notes"] == ('[1] "But no one can read the program without understanding all your new '
                                         'utilities." To see why such statements are usually mistaken, see Section 4.8.')
    assert pages["progbot"]["text"].endswith("When a small group also takes advantage of the techniques that "
                                             "Lisp makes possible, it can win outright.")
    assert pages["spam"]["notes"].startswith("[1] The examples in this article are translated into Common Lisp")
    assert pages["fix"]["notes"] == "" and pages["polls"]["notes"] == ""


def test_thanks_line_removed(pages):
    for slug in ("want", "users", "heresy", "hwh", "orth", "worked", "spam"):
        assert "<b>Thanks</b>" in (SNAP / f"{slug}.html").read_bytes().decode("cp1252"), slug
        page = pages[slug]
        assert "for reading drafts" not in page["text"] + page["notes"], slug
        assert not page["text"].split("\n\n")[-1].startswith("Thanks"), slug
    assert pages["want"]["notes"].startswith("[1] I didn't know when I was 9 that matter might behave randomly")


def test_translation_links_removed(pages):
    assert "Japanese Translation" in (SNAP / "13sentences.html").read_text()
    assert "Japanese Translation" in (SNAP / "icad.html").read_text()  # inside the essay block here
    for slug, page in pages.items():
        assert "Translation" not in page["text"] + page["notes"], slug
    # icad: the translation links closed the Notes block, after a "Related:" list of links
    assert pages["icad"]["notes"].endswith("Peter Norvig found that 16 of the 23 patterns in Design Patterns "
                                           "were \"invisible or simpler\" in Lisp.")
    assert "Related:" not in pages["icad"]["notes"] and "Anton van Straaten" not in pages["icad"]["notes"]


def test_cp1252_pages_decode_to_real_punctuation(pages):
    for slug in CP1252_PAGES:
        raw = (SNAP / f"{slug}.html").read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        page = pages[slug]
        assert "\ufffd" not in page["text"] + page["notes"] + page["title"], slug
        assert not re.search(r"[\x80-\x9f]", page["text"]), slug  # no C1 controls from a latin-1 decode
    assert "cook up ideas for solving them \u2014 ideally at a resolution" in pages["users"]["text"]
    assert "Brigham and Women\u2019s Hospital" in pages["nft"]["text"]
    assert "all these alien-looking machines \u2014 CPU, disk drives, printer" in pages["worked"]["text"]
    assert pages["orth"]["text"].split("\n\n")[1] == "\u2014 Einstein"
    assert "\u2013 Charles Dickens" in pages["makersschedule"]["text"]
    for slug, page in pages.items():
        assert "\ufffd" not in page["text"] + page["notes"], slug


def test_titles_are_stripped(pages):
    for slug, title in (("makersschedule", "Maker's Schedule, Manager's Schedule"),
                        ("top", "The Top Idea in Your Mind")):
        assert f"<title>{title} </title>" in (SNAP / f"{slug}.html").read_bytes().decode("cp1252")
        assert pages[slug]["title"] == title
    assert pages["6631327"]["title"] == "6,631,372"
    assert pages["want"]["title"] == "What You (Want to)* Want"


def test_revised_dates(pages):
    assert (pages["6631327"]["date"], pages["6631327"]["year"], pages["6631327"]["month"]) == \
        ("March 2006, rev August 2009", 2006, 3)
    assert (pages["investors"]["date"], pages["investors"]["year"], pages["investors"]["month"]) == \
        ("August 2006, rev. April 2007, September 2010", 2006, 8)
    assert (pages["diff"]["date"], pages["diff"]["year"], pages["diff"]["month"]) == \
        ("December 2001 (rev. May 2002)", 2001, 12)
    assert pages["6631327"]["text"].startswith("A couple days ago I found to my surprise that I'd been granted a patent.")


def test_pages_without_a_date_line(pages):
    for slug, start in (("fix", "Kevin Kelleher suggested an interesting way to compare programming languages"),
                        ("noop", "There is a kind of mania for object-oriented programming at the moment")):
        assert (pages[slug]["date"], pages[slug]["year"], pages[slug]["month"]) == (None, None, None)
        assert pages[slug]["text"].startswith(start), slug
    assert pages["fix"]["text"].endswith("Prolog: Programming is not enough like logic.")
    assert "Python: Modula-3 is scary." not in pages["fix"]["text"]  # commented out in the HTML
    # progbot has no month-year line, only a bare year, which is the date
    assert (pages["progbot"]["date"], pages["progbot"]["year"], pages["progbot"]["month"]) == ("1993", 1993, None)
    assert pages["progbot"]["text"].startswith("(This essay is from the introduction to On Lisp.)")
    rss = parse_essay_html((FIX / "pg/rss.html").read_bytes(), "rss.html")
    assert rss == {"title": "RSS", "date": None, "year": None, "month": None,
                   "text": "Aaron Swartz created a scraped feed of the essays page.", "notes": "", "source": "rss.html"}


def test_polls_page_without_the_435_table(pages):
    raw = (SNAP / "polls.html").read_text()
    assert 'width="435"' not in raw.split("<font", 1)[1][:2000] and 'width="374"' in raw
    page = pages["polls"]
    assert (page["title"], page["date"], page["year"], page["month"]) == ("Bradley's Ghost", "November 2004", 2004, 11)
    assert page["text"].startswith("A lot of people are writing now about why Kerry lost.")
    assert "I wrote this essay immediately after the election" not in page["text"]  # an HTML comment


def test_taste_page_opening_with_a_quote_table(pages):
    page = pages["taste"]
    assert (page["title"], page["date"]) == ("Taste for Makers", "February 2002")
    paras = page["text"].split("\n\n")
    assert paras[0].startswith('"...Copernicus\' aesthetic objections to [equants]')
    assert paras[1] == "- Thomas Kuhn, The Copernican Revolution"
    assert paras[6] == ("I was talking recently to a friend who teaches at MIT. His field is hot now and every "
                        "year he is inundated by applications from would-be graduate students. \"A lot of them "
                        "seem smart,\" he said. \"What I can't tell is whether they have any kind of taste.\"")


def test_httrack_pages_and_layout_is_clean(pages):
    assert "Mirrored from paulgraham.com/users.html by HTTrack" in (SNAP / "users.html").read_bytes().decode("cp1252")
    for slug, page in pages.items():
        text = page["text"]
        assert text == text.strip() and "\n\n\n" not in text, slug
        assert all(line == line.rstrip() and line for line in text.split("\n\n")), slug
        for junk in ("Mirrored from", "turbifycdn", ".gif", "csell", "<font", "<br", "<a ", "\x00", "\r"):
            assert junk not in text, (slug, junk)
    # table rows stay lines of one paragraph; <pre> keeps its line breaks
    assert "weekly yearly\n1% 1.7x\n2% 2.8x\n5% 12.6x\n7% 33.7x\n10% 142.0x" in pages["growth"]["text"]
    assert "(defun foo (n)\n  (lambda (i) (incf n i)))" in pages["icad"]["text"]
    assert "from: Paul Graham\nto: Fred Wilson\ndate: Fri, Feb 20, 2009 at 10:00 PM" in pages["airbnb"]["text"]
    # the whole essay of foundervisa sits in a table
    assert pages["foundervisa"]["date"] == "April 2009"
    assert pages["foundervisa"]["text"].startswith("I usually avoid politics, but since we now seem")


def _words(text: str) -> list:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def _reference_body(markdown: str) -> str:
    """html2text markdown -> plain text of the essay body (no links, Notes, Thanks, markers)."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", markdown)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.replace("\\[", "[").replace("\\]", "]").replace("\\", "")
    text = re.sub(r"[*_`#>]", "", text)
    cut = re.search(r"\n\s*(Notes?:?[ \t]*\n|Thanks to\b)", text)  # the Notes heading, not "Note that"
    text = text[: cut.start()] if cut else text
    return re.sub(r"\[\d+\]", "", text)


def test_text_matches_the_reference_html2text_conversions(pages):
    with open(FIX / "pg_essays_html2text_subset.csv", encoding="utf-8", newline="") as fh:
        reference = {" ".join(r["title"].split()): r for r in csv.DictReader(fh)}
    by_title = {page["title"]: slug for slug, page in pages.items()}
    checked = []
    for title, row in reference.items():
        slug = by_title[title]
        ours, theirs = _words(pages[slug]["text"]), _words(_reference_body(row["text"]))
        ratio = difflib.SequenceMatcher(None, ours, theirs, autojunk=False).ratio()
        assert ratio > 0.97, (slug, ratio)
        checked.append(slug)
    assert len(checked) == 12 and {"users", "makersschedule", "taste", "polls", "fix", "13sentences"} <= set(checked)


# ---------------------------------------------------------------------------------------
# bad input

def test_bad_input_raises_value_error_naming_the_file(tmp_path):
    real = (SNAP / "noop.html").read_bytes()
    cases = {
        "empty.html": (b"", "empty file"),
        "blank.html": (b"  \n\n", "empty file"),
        "binary.html": (gzip.compress(real), "binary data"),
        "no_body.html": (real.replace(b'face="verdana"', b'face="arial"'), "no essay body"),
    }
    for name, (data, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError) as err:
            parse_essay_html(path.read_bytes(), str(path))
        assert str(path) in str(err.value) and problem in str(err.value), (name, str(err.value))
    truncated = FIX / "pg/truncated_noop.html"
    with pytest.raises(ValueError, match=r"truncated_noop\.html: truncated HTML"):
        parse_essay_html(truncated.read_bytes(), str(truncated))


def test_cli_parses_pages_and_reports_a_bad_file(tmp_path):
    bad = FIX / "pg/truncated_noop.html"
    files = [str(SNAP / "13sentences.html"), str(bad), str(SNAP / "users.html")]
    proc = subprocess.run([PYTHON, "-m", "lib.scrape", "parse", *files], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["title"] for d in lines] == ["Startups in 13 Sentences", "What I've Learned from Users"]
    assert lines[1]["date"] == "September 2022" and (lines[1]["year"], lines[1]["month"]) == (2022, 9)
    assert {"title", "date", "year", "month", "text", "notes", "source"} <= set(lines[0])
    assert lines[0]["source"] == files[0] and lines[0]["notes"].startswith("[1] Strictly speaking")
    assert "\u2014" in lines[1]["text"]
    assert "truncated_noop.html" in proc.stderr and "truncated HTML" in proc.stderr
    assert "Traceback" not in proc.stderr

    ok = subprocess.run([PYTHON, "-m", "lib.scrape", "parse", str(SNAP / "fix.html")], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["date"] is None and ok.stderr == ""


# ---------------------------------------------------------------------------------------
# collecting

DOC_KEYS = {"id", "kind", "title", "date", "year", "month", "source", "text", "notes"}


def test_collect_offline_reads_the_snapshot(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    messages = []
    docs, info = collect_essays(base_url=BASE, index_page="articles.html", cache_dir=tmp_path / "cache",
                                snapshot_dir="data/snapshot/pg", offline=True, delay_s=0, retries=0,
                                timeout_s=1, max_documents=0, log=messages.append)
    assert messages[0] == "OFFLINE: using the committed snapshot in data/snapshot/pg (30 pages)"
    assert info["mode"] == "snapshot" and info["documents"] == 30 and info["parse_failed"] == 0
    assert [d["id"] for d in docs][:5] == ["read", "want", "alien", "users", "heresy"]  # articles.html order
    assert docs[-1]["id"] == "progbot"
    assert all(set(d) == DOC_KEYS and d["kind"] == "essay" for d in docs)
    read = docs[0]
    assert read["source"] == BASE + "read.html" and read["title"] == "The Need to Read"
    assert (read["date"], read["year"], read["month"]) == ("November 2022", 2022, 11)
    assert not (tmp_path / "cache").exists()  # offline: no fetcher, no cache

    few, info = collect_essays(base_url=BASE, cache_dir=tmp_path / "cache", snapshot_dir=SNAP,
                               offline=True, max_documents=3, log=messages.append)
    assert [d["id"] for d in few] == ["read", "want", "alien"] and info["listed"] == 3


def test_collect_falls_back_to_the_snapshot_when_unreachable(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    messages = []
    docs, info = collect_essays(base_url="http://127.0.0.1:9/", index_page="articles.html",
                                cache_dir=tmp_path / "cache", snapshot_dir="data/snapshot/pg", offline=False,
                                delay_s=0, user_agent="persona-llm-test", retries=0, timeout_s=2,
                                max_documents=0, log=messages.append)
    assert info["mode"] == "snapshot" and "network unreachable" in info["reason"]
    assert messages[0].startswith("OFFLINE: using the committed snapshot in data/snapshot/pg (30 pages)")
    assert len(docs) == 30 and docs[0]["source"] == "http://127.0.0.1:9/read.html"


def test_collect_online_from_a_local_site_then_resume_from_cache(tmp_path):
    with LocalServer(SNAP) as site:
        messages = []
        kw = dict(base_url=site.url, index_page="articles.html", cache_dir=tmp_path / "cache",
                  snapshot_dir=SNAP, offline=False, delay_s=0, user_agent="persona-llm-test",
                  retries=1, timeout_s=5, backoff_s=0.01, log=messages.append)
        first, info = collect_essays(**kw, max_documents=20)  # a crawl stopped early
        assert info["mode"] == "online" and info["listed"] == 20
        # articles.html lists 228 essays; the local site only has the 30 snapshot pages
        assert info["skipped_404"] == 14 and info["fetched"] == 6 and info["failed"] == 0
        assert [d["id"] for d in first] == ["read", "want", "alien", "users", "heresy", "words"]
        assert first[0]["source"] == site.url + "read.html"
        requests_before = site.count()

        docs, info = collect_essays(**kw, max_documents=0)  # the full crawl resumes
        assert info["cached"] == 6 and info["fetched"] == 24 and info["skipped_404"] == 228 - 30
        assert len(docs) == 30 and info["documents"] == 30 and not any("OFFLINE" in m for m in messages)
        paths = [p for _, p, _ in site.requests]
        assert requests_before == 1 + 20 and len(paths) == requests_before + (228 - 20)  # index cached
        assert sorted(set(paths)) == sorted(paths)  # nothing was requested twice
        assert docs[:6] == first

        again, info = collect_essays(**kw, max_documents=0)  # a third crawl: zero requests
        assert site.count() == len(paths)
        assert info["fetched"] == 0 and info["cached"] == 30 and info["skipped_404"] == 198 and again == docs


# ---------------------------------------------------------------------------------------
# mixed and broken encodings (../shared/cases/pages/, copied to tests/fixtures/pages/)

PAGES_FIX = ROOT / "tests/fixtures/pages"
# sequences that a UTF-8 text read as Windows-1252/Latin-1 leaves and legitimate English text
# does not: â€ (’ “ ” — …), Ã + a Latin-1 symbol/letter byte (é è â ö ü ...), Â + a space or
# Latin-1 symbol (NBSP, ©, °, ·)
MOJIBAKE_RE = re.compile("â€|Ã[\u00a0-\u00bf\u0080-\u009f€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]|Â[ \u00a0-\u00bf]")


def essay_page(body: str) -> str:
    return ('<html><head><title>Sibling Essay</title></head><body><table><tr><td>'
            f'<font size="2" face="verdana">May 2021<br /><br />{body}</font></td></tr></table></body></html>\n')


def test_mixed_utf8_and_cp1252_page_decodes_per_byte_sequence(tmp_path):
    page = parse_essay_html((PAGES_FIX / "mixed_encoding.html").read_bytes(), "mixed_encoding.html")
    assert page["text"] == ("It\u2019s easy to think that startups fail because of competitors. Mostly they "
                            "don\u2019t \u2014 they fail because they make something nobody wants.\n\n"
                            "That\u2019s the whole essay.")
    assert not MOJIBAKE_RE.search(page["text"] + page["title"])
    # the CLI says the page needed repair, naming the file
    proc = subprocess.run([PYTHON, "-m", "lib.scrape", "parse", str(PAGES_FIX / "mixed_encoding.html")], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["text"] == page["text"]
    assert any(line.startswith("warning:") and "mixed_encoding.html" in line and "repaired" in line
               for line in proc.stderr.splitlines()), proc.stderr


@pytest.mark.parametrize("raw, expected", [
    # UTF-8 (é, ’, …) with stray cp1252 curly quotes 0x93/0x94 in the title and body
    (essay_page("Caf\u00e9 owners don\u2019t \u201cscale\u201d\u2026").encode()
     .replace(b"Sibling", b"\x93Sibling\x94").replace(b"owners", b"\x93owners\x94"),
     ("\u201cSibling\u201d Essay", "Caf\u00e9 \u201cowners\u201d don\u2019t \u201cscale\u201d\u2026")),
    # UTF-8 with a stray cp1252 em dash 0x97 and NBSP 0xA0
    (essay_page("Na\u00efve \u00bd\u2026\u2014 r\u00e9sum\u00e9 A B").encode().replace(b"A B", b"A\x97B\xa0C"),
     ("Sibling Essay", "Na\u00efve \u00bd\u2026\u2014 r\u00e9sum\u00e9 A\u2014B C")),
    # valid UTF-8 whose text was UTF-8-encoded twice upstream (â€™ stored as UTF-8)
    (essay_page("It\u2019s a caf\u00e9 \u2014 na\u00efve.").encode().decode("cp1252").encode(),
     ("Sibling Essay", "It\u2019s a caf\u00e9 \u2014 na\u00efve.")),
])
def test_pages_with_mojibake_are_repaired(raw, expected):
    from lib.essays import decode_page

    page = parse_essay_html(raw, "sibling.html")
    assert (page["title"], page["text"]) == expected
    assert decode_page(raw, "sibling.html")[2] is True  # (text, encoding, repaired)


def test_clean_pages_are_not_repaired():
    from lib.essays import decode_page

    for slug in ("read", "users"):  # UTF-8, cp1252
        assert decode_page((SNAP / f"{slug}.html").read_bytes(), slug)[2] is False, slug
    legit = essay_page("Curly \u201cquotes\u201d stay curly; the S\u00e3o Paulo caf\u00e9 stays.").encode()
    text, encoding, repaired = decode_page(legit)
    assert (encoding, repaired) == ("utf-8", False) and text == legit.decode()


def test_no_mojibake_in_any_snapshot_page():
    """Every committed snapshot page (the offline input of 01) parses without mojibake."""
    titles = [e["title"] for e in parse_articles_index((SNAP / "articles.html").read_bytes(), BASE)]
    assert len(titles) > 200 and not [t for t in titles if MOJIBAKE_RE.search(t)]
    for slug in SNAPSHOT_SLUGS:
        page = parse(slug)
        for field in ("title", "text", "notes"):
            assert not MOJIBAKE_RE.search(page[field]), (slug, field, MOJIBAKE_RE.search(page[field]))


def test_collect_counts_the_pages_that_needed_repair(tmp_path):
    """01's documents carry no mojibake, and info (01's metrics.json) counts the repaired pages."""
    snap = tmp_path / "snap"
    snap.mkdir()
    for path in SNAP.glob("*.html"):
        (snap / path.name).write_bytes(path.read_bytes())
    (snap / "mixed.html").write_bytes((PAGES_FIX / "mixed_encoding.html").read_bytes())
    (snap / "sibling.html").write_bytes(essay_page("It\u2019s fine.").encode().replace(b"fine", b"\x93ok\x94"))
    messages = []
    docs, info = collect_essays(base_url=BASE, cache_dir=tmp_path / "cache", snapshot_dir=snap, offline=True,
                                log=messages.append)
    assert info["documents"] == 32 and info["parse_failed"] == 0 and info["pages_repaired"] == 2
    for doc in docs:
        assert not MOJIBAKE_RE.search(doc["title"] + doc["text"] + doc["notes"]), doc["id"]
    assert {d["id"]: d["text"] for d in docs}["sibling"] == "It\u2019s \u201cok\u201d."
    assert sum("repaired" in m for m in messages) == 2
