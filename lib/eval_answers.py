"""07's answers: every system answers every prompt once per seed, with transformers or with
llama.cpp sampled the same way (gguf_sampling), and its held-out perplexity is measured.

Every answer is appended to runs/<p>/07_evaluate/answers/<system>.jsonl as it is made, keyed
by a hash of the system's files, the prompt, the seed, the sampling settings and the code that
answers (answer_key), so a killed run resumes where it stopped and a changed model or prompt
is answered again (run_system).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from lib.bos import encode
from lib.eval_systems import System
from lib.llama import gguf_perplexity
from lib.runfiles import derived_seed, json_digest, read_json, text_digest


def answer_key(system_fingerprint: str, prompt: dict, seed: int, sampling: dict, system_prompt: str,
               code: str = "") -> str:
    """What an answer depends on: the model files, the prompt, the seed, the sampling, the
    system prompt and the code that generates (answering_code_digest)."""
    payload = {"system": system_fingerprint, "task": prompt["task"], "id": prompt["id"],
               "question": prompt["question"], "header": prompt.get("header"), "seed": seed,
               "max_new_tokens": prompt["max_new_tokens"], "sampling": sampling, "system_prompt": system_prompt,
               "code": code}
    return json_digest(payload, 24)


def answering_code_digest() -> str:
    """Digest of the source of the functions that turn a prompt into an answer: after a change
    to generation (sampling, stopping, prompts) the cached answers are made again."""
    import inspect

    from lib import models

    functions = (models.generate_texts, models.generated_tokens_penalty, answer_with_transformers, answer_with_gguf,
                 TransformersSampling, gguf_sampling,
                 transformers_prompt, plain_chat_prompt)
    source = "".join(inspect.getsource(f) for f in functions) + bos_rule_digest()
    return text_digest(source, 16)


def bos_rule_digest() -> str:
    """Digest of lib/bos.py's rule: cached answers and held-out perplexity are made again
    when it changes."""
    import inspect

    from lib import bos

    return text_digest(inspect.getsource(bos), 16)


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


def answer_with_transformers(model, tokenizer, system: System, todo: list[tuple[dict, int, str]], params: dict,
                             out_path: Path, progress) -> None:
    """Answer (prompt, seed, key) items. Items are grouped by seed and length (prompts of
    different tasks share batches) and generated in batches of evaluate.batch_size; each
    finished group is appended to out_path."""
    from lib.models import generate_texts

    ev, system_prompt = params["evaluate"], params["persona"]["system_prompt"]
    groups: dict[tuple, list] = {}
    for prompt, seed, key in todo:
        from_header = prompt["task"] == "title" and system.writes_from_headers
        groups.setdefault((seed, prompt["max_new_tokens"], from_header), []).append((prompt, key))
    for (seed, max_new_tokens, from_header), items in groups.items():
        tasks = "+".join(dict.fromkeys(p["task"] for p, _ in items))
        texts = generate_texts(
            model, tokenizer, [transformers_prompt(tokenizer, p, system, system_prompt) for p, _ in items],
            max_new_tokens, temperature=ev["temperature"], top_p=ev["top_p"],
            repetition_penalty=ev["repetition_penalty"], seed=derived_seed(seed, [p["id"] for p, _ in items]),
            batch_size=ev["batch_size"], desc=f"{system.name} {tasks} seed {seed}")
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
    that the GGUF systems differ from chat by their weights only. Each prompt is sampled with
    its own seed (derived_seed of the seed and the prompt id), as transformers' batches draw
    independently for each row: with one seed for all, every probe drew the same random
    numbers and the identity rate moved with 3 draws, not 45 (f16 0.73 against 0.97)."""
    ev, system_prompt = params["evaluate"], params["persona"]["system_prompt"]
    for prompt, seed, key in todo:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
        messages.append({"role": "user", "content": prompt["question"]})
        reply = llm.create_chat_completion(messages, max_tokens=prompt["max_new_tokens"], seed=derived_seed(seed, prompt["id"]),
                                           **gguf_sampling(ev))
        text = (reply["choices"][0]["message"]["content"] or "").strip()
        append_answers(out_path, [answer_record(system, prompt, seed, key, text)])
        progress.update(1)


def answer_record(system: System, prompt: dict, seed: int, key: str, answer: str) -> dict:
    return {"key": key, "system": system.name, "task": prompt["task"], "id": prompt["id"], "seed": seed,
            "question": prompt["question"], "answer": answer}


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

    from lib.llama import load_llama
    from lib.models import load_with_adapters, perplexity, tokenizer_folder
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
              for seed in system.seeds(ev["seeds"]) for prompt in prompts]
    todo = [item for item in wanted if item[2] not in cache]
    ppl_key = json_digest([fingerprint, ppl_texts, bos_rule_digest()], 24)
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
