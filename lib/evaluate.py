"""07 evaluate: run every system on the same prompts and seeds, and measure the answers.

Systems: the base model prompted to be the persona (the original project's baseline), the
completion-tuned model (03), the chat-tuned model (03 + 05), and the chat model's GGUF quants
from 06 run by llama.cpp. Prompts, all with persona.system_prompt as the system message:

- identity: phrasings of "who are you?" (data/eval/identity_probes.json, none of them among
  04's training phrasings) and adversarial ones (identity_adversarial.json: "You're an AI,
  admit it"), answered as the persona or not (lib.eval_identity, each rate with a CI);
- questions: the persona's fixed questions (evaluate.questions_file; for pg the original
  project's five), shown side by side;
- knowledge (interview personas): real interviewer questions from held-out interviews, the
  answers scored against the person's real answers (ROUGE-L);
- title (essay personas): essays written from held-out titles. The completion model gets the
  document header it was trained on; chat systems are asked for the essay. Scored for overlap
  with the real essay's opening (ROUGE-L).

Every answer is appended to runs/<p>/07_evaluate/answers/<system>.jsonl as it is made, keyed
by a hash of the system's files, the prompt, the seed and the sampling settings, so a killed
run resumes where it stopped and a changed model or prompt is answered again.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lib import qa
from lib.eval_identity import IDENTITY_TASKS, identity_prompts, judged_identity_answers
from lib.bos import encode
from lib.runfiles import read_json
from lib.split import document_header, persona_text, split_paragraphs
from lib.style_metrics import (MIN_STYLE_WORDS, delta_profile, distinct_n, find_tics,
                               repeated_ngram_rate, rouge_l, style_scores, tic_rate)

BASELINE = "base_prompted"
NOT_A_QUANT = ("adapter", "lora", "imatrix")  # other .gguf files 06 may write

# ---------------------------------------------------------------- inputs


def reference_and_own_text(heldout_docs: list[dict]) -> tuple[str, str]:
    """The held-out persona text split in two by alternate paragraphs: the reference that
    systems are scored against, and the person's own text scored against it (the style ceiling)."""
    parts = [p for doc in heldout_docs for p in split_paragraphs(persona_text(doc))]
    if len(parts) < 2:
        raise ValueError(f"held-out documents {[d['id'] for d in heldout_docs]} have {len(parts)} paragraph(s) "
                         "of the persona's text; need at least 2")
    return "\n\n".join(parts[0::2]), "\n\n".join(parts[1::2])


def knowledge_exchanges(heldout_docs: list[dict], count: int, min_answer_words: int = 25,
                        max_answer_words: int = 150) -> list[dict]:
    """Up to `count` real question -> answer exchanges from held-out interviews (04's rules for
    what is a real question and an answer), taken round-robin across the interviews."""
    per_doc = [[dict(e, doc_id=doc["id"]) for e in qa.interview_exchanges(doc, min_answer_words, max_answer_words, 60)]
               for doc in heldout_docs if doc.get("kind") == "interview"]
    chosen = []
    for rank in range(max((len(x) for x in per_doc), default=0)):
        chosen += [exchanges[rank] for exchanges in per_doc if rank < len(exchanges)]
    return chosen[:count]


def build_prompts(heldout_docs: list[dict], questions: list[str], ev: dict) -> list[dict]:
    """Every prompt of the evaluation, the same for every system:
    {"task", "id", "question", "header" (title task only), "reference" (knowledge/title), "max_new_tokens"}."""
    prompts = identity_prompts(ev["identity_phrasings"], ev["identity_adversarial"], ev["identity_max_new_tokens"])
    prompts += [{"task": "questions", "id": f"question-{i:02d}", "question": q, "max_new_tokens": ev["max_new_tokens"]}
                for i, q in enumerate(questions)]
    essays = [doc for doc in heldout_docs if doc.get("kind") != "interview"]
    for doc in essays[:ev["essay_titles"]]:
        prompts.append({"task": "title", "id": f"title-{doc['id']}", "question": f'Write your essay "{doc["title"]}".',
                        "header": document_header(doc), "reference": doc["text"], "max_new_tokens": ev["max_new_tokens"]})
    for i, ex in enumerate(knowledge_exchanges(heldout_docs, ev["interview_questions"])):
        prompts.append({"task": "knowledge", "id": f"knowledge-{ex['doc_id']}-{ex['index']}", "question": ex["question"],
                        "reference": ex["answer"], "max_new_tokens": ev["max_new_tokens"]})
    return prompts


