"""Resuming a killed training run: a run checkpoints to <out>/checkpoints every save_steps;
running it again resumes from the last complete checkpoint (model, optimizer, scheduler, RNG
and data position), and a newer incomplete one (a save killed midway, a partial copy from
Drive or Kaggle) is removed. Checkpoints from a run with other settings or data are set
aside, not resumed. A time budget (training_clock) saves and stops cleanly before a
Kaggle/Colab session limit; the next run continues.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from lib.runfiles import read_json, write_json

SUMMARY_FILE = "train_summary.json"  # the files of a training run's folder
LOG_FILE = "train_log.jsonl"
RUN_CONFIG_FILE = "run_config.json"


# what may change between a killed run and its resumption without starting over
RESUMABLE_CHANGES = ("time_budget_min", "save_steps", "logging_steps", "sample_max_new_tokens")


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


def finished_summary(out_dir: Path, config_digest: str) -> dict | None:
    """The summary of a finished run with the same settings and data whose adapter is in
    place (a rerun of a finished stage reuses it instead of training again), else None."""
    path = out_dir / SUMMARY_FILE
    if not (path.is_file() and (out_dir / "adapter" / "adapter_config.json").is_file()):
        return None
    summary = read_json(path)
    return summary if summary.get("finished") and summary.get("run_config_digest") == config_digest else None
