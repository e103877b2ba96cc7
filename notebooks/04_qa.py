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
# # 04 QA — chat data whose answers are the person's own words
# Reads `runs/<persona>/01_scrape/documents.jsonl` and `runs/<persona>/02_split/split.json`
# (held-out documents never reach the chat data); writes `conversations.jsonl`
# (`{"messages": [...], "source", "doc_id"}`), 07's questions on the held-out essays
# `heldout_questions.jsonl` (`{"doc_id", "question", "answer"}`), the request cache
# `llm_cache.jsonl`, the local server's log and `metrics.json` to `runs/<persona>/04_qa/`.
#
# The original hand-run project asked an LLM to answer "as Paul Graham". The answers said
# "friend" and "Ah," all the time, came wrapped in quotes, gave advice the real person would
# not give, and the Trump model claimed to be Nancy Pelosi. So here the answers are real:
# an LLM only writes the *question* that a real passage answers (backtranslation), real
# interview questions come with their real answers, questions the person asks in their own
# essays come with the text that answers them, and identity answers come from a
# profile card in params. Everything an LLM writes is cleaned, and phrases it overuses
# compared with the person's real text are reported and filtered. Every request is cached
# on disk as it completes, so a killed run repeats none of them.

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

stage = open_stage("04_qa", persona, profile, overrides)
params, OUT = stage.params, stage.out

# %%
import collections
import contextlib
import random
import textwrap
import time

from lib import qa_clean, qa_duplicates, qa_identity, qa_sources
from lib.llama_server import embedded_llama_server
from lib.llm_client import chat_request, complete_all, endpoint_from_params, summarize
from lib.runfiles import derived_seed, read_json, read_jsonl, require_stage, write_jsonl, write_metrics
from lib.text import word_count
from lib.tics import find_tics, real_corpus_texts, tic_in

qa_params = params["qa"]
NAME = params["persona"]["name"]
started = time.time()

# %% [markdown]
# ## The person's real text, without the held-out documents
# 02 holds whole documents out for evaluation; none of their words may reach the chat data.

# %%
documents_file = require_stage(persona, "01_scrape") / "documents.jsonl"
documents = read_jsonl(documents_file)
qa_sources.check_documents(documents, str(documents_file))
split_file = require_stage(persona, "02_split") / "split.json"
split = read_json(split_file)
if not isinstance(split.get("heldout_ids"), list):
    raise ValueError(f"{split_file}: expected a 'heldout_ids' list (written by 02_split)")
usable = qa_sources.training_documents(documents, split["heldout_ids"])
print(f"{len(documents)} documents, {len(documents) - len(usable)} held out, {len(usable)} usable "
      f"({collections.Counter(d['kind'] for d in usable)})")

# %% [markdown]
# ## The system prompt
# Every conversation starts with `persona.system_prompt` as a system message. Evaluation
# and the Ollama Modelfile use the same prompt, so training and use see the same context;
# and without a system message, chat templates like SmolLM2's insert their own ("You are a
# helpful AI assistant named SmolLM"), which would teach the model its identity next to the
# wrong name.

# %%
SYSTEM = params["persona"]["system_prompt"]
print(f"system prompt: {SYSTEM!r}" if SYSTEM else "persona.system_prompt is empty: no system message")

# %% [markdown]
# ## Interviews: real questions, real answers
# Each interviewer question with the persona's answer right after it, alone and in short
# runs of consecutive exchanges. A turn that asks nothing ("Wow.") or an answer under
# `qa.min_answer_words` ("A lot. A lot.") is a fragment or a non-answer and is left out.

# %%
records = {source: [] for source in qa_sources.SOURCES}
if "interviews" in qa_params["sources"]:
    records["interviews"] = qa_sources.interview_conversations(
        usable, qa_params["interview_window"], qa_params["min_answer_words"], qa_params["max_answer_words"],
        qa_params["max_question_words"], SYSTEM)
    n_multi = sum(len(r["messages"]) > 3 + bool(SYSTEM) for r in records["interviews"])
    print(f"interviews: {len(records['interviews'])} conversations ({n_multi} multi-turn)")
    if not records["interviews"]:
        print("  (no interview transcripts among this persona's documents)")

