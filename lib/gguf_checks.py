"""What 06 measures and checks on each GGUF, with llama.cpp itself (llama-cpp-python).

On the persona's held-out text from 02, against the f16 GGUF: perplexity, mean KL divergence
of the next-token distributions, and top-1 agreement (llama.cpp's own `llama-perplexity
--kl-divergence` statistics). On the f16 GGUF: the tokenizer gives the transformers
tokenizer's ids, one BOS at most, the embedded chat template is the training one and renders
the same prompt, the end-of-turn token is one llama.cpp stops at, and a real chat reply does
stop. Every GGUF answers the same prompts with the same seeds (chat_with_gguf).

Everything that loads a GGUF runs in a child process (`python -m lib.gguf_checks NAME ...`):
llama.cpp aborts the whole process on some broken files (an unknown byte in a wrong
vocabulary, a failed assertion), and a check must report that, not take the notebook down.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from lib.bos import encode, uses_bos
from lib.llama import load_llama, log_softmax
from lib.runfiles import derived_seed

ROOT = Path(__file__).resolve().parent.parent


# Strings whose tokenization must agree between the GGUF and the training tokenizer: the
# pre-tokenizer differs between models exactly on digits, spaces, punctuation and non-ASCII.
TOKENIZER_SAMPLES = [
    "Hello world",
    "In 2005 I wrote 1,234 words; in 2024, 56789 more.",
    "  leading spaces,\ttabs\n\nand blank lines   ",
    "naïve café — “quoted” ‘text’… ½ €10 © ünïcödé",
    "Don't you think it's 'obvious'? I'll say: we'd've done it!",
    "def f(x):\n    return x**2 + 3.14159",
    "日本語のテキストと emoji 🚀🦙",
]


class QualityGateError(RuntimeError):
    """A GGUF failed the quality gate; the message lists every problem found."""


def run_isolated(function: str, timeout_s: float | None = None, **kwargs) -> dict:
    """Run one of this module's WORKERS in a child process and return its JSON result.
    A crash (llama.cpp abort, segfault) raises QualityGateError naming the file, the step,
    the signal and the last lines llama.cpp printed."""
    with tempfile.TemporaryDirectory(prefix="gguf_checks.") as tmp:
        args_file, result_file, log_file = (Path(tmp) / name for name in ("args.json", "result.json", "log.txt"))
        args_file.write_text(json.dumps(kwargs, default=str))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        with open(log_file, "w") as log:
            try:
                proc = subprocess.run([sys.executable, "-m", "lib.gguf_checks", function, str(args_file), str(result_file)],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise QualityGateError(f"{kwargs.get('gguf_path')}: {function} did not finish in {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not result_file.is_file():
            code = proc.returncode
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            lines = [line for line in log_file.read_text(errors="replace").splitlines()
                     if line.strip() and not line.startswith(("#", "[New LWP", "warning: File", "To enable", "line to",
                                                              "To completely", "For more information", "add-auto-load",
                                                              "set auto-load", '"Auto-loading'))]
            raise QualityGateError(
                f"{kwargs.get('gguf_path')}: llama.cpp {how} during '{function}' - the file is broken or does "
                f"not match this llama.cpp. Last output:\n" + "\n".join(lines[-12:]))
        return json.loads(result_file.read_text())


def score_in_process(gguf_path: str, chunks: list[list[int]], reference_path: str,
                     write_reference: bool = False, n_threads: int = 0, lora_path: str | None = None) -> dict:
    """Perplexity of a GGUF (with a LoRA adapter GGUF applied, if given) on the token chunks;
    with write_reference, save its next-token log-probabilities to reference_path (the f16
    run); else compare against that file: mean KL divergence (reference || this), its 99th
    percentile, and top-1 agreement."""
    import numpy as np
    from tqdm.auto import tqdm

    n_ctx = max(len(c) for c in chunks)
    extra = {"n_threads": n_threads} if n_threads else {}
    if lora_path:
        extra["lora_path"] = str(lora_path)
    llm = load_llama(gguf_path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, **extra)
    n_vocab = llm.n_vocab()
    n_pred = sum(len(c) - 1 for c in chunks)
    if write_reference:
        reference = np.lib.format.open_memmap(reference_path, mode="w+", dtype=np.float32, shape=(n_pred, n_vocab))
    else:
        reference = np.load(reference_path, mmap_mode="r")
        if reference.shape != (n_pred, n_vocab):
            raise ValueError(f"{reference_path}: reference shape {reference.shape} does not match "
                             f"{gguf_path} ({n_pred} positions x {n_vocab} vocabulary)")
    nll = kld = 0.0
    agree = nonfinite = 0
    kld_values = []
    position = 0
    for chunk in tqdm(chunks, desc=f"scoring {Path(gguf_path).name}", leave=False):
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[: len(chunk) - 1], dtype=np.float32)
        finite = np.isfinite(logits).all(axis=1)
        nonfinite += int((~finite).sum())
        logits[~finite] = 0.0
        logprobs = log_softmax(logits)
        targets = np.asarray(chunk[1:])
        rows = np.arange(len(targets))
        nll += float(-logprobs[rows, targets].sum())
        span = slice(position, position + len(targets))
        if write_reference:
            reference[span] = logprobs
        else:
            ref = np.asarray(reference[span])
            per_token = (np.exp(ref) * (ref - logprobs)).sum(axis=1)
            kld_values.append(per_token)
            kld += float(per_token.sum())
            agree += int((ref.argmax(axis=1) == logprobs.argmax(axis=1)).sum())
        position += len(targets)
    if write_reference:
        reference.flush()
    result = {"n_tokens": n_pred, "ppl": math.exp(nll / n_pred) if not nonfinite else None,
              "nonfinite_positions": nonfinite}
    if not write_reference:
        values = np.concatenate(kld_values)
        result.update(kld=kld / n_pred, kld_p99=float(np.percentile(values, 99)), top1=agree / n_pred)
    return result


def chat_in_process(gguf_path: str, conversations: list[list[dict]], max_tokens, seed: int = 1234,
                    temperature: float = 0.7, n_ctx: int = 1024, n_seeds: int = 1) -> list[dict]:
    """Chat replies through llama-cpp-python's chat path (the GGUF's own template, stop at
    end-of-generation tokens), one per conversation and seed (seed, seed+1, ... n_seeds of
    them): text, finish_reason, the reply's token ids, the seed and the conversation's index.
    Each conversation samples from its own seed, derived_seed(seed, messages): the same for
    every GGUF (paired comparisons) but a different random stream for every conversation.
    max_tokens: one limit for all, or a list with one per conversation."""
    llm = load_llama(gguf_path, n_ctx=n_ctx, seed=seed)
    limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(conversations)
    replies = []
    for reply_seed in range(seed, seed + n_seeds):
        for index, (messages, limit) in enumerate(zip(conversations, limits)):
            response = llm.create_chat_completion(messages=messages, max_tokens=limit, temperature=temperature,
                                                  seed=derived_seed(reply_seed, messages))
            text = response["choices"][0]["message"]["content"] or ""
            replies.append({"text": text, "finish_reason": response["choices"][0]["finish_reason"],
                            "completion_tokens": response["usage"]["completion_tokens"],
                            "token_ids": llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
                            "seed": reply_seed, "conversation": index})
    return replies


def stop_check_in_process(gguf_path: str, messages: list[dict], max_tokens: int, seed: int = 1234,
                          attempts: int = 3, temperature: float = 0.7) -> dict:
    """Sampled chat replies (seed, seed+1, ...) until one ends by itself at an end-of-turn
    token within max_tokens: that reply, with "attempts" (how many it took). A model whose
    end-of-turn token is missing, or not an end-of-generation token in the GGUF, never stops.
    (Greedy decoding is not used: a small model often loops greedily.)"""
    reply = {}
    for attempt in range(1, attempts + 1):
        reply = chat_in_process(gguf_path, [messages], max_tokens, seed=seed + attempt - 1, temperature=temperature)[0]
        reply["attempts"] = attempt
        if reply["finish_reason"] == "stop":
            break
    return reply


def end_of_turn_token(tokenizer) -> str:
    """The token the chat template closes an assistant turn with (<|im_end|>, <|eot_id|>):
    the first token after the assistant's text in a rendered conversation."""
    marker = "Zq9 end of reply"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False)
    after = text[text.index(marker) + len(marker):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"{tokenizer.name_or_path}: the chat template puts nothing after an assistant turn")
    return tokenizer.convert_ids_to_tokens(ids[0])


