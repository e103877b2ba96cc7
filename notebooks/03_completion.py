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
# # 03 completion — LoRA continued pretraining on the person's own text
# Reads `runs/<persona>/02_split/` (`train.jsonl`, `eval.jsonl`, `heldout_documents.jsonl`);
# writes the LoRA adapter (with its tokenizer) to `adapter/`, checkpoints to `checkpoints/`,
# the training log `train_log.jsonl` and `metrics.json` to `runs/<persona>/03_completion/`.
#
# Before any chat tuning, the model reads everything the person wrote, so style and
# knowledge come from their own words rather than from an LLM imitating them. The original
# hand-run project lost whole Colab sessions to disconnects and could not tell whether
# training helped: here a killed or timed-out run resumes from its last checkpoint, and the
# held-out documents (never trained on) are scored before and after — `eval_ppl_tuned` must
# come out below `eval_ppl_base`. The same cells run unsloth on a GPU and transformers + peft
# on a CPU; with `train_completion.num_gpus > 1` training runs in one process per GPU.

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

stage = open_stage("03_completion", persona, profile, overrides)
params, OUT = stage.params, stage.out

# %%
import time

from lib.models import end_of_text_token, generate_texts, load_with_adapters, perplexity
from lib.runfiles import read_jsonl, require_stage, write_metrics
from lib.split import document_header
from lib.stage import plot_training_loss, training_finished, training_metrics
from lib.train import run_training
from lib.train_data import spread_over_documents
from lib.train_resume import LOG_FILE

STARTED = time.time()
train_params = params["train_completion"]
SPLIT = require_stage(persona, "02_split")
train_records = read_jsonl(SPLIT / "train.jsonl")
eval_records = read_jsonl(SPLIT / "eval.jsonl")
heldout_documents = read_jsonl(SPLIT / "heldout_documents.jsonl")
print(f"{len(train_records)} training chunks from {len({r['doc_id'] for r in train_records})} documents; "
      f"{len(eval_records)} held-out chunks from {len(heldout_documents)} documents")
print(f"base model {params['model']['base']}; LoRA r={train_params['lora_r']} alpha={train_params['lora_alpha']} "
      f"on {', '.join(train_params['target_modules'])}")
print(f"{train_params['max_steps']} steps of {train_params['batch_size']} x {train_params['grad_accum']} chunks, "
      f"lr {train_params['learning_rate']}, "
      f"checkpoint every {train_params['save_steps']} steps")

# %% [markdown]
# ## Train
# No compute on padding: on a GPU, padding-free batches (examples laid end to end, positions
# restarting per example); on a CPU, padded batches of similar lengths, which ran faster there
# (`bench/results/`). bf16 where the hardware has it. Loss on every token. Rerunning after a
# kill continues from the newest checkpoint in
# `checkpoints/`; a run that reached `train_completion.time_budget_min` stops here with its
# checkpoint saved, and the next run continues it.

# %%
summary = run_training("completion", params, SPLIT / "train.jsonl", OUT, overrides=overrides)
print(training_finished(summary, OUT))  # raises when it stopped at its time budget

# %%
plot_training_loss(OUT / LOG_FILE, f"{persona}: completion training loss")

# %% [markdown]
# ## Held-out perplexity, before and after
# The same model with the adapter switched off is the base. Both score every token of the
# held-out chunks from 02, which no training step has seen (at most
# `train_completion.eval_max_chunks` of them, spread over the held-out documents).

# %%
model, tokenizer = load_with_adapters(params["model"]["base"], [OUT / "adapter"], params["model"])
scored = spread_over_documents(eval_records, train_params["eval_max_chunks"])
eval_texts = [record["text"] for record in scored]
print(f"scoring {len(scored)} of {len(eval_records)} held-out chunks")
eval_ppl_tuned = perplexity(model, tokenizer, eval_texts, desc="tuned")
with model.disable_adapter():
    eval_ppl_base = perplexity(model, tokenizer, eval_texts, desc="base")
print(f"held-out perplexity: base {eval_ppl_base:.2f} -> tuned {eval_ppl_tuned:.2f}")

# %% [markdown]
# ## Essays from held-out titles
# The header every training chunk starts with ("Title: ...", "Date: ...") is the prompt; the
# model writes the rest. These titles were never trained on.

# %%
titles = heldout_documents[:3]
prompts = [document_header(doc) for doc in titles]
essays = generate_texts(model, tokenizer, prompts, train_params["sample_max_new_tokens"], seed=train_params["seed"],
                        stop_tokens=[end_of_text_token(tokenizer)], desc="essays")
for prompt, essay in zip(prompts, essays):
    print(prompt + essay + "\n" + "-" * 80)

# %%
write_metrics(OUT, {
    **training_metrics(summary, time.time() - STARTED),
    "eval_ppl_base": round(eval_ppl_base, 3), "eval_ppl_tuned": round(eval_ppl_tuned, 3),
    "train_chunks": len(train_records), "eval_chunks_scored": len(scored), "eval_chunks": len(eval_records),
    "base": params["model"]["base"], "adapter": "adapter",
})
print(open(OUT / "metrics.json").read())
