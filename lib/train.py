"""LoRA training for 03 completion and 05 chat: one entry point for the notebooks, the
command line and `accelerate launch` (several GPUs, DDP).

    python -m lib.train completion --persona pg --profile cpu \\
        --data runs/pg/02_split/train.jsonl --out runs/pg/03_completion
    accelerate launch --num_processes 2 -m lib.train chat --persona trump --profile t4 \\
        --data runs/trump/04_qa/conversations.jsonl --out runs/trump/05_chat --base runs/trump/05_chat/base

Backends (params model.backend, lib.models.pick_backend): unsloth (FastLanguageModel, 4-bit
on CUDA, its kernels, driven by trl's SFTTrainer as unsloth patches it; on a CPU in unsloth's
CPU mode), or transformers + peft with the transformers Trainer (trl 1.15's SFTTrainer
computes its loss with a Triton kernel, which a CPU-only torch lacks). Both train on
examples tokenized here and batched by the same collator, so the labels (-100 outside the
loss) are exactly the ones built here: every token of a chunk for completion, the
assistant turns for chat (lib/chat_data.py), with one BOS rule (lib/bos.py).

No compute goes to padding, by one of two batchings (measured in bench/results/):
- on a GPU, padding-free: the examples of a batch are laid end to end in one row whose
  position_ids restart at each example; flash attention (and SDPA) keep them apart.
- on a CPU, length-grouped padded batches: examples are shuffled, sorted by length within
  windows of 64 batches, and the batches shuffled again, so a batch holds similar lengths
  (98-99% non-pad on the cpu profile's chunks and conversations; 95% with windows of 16).
  Here SDPA's packed-sequence mask costs more than it saves: one 1,800-token row attends
  over 3x the pairs of four 450-token rows, and padding-free ran slower than plain padded
  batches.
The share of non-pad positions is measured on the batches in training order and reported.

A run checkpoints to <out>/checkpoints every save_steps. Running it again after a kill
resumes from the last complete checkpoint (model, optimizer, scheduler, RNG and data
position) and ends where an uninterrupted run ends; a newer incomplete one (a save killed
midway, a partial copy from Drive or Kaggle) is removed. A time budget saves and stops
cleanly before a Kaggle/Colab session limit; the next run continues. Checkpoints from a
run with other settings or data are set aside, not resumed.

Writes to <out>: adapter/ (LoRA adapter + tokenizer, with the chat template for chat),
train_log.jsonl (the trainer's log: loss per logging step), train_summary.json.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lib.models import pick_backend, resolve_model
from lib.runfiles import ROOT, atomic_folder, file_sha256, read_json, read_jsonl, write_json, write_jsonl

KINDS = {"completion": "train_completion", "chat": "train_chat"}
SUMMARY_FILE = "train_summary.json"
LOG_FILE = "train_log.jsonl"
RUN_CONFIG_FILE = "run_config.json"
# what may change between a killed run and its resumption without starting over
RESUMABLE_CHANGES = ("time_budget_min", "save_steps", "logging_steps", "sample_max_new_tokens")


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


def examples_digest(examples: list[dict]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example["input_ids"], example["labels"]]).encode())
    return digest.hexdigest()


# what a checkpoint needs to resume from (transformers' Trainer._save_checkpoint): one of
# the weight files transformers loads, then the optimizer and the scheduler, then
# trainer_state.json, written last
CHECKPOINT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin",
                      "model.safetensors.index.json", "pytorch_model.bin.index.json")
CHECKPOINT_OPTIMIZER = ("optimizer.pt", "optimizer.bin")
CHECKPOINT_SCHEDULER = ("scheduler.pt",)


def checkpoint_problem(folder: Path) -> str | None:
    """What a checkpoint folder lacks to be resumed from, or None when it is complete: its
    weights (a LoRA adapter with its adapter_config.json, or the model's), optimizer and
    scheduler present and not empty, and its trainer_state.json reading back whole. A save
    killed midway or a partial copy (Drive, Kaggle output) lacks some."""
    def present(names) -> str | None:
        return next((name for name in names if (folder / name).is_file() and (folder / name).stat().st_size > 0), None)

    missing = []
    weights = present(CHECKPOINT_WEIGHTS)
    if weights is None:
        missing.append("weights (adapter_model.safetensors)")
    elif weights.startswith("adapter_model") and present(("adapter_config.json",)) is None:
        missing.append("adapter_config.json")
    missing += [names[0] for names in (CHECKPOINT_OPTIMIZER, CHECKPOINT_SCHEDULER) if present(names) is None]
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        missing.append("a readable trainer_state.json")
    return f"missing {', '.join(missing)}" if missing else None


def find_resume_checkpoint(checkpoints: Path, remove_incomplete: bool = False) -> Path | None:
    """The newest complete checkpoint-N folder (checkpoint_problem finds nothing), or None.
    Incomplete ones newer than it are passed over, and removed on request (saying so)."""
    if not checkpoints.is_dir():
        return None
    found = sorted((p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and p.is_dir()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        if remove_incomplete:
            print(f"{folder}: incomplete checkpoint ({problem}), removed; resuming from an older one if any")
            shutil.rmtree(folder, ignore_errors=True)
    return None


def prepare_checkpoints(checkpoints: Path, run_config: dict, is_main: bool) -> Path | None:
    """The checkpoint to resume from, if it belongs to a run with this config. Checkpoints
    of a different run are moved aside to checkpoints.old (on the main process)."""
    config_file = checkpoints / RUN_CONFIG_FILE
    if checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")):
        previous = read_json(config_file) if config_file.is_file() else None
        if previous != run_config:
            if is_main:
                changed = sorted(k for k in set(run_config) | set(previous or {})
                                 if (previous or {}).get(k) != run_config.get(k))
                print(f"{checkpoints}: checkpoints from a run with other settings ({', '.join(changed)}); "
                      f"starting over (they are kept in {checkpoints.name}.old)")
                old = checkpoints.with_name(checkpoints.name + ".old")
                shutil.rmtree(old, ignore_errors=True)
                checkpoints.rename(old)
    if is_main:
        checkpoints.mkdir(parents=True, exist_ok=True)
        write_json(config_file, run_config)
    return find_resume_checkpoint(checkpoints, remove_incomplete=is_main)


def training_clock(minutes: float):
    """A TrainerCallback that times this session's training and counts its tokens, and,
    with a budget (minutes > 0), saves a checkpoint and stops once it is spent. Under DDP
    the processes agree on stopping, so none waits for the others."""
    from transformers import TrainerCallback

    class TrainingClock(TrainerCallback):
        def __init__(self):
            self.started = self.tokens_at_start = self.wall = self.tokens = None
            self.stopped = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.tokens_at_start = time.time(), state.num_input_tokens_seen

        def on_train_end(self, args, state, control, **kwargs):
            self.wall = time.time() - self.started
            self.tokens = state.num_input_tokens_seen - self.tokens_at_start

        def on_step_end(self, args, state, control, **kwargs):
            if minutes <= 0:
                return control
            over = time.time() - self.started > minutes * 60
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                import torch
                flag = torch.tensor([int(over)], device=args.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                over = bool(flag.item())
            if over and state.global_step < state.max_steps:
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
            return control

    return TrainingClock()


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


def training_arguments(train_params: dict, model_params: dict, out_dir: Path, backend: str):
    """Trainer arguments from params: checkpoints every save_steps, mixed precision from
    the model dtype on a GPU, no gradient checkpointing on CPU (slower there, and memory
    is not the limit). unsloth gets trl's SFTConfig (padding_free on a GPU, where its
    kernels take packed rows); hf gets plain TrainingArguments."""
    import importlib.util

    import torch
    from transformers import TrainingArguments

    from lib.environment import pick_dtype

    cuda = torch.cuda.is_available()
    dtype = pick_dtype(model_params["dtype"])
    common = dict(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=train_params["batch_size"],
        gradient_accumulation_steps=train_params["grad_accum"],
        learning_rate=train_params["learning_rate"],
        max_steps=train_params["max_steps"] if train_params["max_steps"] > 0 else -1,
        num_train_epochs=train_params["num_epochs"],
        warmup_steps=train_params["warmup_steps"],
        lr_scheduler_type="linear",
        logging_steps=train_params["logging_steps"],
        logging_first_step=True,
        save_strategy="steps",
        save_steps=train_params["save_steps"],
        save_total_limit=2,
        seed=train_params["seed"],
        bf16=dtype == torch.bfloat16,  # on a CPU too: autocast to bf16, LoRA weights stay fp32
        fp16=cuda and dtype == torch.float16,
        use_cpu=not cuda,
        gradient_checkpointing=cuda and backend == "hf",  # unsloth brings its own
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen inputs (LoRA)
        optim="adamw_8bit" if cuda and importlib.util.find_spec("bitsandbytes") else "adamw_torch",
        include_num_input_tokens_seen="all",  # set per batching in make_trainer
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        report_to="none",
    )
    if backend == "unsloth":
        from trl import SFTConfig
        # max_length=None: lengths are enforced when examples are built
        return SFTConfig(**common, padding_free=cuda, max_length=None)
    return TrainingArguments(**common)


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


def make_trainer(model, tokenizer, examples: list[dict], args, backend: str, callbacks: list, batching: str):
    """The trainer over examples, batched by trl's collator, padding-free or in length-grouped
    padded batches; for the latter the examples must already be in training_order's order,
    and are taken in sequence. unsloth: trl's SFTTrainer as unsloth patches it (the dataset
    already holds input_ids and labels, which it keeps as they are); hf: the transformers
    Trainer (trl 1.15's SFTTrainer computes its loss with a Triton kernel a CPU-only torch
    lacks). Both get the same collator, so both train on the same batches and labels."""
    from datasets import Dataset

    if batching == "length_grouped":
        args.train_sampling_strategy = "sequential"
        args.include_num_input_tokens_seen = "non_padding"  # counted from the attention mask
    common = dict(model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tokenizer,
                  data_collator=language_model_collator(tokenizer, padding_free=batching == "padding_free"),
                  callbacks=callbacks)
    if backend == "unsloth":
        from trl import SFTTrainer
        return SFTTrainer(**common)
    from transformers import Trainer

    return Trainer(**common)


def language_model_collator(tokenizer, padding_free: bool):
    """trl's collator. padding_free: a batch is one row of its examples end to end, with
    position_ids restarting at 0 for each and the first label of each set to -100; else
    rows padded to the longest example of the batch (labels -100, attention mask 0)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=padding_free)


