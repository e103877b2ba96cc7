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
# # 07 evaluate — measure whether the model sounds like the person, every system side by side
# Reads 01's documents, 02's held-out documents and chunks, the adapters of 03 and 05, 04's and
# 06's metrics and 06's GGUF files. Writes `runs/<persona>/07_evaluate/`: `answers/<system>.jsonl`
# (every answer, resumable), `report.md`, `progress_entry.md` and `metrics.json`; appends the
# entry to `PROGRESS.md`.
#
# The original project compared its models by eye and concluded that the finetune's *style*
# beat prompting the base model to pretend, but its *content* was questionable; it also only
# noticed by chance that the model said "friend" and "Ah," constantly, and that the Trump model
# called itself Nancy Pelosi. Here the same comparison is measured on every run: the base model
# prompted as the persona (the original baseline), the completion model, the chat model and
# its GGUF quants answer the same prompts with the same seeds, and each gets an identity rate,
# a style score (0 = the prompted base model, 1 = the person's own held-out text), overlap with
# the person's real held-out answers or essays, degeneration measures and held-out perplexity.

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

stage = open_stage("07_evaluate", persona, profile, overrides)
params, OUT = stage.params, stage.out

# %%
import collections
import time

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from lib import eval_answers, eval_prompts, eval_report, eval_scores, eval_systems, progress_log
from lib.eval_authorship import authorship_by_system, authorship_markdown, persona_verifier
from lib.eval_figure import summary_figure
from lib.eval_identity import IDENTITY_TASKS, identity_markdown, identity_rates, judged_identity_answers
from lib.eval_lengths import length_table, lengths_markdown, person_answer_lengths
from lib.params import read_questions
from lib.runfiles import atomic_write_text, read_json, read_jsonl, require_stage, stage_dir, write_metrics
from lib.split import persona_text

started = time.time()
eval_params = params["evaluate"]
NAME = params["persona"]["name"]

# %% [markdown]
# ## Inputs
# The held-out documents were never trained on: their titles, interview questions and text
# are what the systems are measured against. The person's training documents give the word
# frequencies that Burrows' Delta is scaled by and the real corpus that tics are counted against.

# %%
documents = read_jsonl(require_stage(persona, "01_scrape") / "documents.jsonl")
split_dir = require_stage(persona, "02_split")
split = read_json(split_dir / "split.json")
heldout_docs = read_jsonl(split_dir / "heldout_documents.jsonl")
eval_chunks = read_jsonl(split_dir / "eval.jsonl")
train_ids = set(split["train_ids"])
train_docs = [doc for doc in documents if doc["id"] in train_ids]
stage_metrics = {stage: read_json(require_stage(persona, stage) / "metrics.json")
                 for stage in ("02_split", "03_completion", "04_qa", "05_chat", "06_quantize")}
systems = eval_systems.find_systems(stage_dir(persona, "03_completion", create=False),
                                    stage_dir(persona, "05_chat", create=False),
                                    stage_dir(persona, "06_quantize", create=False), eval_params["gguf_levels"],
                                    completion=eval_params["completion_system"])
print(f"{len(train_docs)} training documents, {len(heldout_docs)} held out: "
      + ", ".join(repr(d["title"]) for d in heldout_docs))
for system in systems:
    print(f"{system.name:>16}: " + (str(system.gguf) if system.gguf else f"{system.base_model(params['model']['base'])} + "
                                    + (", ".join(str(a) for a in system.adapters) or "no adapter")))

# %% [markdown]
# ## Prompts
# The same for every system, each answered once per seed: identity probes, the persona's fixed
# questions, and questions whose real answer is the person's held-out text (knowledge):
# held-out interview questions (interview personas), and 04's questions written for passages
# of the held-out essays (essay personas), with the held-out essay titles.

# %%
questions = read_questions(ROOT / eval_params["questions_file"])
heldout_questions_file = require_stage(persona, "04_qa") / "heldout_questions.jsonl"
heldout_questions = read_jsonl(heldout_questions_file) if heldout_questions_file.is_file() else []
prompts = eval_prompts.build_prompts(heldout_docs, questions, eval_params, heldout_questions)
print(dict(collections.Counter(p["task"] for p in prompts)), f"x seeds {eval_params['seeds']}")
for p in prompts[:2] + [p for p in prompts if p["task"] in ("knowledge", "title")][:2]:
    print(f"  [{p['task']}] {p['question'][:120]}")

# %% [markdown]
# ## Answers and held-out perplexity
# Each answer is appended to `answers/<system>.jsonl` as its group finishes, keyed by the
# model files, prompt, seed and sampling settings: a killed run picks up where it stopped.
# Perplexity is on 02's held-out chunks, the same token ids for every system (GGUF files
# through llama.cpp).

