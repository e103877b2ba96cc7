"""What every stage notebook does once `lib` can be imported, in one call (open_stage), and the
tail that 03 and 05 share after training (training_finished, plot_training_loss,
training_metrics).

Each notebook's setup cell is the same apart from the stage's name (tests/test_notebooks.py):
find the repository (or clone it and install when opened alone on Colab/Kaggle), then
`stage = open_stage("NN_name", persona, profile, overrides)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRAINING_STAGES = ("03_completion", "05_chat")


@dataclass(frozen=True)
class Stage:
    """An opened stage: its params (lib.params.load_params, already checked), its output
    folder runs/<persona>/<name>/, and the training backend ("unsloth" or "hf"; None for the
    stages that do not train)."""
    name: str
    persona: str
    params: dict
    out: Path
    backend: str | None


def open_stage(name: str, persona: str, profile: str, overrides: str = "") -> Stage:
    """Load and check the persona's params for the profile (raises lib.params.ParamsError naming
    the file and key before any work), create the stage's output folder, pick the training
    backend for 03 and 05 (importing unsloth before transformers when it is used), and print
    the environment for the rendered notebook."""
    from lib.environment import describe_environment
    from lib.params import load_params
    from lib.runfiles import STAGES, stage_dir

    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    params = load_params(persona, profile, overrides)
    out = stage_dir(persona, name)
    backend = None
    if name in TRAINING_STAGES:
        from lib.backend import pick_backend

        backend = pick_backend(params["model"]["backend"])
    describe_environment()
    if backend:
        print(f"     backend: {backend}")
    return Stage(name, persona, params, out, backend)


# ---------------------------------------------------------------- after training (03, 05)

SUMMARY_SHOWN = ("steps", "final_loss", "tokens_per_s", "nonpad_share", "train_wall_s", "backend", "dtype", "batching")


def training_finished(summary: dict, out: Path) -> dict:
    """The summary's headline fields ({key: value} for SUMMARY_SHOWN), once training has
    finished; RuntimeError saying how to continue when it stopped at its time budget."""
    if not summary["finished"]:
        raise RuntimeError(
            f"training stopped at its time budget after step {summary['steps']} of {summary['max_steps']}; "
            f"the checkpoint is saved in {Path(out) / 'checkpoints'}: run this stage again to continue")
    return {key: summary[key] for key in SUMMARY_SHOWN}


def plot_training_loss(log_path: Path, title: str, ylabel: str = "train loss") -> None:
    """The train loss per logged step from a train_log.jsonl (lib.train_resume.LOG_FILE)."""
    import matplotlib.pyplot as plt

    from lib.runfiles import read_jsonl

    log = [entry for entry in read_jsonl(log_path) if "loss" in entry]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([e["step"] for e in log], [e["loss"] for e in log], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    plt.show()


def training_metrics(summary: dict, wall_s: float) -> dict:
    """The metrics.json fields 03 and 05 share, from lib.train's summary; wall_s is the
    stage's wall time in seconds."""
    return {
        "final_train_loss": summary["final_loss"], "first_train_loss": summary["first_loss"],
        "tokens_per_s": summary["tokens_per_s"], "nonpad_share": summary["nonpad_share"],
        "backend": summary["backend"], "dtype": summary["dtype"], "batching": summary["batching"],
        "steps": summary["steps"], "resumed_from_step": summary["resumed_from_step"],
        "train_wall_s": summary["train_wall_s"], "wall_s": round(wall_s, 1),
        "peak_gpu_memory_gb": summary["peak_gpu_memory_gb"],
    }
