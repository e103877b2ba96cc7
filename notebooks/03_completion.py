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
import os, subprocess, sys
from pathlib import Path
ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "lib" / "params.py").is_file()), None)
if ROOT is None:  # on its own: clone once (a restarted runtime reuses the clone), then install
    ROOT = Path("persona-llm").resolve()
    if not (ROOT / "lib" / "params.py").is_file():
        subprocess.run(["git", "clone", "--depth=1", repo_url, str(ROOT)], check=True)
    subprocess.run([sys.executable, "-m", "lib.environment", "install"], cwd=ROOT, check=True)
os.chdir(ROOT); sys.path.insert(0, str(ROOT))

from lib.environment import describe_environment
from lib.models import pick_backend
from lib.params import load_params
from lib.runfiles import stage_dir, require_stage, write_metrics
P = load_params(persona, profile, overrides)
OUT = stage_dir(persona, "03_completion")
BACKEND = pick_backend(P["model"]["backend"])  # imports unsloth (before transformers) when it is used
describe_environment()
print(f"     backend: {BACKEND}")

# %%
import time

import matplotlib.pyplot as plt

from lib.models import end_of_text_token, generate_texts, load_with_adapters, perplexity
from lib.runfiles import read_jsonl
from lib.split import document_header
from lib.train import LOG_FILE, run_training, spread_over_documents

STARTED = time.time()
T = P["train_completion"]
SPLIT = require_stage(persona, "02_split")
train_records = read_jsonl(SPLIT / "train.jsonl")
eval_records = read_jsonl(SPLIT / "eval.jsonl")
heldout_documents = read_jsonl(SPLIT / "heldout_documents.jsonl")
print(f"{len(train_records)} training chunks from {len({r['doc_id'] for r in train_records})} documents; "
      f"{len(eval_records)} held-out chunks from {len(heldout_documents)} documents")
print(f"base model {P['model']['base']}; LoRA r={T['lora_r']} alpha={T['lora_alpha']} on {', '.join(T['target_modules'])}")
print(f"{T['max_steps']} steps of {T['batch_size']} x {T['grad_accum']} chunks, lr {T['learning_rate']}, "
      f"checkpoint every {T['save_steps']} steps")

# %% [markdown]
# ## Train
# No compute on padding: on a GPU, padding-free batches (examples laid end to end, positions
# restarting per example); on a CPU, padded batches of similar lengths, which ran faster there
# (`bench/results/`). bf16 where the hardware has it. Loss on every token. Rerunning after a kill continues from the newest checkpoint in
# `checkpoints/`; a run that reached `train_completion.time_budget_min` stops here with its
# checkpoint saved, and the next run continues it.

# %%
summary = run_training("completion", P, SPLIT / "train.jsonl", OUT, overrides=overrides)
if not summary["finished"]:
    raise RuntimeError(
        f"training stopped at its time budget after step {summary['steps']} of {summary['max_steps']}; "
        f"the checkpoint is saved in {OUT / 'checkpoints'}: run this stage again to continue")
print({k: summary[k] for k in ("steps", "final_loss", "tokens_per_s", "nonpad_share", "train_wall_s", "backend",
                               "dtype", "batching")})

# %%
log = [entry for entry in read_jsonl(OUT / LOG_FILE) if "loss" in entry]
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot([e["step"] for e in log], [e["loss"] for e in log], marker=".")
ax.set_xlabel("step"); ax.set_ylabel("train loss"); ax.set_title(f"{persona}: completion training loss")
plt.show()

# %% [markdown]
# ## Held-out perplexity, before and after
# The same model with the adapter switched off is the base. Both score every token of the
# held-out chunks from 02, which no training step has seen (at most
# `train_completion.eval_max_chunks` of them, spread over the held-out documents).

# %%
model, tokenizer = load_with_adapters(P["model"]["base"], [OUT / "adapter"], P["model"])
scored = spread_over_documents(eval_records, T["eval_max_chunks"])
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
essays = generate_texts(model, tokenizer, prompts, T["sample_max_new_tokens"], seed=T["seed"],
                        stop_tokens=[end_of_text_token(tokenizer)], desc="essays")
for prompt, essay in zip(prompts, essays):
    print(prompt + essay + "\n" + "-" * 80)

# %%
write_metrics(OUT, {
    "final_train_loss": summary["final_loss"], "first_train_loss": summary["first_loss"],
    "eval_ppl_base": round(eval_ppl_base, 3), "eval_ppl_tuned": round(eval_ppl_tuned, 3),
    "tokens_per_s": summary["tokens_per_s"], "nonpad_share": summary["nonpad_share"],
    "backend": summary["backend"], "dtype": summary["dtype"], "batching": summary["batching"],
    "steps": summary["steps"], "resumed_from_step": summary["resumed_from_step"],
    "train_wall_s": summary["train_wall_s"], "wall_s": round(time.time() - STARTED, 1),
    "train_chunks": len(train_records), "eval_chunks_scored": len(scored), "eval_chunks": len(eval_records),
    "peak_gpu_memory_gb": summary["peak_gpu_memory_gb"], "base": P["model"]["base"], "adapter": "adapter",
})
print(open(OUT / "metrics.json").read())