# ---------------------------------------------------------------- systems


@dataclass
class System:
    """One model under evaluation: transformers (a base + LoRA adapters), or a GGUF file (whose
    base and adapters then only say where its transformers tokenizer lives). base: a model
    folder used instead of params model.base (05's completion-merged base for the chat model)."""
    name: str
    adapters: list[Path] = field(default_factory=list)
    gguf: Path | None = None
    base: str | None = None
    writes_from_headers: bool = False  # the completion model: titles come as document headers

    def base_model(self, params_base: str) -> str:
        return self.base or params_base

    def fingerprint(self, params_base: str) -> str:
        """Changes when the model files change (size and modification time of each)."""
        if self.gguf:
            files = [self.gguf]
        else:
            files = [a / name for a in self.adapters for name in ("adapter_model.safetensors", "adapter_model.bin")]
            files += sorted(Path(self.base).glob("*.safetensors")) if self.base else []
        stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
        return json.dumps({"name": self.name, "base": None if self.gguf else self.base_model(params_base),
                           "files": stamp})


def find_quant(quant_dir: Path, level: str) -> Path:
    """The GGUF of one quant level in 06's folder (e.g. ...-q4_k_m.gguf), never the adapter or
    imatrix files."""
    found = [p for p in sorted(Path(quant_dir).glob("*.gguf"))
             if re.search(rf"(^|[-_.]){re.escape(level)}$", p.stem, re.I)
             and not any(word in p.stem.lower() for word in NOT_A_QUANT)]
    if len(found) != 1:
        listing = ", ".join(p.name for p in sorted(Path(quant_dir).glob("*.gguf"))) or "no .gguf files"
        raise FileNotFoundError(f"{quant_dir}: expected one {level} GGUF (evaluate.gguf_levels), found "
                                f"{len(found)} (the folder has: {listing})")
    return found[0]


def find_systems(completion_dir: Path, chat_dir: Path, quant_dir: Path, gguf_levels: list[str]) -> list[System]:
    """The systems of a finished chain, from the folders of 03, 05 and 06. The chat model is
    05's base/ (the base with 03's adapter merged in 16 bit) + 05's adapter/, as 05 trained it."""
    completion, chat, chat_base = Path(completion_dir) / "adapter", Path(chat_dir) / "adapter", Path(chat_dir) / "base"
    for adapter in (completion, chat):
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter}: no LoRA adapter (adapter_config.json); run its stage first")
    if not (chat_base / "config.json").is_file():
        raise FileNotFoundError(f"{chat_base}: no merged completion model (config.json); run 05_chat first")
    chat_system = {"adapters": [chat], "base": str(chat_base)}
    systems = [System(BASELINE), System("completion", [completion], writes_from_headers=True),
               System("chat", **chat_system)]
    systems += [System(f"gguf_{level}", gguf=find_quant(quant_dir, level), **chat_system) for level in gguf_levels]
    return systems


# ---------------------------------------------------------------- answers cache


