"""Training examples and their batching for 03 and 05: tokenized completion chunks
(completion_examples; chat conversations are lib.chat_data's), the batching that spends no
compute on padding (pick_batching: padding-free on a GPU, length-grouped padded batches on a
CPU, measured in bench/results/), its collator, and the share of non-pad positions.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lib.runfiles import read_jsonl


def completion_examples(tokenizer, records: list[dict], max_length: int) -> tuple[list[dict], dict]:
    """02's chunks tokenized as they are trained (lib.bos: one BOS first where the model
    uses BOS); the loss covers every token. A chunk over max_length tokens is an error: 02
    was run with another tokenizer or split.max_tokens."""
    from lib.bos import encode

    examples = []
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"train record {number}: expected {{\"id\", \"text\", ...}} (02_split/train.jsonl)")
        ids = encode(tokenizer, record["text"])
        if len(ids) > max_length:
            raise ValueError(f"chunk {record.get('id', number)}: {len(ids)} tokens, over split.max_tokens={max_length}; "
                             "rerun 02_split with this model and max_tokens")
        examples.append({"input_ids": list(ids), "labels": list(ids)})
    if not examples:
        raise ValueError("no training chunks")
    tokens = sum(len(ex["input_ids"]) for ex in examples)
    return examples, {"chunks": len(examples), "tokens": tokens, "loss_tokens": tokens, "loss_share": 1.0}


def examples_digest(examples: list[dict]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example["input_ids"], example["labels"]]).encode())
    return digest.hexdigest()


def nonpad_share(collator, examples: list[dict], batch_size: int) -> float:
    """Share of the positions in the collated batches that hold real tokens (1.0 when
    padding-free: no compute goes to padding)."""
    real = positions = 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        collated = collator([{"input_ids": ex["input_ids"], "labels": ex["labels"]} for ex in batch])
        real += sum(len(ex["input_ids"]) for ex in batch)
        positions += collated["input_ids"].numel()
    return real / positions


def pick_batching(backend: str) -> str:
    """"padding_free" on a GPU, "length_grouped" on a CPU, for both backends (unsloth's CPU
    mode turns its own padding-free batching off and pads random batches)."""
    import torch

    return "padding_free" if torch.cuda.is_available() else "length_grouped"


def length_grouped_order(lengths: list[int], batch_size: int, seed: int, window_batches: int = 64) -> list[int]:
    """Example indices in training order for padded batches of batch_size: shuffled, sorted
    by length within windows of window_batches batches (so a batch holds similar lengths),
    then the full batches shuffled (so length does not follow the step). A last short batch
    stays last, so that every batch starts at a multiple of batch_size."""
    import random

    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    full, short = [], []
    window = batch_size * window_batches
    for start in range(0, len(order), window):
        by_length = sorted(order[start:start + window], key=lambda i: lengths[i])
        for i in range(0, len(by_length), batch_size):
            batch = by_length[i:i + batch_size]
            (full if len(batch) == batch_size else short).append(batch)
    rng.shuffle(full)
    return [index for batch in full + short for index in batch]


def training_order(examples: list[dict], batching: str, batch_size: int, seed: int) -> list[dict]:
    """The examples in the order they are trained: length_grouped_order for length-grouped
    batches (the Trainer then takes them in sequence); unchanged for padding-free ones (the
    Trainer shuffles them)."""
    if batching == "padding_free":
        return examples
    if batching != "length_grouped":
        raise ValueError(f"batching must be padding_free or length_grouped, got {batching!r}")
    return [examples[i] for i in length_grouped_order([len(ex["input_ids"]) for ex in examples], batch_size, seed)]


def language_model_collator(tokenizer, padding_free: bool):
    """trl's collator. padding_free: a batch is one row of its examples end to end, with
    position_ids restarting at 0 for each and the first label of each set to -100; else
    rows padded to the longest example of the batch (labels -100, attention mask 0)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=padding_free)


def spread_over_documents(records: list[dict], limit: int) -> list[dict]:
    """Up to `limit` chunks (0 = all), taken in turn from each document, first chunks
    first, so every held-out document is scored."""
    if limit <= 0 or len(records) <= limit:
        return list(records)
    by_document: dict[str, list[dict]] = {}
    for record in records:
        by_document.setdefault(record["doc_id"], []).append(record)
    picked, index = [], 0
    while len(picked) < limit:
        for chunks in by_document.values():
            if index < len(chunks) and len(picked) < limit:
                picked.append(chunks[index])
        index += 1
    return picked


def max_example_tokens(kind: str, params: dict) -> int:
    """The longest example a stage trains on: 02's chunk size, or train_chat.max_length."""
    return params["split"]["max_tokens"] if kind == "completion" else params["train_chat"]["max_length"]


def read_training_records(kind: str, data: Path) -> list[dict]:
    from lib.chat_data import read_conversations

    return read_conversations(data) if kind == "chat" else read_jsonl(data)
