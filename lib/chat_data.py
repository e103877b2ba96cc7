"""Chat training examples: conversations tokenized with the loss on the assistant only.

A conversation ({"messages": [{"role", "content"}, ...], "source"}, from 04) is rendered
with the tokenizer's chat template. The loss covers each assistant message's content
and the end-of-turn token after it (so the model learns to stop), and nothing else: not
the system prompt, not the user's words, not the "<|im_start|>assistant" header. The
spans are found by rendering the conversation up to each assistant turn, so any template
that renders a conversation as a growing prefix works, without {% generation %} markers.
"""
from __future__ import annotations

from pathlib import Path

from lib.records import Conversation

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100


def check_conversation(record, where: str) -> list[dict]:
    """The messages of one conversation record; anything malformed raises ValueError naming `where`."""
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list) or not record["messages"]:
        raise ValueError(f"{where}: expected {{\"messages\": [{{\"role\", \"content\"}}, ...]}}")
    for i, message in enumerate(record["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ROLES \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"{where}: message {i} needs a role ({', '.join(ROLES)}) and a string content")
    if not any(m["role"] == "assistant" for m in record["messages"]):
        raise ValueError(f"{where}: has no assistant message to learn from")
    if record["messages"][0]["role"] == "assistant":
        raise ValueError(f"{where}: starts with an assistant message; a conversation starts with system or user")
    return record["messages"]


def read_conversations(path: Path) -> list[Conversation]:
    """Conversations from a JSONL file (04's conversations.jsonl), each checked."""
    from lib.runfiles import read_jsonl

    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path}: no conversations")
    for number, record in enumerate(records, 1):
        check_conversation(record, f"{path}:{number}")
    return records


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the loss covers: each assistant
    message's content plus its end-of-turn token (the whitespace after it excluded)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False)
        if not (through.startswith(before) and text.startswith(through)):
            raise ValueError(
                f"{tokenizer.name_or_path}: the chat template does not render a conversation as a growing "
                "prefix, so the assistant turns cannot be located; use model.chat_template=chatml")
        spans.append((len(before), len(through.rstrip())))
    return text, spans


def tokenize_conversation(tokenizer, messages: list[dict]) -> dict:
    """{"input_ids", "labels"}: labels are the token ids inside assistant spans, -100 elsewhere
    (a BOS first, untrained, where the model uses BOS: lib.bos)."""
    from lib.bos import bos_prefix

    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    prefix = bos_prefix(tokenizer, text)
    labels = [IGNORE_INDEX] * len(prefix)
    for token_id, (start, _end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        inside = any(span_start <= start < span_end for span_start, span_end in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return {"input_ids": prefix + list(encoded["input_ids"]), "labels": labels}


def conversation_examples(tokenizer, records: list[dict], max_length: int) -> tuple[list[dict], dict]:
    """Tokenized examples of the conversations that fit max_length tokens, and counts of
    what was kept and dropped (too long)."""
    examples, too_long = [], 0
    for number, record in enumerate(records, 1):
        example = tokenize_conversation(tokenizer, check_conversation(record, f"conversation {number}"))
        if len(example["input_ids"]) > max_length:
            too_long += 1
            continue
        examples.append(example)
    if not examples:
        raise ValueError(f"all {len(records)} conversations are longer than {max_length} tokens (train_chat.max_length)")
    loss_tokens = sum(sum(label != IGNORE_INDEX for label in ex["labels"]) for ex in examples)
    total_tokens = sum(len(ex["input_ids"]) for ex in examples)
    return examples, {"conversations": len(records), "kept": len(examples), "dropped_too_long": too_long,
                      "tokens": total_tokens, "loss_tokens": loss_tokens,
                      "loss_share": round(loss_tokens / total_tokens, 4)}


def mark_loss_spans(tokenizer, messages: list[dict], left: str = "[[", right: str = "]]") -> str:
    """The rendered conversation with the text the loss covers wrapped in markers, to show
    what the model is trained to say."""
    text, spans = assistant_spans(tokenizer, messages)
    out, position = [], 0
    for start, end in spans:
        out += [text[position:start], left, text[start:end], right]
        position = end
    return "".join(out + [text[position:]])
