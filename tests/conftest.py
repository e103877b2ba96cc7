"""Shared test setup: runs and results of tests go to temporary folders, never runs/."""
import os
import sys
from pathlib import Path

import pytest

# before torch or llama_cpp is imported: idle OpenMP threads sleep instead of spinning
# (on 2 shared cores, spinning threads slowed generation 10-20x)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs notebooks or trains (the smoke chain)")


@pytest.fixture
def run_env(tmp_path, monkeypatch):
    """Environment for a runner subprocess whose runs/ and results/ are temporary."""
    env = dict(os.environ)
    env.update(RUNS_DIR=str(tmp_path / "runs"), RESULTS_DIR=str(tmp_path / "results"), OFFLINE="1")
    monkeypatch.setenv("RUNS_DIR", env["RUNS_DIR"])
    monkeypatch.setenv("RESULTS_DIR", env["RESULTS_DIR"])
    return env


@pytest.fixture(scope="session")
def tokenizer():
    from lib.models import load_tokenizer
    return load_tokenizer("embedded:smollm2-135m-instruct")