# %% [markdown]
# ## The person's own questions
# Essayists ask the questions they go on to answer: "Why do investors like startups so much?"
# Where such a question opens or closes a paragraph and stands alone (no "that", "he" or "I"
# that points back into the essay), it becomes a user's question and the text after it,
# about `qa.passage_words` words, the answer. No LLM writes anything, and the answers are as
# long as the person's own paragraphs.

# %%
if "own_questions" in qa_params["sources"]:
    records["own_questions"] = qa_sources.own_question_conversations(
        usable, qa_params["min_answer_words"], qa_params["max_answer_words"], qa_params["passage_words"],
        qa_params["max_question_words"], SYSTEM)
    print(f"own questions: {len(records['own_questions'])} conversations from "
          f"{len({r['doc_id'] for r in records['own_questions']})} essays")
    for r in records["own_questions"][:3]:
        print(f"  {r['messages'][-2]['content']}  ->  {word_count(r['messages'][-1]['content'])} words")

# %%
card = params["persona"]["profile_card"]  # not empty when identity is a source (params.check_values)

# %% [markdown]
# ## Backtranslation prompts: the LLM writes only the question
# Essays are cut into passages of about `qa.passage_words` words at paragraph ends;
# interview answers that no real question asks for become passages too. The passage
# itself (footnote markers and stage directions removed, nothing rewritten) is the answer.
#
# Up to `qa.heldout_questions` passages of the *held-out* essays get a question the same
# way, for 07 alone: a question whose real answer is the person's unseen passage, as a
# held-out interview gives an interview persona. They go to `heldout_questions.jsonl`,
# never to the chat data.

# %%
passages, jobs = [], []
if "backtranslation" in qa_params["sources"]:
    passages = qa_sources.backtranslation_passages(
        usable, qa_params["min_answer_words"], qa_params["max_answer_words"], qa_params["passage_words"],
        qa_params["max_question_words"], qa_params["max_passages"], qa_params["seed"])
    jobs += [("backtranslation", p, qa_sources.backtranslation_messages(p, NAME)) for p in passages]
    print(f"backtranslation: {len(passages)} passages "
          f"(median {sorted(word_count(p['text']) for p in passages)[len(passages) // 2] if passages else 0} words)")
heldout_passages = qa_sources.heldout_question_passages(
    documents, split["heldout_ids"], qa_params["min_answer_words"], qa_params["max_answer_words"],
    qa_params["passage_words"], qa_params["heldout_questions"], qa_params["seed"])
jobs += [("heldout_questions", p, qa_sources.backtranslation_messages(p, NAME)) for p in heldout_passages]
print(f"held-out essays: {len(heldout_passages)} passages to write questions for, for 07 only (never trained on)")
if "llm_answers" in qa_params["sources"]:
    jobs += [("llm_answers", {"prompt": prompt, "doc_id": None}, qa_sources.llm_answer_messages(prompt, NAME, SYSTEM))
             for prompt in qa_params["llm_answer_prompts"]]
    print(f"llm_answers: {len(qa_params['llm_answer_prompts'])} prompts")

# %% [markdown]
# ## Generation
# Any OpenAI-compatible endpoint (`qa.base_url`, `qa.model`, key from the environment
# variable named in `qa.api_key_env`); with `qa.base_url: null` a local llama.cpp server
# serving the embedded model is started here and always stopped afterwards. Requests run
# `qa.concurrency` at a time with retries; each answer is appended to `llm_cache.jsonl`
# as it arrives, so a rerun after a crash or a kill sends only what is missing.