# %%
ppl_texts = [chunk["text"] for chunk in eval_chunks[:eval_params["ppl_max_chunks"]]]
results = {system.name: eval_answers.run_system(system, prompts, ppl_texts, params, OUT / "answers") for system in systems}
answers = {name: result["answers"] for name, result in results.items()}
heldout_ppl = {name: result["heldout_ppl"] for name, result in results.items()}
print({name: len(records) for name, records in answers.items()}, "answers")
print(f"held-out perplexity on {len(ppl_texts)} chunks:", {name: round(v, 2) for name, v in heldout_ppl.items()})

# %% [markdown]
# ## Authorship: would a verifier take it for the person?
# A model of the person's style (`lib/authorship.py`), trained only on their 02 training
# documents against other people's text (the other personas' corpora and the base model's own
# answers on the person's training topics), judges every answer except the identity probes:
# P(the person wrote it), with a bootstrap 95% CI over the answers. Distinguishability is how
# well a classifier separates a system's answers from the person's held-out text (0.5: it
# cannot tell them apart). The person's own held-out text, cut into answer-sized windows, is
# the ceiling.

# %%
verifier = persona_verifier(persona, profile, overrides)
authorship = authorship_by_system(
    verifier, {name: [(a["id"], a["answer"]) for a in records if a["task"] not in IDENTITY_TASKS and a["answer"].strip()]
               for name, records in answers.items()},
    [persona_text(doc) for doc in heldout_docs])
display(Markdown(authorship_markdown(authorship)))

# %% [markdown]
# ## Who does it say it is? Identity, plain and adversarial
# The share of answers to identity probes that name the persona, claim no other identity and
# do not call themselves an AI: plain probes ("Who are you?") and adversarial ones ("You're an
# AI, admit it", "You're Nancy Pelosi, right?") apart, each with a bootstrap 95% CI over the
# probes.

# %%
identity = identity_rates(answers, NAME)
display(Markdown(identity_markdown(identity)))

# %% [markdown]
# ## How long are the answers?
# Word counts of each system's answers to questions (the fixed ones and the held-out
# questions), beside the person's real answers in the held-out documents; KS is the
# Kolmogorov-Smirnov distance between the two length distributions (0: the same).

# %%
lengths = length_table(answers, person_answer_lengths(heldout_docs, params["qa"]))
display(Markdown(lengths_markdown(lengths, eval_params["max_new_tokens"])))

# %% [markdown]
# ## Would a judge take it for the person? Blind pairwise judge (optional)
# Off by default (`evaluate.judge: false`: nothing happens here, no server starts). When on, for
# every held-out prompt with a real answer (interview questions: the person's real answer; essay
# titles: the real essay's opening cut to the answer's length) a judge model sees the question
# and two answers in a seeded random order, the person's real one and the system's, and says
# which is the real person's (`lib/eval_judge.py`). "Passes as the person" is the share of
# verdicts that pick the system's answer (0.5: indistinguishable), with a bootstrap 95% CI over
# the questions; the share of "A" verdicts checks position bias; unparsed verdicts are counted.
# Requests are cached in `judge_cache.jsonl` as they arrive, so a rerun sends only what is
# missing. With `evaluate.judge_base_url: null` the judge is the embedded 135M model on a local
# llama.cpp server (as 04's `qa.base_url: null`): its verdicts mean nothing, it only runs the
# mechanics. Use a strong model via `evaluate.judge_base_url`, `judge_model` and `judge_api_key_env`.

# %%
judge, judge_table = None, ""
if eval_params["judge"]:
    import contextlib

    from lib.eval_judge import build_comparisons, judge_endpoint, judge_markdown, judge_rates, run_judge
    from lib.llama_server import embedded_llama_server
    from lib.llm_client import summarize

    qa_params = params["qa"]
    comparisons, skipped_empty = build_comparisons(prompts, answers, eval_params["judge_seed"])
    embedded_judge = not eval_params["judge_base_url"]
    judged, judge_results = [], []
    judge_label = eval_params["judge_base_url"] or f"local llama.cpp server ({qa_params['embedded_model']})"
    print(f"{len(comparisons)} comparisons (system answer vs the person's real one); empty answers not judged: "
          f"{skipped_empty}")
    if comparisons:
        if embedded_judge:
            server_context = embedded_llama_server(qa_params["embedded_model"], OUT / "judge_llama_server.log",
                                                   qa_params["server_n_ctx"], qa_params["server_threads"] or None)
        else:
            server_context = contextlib.nullcontext(None)
        with server_context as server:
            endpoint = judge_endpoint(eval_params, qa_params["timeout_s"], server)
            judge_label = (f"{eval_params['judge_base_url']}, model {endpoint.model}" if not embedded_judge
                           else f"local llama.cpp server ({endpoint.model})")
            judged, judge_results = run_judge(comparisons, NAME, endpoint, OUT / "judge_cache.jsonl",
                                              judge_seed=eval_params["judge_seed"], max_tokens=eval_params["judge_max_tokens"],
                                              concurrency=eval_params["judge_concurrency"], retries=qa_params["retries"],
                                              backoff_s=qa_params["retry_backoff_s"])
    judge_rates_by_system = judge_rates(judged, skipped_empty)
    judge_table = judge_markdown(judge_rates_by_system, judge_label, embedded_judge)
    judge = {"judge": judge_label, "embedded": embedded_judge, "model": eval_params["judge_model"] if not embedded_judge else
             qa_params["embedded_model"], "comparisons": len(comparisons), "requests": summarize(judge_results),
             "rates": judge_rates_by_system}
    print(judge["requests"])
    display(Markdown(judge_table))
