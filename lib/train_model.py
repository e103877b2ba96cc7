"""The model that 03 and 05 train: the base loaded for training by backend (unsloth or
transformers + peft), LoRA added (with the rows of special tokens a chat template needs,
for tied and untied embeddings), the adapter saved, and 05's base: the completion adapter
merged into the base model in 16 bit (merged_base_for_chat).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from lib.models import resolve_model
from lib.runfiles import atomic_folder, file_sha256, read_json, write_json
from lib.train_resume import SUMMARY_FILE


def load_base_for_training(base: str, model_params: dict, backend: str, max_seq_length: int):
    """(model, tokenizer) of the base, ready for LoRA: 4-bit when model.load_in_4bit (CUDA
    only), dtype from model.dtype (fp16 on a T4, bf16 where supported, CPUs with AMX or
    AVX512-BF16 included, else fp32)."""
    import torch

    from lib.environment import pick_dtype

    dtype = pick_dtype(model_params["dtype"])
    cuda = torch.cuda.is_available()
    four_bit = bool(model_params["load_in_4bit"])
    if four_bit and not cuda:
        raise ValueError("model.load_in_4bit=true needs a CUDA GPU (bitsandbytes); the cpu profile sets it false")
    device_map = {"": int(os.environ.get("LOCAL_RANK", 0))} if cuda else None  # one whole model per DDP process
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        return FastLanguageModel.from_pretrained(
            model_name=resolve_model(base), max_seq_length=max_seq_length, dtype=dtype,
            load_in_4bit=four_bit, device_map=device_map)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype, "attn_implementation": "sdpa"}
    if device_map:
        kwargs["device_map"] = device_map
    if four_bit:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(base), **kwargs)
    # a KV cache in the forward pass turns off the packed-sequence attention mask that
    # keeps padding-free examples apart (transformers builds it only without a cache)
    model.config.use_cache = False
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(base))
    if four_bit:
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return model, tokenizer


def embeddings_are_tied(model) -> bool:
    """Whether the output layer shares the input embedding matrix (SmolLM2, small Qwen3)
    or has its own (Llama-3-8B, Qwen3-8B)."""
    output = model.get_output_embeddings()
    return output is not None and output.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def trainable_token_indices(model, token_ids: list[int]) -> dict[str, list[int]]:
    """peft's trainable_token_indices for the rows of token_ids in the input embedding and,
    when the output layer has its own matrix, in the output layer too ({"embed_tokens": ids,
    "lm_head": ids} for Llama). peft given a plain list trains the input rows only: with
    untied embeddings the output row of <|im_end|> would never train (gradient exactly 0
    measured on an untied tiny Llama), and a model that cannot learn to predict the end of
    a turn never stops."""
    def short_name(module) -> str:
        return next(name.rsplit(".", 1)[-1] for name, m in model.named_modules() if m is module)

    ids = list(token_ids)
    targets = {short_name(model.get_input_embeddings()): ids}
    if not embeddings_are_tied(model):
        targets[short_name(model.get_output_embeddings())] = ids
    return targets


def add_lora(model, train_params: dict, backend: str, trainable_token_ids: list[int]):
    """Wrap the model with a fresh LoRA adapter (r, alpha, dropout, target modules from
    params); trainable_token_ids are embedding (and untied output) rows trained on their
    own (new template tokens), not the whole matrices."""
    lora = {"r": train_params["lora_r"], "lora_alpha": train_params["lora_alpha"],
            "lora_dropout": train_params["lora_dropout"], "target_modules": list(train_params["target_modules"]),
            "bias": "none"}
    if trainable_token_ids:
        lora["trainable_token_indices"] = trainable_token_indices(model, trainable_token_ids)
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        return FastLanguageModel.get_peft_model(
            model, use_gradient_checkpointing="unsloth", random_state=train_params["seed"], **lora)
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))


def save_adapter(model, tokenizer, adapter_dir: Path) -> Path:
    """The LoRA adapter and tokenizer (with its chat template), written to a temporary
    folder and renamed into place."""
    with atomic_folder(adapter_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return adapter_dir


def merged_base_for_chat(model_params: dict, completion_adapter: Path, out_dir: Path) -> Path:
    """05's starting model: the base with 03's adapter merged in 16 bit, in out_dir/base
    (merged once; again when 03's adapter changes, which also discards the checkpoints
    and adapter trained on the old merge)."""
    from lib.models import merge_adapters_16bit

    completion_adapter, out_dir = Path(completion_adapter), Path(out_dir)
    weights = completion_adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: 03's adapter is missing; run 03_completion first")
    source = {"base": model_params["base"], "adapter": str(completion_adapter), "adapter_sha256": file_sha256(weights)}
    merged = out_dir / "base"
    marker = merged / "merged_from.json"
    if marker.is_file() and read_json(marker) == source:
        print(f"{merged}: {model_params['base']} + {completion_adapter} already merged")
        return merged
    for stale in (out_dir / "checkpoints", out_dir / "adapter", out_dir / SUMMARY_FILE):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    print(f"merging {completion_adapter} into {model_params['base']} -> {merged}")
    merge_adapters_16bit(model_params["base"], [completion_adapter], merged, model_params)
    write_json(marker, source)
    return merged