# %%
results = []
generator = None
if jobs:
    if qa_params["base_url"]:
        server_context = contextlib.nullcontext(None)
    else:
        server_context = embedded_llama_server(qa_params["embedded_model"], OUT / "llama_server.log", qa_params["server_n_ctx"],
                                               qa_params["server_threads"] or None)
    with server_context as server:
        endpoint = endpoint_from_params(qa_params, server.base_url if server else None, server.model if server else None)
        generator = {"base_url": qa_params["base_url"] or f"local llama.cpp server ({server.model})", "model": endpoint.model}
        print(f"generator: {generator['base_url']}, model {endpoint.model}")
        max_tokens = {"backtranslation": qa_params["max_new_tokens"], "heldout_questions": qa_params["max_new_tokens"],
                      "llm_answers": 2 * qa_params["max_answer_words"]}
        # one seed per request (made from qa.seed and the messages): with qa.seed in every request the
        # server drew the same random numbers for each of them
        bodies = [chat_request(endpoint.model, messages, qa_params["temperature"], max_tokens[source],
                               derived_seed(qa_params["seed"], messages))
                  for source, _, messages in jobs]
        results = complete_all(bodies, endpoint, OUT / "llm_cache.jsonl", qa_params["concurrency"], qa_params["retries"],
                               qa_params["retry_backoff_s"], desc="generate")
    request_counts = summarize(results)
    print(request_counts)
    failed = [r for r in results if r["content"] is None]
    if len(failed) > qa_params["max_failed_requests"]:
        raise RuntimeError(
            f"{len(failed)} of {len(results)} requests failed for good (qa.max_failed_requests = "
            f"{qa_params['max_failed_requests']}); first error: {failed[0]['error']}. Run the stage again: "
            f"the {request_counts['answered']} answered requests are cached in {OUT / 'llm_cache.jsonl'}.")
else:
    request_counts = summarize([])

# %% [markdown]
# ## Cleaning what the LLM wrote
# Preambles ("Sure! Here's a question:") and wrapping quotes are stripped; refusals,
# empty, vague or over-long questions, and questions about "the passage" are removed.

# %%
removed = collections.defaultdict(collections.Counter)
fixed = collections.defaultdict(collections.Counter)
generated = []  # (source, record, generated text, what it was written from)
for (source, item, _), result in zip(jobs, results):
    if source in ("backtranslation", "heldout_questions"):
        text, reason, flags = qa_clean.clean_question(result["content"], qa_params["max_question_words"], NAME)
        turns, grounding = [(text, item["text"])], item["text"]
    else:
        text, reason, flags = qa_clean.clean_answer(result["content"], 1, qa_params["max_answer_words"])
        turns, grounding = [(item["prompt"], text)], item["prompt"]
    if text is None:
        removed[source][reason if result["content"] is not None else "request_failed"] += 1
        continue
    fixed[source].update(k for k, v in flags.items() if v)
    generated.append((source, qa_sources.conversation(turns, source, SYSTEM, item.get("doc_id")), text, grounding))
for source in removed:
    print(f"{source}: removed {dict(removed[source])}; cleaned {dict(fixed[source])}")
print(f"{len(generated)} generated items kept of {len(jobs)}")

# %% [markdown]
# ## Tic filter
# Phrases that appear far more often in the generated text (questions, and any LLM-written
# answers) than in the person's real text — like "friend" or "Ah," in the original attempt.
# A phrase only counts where the passage or prompt the text was written from lacks it (a
# question about a passage on writing may say "writing"). It is a tic when it is in at
# least `qa.tic_min_count` generated texts and its share of texts is at least
# `qa.tic_min_ratio` times its share of the real paragraphs; items containing a tic are removed.

# %%
real_texts = real_corpus_texts(usable)
tics = find_tics([g[2] for g in generated], real_texts, qa_params["tic_min_count"], qa_params["tic_min_ratio"],
                    grounding=[g[3] for g in generated])
print(f"{len(generated)} generated texts vs {len(real_texts)} real paragraphs/turns")
print(f"{'phrase':<28}{'generated':>10}{'real':>8}{'ratio':>9}  tic")
for row in tics[:20]:
    print(f"{row['phrase']:<28}{row['generated_texts']:>10}{row['real_texts']:>8}{row['ratio']:>9.1f}  "
          f"{'TIC' if row['tic'] else ''}")
if not tics:
    print(f"(no ungrounded phrase is in {qa_params['tic_min_count']} or more generated texts)")
tic_removed = collections.Counter()
heldout_questions = []  # for 07 only
for source, record, text, grounding in generated:
    tic = tic_in(text, tics, grounding)
    if tic:
        removed[source]["tic"] += 1
        tic_removed[tic] += 1
    elif source == "heldout_questions":
        heldout_questions.append({"doc_id": record["doc_id"], "question": text, "answer": grounding})
    else:
        records[source].append(record)
