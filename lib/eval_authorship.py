"""A persona's authorship verifier (lib/authorship.py), built from its runs, and the command line.

    python -m lib.style_metrics authorship pg essay.txt answer.txt
    {"file": "essay.txt", "p_person": 0.93, "ci_low": 0.88, "ci_high": 0.97, "words": 412}

What it is trained on, and never more:
- the person: their words in 02's training documents (runs/<persona>/01_scrape/documents.jsonl,
  the ids in runs/<persona>/02_split/split.json); never the held-out documents;
- impostors: the other personas' committed snapshots (params/<other>.yaml, read offline)
  less the documents their own 02 split holds out (so no verifier ever trains on any
  persona's held-out text), and the base model's own text: the embedded model
  (qa.embedded_model, through llama.cpp) answering prompts made from the person's training
  documents (their titles; for interviews, the interviewers' questions) under the persona's
  system prompt: the right topic in the wrong voice. Never 07's evaluation prompts.

The verifier is saved in runs/<persona>/authorship/verifier-<digest>.pkl, named by the digest
of everything it depends on (the texts, the settings, lib/authorship.py's source and the
scikit-learn version), and reused while that is unchanged; the base model's answers are
cached there, keyed by model, system prompt, length, seed, sampling code and prompt, so a killed build
resumes and a changed setting regenerates them.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import pickle
import random
import sys
from pathlib import Path

from lib import authorship
from lib.authorship import AuthorshipModel, TooShortError, fit_authorship_model
from lib.runfiles import (ROOT, atomic_write_bytes, derived_seed, json_digest, read_json, read_jsonl, runs_root, text_digest,
                          write_json)
from lib.split import persona_text

FOLDER = "authorship"
BASE_TEXT_FILE = "base_model_text.jsonl"
BASE_MAX_TOKENS = 200


def persona_training_documents(persona: str) -> list[dict]:
    """The person's 02 training documents. Raises FileNotFoundError naming the make target
    when 01 or 02 has not run."""
    runs = runs_root() / persona
    split, documents = runs / "02_split" / "split.json", runs / "01_scrape" / "documents.jsonl"
    if not split.is_file() or not documents.is_file():
        raise FileNotFoundError(f"{persona}: no 02 split ({split} or {documents} is missing); "
                                f"run `make {persona}-split` first")
    train_ids = set(read_json(split)["train_ids"])
    return [doc for doc in read_jsonl(documents) if doc["id"] in train_ids]


def snapshot_documents(persona: str, params_dir: Path | None = None) -> list[dict]:
    """Every document of the persona's committed snapshot (params scrape.snapshot_dir), read
    offline as 01 reads it; [] when it has none. params_dir: where its params file is
    (default: lib.params' lookup)."""
    from lib.params import load_params
    from lib.runfiles import cache_root
    from lib.scrape import collect_essays
    from lib.transcripts import collect_interviews

    params = load_params(persona, "cpu", params_dir=params_dir)
    scrape = params["scrape"]
    if not scrape["snapshot_dir"] or not (ROOT / scrape["snapshot_dir"]).is_dir():
        return []
    common = dict(cache_dir=cache_root() / "http" / persona, snapshot_dir=ROOT / scrape["snapshot_dir"],
                  offline=True, log=lambda *a: None)
    if params["persona"]["kind"] == "interviews":
        return collect_interviews(urls=[], persona_regex=params["persona"]["speaker_regex"], **common)[0]
    return collect_essays(base_url=scrape["base_url"], index_page=scrape["index_page"], **common)[0]


def impostor_corpora(persona: str) -> dict[str, list[str]]:
    """persona name -> the texts of every other persona's committed snapshot (the personas
    of the repository's params/, not $PERSONA_PARAMS_DIR's), less the documents that
    persona's 02 split holds out (its split params on the cpu profile)."""
    from lib.params import ParamsError, load_params
    from lib.split import choose_heldout

    corpora = {}
    for path in sorted((ROOT / "params").glob("*.yaml")):
        if path.stem in (persona, "defaults", "profiles"):
            continue
        try:
            docs = snapshot_documents(path.stem, params_dir=path.parent)
        except ParamsError:  # a user's persona whose folder moved, or a half-edited file: not an impostor
            continue
        if len(docs) < 2:
            continue
        split = load_params(path.stem, "cpu", params_dir=path.parent)["split"]
        heldout = set(choose_heldout(docs, split["heldout_rule"], min(split["heldout_count"], len(docs) - 1),
                                     split["seed"]))
        corpora[path.stem] = [persona_text(doc) for doc in docs if doc["id"] not in heldout]
    return corpora


def base_model_prompts(train_docs: list[dict], count: int, seed: int, qa_params: dict) -> list[str]:
    """Up to `count` prompts on the person's own topics, in both of 07's forms (a request for
    an essay, a question): for each training essay's title "Write a few paragraphs about
    this: <title>" and "What do you think about <title>?"; for interviews, the interviewers'
    real questions (04's rules, with qa_params' answer and question lengths). Measured on pg:
    with the question form added (52 -> 100 windows of base-model text), the base model answering 07's questions went from 0.34 to
    0.22."""
    from lib.qa_sources import interview_exchanges

    prompts = []
    for doc in train_docs:
        if doc.get("kind") == "interview":
            prompts += [e["question"] for e in interview_exchanges(
                doc, qa_params["min_answer_words"], qa_params["max_answer_words"], qa_params["max_question_words"])]
        elif doc.get("title"):
            prompts += [f"Write a few paragraphs about this: {doc['title']}", f"What do you think about {doc['title']}?"]
    prompts = sorted(set(prompts))
    random.Random(seed).shuffle(prompts)
    return prompts[:count]


def base_model_text(prompts: list[str], system_prompt: str, embedded_model: str, cache: Path,
                    batch: int = 8, seed: int = 1234) -> list[str]:
    """The embedded model's answers to the prompts (llama.cpp, its own chat template, the
    persona's system prompt), cached in `cache` one batch at a time (a killed build resumes),
    each keyed by everything that makes it."""
    from lib.gguf_checks import chat_in_process, chat_with_gguf
    from lib.models import embedded_gguf_path

    # how each reply is seeded and sampled: a change to either function makes the text again
    sampling_code = text_digest(inspect.getsource(chat_in_process) + inspect.getsource(derived_seed), 12)

    def key(prompt: str) -> str:
        made_by = [embedded_model, system_prompt, BASE_MAX_TOKENS, seed, sampling_code, prompt]
        return json_digest(made_by, 24)

    done = {r["key"]: r["text"] for r in read_jsonl(cache) if "key" in r} if cache.is_file() else {}
    todo = [p for p in prompts if key(p) not in done]
    gguf = embedded_gguf_path(embedded_model)
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        conversations = [[{"role": "system", "content": system_prompt}, {"role": "user", "content": p}] for p in chunk]
        replies = chat_with_gguf(gguf, conversations, BASE_MAX_TOKENS, seed=seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "a", encoding="utf-8") as handle:
            for prompt, reply in zip(chunk, replies):
                record = {"key": key(prompt), "prompt": prompt, "text": reply["text"]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                done[record["key"]] = reply["text"]
        print(f"base model text: {min(start + batch, len(todo))}/{len(todo)} answers", file=sys.stderr)
    return [done[key(p)] for p in prompts]


def inputs_digest(person: list[str], impostors: dict[str, list[str]], settings: dict) -> str:
    """sha256 of the settings and every text, each impostor group under its name."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for text in person + [text for name in sorted(impostors) for text in [f"\0{name}\0", *impostors[name]]]:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def persona_verifier(persona: str, profile: str = "auto", overrides=None, log=print) -> AuthorshipModel:
    """The persona's verifier: the one saved in runs/<persona>/authorship/ under the digest of
    its inputs, else built (base model text generated or taken from its cache) and saved.
    Raises FileNotFoundError when the persona has no 02 split."""
    import sklearn

    from lib.params import load_params

    params = load_params(persona, profile, overrides)
    folder = runs_root() / persona / FOLDER
    train_docs = persona_training_documents(persona)
    person = [persona_text(doc) for doc in train_docs]
    ev = params["evaluate"]
    prompts = base_model_prompts(train_docs, ev["authorship_base_prompts"], ev["authorship_seed"], params["qa"])
    base_text = base_model_text(prompts, params["persona"]["system_prompt"], params["qa"]["embedded_model"],
                                folder / BASE_TEXT_FILE)
    corpora = impostor_corpora(persona)
    impostors = {**corpora, "base model": base_text}
    settings = {"seed": ev["authorship_seed"], "impostor_personas": sorted(corpora), "base_prompts": len(prompts),
                "method": "dv-ma char 2-4 tfidf, bagged logistic regression", "sklearn": sklearn.__version__,
                "code": text_digest(inspect.getsource(authorship), 16)}
    digest = inputs_digest(person, impostors, settings)
    model_path, manifest_path = folder / f"verifier-{digest[:16]}.pkl", folder / f"verifier-{digest[:16]}.json"
    if model_path.is_file() and manifest_path.is_file() and read_json(manifest_path).get("digest") == digest:
        with open(model_path, "rb") as handle:
            return pickle.load(handle)
    model = fit_authorship_model(person, impostors, seed=ev["authorship_seed"])
    atomic_write_bytes(model_path, pickle.dumps(model))
    write_json(manifest_path, {"digest": digest, **settings, **model.counts,
                               "person_documents": [doc["id"] for doc in train_docs]})
    log(f"authorship verifier for {persona}: windows {model.counts} -> {model_path}")
    return model


def authorship_by_system(model: AuthorshipModel, answers_by_system: dict[str, list[tuple[str, str]]],
                         heldout_texts: list[str]) -> dict[str, dict]:
    """07's authorship measures. answers_by_system: system -> [(prompt id, answer)]. Returns
    system -> {"p_person", "ci_low", "ci_high" (bootstrap over prompts), "n" (answers judged),
    "too_short", "pooled" (lib.authorship.system_authorship), "distinguishability" (against the person's held-out text)}; plus
    "own_text": the person's held-out text in windows of WINDOW_WORDS words, judged the same
    way (the ceiling), whose distinguishability is that of one half of the windows against
    the other (0.5 in expectation; cross-validated AUC on few windows runs below it)."""
    from lib.authorship import distinguishability, system_authorship, training_windows

    table = {}
    for name, answers in answers_by_system.items():
        texts = [text for _, text in answers]
        table[name] = system_authorship(model, texts, [prompt for prompt, _ in answers])
        table[name]["distinguishability"] = distinguishability(texts, heldout_texts, model.keep)
    own = training_windows(heldout_texts)
    table["own_text"] = system_authorship(model, own)
    table["own_text"]["distinguishability"] = distinguishability(own[0::2], own[1::2], model.keep)
    return table


def authorship_markdown(table: dict[str, dict]) -> str:
    """The authorship measures as a markdown table, one row per system."""
    def cell(row: dict) -> str:
        if row["p_person"] is None:
            return "–"
        return f"{row['p_person']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"

    lines = ["| system | P(person wrote it) [95% CI] | answers judged (too short; pooled: judged joined with the "
             "same prompt's other answers, each too short alone) "
             "| distinguishability (0.5 = indistinguishable) |",
             "|---|---:|---:|---:|"]
    for name, row in table.items():
        label = "person's own held-out text" if name == "own_text" else name
        d = row["distinguishability"]
        judged = f"{row['n']}, {row['pooled']} pooled" if row.get("pooled") else f"{row['n']}"
        lines.append(f"| {label} | {cell(row)} | {judged} ({row['too_short']}) | {'–' if d is None else f'{d:.2f}'} |")
    return "\n".join(lines)


def score_files(model: AuthorshipModel, files: list[str]) -> tuple[list[dict], list[str]]:
    """(one record per file that could be scored, one error line per file that could not)."""
    records, errors = [], []
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            errors.append(f"{name}: cannot read: {err}")
            continue
        if not text.strip():
            errors.append(f"{name}: empty file")
            continue
        try:
            result = model.score(text)
        except TooShortError as err:
            errors.append(f"{name}: too short to judge: {err}")
            continue
        records.append({"file": name, **{k: result[k] for k in ("p_person", "ci_low", "ci_high", "words")}})
    return records, errors


def cli(argv=None) -> int:
    """python -m lib.style_metrics authorship PERSONA FILE [FILE ...]: one JSON line per scored
    file on stdout, one error line per other file on stderr; exit 1 when any file failed, 2
    when the persona has no 02 split (the verifier is built from it) or unknown params."""
    parser = argparse.ArgumentParser(prog="python -m lib.style_metrics authorship",
                                     description="P(the person wrote it), with a 95% CI, for each file.")
    parser.add_argument("persona", help="params/<persona>.yaml")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--profile", default="auto")
    args = parser.parse_args(argv)
    from lib.params import ParamsError

    try:
        model = persona_verifier(args.persona, args.profile, log=lambda message: print(message, file=sys.stderr))
    except (FileNotFoundError, ParamsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records, errors = score_files(model, args.files)
    for record in records:
        print(json.dumps(record), flush=True)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0

