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
# # 02 split — hold out whole documents, cut the rest into titled chunks that fit the model
# Reads `runs/<persona>/01_scrape/documents.jsonl`; writes `train.jsonl`, `eval.jsonl`,
# `split.json`, `heldout_documents.jsonl` and `metrics.json` to `runs/<persona>/02_split/`.
#
# The original hand-run project learned three things here: full essays did not train at
# 2048 tokens of context, 500-character chunks taught the model to write short essays, and
# chunks without titles meant it could not be asked for "an essay titled X". So chunks are
# counted in the model's own tokens, a document that fits stays whole, a longer one is cut
# at paragraph (else sentence) boundaries, and every chunk starts with its title and date
# and ends with the end-of-text token. Evaluation documents are held out whole, so no chunk
# of an evaluated essay or interview is ever trained on.

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

stage = open_stage("02_split", persona, profile, overrides)
params, OUT = stage.params, stage.out

# %%
import collections

import matplotlib.pyplot as plt

from lib.models import end_of_text_token, load_tokenizer
from lib.runfiles import read_jsonl, require_stage, write_json, write_jsonl, write_metrics
from lib.split import count_tokens, split_documents

documents = read_jsonl(require_stage(persona, "01_scrape") / "documents.jsonl")
tokenizer = load_tokenizer(params["model"]["base"])
END = end_of_text_token(tokenizer)
print(f"{len(documents)} documents from 01; tokenizer of {params['model']['base']}; end token {END!r}")
print(f"split params: {params['split']}")

# %% [markdown]
# ## Hold out, then chunk
# The held-out rule and its seed are recorded in `split.json` so the split can be rebuilt.

# %%
result = split_documents(
    documents, tokenizer, max_tokens=params["split"]["max_tokens"], overlap_tokens=params["split"]["overlap_tokens"],
    heldout_rule=params["split"]["heldout_rule"], heldout_count=params["split"]["heldout_count"],
    seed=params["split"]["seed"], end_token=END)
by_id = {doc["id"]: doc for doc in documents}
for doc_id in result["heldout_ids"]:
    print(f"held out: {doc_id:<24} {by_id[doc_id]['title']!r} ({by_id[doc_id].get('date')})")

# %%
train_lengths = [count_tokens(tokenizer, c["text"]) for c in result["train"]]
eval_lengths = [count_tokens(tokenizer, c["text"]) for c in result["eval"]]
chunks_per_doc = collections.Counter(c["doc_id"] for c in result["train"] + result["eval"])
print(f"train: {len(result['train'])} chunks, {sum(train_lengths)} tokens; "
      f"eval: {len(result['eval'])} chunks, {sum(eval_lengths)} tokens")
print(f"{result['whole_documents']} of {len(documents)} documents fit whole; "
      f"most chunks for one document: {max(chunks_per_doc.values())}")
print("\nthe first train chunk begins:\n" + result["train"][0]["text"][:400])

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist([train_lengths, eval_lengths], bins=30, label=["train", "eval"], stacked=True)
ax.axvline(params["split"]["max_tokens"], color="k", linestyle="--", label="max_tokens")
ax.set_xlabel("tokens per chunk"); ax.set_ylabel("chunks"); ax.legend(); ax.set_title(f"{persona}: chunk lengths")
plt.show()

# %% [markdown]
# ## Write the split

# %%
assert max(train_lengths + eval_lengths) <= params["split"]["max_tokens"], "a chunk exceeds split.max_tokens"
write_jsonl(OUT / "train.jsonl", result["train"])
write_jsonl(OUT / "eval.jsonl", result["eval"])
write_jsonl(OUT / "heldout_documents.jsonl", [by_id[i] for i in result["heldout_ids"]])
write_json(OUT / "split.json", {"train_ids": result["train_ids"], "heldout_ids": result["heldout_ids"],
                                "rule": params["split"]["heldout_rule"], "count": params["split"]["heldout_count"],
                                "seed": params["split"]["seed"]})
write_metrics(OUT, {
    "documents": len(documents), "train_documents": len(result["train_ids"]),
    "heldout_documents": len(result["heldout_ids"]), "heldout_ids": result["heldout_ids"],
    "whole_documents": result["whole_documents"],
    "train_chunks": len(result["train"]), "eval_chunks": len(result["eval"]),
    "train_tokens": sum(train_lengths), "eval_tokens": sum(eval_lengths),
    "max_chunk_tokens": max(train_lengths + eval_lengths), "max_tokens": params["split"]["max_tokens"],
})
print(open(OUT / "metrics.json").read())
