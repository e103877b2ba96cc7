"""The quality gate of 06: a refusal of broken GGUFs, from the numbers lib.gguf_checks measures.

Refused: a quant whose perplexity ratio, KL divergence or top-1 agreement against the f16 GGUF
is past the limits; a GGUF whose tokenizer, BOS, chat template or end of turn does not match
the training ones; a quant whose replies degenerate (one token repeated, a loop) more often
than f16's (gate_problems, enforce_gate).
"""
from __future__ import annotations

import collections

from lib.bos import uses_bos
from lib.gguf_checks import QualityGateError
from lib.records import GateResult

DEGENERATE_TOKEN_SHARE = 0.5     # one token making up more than this share of a reply
DEGENERATE_DISTINCT_RATIO = 0.2  # fewer distinct tokens than this share of a reply
DEGENERATE_MIN_TOKENS = 16       # replies shorter than this are only checked for emptiness


def heldout_token_chunks(texts: list[str], tokenizer, chunk_tokens: int, max_chunks: int) -> list[list[int]]:
    """The held-out texts as one token stream (training's tokenizer, special tokens such as
    the end-of-text marker parsed) cut into up to max_chunks chunks of chunk_tokens; a
    shorter tail chunk is kept when there is no full chunk."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    if len(ids) < 16:
        raise ValueError(f"held-out text has only {len(ids)} tokens; the gate needs at least 16")
    chunks = [ids[i:i + chunk_tokens] for i in range(0, len(ids), chunk_tokens)]
    full = [c for c in chunks if len(c) == chunk_tokens]
    chunks = (full or chunks[:1])[:max_chunks]
    if uses_bos(tokenizer):  # as llama-perplexity: a chunk starts with BOS where the model uses one (lib.bos)
        chunks = [[tokenizer.bos_token_id] + c[:-1] for c in chunks]
    return chunks


def degeneration_problems(reply: dict) -> list[str]:
    """What makes a chat reply degenerate: empty, one token repeated, or a loop of a few
    tokens (the "gibberish" of a broken quant). reply: as chat_in_process returns it."""
    text, ids = reply["text"], reply["token_ids"]
    if not text.strip():
        return ["the reply is empty"]
    if len(ids) < DEGENERATE_MIN_TOKENS:
        return []
    problems = []
    token, count = collections.Counter(ids).most_common(1)[0]
    if count / len(ids) > DEGENERATE_TOKEN_SHARE:
        problems.append(f"one token (id {token}) is {count / len(ids):.0%} of the reply")
    distinct = len(set(ids)) / len(ids)
    if distinct < DEGENERATE_DISTINCT_RATIO:
        problems.append(f"only {len(set(ids))} distinct tokens in {len(ids)} ({distinct:.0%}): a loop")
    if text.count("\ufffd") > len(text) / 10:
        problems.append("more than 10% of the reply is undecodable bytes")
    return problems


def degenerate_replies(replies: list[dict]) -> list[tuple[dict, list[str]]]:
    """The degenerate ones among replies, each with its problems."""
    flagged = [(reply, degeneration_problems(reply)) for reply in replies]
    return [(reply, problems) for reply, problems in flagged if problems]


def chat_degeneration_problems(results: dict, max_degenerate_excess: float) -> list[str]:
    """Degeneration judged against f16 on the same prompts and seeds: a small finetune loops
    now and then whatever its precision, so one looping reply says little about a quant.
    Refused: a file whose every sampled reply is degenerate (gibberish, or a finetune that
    only loops), and a quant whose share of degenerate replies exceeds f16's by more than
    max_degenerate_excess."""
    problems = []
    f16_replies = results.get("f16", {}).get("chat", [])
    f16_share = len(degenerate_replies(f16_replies)) / len(f16_replies) if f16_replies else 0.0
    for name, result in results.items():
        replies = result.get("chat", [])
        if not replies:
            continue
        bad = degenerate_replies(replies)
        share = len(bad) / len(replies)
        if not bad:
            continue
        example = f"{bad[0][1][0]}: {bad[0][0]['text'][:120]!r}"
        if share == 1.0:
            problems.append(f"{name}: all {len(replies)} sampled chat replies are degenerate (first: {example})")
        elif name != "f16" and share - f16_share > max_degenerate_excess:
            problems.append(f"{name}: {len(bad)} of {len(replies)} sampled chat replies are degenerate against "
                            f"f16's {f16_share:.0%} on the same prompts and seeds (limit "
                            f"quantize.max_degenerate_excess={max_degenerate_excess}; first: {example})")
    return problems


def gate_problems(results: dict, max_kld_q8_0: float, max_ppl_ratio: float,
                  max_degenerate_excess: float = 0.25) -> list[str]:
    """Every reason to refuse the export. results: {"f16": {...}, "<quant>": {...}} with the
    score fields (ppl, kld, top1, nonfinite_positions), "chat" replies (the same prompts and
    seeds for every file), "format" (the check_format result) and, for f16, "stop_reply"
    (its end-of-turn must stop it)."""
    problems = []
    f16 = results["f16"]
    for result in results.values():
        problems += result.get("format", {}).get("problems", [])
    stop = f16.get("stop_reply")
    if stop is not None and stop["finish_reason"] != "stop":
        problems.append(f"f16: no chat reply stopped at the end-of-turn token within {stop['completion_tokens']} "
                        f"tokens in {stop.get('attempts', 1)} tries (finish_reason={stop['finish_reason']!r}): "
                        f"{stop['text'][:120]!r}")
    for name, result in results.items():
        if result.get("nonfinite_positions"):
            problems.append(f"{name}: {result['nonfinite_positions']} positions produced non-finite logits (NaN/inf)")
        if name != "f16" and result.get("ppl") and f16.get("ppl"):
            ratio = result["ppl"] / f16["ppl"]
            if ratio > max_ppl_ratio:
                problems.append(f"{name}: perplexity {result['ppl']:.2f} is {ratio:.2f}x f16's {f16['ppl']:.2f} "
                                f"(limit quantize.max_ppl_ratio={max_ppl_ratio})")
        if name == "q8_0" and result.get("kld") is not None and result["kld"] > max_kld_q8_0:
            problems.append(f"q8_0: mean KL divergence from f16 is {result['kld']:.4f}, above "
                            f"quantize.max_kld_q8_0={max_kld_q8_0} (llama.cpp measures ~0.0014 for Llama-3-8B): "
                            f"the conversion or the quantized weights are broken")
    return problems + chat_degeneration_problems(results, max_degenerate_excess)


def gate_result(results: dict, problems: list[str]) -> GateResult:
    """gate.json: passed when there are no problems, the problems, and the results per GGUF."""
    return {"passed": not problems, "problems": problems, "results": results}


def enforce_gate(problems: list[str]) -> None:
    """Raise QualityGateError listing the problems, if there are any."""
    if problems:
        raise QualityGateError("the GGUF export failed its quality gate:\n- " + "\n- ".join(problems))


# ---------------------------------------------------------------- what 06 shows and keeps


def gate_table(results: dict) -> str:
    """One line per GGUF: size (MB), perplexity, its ratio to f16's, mean KLD, KLD p99 and
    top-1 agreement against f16 (f16 itself is the reference)."""
    lines = [f"{'file':<16}{'size MB':>9}{'ppl':>9}{'ppl/f16':>9}{'KLD':>9}{'KLD p99':>9}{'top-1':>8}"]
    for name, r in results.items():
        ratio = r["ppl"] / results["f16"]["ppl"] if r.get("ppl") and results["f16"].get("ppl") else float("nan")
        kld, p99, top1 = (r.get(k) for k in ("kld", "kld_p99", "top1"))
        lines.append(f"{name:<16}{r['size_mb']:>9.1f}{(r['ppl'] or float('nan')):>9.2f}{ratio:>9.3f}"
                     + (f"{kld:>9.4f}{p99:>9.3f}{top1:>8.1%}" if kld is not None else f"{'(ref)':>9}{'':>9}{'':>8}"))
    return "\n".join(lines)


def per_file_metrics(results: dict, file_names: dict[str, str]) -> dict[str, dict]:
    """metrics.json's entry per GGUF (name -> file, size_mb, ppl, ppl_ratio, kld, kld_p99,
    top1, its first chat sample and how many of its chat replies degenerate)."""
    return {name: {"file": file_names[name], "size_mb": r["size_mb"],
                   "ppl": r["ppl"], "ppl_ratio": r["ppl"] / results["f16"]["ppl"] if r["ppl"] else None,
                   "kld": r.get("kld"), "kld_p99": r.get("kld_p99"), "top1": r.get("top1"),
                   "chat_sample": r["chat"][0]["text"],
                   "degenerate_replies": len(degenerate_replies(r["chat"])), "chat_replies": len(r["chat"])}
            for name, r in results.items()}


def f16_checks(f16: dict) -> dict:
    """The f16 GGUF's format facts and stop check, as metrics.json keeps them."""
    stop = f16["stop_reply"]
    return dict(f16["format"]["facts"], stop_check_finish=stop["finish_reason"],
                stop_check_tokens=stop["completion_tokens"], stop_check_attempts=stop["attempts"])