else:
    print("evaluate.judge is off: no pairwise judge")

# %% [markdown]
# ## Measures
# Style and degeneration are measured on every answer except the identity probes; the
# person's own held-out text is shown as a reference row. Distinct-2 and the repeated 3-gram
# rate have no better direction: the person's own value is the target.

# %%
scores = eval_scores.score_systems(answers, prompts, heldout_docs, train_docs, NAME)
scores["heldout_ppl"] = heldout_ppl
names = [system.name for system in systems]
display(Markdown(eval_report.measures_table(scores, names)))
print("tics:", {name: tics for name, tics in scores["tics"].items() if tics})

# %%
fig = summary_figure(scores, names, authorship, identity, NAME)
fig.savefig(OUT / "summary.png", dpi=110)
plt.show()

# %% [markdown]
# ## The fixed questions, side by side

# %%
for question, by_system in eval_report.answers_by_prompt(answers, "questions", eval_params["seeds"][0]):
    print(f"\n=== {question}")
    for name in names:
        print(f"--- {name}: {' '.join(by_system.get(name, '').split())[:400]}")

# %% [markdown]
# ## Identity: answers that did not answer as the persona

# %%
for name in names:
    for task, kind in IDENTITY_TASKS.items():
        judged = judged_identity_answers(answers[name], NAME, task)
        if not judged:
            continue
        failed = [j for j in judged if not j["ok"]]
        print(f"{name}, {kind} probes: {1 - len(failed) / len(judged):.0%} answered as {NAME}")
        for j in failed[:2]:
            print(f"    {j['question']!r} -> {' '.join(j['answer'].split())[:150]!r}")

# %% [markdown]
# ## Report and PROGRESS.md entry
# The entry follows the original log (model, data, train setup, final loss, samples) and adds
# the measures against the baseline; its conclusion is left for a person to write.

# %%
report = eval_report.render_report(persona_name=NAME, persona=persona, profile=params["run"]["profile"], systems=systems,
                                metrics=scores, answers=answers, prompts=prompts, seeds=eval_params["seeds"],
                                authorship_table=authorship_markdown(authorship),
                                identity_table=identity_markdown(identity),
                                lengths_table=lengths_markdown(lengths, eval_params["max_new_tokens"]), judge_table=judge_table)
atomic_write_text(OUT / "report.md", report)

key_table = eval_report.measures_table({k: scores[k] for k in ("identity_rate", "style_score", "distinct_2", "tic_rate",
                                                            "heldout_ppl")}, names, with_own_text=False)
samples = [{"question": q, "system": name, "answer": " ".join(by_system.get(name, "").split()[:80])}
           for q, by_system in eval_report.answers_by_prompt(answers, "questions", eval_params["seeds"][0])[:2]
           for name in (eval_systems.BASELINE, "chat")]
key, entry = progress_log.chain_entry(
    persona, params, stage_metrics,
    {"all": len(documents), "trained": len(train_docs), "heldout": len(heldout_docs)}, scores, authorship,
    measures_table="\n\n".join([authorship_markdown(authorship), identity_markdown(identity),
                                 lengths_markdown(lengths, eval_params["max_new_tokens"]), key_table]),
    samples=samples)
atomic_write_text(OUT / "progress_entry.md", entry)
appended = bool(eval_params["progress_log"]) and progress_log.append_entry(ROOT / eval_params["progress_log"], entry, key)
print(f"report: {OUT / 'report.md'}; PROGRESS.md entry " + (f"appended to {eval_params['progress_log']}" if appended else
      "already there" if eval_params["progress_log"] else "written to the run folder only (evaluate.progress_log is empty)"))
print(entry)

# %% [markdown]
# ## Metrics
# Per measure, per system; metrics.json is the stage's last write.

# %%
metrics = {
    "systems": names, "baseline": eval_systems.BASELINE, "seeds": eval_params["seeds"],
    "prompts": dict(collections.Counter(p["task"] for p in prompts)),
    "answers": sum(len(records) for records in answers.values()),
    **{key: scores[key] for key in ("identity_rate", "style_score", "distinct_2", "tic_rate", "heldout_ppl",
                                    "repeated_3gram_rate", "knowledge_rouge_l", "title_rouge_l", "title_style_score",
                                    "delta", "char_sim",
                                    "delta_score", "char_score", "style_words", "tics")},
    "authorship": authorship, "identity": identity, "answer_lengths": lengths, "judge": judge,
    "ppl_chunks": len(ppl_texts), "progress_entry_appended": appended, "wall_s": round(time.time() - started, 1),
}
write_metrics(OUT, metrics)
print(open(OUT / "metrics.json").read()[:1500])
