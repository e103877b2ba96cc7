# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 scrape — the person's own words, as documents
# Essays (Paul Graham): crawls `articles.html` and every essay page, politely (one request
# at a time, a delay, a clear user agent, retries with backoff, a disk cache so a killed
# crawl resumes and nothing is fetched twice). Interviews (Donald Trump): fetches and parses
# speaker-labelled transcripts into turns, marking the persona's turns with a params regex.
# Without network (or with `OFFLINE=1`) it uses the snapshot committed in `data/snapshot/`.
# A folder (anyone else, `persona.kind: folder`): reads the person's own files — documents,
# transcripts, subtitles, chat exports — and copies what it used into the run folder.
#
# Writes `runs/<persona>/01_scrape/documents.jsonl` (id, title, date, source, text and
# notes, or turns), `metrics.json`, and for a folder `sources/` and `sources.jsonl`
# (file, sha256, bytes, kind, document id).

# %% tags=["parameters"]
persona = "pg"    # which params/<persona>.yaml
profile = "auto"  # auto | cpu | t4 | gpu | smoke
overrides = ""    # space-separated section.key overrides (SET in make), applied last
repo_url = "https://github.com/persona-llm/persona-llm"  # fetched when the notebook is opened on its own (Colab/Kaggle)

# %%
# Setup: find the repository, or fetch it and its requirements when opened on its own in Colab/Kaggle.
import os
import subprocess
import sys
from pathlib import Path

ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "lib" / "params.py").is_file()), None)
if ROOT is None:  # on its own: clone once (a restarted runtime reuses the clone), then install
    ROOT = Path("persona-llm").resolve()
    if not (ROOT / "lib" / "params.py").is_file():
        subprocess.run(["git", "clone", "--depth=1", repo_url, str(ROOT)], check=True)
    subprocess.run([sys.executable, "-m", "lib.environment", "install"], cwd=ROOT, check=True)
os.chdir(ROOT); sys.path.insert(0, str(ROOT))

from lib.stage import open_stage

stage = open_stage("01_scrape", persona, profile, overrides)
params, OUT = stage.params, stage.out

# %%
import collections
import logging
import shutil

from lib.local_files import read_folder
from lib.params import source_folder
from lib.runfiles import cache_root, write_jsonl, write_metrics
from lib.scrape import collect_essays
from lib.transcripts import collect_interviews

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", force=True)
offline = os.environ.get("OFFLINE", "") not in ("", "0")
scrape_params = params["scrape"]
common = dict(cache_dir=cache_root() / "http" / persona, snapshot_dir=ROOT / scrape_params["snapshot_dir"], offline=offline,
              delay_s=scrape_params["delay_s"], user_agent=scrape_params["user_agent"], retries=scrape_params["retries"],
              timeout_s=scrape_params["timeout_s"],
              max_documents=scrape_params["max_documents"])
print(f"persona {params['persona']['name']} ({params['persona']['kind']}); offline={offline}")

# %% [markdown]
# ## Collect
# Online first; the committed snapshot when the network is unreachable or `OFFLINE=1`.
# Pages or files that fail to parse are logged and skipped, each with its reason; the rest
# continue. A folder with nothing usable stops here, naming the folder.

# %%
if params["persona"]["kind"] == "essays":
    documents, info = collect_essays(base_url=scrape_params["base_url"], index_page=scrape_params["index_page"], **common)
elif params["persona"]["kind"] == "interviews":
    documents, info = collect_interviews(urls=scrape_params["transcript_urls"], persona_regex=params["persona"]["speaker_regex"],
                                         persona_name=params["persona"]["name"], **common)