print(f"removed for tics: {dict(tic_removed) or 'none'}")

# %% [markdown]
# ## Near-duplicate questions
# Many passages can draw the same generic question; only the first of a group of
# questions with word overlap (Jaccard) of `qa.near_duplicate_jaccard` or more is kept
# (real interview questions first). Identity questions always stay, and a generated
# question that duplicates one ("What is your name?" answered by an essay passage) goes.

# %%
ordered = [r for source in qa_sources.SOURCES if source != "identity" for r in records[source]]
every_identity_question = qa_identity.identity_conversations(card, NAME, 10_000, qa_params["seed"], SYSTEM)
kept, duplicates = qa_duplicates.remove_near_duplicates(ordered, qa_params["near_duplicate_jaccard"],
                                                        reference=every_identity_question)
for record, twin in duplicates:
    removed[record["source"]]["near_duplicate"] += 1
for record, twin in duplicates[:5]:
    print(f"  {qa_duplicates.question_text(record)!r}  ~  {qa_duplicates.question_text(twin)!r}")
print(f"near duplicates removed: {len(duplicates)}")

# %% [markdown]
# ## Identity: who the model is, from the profile card
# Many phrasings of "who are you" answered in the first person from
# `persona.profile_card`, including "Are you Nancy Pelosi?" and "Are you an AI?" — "No, I'm ...".
# They make `qa.identity_share` of the chat data (at least `qa.identity_count` of them): with
# a fixed 20 among 600 interview exchanges the Trump model answered as himself to 83% of
# "who are you" probes, and to 60% of "you're an AI, admit it" ones.

# %%
if "identity" in qa_params["sources"]:
    n_identity = qa_identity.identity_target(len(kept), qa_params["identity_share"], qa_params["identity_count"])
    records["identity"] = every_identity_question[:n_identity]  # the first n of the same seeded draw
    print(f"identity: {len(records['identity'])} conversations ({qa_params['identity_share']:.0%} of the data asked, "
          f"at least {qa_params['identity_count']}) from card keys {sorted(card)}")
    if qa_identity.unused_card_keys(card):
        print(f"  card keys no identity question uses: {qa_identity.unused_card_keys(card)}")
conversations = kept + records["identity"]
random.Random(qa_params["seed"]).shuffle(conversations)

# %% [markdown]
# ## Samples of each source

# %%
by_source = collections.Counter(r["source"] for r in conversations)
for source in qa_sources.SOURCES:
    sample = [r for r in conversations if r["source"] == source][:3]
    if not sample:
        continue
    print(f"=== {source} ({by_source[source]})")
    for record in sample:
        for message in record["messages"]:
            if message["role"] != "system":
                print(textwrap.shorten(f"  {message['role']:>9}: {message['content']}", 300))
        print()

# %% [markdown]
# ## Output

# %%
if not conversations:
    raise RuntimeError(f"no conversations for persona {persona!r}: every source came out empty (see above)")
write_jsonl(OUT / "conversations.jsonl", conversations)
write_jsonl(OUT / "heldout_questions.jsonl", heldout_questions)
metrics = {
    "conversations": len(conversations),
    "by_source": {source: by_source.get(source, 0) for source in qa_params["sources"]},
    "removed": {source: dict(counts) for source, counts in removed.items()},
    "cleaned": {source: dict(counts) for source, counts in fixed.items()},
    "tics": [{k: v for k, v in row.items() if k != "key"} for row in tics if row["tic"]],
    "tic_removed": dict(tic_removed),
    "passages": len(passages),
    "heldout_questions": len(heldout_questions),
    "requests": request_counts,
    "generator": generator,
    "system_prompt": bool(SYSTEM),
    "documents_used": len(usable),
    "heldout_excluded": sorted(set(split["heldout_ids"]) & {d["id"] for d in documents}),
    "elapsed_s": round(time.time() - started, 1),
}
write_metrics(OUT, metrics)
print({k: metrics[k] for k in ("conversations", "by_source", "removed", "requests", "elapsed_s")})
