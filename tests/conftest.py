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


UNSLOTH_TESTS = ROOT / "tests" / "unsloth"


def pytest_ignore_collect(collection_path, config):
    """tests/unsloth runs only in a pytest session of its own (`make test` runs it second):
    importing unsloth patches transformers, trl and peft for the whole process."""
    if Path(collection_path) == UNSLOTH_TESTS:
        return not all(Path(arg.split("::")[0]).resolve().is_relative_to(UNSLOTH_TESTS) for arg in config.args)
    return None


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


@pytest.fixture(scope="session")
def conversations():
    """Single- and multi-turn conversations (system prompt, real questions, real answers)
    from the first two committed Trump transcripts, as 04 builds them."""
    from lib.params import load_params
    from lib.qa_sources import interview_conversations
    from lib.transcripts import parse_transcript

    params = load_params("trump", "smoke")
    files = sorted((ROOT / "data" / "snapshot" / "trump").glob("*.txt"))[:2]
    assert files, "data/snapshot/trump: no transcripts"
    docs = [parse_transcript(f.read_bytes(), persona_regex=params["persona"]["speaker_regex"], source=f.name)
            for f in files]
    records = interview_conversations(docs, window=2, min_answer_words=25, max_answer_words=350,
                                      max_question_words=60, system_prompt=params["persona"]["system_prompt"])
    assert any(sum(m["role"] == "assistant" for m in r["messages"]) > 1 for r in records), "no multi-turn conversation"
    return records


def labeled_runs(labels) -> list[list[int]]:
    """Contiguous runs of trained label ids (-100 separates them)."""
    runs, current = [], []
    for label in labels:
        if label == -100:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(int(label))
    return runs + ([current] if current else [])


@pytest.fixture(scope="session")
def chunks(tmp_path_factory, tokenizer):
    """02-format chunks of real essays (tests/fixtures/style/pg_documents.jsonl), 128 tokens at most."""
    from lib.models import end_of_text_token
    from lib.runfiles import read_jsonl, write_jsonl
    from lib.split import split_documents

    docs = read_jsonl(ROOT / "tests" / "fixtures" / "style" / "pg_documents.jsonl")[:4]
    split = split_documents(docs, tokenizer, max_tokens=128, overlap_tokens=0, heldout_rule="newest",
                            heldout_count=1, seed=1, end_token=end_of_text_token(tokenizer))
    path = tmp_path_factory.mktemp("split") / "train.jsonl"
    write_jsonl(path, split["train"][:24])
    return path


def adapter_weights(out_dir):
    """The tensors of out_dir/adapter/adapter_model.safetensors."""
    from safetensors.torch import load_file

    return load_file(out_dir / "adapter" / "adapter_model.safetensors")


def assert_same_adapter(a, b):
    """The adapters of two training runs hold the same tensors (up to float noise)."""
    import torch

    first, second = adapter_weights(a), adapter_weights(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key], second[key], atol=1e-6, rtol=1e-4), key


def kill_at_first_checkpoint(command: list[str], checkpoints: Path) -> int:
    """Start a training command, SIGKILL it as soon as a complete checkpoint exists, and
    return that checkpoint's step (checked to be before the end: no adapter saved yet)."""
    import signal
    import subprocess
    import time

    from lib.train_resume import find_resume_checkpoint

    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while find_resume_checkpoint(checkpoints) is None:
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (checkpoints.parent / "adapter").exists()
    return int(find_resume_checkpoint(checkpoints).name.split("-")[1])