def leading_count(ids: list[int], token: int | None) -> int:
    count = 0
    while token is not None and count < len(ids) and ids[count] == token:
        count += 1
    return count


def check_format_in_process(gguf_path: str, tokenizer_dir: str, conversation: list[dict],
                            samples: list[str] | None = None) -> dict:
    """Template, tokenizer, BOS and end-of-turn checks of a GGUF against the training
    tokenizer (tokenizer_dir). Returns the facts and a list of problems."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    llm = load_llama(gguf_path, n_ctx=512, vocab_only=True)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    name = Path(gguf_path).name
    problems, facts = [], {}

    def piece(token_id: int) -> str:
        return llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    # 1. the tokenizer: same ids as training's on plain text
    mismatched = []
    for text in (samples or []) + TOKENIZER_SAMPLES:
        hf_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        gguf_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if hf_ids != gguf_ids:
            mismatched.append(text)
            if len(mismatched) == 1:
                first = next((i for i, (a, b) in enumerate(zip(hf_ids, gguf_ids)) if a != b), min(len(hf_ids), len(gguf_ids)))
                problems.append(f"{name}: tokenizer differs from training's on {text[:40]!r}: token {first} is "
                                f"{gguf_ids[first:first + 3]} in the GGUF, {hf_ids[first:first + 3]} in training "
                                f"(tokenizer.ggml.model={llm.metadata.get('tokenizer.ggml.model')!r}, "
                                f"pre={llm.metadata.get('tokenizer.ggml.pre')!r})")
    facts["tokenizer_samples"] = len((samples or []) + TOKENIZER_SAMPLES)
    facts["tokenizer_mismatches"] = len(mismatched)

    # 2. the chat template: the training one, rendering the same prompt
    gguf_template = llm.metadata.get("tokenizer.chat_template")
    facts["template_matches_training"] = gguf_template == tokenizer.chat_template
    if not gguf_template:
        problems.append(f"{name}: has no tokenizer.chat_template; runtimes would guess a template")
    elif gguf_template != tokenizer.chat_template:
        at = next((i for i, (a, b) in enumerate(zip(gguf_template, tokenizer.chat_template or "")) if a != b),
                  min(len(gguf_template), len(tokenizer.chat_template or "")))
        problems.append(f"{name}: tokenizer.chat_template is not the template used in training "
                        f"(first difference at character {at}: GGUF {gguf_template[at:at + 30]!r} vs "
                        f"training {(tokenizer.chat_template or '')[at:at + 30]!r})")
    bos_id, eos_id = llm.token_bos(), llm.token_eos()
    hf_prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    gguf_prompt = None
    if gguf_template:
        try:
            gguf_prompt = Jinja2ChatFormatter(
                template=gguf_template, eos_token=piece(eos_id) if eos_id >= 0 else "",
                bos_token=piece(bos_id) if bos_id >= 0 else "")(messages=conversation).prompt
        except Exception as err:  # noqa: BLE001 - a template that does not render is a finding
            problems.append(f"{name}: its chat template does not render: {err}")
    facts["prompt_matches_training"] = gguf_prompt == hf_prompt
    if gguf_prompt is not None and gguf_prompt != hf_prompt:
        problems.append(f"{name}: its chat template renders a different prompt than training's:\n"
                        f"  GGUF:     {gguf_prompt[:160]!r}\n  training: {hf_prompt[:160]!r}")

    # 3. BOS: a runtime tokenizes the prompt (BOS added where the GGUF says so) into the
    # very ids 05 trained on and 07 prompts with (lib.bos)
    hf_ids = tokenizer(hf_prompt, add_special_tokens=False)["input_ids"]
    trained_ids = encode(tokenizer, hf_prompt)
    runtime_ids = llm.tokenize(hf_prompt.encode("utf-8"), add_bos=True, special=True)
    hf_adds_bos = uses_bos(tokenizer)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    facts.update(add_bos_token=add_bos, leading_bos=leading_count(runtime_ids, bos_id),
                 bos_token=piece(bos_id) if bos_id >= 0 else None)
    if facts["leading_bos"] > 1:
        problems.append(f"{name}: the chat prompt starts with {facts['leading_bos']} BOS tokens "
                        f"({facts['bos_token']!r}): the template writes one and add_bos_token adds another")
    if add_bos != hf_adds_bos:
        problems.append(f"{name}: tokenizer.ggml.add_bos_token={add_bos}, but the training tokenizer "
                        f"{'adds' if hf_adds_bos else 'does not add'} a BOS token")
    if llm.tokenize(hf_prompt.encode("utf-8"), add_bos=False, special=True) != hf_ids:
        problems.append(f"{name}: the chat prompt's special tokens tokenize differently than in training")
    elif runtime_ids != trained_ids:
        problems.append(f"{name}: llama.cpp's chat prompt starts {runtime_ids[:3]}, training's "
                        f"{trained_ids[:3]} (lib.bos)")
    facts["runtime_prompt_matches_training"] = runtime_ids == trained_ids

    # 4. the end-of-turn token: one llama.cpp stops generating at
    eot = end_of_turn_token(tokenizer)
    eot_ids = llm.tokenize(eot.encode("utf-8"), add_bos=False, special=True)
    facts["end_of_turn"] = eot
    if len(eot_ids) != 1:
        problems.append(f"{name}: end-of-turn {eot!r} is not a single special token in the GGUF ({eot_ids})")
    elif not llama_cpp.llama_vocab_is_eog(vocab, eot_ids[0]):
        problems.append(f"{name}: end-of-turn {eot!r} (id {eot_ids[0]}) is not an end-of-generation token "
                        f"in the GGUF (eos is {piece(eos_id)!r}): llama.cpp would not stop after a reply")
    facts["eos_token"] = piece(eos_id) if eos_id >= 0 else None
    return {"facts": facts, "problems": problems}


SHARED_METADATA = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                   "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                   "tokenizer.ggml.add_bos_token", "tokenizer.chat_template", "general.architecture")


def metadata_problems(reference_path: Path, gguf_path: Path) -> list[str]:
    """A quant must carry the f16 file's tokenizer, special tokens and chat template
    unchanged (the f16 file is the one check_gguf_format verifies in full)."""
    from lib.gguf_export import gguf_metadata

    reference, meta = gguf_metadata(reference_path), gguf_metadata(gguf_path)
    return [f"{Path(gguf_path).name}: {key} is {str(meta.get(key))[:60]!r}, but "
            f"{str(reference.get(key))[:60]!r} in {Path(reference_path).name}"
            for key in SHARED_METADATA if meta.get(key) != reference.get(key)]


WORKERS = {"score": score_in_process, "chat": chat_in_process, "stop_check": stop_check_in_process,
           "check_format": check_format_in_process}


def score_gguf(gguf_path: Path, chunks: list[list[int]], reference_path: Path, write_reference: bool = False,
               n_threads: int = 0, lora_path: Path | None = None) -> dict:
    """score_in_process in a child process (see run_isolated)."""
    return run_isolated("score", gguf_path=str(gguf_path), chunks=chunks, reference_path=str(reference_path),
                        write_reference=write_reference, n_threads=n_threads,
                        lora_path=str(lora_path) if lora_path else None)


def chat_with_gguf(gguf_path: Path, conversations: list[list[dict]], max_tokens, seed: int = 1234,
                   temperature: float = 0.7, n_seeds: int = 1) -> list[dict]:
    """chat_in_process in a child process."""
    return run_isolated("chat", gguf_path=str(gguf_path), conversations=conversations, max_tokens=max_tokens,
                        seed=seed, temperature=temperature, n_seeds=n_seeds)


def stop_check_gguf(gguf_path: Path, messages: list[dict], max_tokens: int, seed: int = 1234, attempts: int = 3) -> dict:
    """stop_check_in_process in a child process."""
    return run_isolated("stop_check", gguf_path=str(gguf_path), messages=messages, max_tokens=max_tokens,
                        seed=seed, attempts=attempts)


def check_gguf_format(gguf_path: Path, tokenizer_dir: Path, conversation: list[dict],
                      samples: list[str] | None = None) -> dict:
    """check_format_in_process in a child process."""
    return run_isolated("check_format", gguf_path=str(gguf_path), tokenizer_dir=str(tokenizer_dir),
                        conversation=conversation, samples=samples or [])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in WORKERS:
        print(f"usage: python -m lib.gguf_checks {{{','.join(WORKERS)}}} ARGS.json RESULT.json", file=sys.stderr)
        return 2
    kwargs = json.loads(Path(argv[1]).read_text())
    result = WORKERS[argv[0]](**kwargs)
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
