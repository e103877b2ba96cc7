"""What every stage notebook does first, after finding the repository: resolve and
validate its params, create its run folder, and log the environment."""
from __future__ import annotations

from pathlib import Path

from lib.environment import describe_environment
from lib.params import load_params
from lib.runfiles import stage_dir


def open_stage(persona: str, profile: str, overrides: str, stage: str) -> tuple[dict, Path]:
    """(params, run folder) of a stage; params errors are raised before anything is written."""
    params = load_params(persona, profile, overrides)
    out = stage_dir(persona, stage)
    describe_environment()
    print(f"{'stage':>12}: {stage} for {params['persona']['name']} ({persona}), profile {params['run']['profile']}")
    print(f"{'writes to':>12}: {out}")
    return params, out