else:
    shutil.rmtree(OUT / "sources", ignore_errors=True)  # a copy of what this run reads, nothing older,
    for stale in ("documents.jsonl", "sources.jsonl"):     # and no documents if the folder gives none
        (OUT / stale).unlink(missing_ok=True)
    documents, info = read_folder(source_folder(params), persona_regex=params["persona"]["speaker_regex"],
                                  persona_name=params["persona"]["name"], copy_to=OUT / "sources",
                                  max_documents=scrape_params["max_documents"])
    write_jsonl(OUT / "sources.jsonl", info["provenance"])
    print(f"read {info['documents']} of {info['listed']} files in {info['folder']}: {info['by_kind']}")
    for skipped in info["skipped"]:
        print(f"  skipped {skipped['file']}: {skipped['reason']}")
if not documents:
    raise RuntimeError(f"no documents collected for {persona}: {info}")
print({k: v for k, v in info.items() if k not in ("errors", "skipped", "provenance", "warnings")})
for error in info.get("errors", [])[:20]:
    print("  skipped:", error)

# %% [markdown]
# ## A look at what came back

# %%
def persona_words(doc):
    """The person's words in a document: an essay's text, an interview's persona turns."""
    if doc["kind"] == "essay":
        return len(doc["text"].split())
    return sum(len(t["text"].split()) for t in doc["turns"] if t["is_persona"])


for doc in documents[:5]:
    print(f"{doc['id']:<28} {str(doc.get('date')):<28} {persona_words(doc):>6} words  {doc['title'][:60]}")

essays = [d for d in documents if d["kind"] == "essay"]
interviews = [d for d in documents if d["kind"] == "interview"]
if essays:
    sample = essays[0]
    print(f"\n--- {sample['title']} ({sample['date']}) ---\n{sample['text'][:700]}\n...")
    print(f"\nnotes kept apart: {sum(bool(d['notes']) for d in essays)} of {len(essays)} essays")
if interviews:
    sample = interviews[0]
    print(f"\n--- {sample['title']} ---")
    for turn in sample["turns"][:6]:
        print(f"{'*' if turn['is_persona'] else ' '} {turn['speaker']}: {turn['text'][:160]}")
    speakers = collections.Counter(t["speaker"] for d in interviews for t in d["turns"] if t["is_persona"])
    print(f"\npersona speaker labels matched: {dict(speakers)}")
words = [persona_words(d) for d in documents]

# %% [markdown]
# ## Who speaks in each interview
# Every speaker label the parser read, with its turns and words; `*` marks the ones counted as
# the persona (`persona.speaker_regex`). Below: the warnings, each naming its file — a label
# with the persona's name that the regex misses, a bare surname beside a full name, a line
# that looks like a label but was kept as text. Fix the regex or the file, or accept them.

# %%
if interviews:
    for doc in interviews:
        print(f"{doc['title'][:90]}")
        for row in doc["speakers"]:
            print(f"   {'*' if row['is_persona'] else ' '} {row['label']:<28} {row['turns']:>4} turns {row['words']:>7} words")
    print(f"\n{len(info['warnings'])} speaker warnings")
    for warning in info["warnings"]:
        print("  warning:", warning)

# %% [markdown]
# ## Write the documents

# %%
write_jsonl(OUT / "documents.jsonl", documents)
metrics = {
    "documents": len(documents), "mode": info["mode"], "reason": info.get("reason", ""),
    "persona_words": sum(words), "median_document_words": sorted(words)[len(words) // 2],
}
if params["persona"]["kind"] == "folder":
    metrics.update(folder=info["folder"], files_listed=info["listed"], by_kind=info["by_kind"],
                   skipped=info["skipped"])
else:
    metrics.update({key: info[key] for key in ("fetched", "cached", "skipped_404", "failed", "parse_failed")})
    metrics["pages_repaired"] = info.get("pages_repaired", 0)
if interviews:
    metrics["persona_turns"] = sum(t["is_persona"] for d in interviews for t in d["turns"])
    metrics["other_turns"] = sum(not t["is_persona"] for d in interviews for t in d["turns"])
    metrics["speaker_warnings"] = len(info["warnings"])
write_metrics(OUT, metrics)
print(metrics)
