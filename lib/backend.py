"""Which training backend runs: unsloth (FastLanguageModel, its kernels; on CUDA, or on a CPU in
unsloth's CPU mode) or hf (transformers + peft), for params model.backend (pick_backend).
Kept apart from lib.models so that choosing it, which must happen before transformers is
imported, costs a stage nothing else.
"""
from __future__ import annotations

import importlib.util
import sys

# Which backend `model.backend: auto` picks on a machine without CUDA. Measured in
# bench/results/cpu-2026-11-30-project-unsloth.json (`python -m bench.cpu --setups
# project,unsloth`, 3 rotating rounds of 12 steps): unsloth's CPU mode trained as fast as hf
# (221 vs 213 tokens/s median, runs 206-223 vs 210-220; per-round ratio 1.00x) with a lower
# peak RSS (1.76 vs 3.01 GB). Not faster, so hf stays: it needs no unsloth import (about
# 6 s) and leaves transformers, trl and peft unpatched.
AUTO_BACKEND_ON_CPU = "hf"


def unsloth_problem() -> str | None:
    """Why unsloth cannot train here, with the fix; None when it can. Imports unsloth
    when it is installed (it must come before trl and peft, whose classes it patches), so
    call it only where unsloth is about to be used."""
    if importlib.util.find_spec("unsloth") is None or importlib.util.find_spec("unsloth_zoo") is None:
        return ("the unsloth package is not installed: on a CPU machine `make setup` installs it "
                "(pip install --no-deps -r requirements-unsloth.txt), on a GPU machine "
                "`python -m lib.environment install`; or set model.backend=hf")
    import os

    from lib.environment import cuda_available

    try:
        import unsloth  # noqa: F401  (patches transformers/trl/peft on import)
    except Exception as err:  # noqa: BLE001 - any import failure is the reason to report
        if os.environ.get("UNSLOTH_DISABLE_CPU_FALLBACK") and not cuda_available():
            fix = "no GPU here, and UNSLOTH_DISABLE_CPU_FALLBACK turns unsloth's CPU mode off: unset it"
        else:
            fix = ("check that torch, transformers, trl and peft are the versions requirements.txt pins "
                   "(unsloth 2026.10.9 needs transformers<=5.17, trl<=1.15)")
        reason = str(err).splitlines()[0] if str(err) else ""
        return f"import unsloth failed: {type(err).__name__}: {reason}; {fix}, or set model.backend=hf"
    return None


def pick_backend(choice: str = "auto") -> str:
    """The training backend for params model.backend.

    unsloth: FastLanguageModel and trl's SFTTrainer as unsloth patches them; on CUDA, or on
    a CPU in unsloth's CPU mode ("no GPU found, training on CPU"). hf: transformers + peft
    with the transformers Trainer. auto: unsloth on CUDA when it imports, else hf; on a CPU,
    AUTO_BACKEND_ON_CPU (the faster one in bench/results). Asking for unsloth where it
    cannot run raises RuntimeError naming the reason and the fix."""
    from lib.environment import cuda_available

    if choice not in ("auto", "unsloth", "hf"):
        raise ValueError(f"model.backend must be auto, unsloth or hf, got {choice!r}")
    if choice == "hf" or (choice == "auto" and not cuda_available() and AUTO_BACKEND_ON_CPU == "hf"):
        return "hf"
    problem = unsloth_problem()
    if problem is None:
        return "unsloth"
    if choice == "unsloth":
        raise RuntimeError(f"model.backend=unsloth cannot run here: {problem}")
    print(f"model.backend=auto: training with hf, not unsloth: {problem}", file=sys.stderr)
    return "hf"
