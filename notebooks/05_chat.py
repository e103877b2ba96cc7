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
# # 05 chat — LoRA chat finetune on the person's own answers
# Reads `runs/<persona>/04_qa/conversations.jsonl` and 03's adapter
# (`runs/<persona>/03_completion/adapter/`); writes the completion-tuned model merged in 16 bit
# to `base/`, the chat LoRA adapter (with the tokenizer and its chat template) to `adapter/`,
# checkpoints, `train_log.jsonl` and `metrics.json` to `runs/<persona>/05_chat/`.
# The chat model is `base/` + `adapter/`: 06 merges that pair.
#
# Chat tuning starts from the model that has read the person's writing (03), so the chat
# data only has to teach the turn-taking. Two lessons from the original hand-run project:
# the loss covers only what the assistant says (plus the end-of-turn token, so it learns to
# stop), never the questions or the system prompt; and a base model given an instruct
# template learns just those template tokens' embedding rows, because training the whole
# embedding matrix ran a T4 out of memory. An instruct model keeps its own template.

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

stage = open_stage("05_chat", persona, profile, overrides)
params, OUT = stage.params, stage.out

# %%
import collections
import time

from lib.chat_data import mark_loss_spans, read_conversations
from lib.chat_template import chat_prompt, set_chat_template
from lib.models import generate_texts, load_tokenizer, load_with_adapters
from lib.params import read_questions
from lib.runfiles import require_stage, write_metrics
from lib.stage import plot_training_loss, training_finished, training_metrics
from lib.train import run_training
from lib.train_model import merged_base_for_chat
from lib.train_resume import LOG_FILE

STARTED = time.time()
train_params = params["train_chat"]
CONVERSATIONS = require_stage(persona, "04_qa") / "conversations.jsonl"
COMPLETION_ADAPTER = require_stage(persona, "03_completion") / "adapter"
conversations = read_conversations(CONVERSATIONS)
print(f"{len(conversations)} conversations by source: "
      f"{dict(collections.Counter(c.get('source', '?') for c in conversations))}")
print(f"chat template: {params['model']['chat_template']}; {train_params['max_steps']} steps of "
      f"{train_params['batch_size']} x {train_params['grad_accum']}, "
      f"lr {train_params['learning_rate']}, conversations over {train_params['max_length']} tokens dropped")

# %% [markdown]
# ## What the loss covers
# One conversation as the model sees it, with the trained text in `[[...]]`: each answer and
# the end-of-turn token after it. Everything else only conditions the answer.

# %%
preview_tokenizer = load_tokenizer(params["model"]["base"])
set_chat_template(preview_tokenizer, params["model"]["chat_template"])
print(mark_loss_spans(preview_tokenizer, conversations[0]["messages"])[:1500])

# %% [markdown]
# ## Start from the completion-tuned model
# 03's adapter is merged into a 16-bit reload of the base (never into 4-bit weights) and
# saved as `base/`; the chat adapter is trained on top of it.

# %%
chat_base = merged_base_for_chat(params["model"], COMPLETION_ADAPTER, OUT)

# %% [markdown]
# ## Train
# Batched as in 03 (padding-free on a GPU, length-grouped on a CPU); a killed run continues
# from its newest checkpoint, one that reached
# `train_chat.time_budget_min` stops here and continues on the next run.

# %%
summary = run_training("chat", params, CONVERSATIONS, OUT, base=str(chat_base), overrides=overrides)
print(training_finished(summary, OUT))  # raises when it stopped at its time budget
print(summary["data"])

# %%
plot_training_loss(OUT / LOG_FILE, f"{persona}: chat training loss", "train loss (assistant tokens)")

# %% [markdown]
# ## Before and after
# The same fixed questions, answered by the completion-tuned model (adapter off) and by the
# chat model (adapter on), with the persona's system prompt and the same sampling seed.

# %%
questions = read_questions(ROOT / params["evaluate"]["questions_file"])[:train_params["sample_questions"]]
model, tokenizer = load_with_adapters(chat_base, [OUT / "adapter"], params["model"])
prompts = [chat_prompt(tokenizer, question, params["persona"]["system_prompt"]) for question in questions]
after = generate_texts(model, tokenizer, prompts, train_params["sample_max_new_tokens"], seed=train_params["seed"], desc="after")
with model.disable_adapter():
    before = generate_texts(model, tokenizer, prompts, train_params["sample_max_new_tokens"], seed=train_params["seed"],
                            desc="before")
for question, old, new in zip(questions, before, after):
    print(f"Q: {question}\n  before: {old}\n  after:  {new}\n")

# %%
write_metrics(OUT, {
    **training_metrics(summary, time.time() - STARTED),
    "conversations": summary["data"]["conversations"], "conversations_trained": summary["data"]["kept"],
    "dropped_too_long": summary["data"]["dropped_too_long"], "loss_token_share": summary["data"]["loss_share"],
    "chat_template": params["model"]["chat_template"],
    "base": "base", "adapter": "adapter",
})
print(open(OUT / "metrics.json").read())