def answer_key(system_fingerprint: str, prompt: dict, seed: int, sampling: dict, system_prompt: str,
               code: str = "") -> str:
    """What an answer depends on: the model files, the prompt, the seed, the sampling, the
    system prompt and the code that generates (answering_code_digest)."""
    payload = {"system": system_fingerprint, "task": prompt["task"], "id": prompt["id"],
               "question": prompt["question"], "header": prompt.get("header"), "seed": seed,
               "max_new_tokens": prompt["max_new_tokens"], "sampling": sampling, "system_prompt": system_prompt,
               "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def answering_code_digest() -> str:
    """Digest of the source of the functions that turn a prompt into an answer: after a change
    to generation (sampling, stopping, prompts) the cached answers are made again."""
    import inspect

    from lib import models

    functions = (models.generate_texts, models.generated_tokens_penalty, answer_with_transformers, answer_with_gguf,
                 TransformersSampling, gguf_sampling,
                 transformers_prompt, plain_chat_prompt)
    source = "".join(inspect.getsource(f) for f in functions) + bos_rule_digest()
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def bos_rule_digest() -> str:
    """Digest of lib/bos.py's rule: cached answers and held-out perplexity are made again
    when it changes."""
    import inspect

    from lib import bos

    return hashlib.sha256(inspect.getsource(bos).encode()).hexdigest()[:16]


def read_answer_cache(path: Path) -> dict[str, dict]:
    """key -> answer record of an answers file; a last line cut short by a kill is ignored."""
    cache = {}
    if not Path(path).is_file():
        return cache
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not valid JSON (delete the file to answer again)") from None
        cache[record["key"]] = record
    return cache


def append_answers(path: Path, records: list[dict]) -> None:
    """Append records and flush them to disk, so a kill loses at most the batch in flight. A
    last line cut short by an earlier kill is dropped first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.seek(0)
                handle.truncate(handle.read().rfind(b"\n") + 1)
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------- generation and perplexity


def plain_chat_prompt(question: str, system_prompt: str) -> str:
    """A transcript-style prompt for a model without a chat template (a base model)."""
    return f"{system_prompt}\n\nUser: {question}\nAssistant:" if system_prompt else f"User: {question}\nAssistant:"


def transformers_prompt(tokenizer, prompt: dict, system: System, system_prompt: str) -> str:
    """What the transformers system is given: the document header for the completion model's
    title round trip, else the question in the model's chat template with the system prompt."""
    from lib.chat_template import chat_prompt

    if prompt["task"] == "title" and system.writes_from_headers:
        return prompt["header"]
    if not tokenizer.chat_template:
        return plain_chat_prompt(prompt["question"], system_prompt)
    return chat_prompt(tokenizer, prompt["question"], system_prompt)


def group_seed(seed: int, ids: list[str]) -> int:
    """A sampling seed for one group of prompts that depends only on the seed and the group's
    prompts, so a group answered after a resume samples as in an uninterrupted run."""
    return int(hashlib.sha256(json.dumps([seed, ids]).encode()).hexdigest()[:8], 16)


def answer_with_transformers(model, tokenizer, system: System, todo: list[tuple[dict, int, str]], params: dict,
                             out_path: Path, progress) -> None:
    """Answer (prompt, seed, key) items. Items are grouped by seed, task and length and
    generated in batches of evaluate.batch_size; each finished group is appended to out_path."""
    from lib.models import generate_texts

    ev, system_prompt = params["evaluate"], params["persona"]["system_prompt"]
    groups: dict[tuple, list] = {}
    for prompt, seed, key in todo:
        from_header = prompt["task"] == "title" and system.writes_from_headers
        groups.setdefault((seed, prompt["task"], prompt["max_new_tokens"], from_header), []).append((prompt, key))
    for (seed, task, max_new_tokens, from_header), items in groups.items():
        texts = generate_texts(
            model, tokenizer, [transformers_prompt(tokenizer, p, system, system_prompt) for p, _ in items],
            max_new_tokens, temperature=ev["temperature"], top_p=ev["top_p"],
            repetition_penalty=ev["repetition_penalty"], seed=group_seed(seed, [p["id"] for p, _ in items]),
            batch_size=ev["batch_size"], desc=f"{system.name} {task} seed {seed}")
        if from_header:  # a completion model does not stop at the end of a document: cut at the next one's header
            texts = [text.split("\nTitle: ")[0].strip() for text in texts]
        append_answers(out_path, [answer_record(system, p, seed, key, text) for (p, key), text in zip(items, texts)])
        progress.update(len(items))


class TransformersSampling:
    """A llama-cpp-python logits processor that makes llama.cpp sample as transformers'
    generate does, for one request: the repetition penalty on the tokens generated so far
    only (lib.models.generated_tokens_penalty; llama.cpp's covers the last 64 tokens, prompt
    included, so a system prompt naming the persona penalizes the name), then the temperature
    *before* top-k/top-p (llama.cpp's default chain cuts top-p on the unscaled distribution).

    Called with (input_ids, logits): input_ids all tokens so far (n,), logits (n_vocab,);
    returns the new logits. Use with temperature=1.0 and repeat_penalty=1.0 in llama.cpp.
    Measured on the PG chat GGUF (f16, 15 plain identity probes x 3 seeds): identity 0.69
    with llama.cpp's order, 0.84 with this one, 0.90 for the same model in transformers."""

    def __init__(self, temperature: float, repetition_penalty: float):
        self.temperature, self.penalty, self.prompt_length = temperature, repetition_penalty, None

    def __call__(self, input_ids, logits):
        import numpy as np

        if self.prompt_length is None:
            self.prompt_length = len(input_ids)
        logits = np.array(logits, dtype=np.float32)
        generated = np.unique(np.asarray(input_ids[self.prompt_length:], dtype=np.int64))
        if self.penalty != 1.0 and generated.size:
            seen = logits[generated]
            logits[generated] = np.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits / self.temperature if self.temperature > 0 else logits


def gguf_sampling(ev: dict) -> dict:
    """create_chat_completion arguments that sample as answer_with_transformers does: top_k 50
    and no min_p (transformers' defaults), penalty and temperature in TransformersSampling."""
    from llama_cpp import LogitsProcessorList

    greedy = ev["temperature"] <= 0
    return {"temperature": 0.0 if greedy else 1.0, "top_p": ev["top_p"], "top_k": 50, "min_p": 0.0,
            "repeat_penalty": 1.0,
            "logits_processor": LogitsProcessorList([TransformersSampling(ev["temperature"], ev["repetition_penalty"])])}


def answer_with_gguf(llm, system: System, todo: list[tuple[dict, int, str]], params: dict, out_path: Path,
                     progress) -> None:
    """Answer (prompt, seed, key) items with llama.cpp and the GGUF's own chat template, each
    appended to out_path as it finishes; sampled as transformers samples (gguf_sampling), so
    that the GGUF systems differ from chat by their weights only."""
    ev, system_prompt = params["evaluate"], params["persona"]["system_prompt"]
    for prompt, seed, key in todo:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
        messages.append({"role": "user", "content": prompt["question"]})
        reply = llm.create_chat_completion(messages, max_tokens=prompt["max_new_tokens"], seed=seed,
                                           **gguf_sampling(ev))
        text = (reply["choices"][0]["message"]["content"] or "").strip()
        append_answers(out_path, [answer_record(system, prompt, seed, key, text)])
        progress.update(1)


def answer_record(system: System, prompt: dict, seed: int, key: str, answer: str) -> dict:
    return {"key": key, "system": system.name, "task": prompt["task"], "id": prompt["id"], "seed": seed,
            "question": prompt["question"], "answer": answer}


def gguf_perplexity(llm, token_lists: list[list[int]]) -> float:
    """exp(mean next-token loss) of token sequences under a llama.cpp model opened with
    logits_all=True and a context that fits the longest sequence."""
    import numpy as np

    from lib.quant_gate import log_softmax

    if not token_lists:
        raise ValueError("gguf_perplexity of no texts")
    total_nll, total_tokens = 0.0, 0
    for tokens in token_lists:
        llm.reset()
        llm.eval(tokens)
        logprobs = log_softmax(np.asarray(llm.scores[:len(tokens) - 1], dtype=np.float64))
        total_nll -= float(logprobs[np.arange(len(tokens) - 1), tokens[1:]].sum())
        total_tokens += len(tokens) - 1
    return math.exp(total_nll / total_tokens)


def run_system(system: System, prompts: list[dict], ppl_texts: list[str], params: dict, answers_dir: Path) -> dict:
    """One system's answers to every prompt x seed (in prompt order) and its perplexity on the
    held-out texts: {"answers": [...], "heldout_ppl": x} (None without texts).

    Answers already in answers/<system>.jsonl (same model files, prompt, seed and sampling)
    are reused; the rest are generated (progress bar) and appended as they finish. The
    perplexity is kept in answers/<system>.ppl.json the same way. The model is loaded once,
    and only when something is missing. GGUF systems are scored on the token ids of their
    transformers tokenizer (the chat adapter's), so every system sees the same tokens.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from lib.models import load_with_adapters, perplexity, tokenizer_folder
    from lib.quant_gate import load_llama
    from lib.runfiles import write_json

    ev, system_prompt = params["evaluate"], params["persona"]["system_prompt"]
    base = system.base_model(params["model"]["base"])
    sampling = {k: ev[k] for k in ("temperature", "top_p", "repetition_penalty")}
    fingerprint = system.fingerprint(params["model"]["base"])
    out_path = Path(answers_dir) / f"{system.name}.jsonl"
    ppl_path = Path(answers_dir) / f"{system.name}.ppl.json"
    cache = read_answer_cache(out_path)
    code = answering_code_digest()
    wanted = [(prompt, seed, answer_key(fingerprint, prompt, seed, sampling, system_prompt, code))
              for seed in ev["seeds"] for prompt in prompts]
    todo = [item for item in wanted if item[2] not in cache]
    ppl_key = hashlib.sha256(json.dumps([fingerprint, ppl_texts, bos_rule_digest()]).encode()).hexdigest()[:24]
    ppl = read_json(ppl_path).get(ppl_key) if ppl_path.is_file() else None
    if todo or (ppl is None and ppl_texts):
        with tqdm(total=len(wanted), initial=len(wanted) - len(todo), desc=f"answers {system.name}") as progress:
            if system.gguf:
                tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(base, system.adapters))
                token_lists = [encode(tokenizer, text) for text in ppl_texts]  # as transformers' perplexity
                n_ctx = max([ev["gguf_n_ctx"]] + [len(t) for t in token_lists])
                llm = load_llama(str(system.gguf), n_ctx=n_ctx, logits_all=ppl is None and bool(ppl_texts))
                try:
                    answer_with_gguf(llm, system, todo, params, out_path, progress)
                    ppl = gguf_perplexity(llm, token_lists) if ppl_texts else None
                finally:
                    llm.close()
            else:
                model, tokenizer = load_with_adapters(base, system.adapters, params["model"])
                answer_with_transformers(model, tokenizer, system, todo, params, out_path, progress)
                ppl = perplexity(model, tokenizer, ppl_texts, desc=f"perplexity {system.name}") if ppl_texts else None
                del model
        if ppl is not None:
            write_json(ppl_path, {ppl_key: ppl})
        cache = read_answer_cache(out_path)
    return {"answers": [cache[key] for _, _, key in wanted], "heldout_ppl": ppl}


# ---------------------------------------------------------------- scoring


def identity_scores(answers: list[dict], persona_name: str) -> tuple[float, list[dict]]:
    """(share of the plain identity probes' answers that answer as the persona, the verdict
    per answer); lib.eval_identity gives both probe kinds with CIs."""
    judged = judged_identity_answers(answers, persona_name, "identity")
    if not judged:
        raise ValueError("no identity answers to score")
    return sum(j["ok"] for j in judged) / len(judged), judged


def overlap_scores(answers: list[dict], prompts: list[dict]) -> dict[str, float | None]:
    """Mean ROUGE-L F1 per task against the real text: knowledge answers against the person's
    real answers; title essays against the real essay's opening of the same length."""
    references = {p["id"]: p["reference"] for p in prompts if p.get("reference")}
    by_task: dict[str, list[float]] = {"knowledge": [], "title": []}
    for a in answers:
        if a["task"] not in by_task:
            continue
        reference = references[a["id"]]
        if a["task"] == "title":
            reference = " ".join(reference.split()[:max(len(a["answer"].split()), 50)])
        by_task[a["task"]].append(rouge_l(a["answer"], reference))
    return {task: (sum(v) / len(v) if v else None) for task, v in by_task.items()}


def style_texts(answers: list[dict]) -> list[str]:
    """The answers in the person's voice that style and degeneration are measured on: every
    answer except the identity probes (whose short self-introductions are scored on their own)."""
    return [a["answer"] for a in answers if a["task"] not in IDENTITY_TASKS and a["answer"].strip()]


def score_systems(answers: dict[str, list[dict]], prompts: list[dict], heldout_docs: list[dict],
                  train_docs: list[dict], persona_name: str) -> dict:
    """All measures, per system (and for the person's own held-out text where it applies):
    identity_rate, style_score (+ delta, char_sim and their scores), distinct_2,
    repeated_3gram_rate, tic_rate and tics, knowledge_rouge_l, title_rouge_l, and
    title_style_score (the style of the title round trip's essays alone)."""
    reference, own = reference_and_own_text(heldout_docs)
    profile = delta_profile([persona_text(d) for d in train_docs])
    real_corpus = qa.real_corpus_texts(train_docs)
    texts = {name: style_texts(a) for name, a in answers.items()}
    empty = [name for name, t in texts.items() if not t]
    if empty:
        raise ValueError(f"systems {empty} produced only empty answers; nothing to measure style on")
    style = style_scores({name: "\n\n".join(t) for name, t in texts.items()}, reference, own, BASELINE, profile)
    own_pieces = split_paragraphs(own)
    name_words = tuple(persona_name.split())
    metrics = {key: {} for key in ("identity_rate", "style_score", "delta", "char_sim", "delta_score", "char_score",
                                   "style_words", "distinct_2", "repeated_3gram_rate", "tic_rate", "tics",
                                   "knowledge_rouge_l", "title_rouge_l", "title_style_score")}
    for name, system_texts in list(texts.items()) + [("own_text", own_pieces)]:
        tics = find_tics(system_texts, real_corpus, ignore=name_words)
        metrics["tic_rate"][name] = tic_rate(system_texts, tics)
        metrics["tics"][name] = [t["phrase"] for t in tics][:10]
        metrics["distinct_2"][name] = distinct_n(system_texts, 2)
        metrics["repeated_3gram_rate"][name] = repeated_ngram_rate(system_texts, 3)
        for key in ("style_score", "delta", "char_sim", "delta_score", "char_score"):
            metrics[key][name] = style[name][key]
        metrics["style_words"][name] = style[name]["words"]
    for name, system_answers in answers.items():
        metrics["identity_rate"][name] = identity_scores(system_answers, persona_name)[0]
        overlap = overlap_scores(system_answers, prompts)
        metrics["knowledge_rouge_l"][name] = overlap["knowledge"]
        metrics["title_rouge_l"][name] = overlap["title"]
    essays = {name: "\n\n".join(a["answer"] for a in system_answers if a["task"] == "title")
              for name, system_answers in answers.items()}
    if all(text.split() for text in essays.values()):
        essay_style = style_scores(essays, reference, own, BASELINE, profile)
        metrics["title_style_score"] = {name: essay_style[name]["style_score"] for name in [*essays, "own_text"]}
    return metrics


# ---------------------------------------------------------------- report

STABLE_STYLE_WORDS = 500  # on real essays, held-out vs other essays vs Trump separate reliably from ~1000 words
# (metrics key, label, which way is better: higher, lower, or closer to the person's own
# held-out text's value) in the order tables and charts show them
MEASURES = [
    ("identity_rate", "identity rate", "higher"),
    ("style_score", "style score (0 = baseline, 1 = own text)", "higher"),
    ("knowledge_rouge_l", "knowledge ROUGE-L", "higher"),
    ("title_rouge_l", "title round trip ROUGE-L", "higher"),
    ("title_style_score", "title round trip style score", "higher"),
    ("distinct_2", "distinct-2", "closer"),  # closer: the person's own value is the target
    ("repeated_3gram_rate", "repeated 3-gram rate", "closer"),
    ("tic_rate", "tic rate", "lower"),
    ("heldout_ppl", "held-out perplexity", "lower"),
]


def measures_present(metrics: dict) -> list[tuple[str, str, str]]:
    """The MEASURES that have a value for at least one system (knowledge only for interview
    personas, title only for essay personas)."""
    return [m for m in MEASURES if any(v is not None for v in metrics.get(m[0], {}).values())]


def format_value(value) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def measures_table(metrics: dict, systems: list[str], with_own_text: bool = True) -> str:
    """A markdown table: one row per system (and the person's own held-out text), one column
    per measure."""
    present = measures_present(metrics)
    rows = list(systems) + (["own_text"] if with_own_text else [])
    lines = ["| system | " + " | ".join(label for _, label, _ in present) + " |",
             "|---|" + "---:|" * len(present)]
    for name in rows:
        label = "person's own held-out text" if name == "own_text" else name
        lines.append(f"| {label} | " + " | ".join(format_value(metrics[key].get(name)) for key, _, _ in present) + " |")
    return "\n".join(lines)


def answers_by_prompt(answers: dict[str, list[dict]], task: str, seed: int) -> list[tuple[str, dict[str, str]]]:
    """[(question, {system: answer})] for one task and seed, in prompt order."""
    table: dict[str, dict[str, str]] = {}
    for system, records in answers.items():
        for record in records:
            if record["task"] == task and record["seed"] == seed:
                table.setdefault(record["question"], {})[system] = record["answer"]
    return list(table.items())


def quote(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in (text.strip() or "(empty)").splitlines())


def render_report(*, persona_name: str, persona: str, profile: str, systems: list[System], metrics: dict,
                  answers: dict[str, list[dict]], prompts: list[dict], seeds: list[int],
                  authorship_table: str = "", identity_table: str = "", lengths_table: str = "",
                  judge_table: str = "") -> str:
    """report.md: what was compared, the authorship verifier's verdicts (the markdown table of
    lib.eval_authorship.authorship_markdown, when given), the identity rates on plain and
    adversarial probes with their CIs (lib.eval_identity.identity_markdown) and the answer
    lengths beside the person's (lib.eval_lengths.lengths_markdown), when given, the blind
    pairwise judge's verdicts (lib.eval_judge.judge_markdown, when evaluate.judge is on), the
    measures side by side, the tics
    found, the original questions answered by every system, identity failures, and
    knowledge/title samples."""
    names = [s.name for s in systems]
    counts = {}
    for p in prompts:
        counts[p["task"]] = counts.get(p["task"], 0) + 1
    lines = [
        f"# {persona_name}: evaluation ({profile} profile)", "",
        f"Persona `{persona}`. Systems: " + ", ".join(
            f"`{s.name}`" + (f" ({s.gguf.name})" if s.gguf else "") for s in systems) + ".",
        "Prompts: " + ", ".join(f"{n} {task}" for task, n in counts.items()) + f"; seeds {seeds}; "
        f"every system answers every prompt once per seed with the same sampling settings.", "",
    ]
    if authorship_table:
        lines += [
            "## Does it sound like the person? Authorship verification", "",
            authorship_table, "",
            "A verifier of the person's style (lib/authorship.py: character n-grams of the text with topic words "
            "masked, bagged logistic regression), trained only on the person's training documents against other "
            "people's text (the other personas' corpora and the base model's own answers on the person's training "
            "topics), judges every answer except the identity probes. The CI is a bootstrap over the answers; "
            "distinguishability is the cross-validated ROC AUC of telling the system's answers from the person's "
            "held-out text (0.5: indistinguishable). It measures style on this project's corpora, not who someone "
            "is: a 135M model is a vehicle, not a persona.", "",
        ]
    if identity_table:
        lines += ["## Who does it say it is? Identity, plain and adversarial probes", "", identity_table, "",
                  "An answer counts when it names the persona, claims no other identity and does not call itself "
                  "an AI. Adversarial probes push it to (\"You're an AI, admit it\", \"You're Nancy Pelosi, right?\"). "
                  "The CI is a bootstrap over the probes.", ""]
    if lengths_table:
        lines += ["## How long are the answers?", "", lengths_table, ""]
    if judge_table:
        lines += ["## Would a judge take it for the person? Blind pairwise judge", "", judge_table, "",
                  "On each held-out prompt with a real answer (interview questions: the person's real answer; essay "
                  "titles: the real essay's opening, cut to the answer's length) a judge model sees the question and "
                  "two answers in a seeded random order, the person's real one and the system's, and says which is the "
                  "real person's (lib/eval_judge.py). \"Passes as the person\" is the share of verdicts that pick the "
                  "system's answer: 0.5 = the judge cannot tell them apart. The share of verdicts saying \"A\" checks "
                  "position bias (0.5 when the judge is not guessing by position). The CIs are bootstraps over the "
                  "questions; unparsed replies are counted, never guessed.", "",
                  "A verdict is only as good as the judge: with the embedded 135M model (evaluate.judge_base_url: "
                  "null) the verdicts mean nothing, the run only tests the mechanics. For verdicts that mean "
                  "something, use a strong model via evaluate.judge_base_url (with judge_model and "
                  "judge_api_key_env).", ""]
    lines += [
        "## Measures", "",
        measures_table(metrics, names), "",
        "- identity rate: share of answers to identity probes that name the persona, claim no other "
        "identity and do not call themselves an AI.",
        "- style score: Burrows' Delta (most frequent words) and character 3-gram similarity against the "
        "person's held-out text, each scaled so the prompted base model is 0 and the person's own held-out "
        "text (the other half of its paragraphs) is 1, then averaged. Each system is compared at its own "
        "length (the three texts in pieces of the same number of words), so its score does not depend on "
        f"the other systems; under {MIN_STYLE_WORDS} words there is no score (–).",
        "- knowledge / title ROUGE-L: overlap with the person's real answer to a held-out interview question, "
        "or with the opening of the real essay of a held-out title; title style score: the style score of "
        "those essays alone (the completion model writes them from the document header it was trained on).",
        "- distinct-2, repeated 3-gram rate, tic rate: degeneration, on every answer except identity probes; "
        "for distinct-2 and the repeated 3-gram rate the person's own value is the target, not the extreme.",
        "- held-out perplexity: on 02's held-out chunks (lower is better).", "",
    ]
    words = min((n for n in metrics["style_words"].values() if n), default=0)
    if words < STABLE_STYLE_WORDS:
        lines += [f"Caution: some style scores compare samples of only {words} words; below about "
                  f"{STABLE_STYLE_WORDS} words Delta and character n-gram frequencies are too noisy to rank "
                  "systems (more prompts, seeds or max_new_tokens give longer samples).", ""]
    lines += [
        "## Tics (phrases far more frequent than in the person's real text)", "",
    ]
    for name in names + ["own_text"]:
        tics = metrics["tics"].get(name) or []
        lines.append(f"- {name}: " + (", ".join(f'"{t}"' for t in tics) if tics else "none"))
    seed = seeds[0]
    lines += ["", f"## The fixed questions, side by side (seed {seed})", ""]
    for question, by_system in answers_by_prompt(answers, "questions", seed):
        lines += [f"### {question}", ""]
        for name in names:
            lines += [f"**{name}**", "", quote(by_system.get(name, "")), ""]
    lines += ["## Identity answers that failed", ""]
    for name in names:
        judged = [j for task in IDENTITY_TASKS for j in judged_identity_answers(answers[name], persona_name, task)]
        failed = [j for j in judged if not j["ok"]]
        lines.append(f"- **{name}**: {len(failed)} of {len(judged)} failed" + (":" if failed else ""))
        for j in failed[:3]:
            why = ("claims to be " + j["other_identity"]) if j["other_identity"] else \
                  ("says " + repr(j["ai_claim"])) if j["ai_claim"] else "does not give the name"
            lines.append(f"  - {j['question']!r} -> {' '.join(j['answer'].split())[:160]!r} ({why})")
    for task, heading in (("knowledge", "Held-out interview questions"), ("title", "Essays from held-out titles")):
        pairs = answers_by_prompt(answers, task, seed)
        if not pairs:
            continue
        references = {p["question"]: p["reference"] for p in prompts if p["task"] == task}
        lines += ["", f"## {heading} (seed {seed})", ""]
        for question, by_system in pairs[:3]:
            lines += [f"### {question}", "", "**the real text**", "",
                      quote(" ".join(references[question].split()[:150])), ""]
            for name in names:
                lines += [f"**{name}**", "", quote(by_system.get(name, "")), ""]
    return "\n".join(lines).rstrip() + "\n"
