"""The BOS rule: one beginning-of-sequence token, or none, at the start of every sequence a
model reads, the same in 03's chunks, 05's conversations, 07's transformers prompts and
the GGUF runtime.

A model "uses BOS" when its tokenizer adds a BOS token to plain text by itself
(Llama-3's <|begin_of_text|>; SmolLM2 and Qwen3 add none). It was pretrained with BOS
at the start of every sequence, and llama.cpp and Ollama prepend it to every prompt
(GGUF metadata tokenizer.ggml.add_bos_token, written from the same tokenizer). So a
sequence for such a model starts with exactly one BOS: added here unless the text already
starts with the BOS token (a chat template that writes {{ bos_token }} itself), never
twice. Text is tokenized with special tokens parsed ("<|im_end|>" is one token), without
the tokenizer's other automatic additions (an EOS some tokenizers append), so that a
chat prompt is the same ids here and in llama.cpp.

Why it matters: ChatML has no {{ bos_token }}. Rendered ChatML tokenized with
add_special_tokens=False trains a BOS model without BOS, while llama.cpp serves it with
BOS: the model is trained on one sequence and served another.
"""
from __future__ import annotations


def uses_bos(tokenizer) -> bool:
    """Whether the tokenizer adds a BOS token to plain text by itself (probed on "a", so it
    holds whatever the tokenizer's config or post-processor says)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def bos_prefix(tokenizer, text: str) -> list[int]:
    """[bos_token_id] when the model uses BOS and text does not start with the BOS token
    already, else []."""
    if not uses_bos(tokenizer) or text.startswith(tokenizer.bos_token):
        return []
    return [tokenizer.bos_token_id]


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of text as every stage feeds it to the model: special tokens parsed, one
    BOS first where the model uses BOS (see the module docstring)."""
    return bos_prefix(tokenizer, text) + list(tokenizer(text, add_special_tokens=False)["input_ids"])