def finished_summary(out_dir: Path, config_digest: str) -> dict | None:
    """The summary of a finished run with the same settings and data whose adapter is in
    place (a rerun of a finished stage reuses it instead of training again), else None."""
    path = out_dir / SUMMARY_FILE
    if not (path.is_file() and (out_dir / "adapter" / "adapter_config.json").is_file()):
        return None
    summary = read_json(path)
    return summary if summary.get("finished") and summary.get("run_config_digest") == config_digest else None


def save_adapter(model, tokenizer, adapter_dir: Path) -> Path:
    """The LoRA adapter and tokenizer (with its chat template), written to a temporary
    folder and renamed into place."""
    with atomic_folder(adapter_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return adapter_dir


def train_lora(records: list[dict], out_dir: Path, train_params: dict, model_params: dict, *,
               kind: str = "completion", base: str | None = None, max_seq_length: int = 2048) -> dict:
    """Train a LoRA adapter on records and save it to out_dir/adapter; returns the summary
    (also written to out_dir/train_summary.json).

    kind "completion": records are 02's chunks {"id", "text"}, loss on every token.
    kind "chat": records are conversations {"messages": [...]}, loss on assistant turns
    only; the tokenizer gets model.chat_template, and for a template that is not the
    model's own only the template's token rows are trained besides LoRA.
    base: the model to train (default model_params["base"]); max_seq_length: the longest
    example allowed (split.max_tokens for completion, train_chat.max_length for chat:
    longer conversations are dropped). Resumes from out_dir/checkpoints when it can; a
    run that stopped at its time budget returns finished=False and no adapter."""
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from lib.chat_data import conversation_examples
    from lib.chat_template import fit_embeddings_to_tokenizer, set_chat_template, token_ids
    from lib.environment import pick_dtype

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out_dir = Path(out_dir)
    state = PartialState(cpu=not torch.cuda.is_available())
    backend = pick_backend(model_params["backend"])
    base = str(base or model_params["base"])
    set_seed(train_params["seed"])
    model, tokenizer = load_base_for_training(base, model_params, backend, max_seq_length)
    trainable_ids = []
    if kind == "chat":
        template_tokens = set_chat_template(tokenizer, model_params["chat_template"])
        fit_embeddings_to_tokenizer(model, tokenizer)
        if model_params["chat_template"] != "own":
            trainable_ids = token_ids(tokenizer, template_tokens)
        examples, data_stats = conversation_examples(tokenizer, records, max_seq_length)
    else:
        examples, data_stats = completion_examples(tokenizer, records, max_seq_length)
    set_seed(train_params["seed"])
    model = add_lora(model, train_params, backend, trainable_ids)
    trainable, total = model.get_nb_trainable_parameters()
    batching = pick_batching(backend)
    examples = training_order(examples, batching, train_params["batch_size"], train_params["seed"])

    run_config = {
        "kind": kind, "base": base, "backend": backend, "world_size": state.num_processes,
        "train": {k: v for k, v in train_params.items() if k not in RESUMABLE_CHANGES},
        "model": {k: model_params[k] for k in ("load_in_4bit", "chat_template")},
        "dtype": str(pick_dtype(model_params["dtype"])), "batching": batching,
        "examples": examples_digest(examples),  # in training order: the order is part of the run
    }
    config_digest = hashlib.sha256(json.dumps(run_config, sort_keys=True).encode()).hexdigest()
    finished = finished_summary(out_dir, config_digest)
    if finished:
        print(f"{out_dir / 'adapter'}: already trained with these settings and data ({finished['steps']} steps); "
              "delete it to train again")
        return finished
    with state.main_process_first():
        resume = prepare_checkpoints(out_dir / "checkpoints", run_config, state.is_main_process)
    if state.is_main_process:
        print(f"{kind}: {data_stats}; {trainable:,} of {total:,} parameters trainable; backend {backend}; "
              + (f"resuming from {resume.name}" if resume else "starting from step 0"))

    clock = training_clock(train_params["time_budget_min"])
    trainer = make_trainer(model, tokenizer, examples, training_arguments(train_params, model_params, out_dir, backend),
                           backend, [clock], batching)
    share = nonpad_share(trainer.data_collator, examples, train_params["batch_size"])
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    steps, max_steps = trainer.state.global_step, trainer.state.max_steps
    resumed_step = int(resume.name.split("-")[-1]) if resume else 0
    wall, tokens = clock.wall, int(clock.tokens)  # this session; tokens over all processes
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "kind": kind, "backend": backend, "base": base, "finished": steps >= max_steps,
        "dtype": run_config["dtype"].replace("torch.", ""), "batching": run_config["batching"],
        "stopped_by_time_budget": clock.stopped, "steps": steps, "max_steps": max_steps,
        "resumed_from_step": resumed_step, "world_size": state.num_processes,
        "final_loss": losses[-1] if losses else None, "first_loss": losses[0] if losses else None,
        "train_tokens_this_run": tokens, "train_wall_s": round(wall, 1),
        "tokens_per_s": round(tokens / wall, 1) if tokens and wall > 0 else None,
        "nonpad_share": round(share, 4), "trainable_params": trainable, "data": data_stats,
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        "run_config_digest": config_digest,
    }
    if state.is_main_process:
        write_jsonl(out_dir / LOG_FILE, trainer.state.log_history)
        if summary["finished"]:
            save_adapter(trainer.model, tokenizer, out_dir / "adapter")
        write_json(out_dir / SUMMARY_FILE, summary)
    state.wait_for_everyone()
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return summary


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


