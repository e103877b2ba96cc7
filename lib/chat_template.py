"""The chat template a chat model is trained with, and served with later.

params model.chat_template:
- own: an instruct model keeps the template it shipped with; its special tokens are
  already trained, so nothing but LoRA is trained.
- chatml: a base model (no template, or special tokens it never learned) is given ChatML.
  <|im_start|> and <|im_end|> are added to the vocabulary when missing, and only those
  embedding rows are trained (peft trainable_token_indices), never the whole embedding
  matrix: training all embeddings ran a T4 out of memory in the original project.

The template is set on the tokenizer that is saved with the adapter, so the merged model
and the GGUF made from it carry the template used in training. No {% generation %}
markers are added: the loss mask is built from the rendered text (lib/chat_data.py).
"""
from __future__ import annotations

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
TEMPLATE_CHOICES = ("own", "chatml")


def set_chat_template(tokenizer, choice: str) -> list[str]:
    """Give the tokenizer the chat template named by params model.chat_template.

    Returns the special tokens the model must learn for it: none for "own", the ChatML
    tokens for "chatml" (whose end-of-turn token becomes the eos token, so generation,
    llama.cpp and Ollama stop at the end of a turn)."""
    if choice == "own":
        if not tokenizer.chat_template:
            raise ValueError(
                f"{tokenizer.name_or_path}: the tokenizer has no chat template of its own; "
                "set model.chat_template=chatml for a base model")
        return []
    if choice == "chatml":
        tokenizer.chat_template = CHATML_TEMPLATE
        missing = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        tokenizer.eos_token = "<|im_end|>"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return list(CHATML_TOKENS)
    raise ValueError(f"model.chat_template must be one of {', '.join(TEMPLATE_CHOICES)}, got {choice!r}")


def fit_embeddings_to_tokenizer(model, tokenizer) -> int:
    """Grow the input embedding and the output layer (tied or untied) when tokens were
    added. Each new row starts at the mean of that matrix's old rows, deterministically
    (transformers' mean_resizing samples around the mean instead), as J. Hewitt,
    "Initializing New Word Embeddings for Pretrained Language Models" (2021) recommends.
    Returns how many rows were added."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return 0
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    matrices = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    with torch.no_grad():
        for weight in matrices.values():
            weight[rows:] = weight[:rows].float().mean(dim=0).to(weight.dtype)
    return len(tokenizer) - rows


def token_ids(tokenizer, tokens: list[str]) -> list[int]:
    """Ids of single tokens; a string that is not one token in the vocabulary is an error."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise ValueError(f"{tokenizer.name_or_path}: not in the vocabulary: {', '.join(missing)}")
    return [vocab[t] for t in tokens]


def chat_prompt(tokenizer, question: str, system_prompt: str | None = None) -> str:
    """A one-question conversation rendered up to the start of the assistant's answer."""
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
