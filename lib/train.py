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

Examples and batching are lib.train_data's (no compute goes to padding); the model, LoRA and
05's merged base lib.train_model's; checkpoints, resume and the time budget lib.train_resume's.

Writes to <out>: adapter/ (LoRA adapter + tokenizer, with the chat template for chat),
train_log.jsonl (the trainer's log: loss per logging step), train_summary.json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from lib.backend import pick_backend
from lib.records import TrainingSummary
from lib.runfiles import ROOT, json_digest, read_json, write_json, write_jsonl
from lib.train_data import (completion_examples, examples_digest, language_model_collator, max_example_tokens,
                            nonpad_share, pick_batching, read_training_records, training_order)
from lib.train_model import add_lora, load_base_for_training, save_adapter
from lib.train_resume import (LOG_FILE, RESUMABLE_CHANGES, SUMMARY_FILE, finished_summary, prepare_checkpoints,
                              training_clock)

KINDS = {"completion": "train_completion", "chat": "train_chat"}


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
    config_digest = json_digest(run_config)
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
                 overrides="") -> TrainingSummary:
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