def launch_command(kind: str, persona: str, profile: str, overrides, data: Path, out_dir: Path,
                   base: str | None, num_processes: int) -> list[str]:
    """`accelerate launch --num_processes N -m lib.train ...`: one training process per GPU
    (DDP), each override (a list, or one string split by shell rules: lib.params.split_overrides)
    passed as one --set argument. (On CPU, `torchrun --nproc_per_node N -m lib.train ...` runs the same entry
    point over gloo; accelerate's --cpu launcher starts a single process.)"""
    from lib.params import split_overrides

    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(num_processes), "--num_machines", "1", "--dynamo_backend", "no", "--mixed_precision", "no",
               "-m", "lib.train", kind, "--persona", persona, "--profile", profile,
               "--data", str(data), "--out", str(out_dir)]
    for override in split_overrides(overrides):
        command += ["--set", override]
    if base:
        command += ["--base", str(base)]
    return command


def run_training(kind: str, params: dict, data: Path, out_dir: Path, base: str | None = None,
                 overrides="") -> dict:
    """What a notebook calls: train in this process, or, when <section>.num_gpus > 1, in one
    process per GPU through accelerate launch (its output shown here). Returns the summary."""
    section = KINDS[kind]
    num_gpus = params[section]["num_gpus"]
    if num_gpus > 1:
        import torch
        if torch.cuda.device_count() < num_gpus:
            raise RuntimeError(f"{section}.num_gpus={num_gpus}, but {torch.cuda.device_count()} CUDA GPU(s) are visible")
        command = launch_command(kind, params["run"]["persona"], params["run"]["profile"], overrides,
                                 data, out_dir, base, num_gpus)
        print(" ".join(command))
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            print(line, end="")
        if process.wait() != 0:
            raise RuntimeError(f"the {num_gpus} training processes failed (exit {process.returncode}); see the output above")
        return read_json(Path(out_dir) / SUMMARY_FILE)
    return train_lora(read_training_records(kind, Path(data)), out_dir, params[section], params["model"],
                      kind=kind, base=base, max_seq_length=max_example_tokens(kind, params))


def main(argv=None) -> int:
    from lib.params import ParamsError, load_params

    parser = argparse.ArgumentParser(description="Train a LoRA adapter (03 completion or 05 chat).")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--persona", required=True, help="params/<persona>.yaml")
    parser.add_argument("--profile", default=os.environ.get("PROFILE") or "auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value (repeatable; one override each, spaces and all)")
    parser.add_argument("--data", required=True, type=Path, help="02 train.jsonl or 04 conversations.jsonl")
    parser.add_argument("--out", required=True, type=Path, help="the stage folder (adapter/, checkpoints/ go there)")
    parser.add_argument("--base", help="model to train instead of model.base (05: the merged 03 model)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.persona, args.profile, args.overrides)
    except ParamsError as err:
        print(f"params error: {err}", file=sys.stderr)
        return 2
    if not args.data.is_file():
        print(f"{args.data}: file not found", file=sys.stderr)
        return 2
    pick_backend(params["model"]["backend"])  # imports unsloth, when it is used, before trl and peft
    summary = train_lora(read_training_records(args.kind, args.data), args.out, params[KINDS[args.kind]],
                         params["model"], kind=args.kind, base=args.base,
                         max_seq_length=max_example_tokens(args.kind, params))
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
