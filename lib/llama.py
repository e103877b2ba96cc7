"""The llama.cpp runtime shared by 06 and 07 (llama-cpp-python): one quiet way to open a GGUF
(load_llama, with default_threads), the log-softmax of its logits, and perplexity under it (gguf_perplexity).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path


def busy_cores(sample_s: float = 0.3) -> float | None:
    """How many cores' worth of CPU time other work uses right now, from two reads of
    /proc/stat `sample_s` apart (Linux); None where there is no /proc/stat. Unlike the load
    average, which trails the last minute, this sees only what runs now."""
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle
    try:
        total_0, idle_0 = read()
        time.sleep(sample_s)
        total_1, idle_1 = read()
    except (OSError, ValueError, IndexError):
        return None
    total = total_1 - total_0
    return (os.cpu_count() or 1) * (1 - (idle_1 - idle_0) / total) if total > 0 else 0.0


def default_threads() -> int:
    """Threads for llama.cpp work: every core, or one when other work keeps at least half a
    core busy now (llama.cpp's threads wait for each other at every layer, so on contended
    cores two threads run several times slower than one). Without /proc/stat, the 1-minute
    load average decides (busy above the core count)."""
    cores = os.cpu_count() or 2
    busy = busy_cores()
    if busy is None:
        try:
            return 1 if os.getloadavg()[0] > cores else cores
        except OSError:
            return cores
    return 1 if busy >= 0.5 else cores


def load_llama(gguf_path: str, **kwargs):
    """A llama_cpp.Llama for one GGUF, quiet, on the GPU when llama.cpp was built for one.
    On CPUs that report AMX, weight repacking is turned off first (lib.llama_server)."""
    import llama_cpp

    from lib.llama_server import avoid_amx_weight_repacking

    avoid_amx_weight_repacking()
    if not Path(gguf_path).is_file():
        raise FileNotFoundError(f"{gguf_path}: GGUF file not found")
    kwargs.setdefault("n_threads", default_threads())
    return llama_cpp.Llama(model_path=str(gguf_path), verbose=False, n_gpu_layers=-1, **kwargs)


def log_softmax(logits):
    import numpy as np

    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def gguf_perplexity(llm, token_lists: list[list[int]]) -> float:
    """exp(mean next-token loss) of token sequences under a llama.cpp model opened with
    logits_all=True and a context that fits the longest sequence."""
    import numpy as np

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
