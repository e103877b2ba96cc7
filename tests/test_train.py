"""LoRA training (lib/train.py) on real essay chunks with the embedded SmolLM2-135M:
padding-free batches, resuming after SIGKILL, the time budget, checkpoints from other
settings, and a 2-process (gloo) run of the same entry point."""
import json
import os
import shutil
import subprocess

import pytest
import torch

from conftest import PYTHON, ROOT, adapter_weights, assert_same_adapter, kill_at_first_checkpoint
from lib.backend import AUTO_BACKEND_ON_CPU, pick_backend
from lib.params import load_params
from lib.runfiles import read_jsonl
from lib.train_model import add_lora, load_base_for_training
from lib.train_data import completion_examples, language_model_collator, length_grouped_order, spread_over_documents
from lib.train_resume import find_resume_checkpoint, prepare_checkpoints
from lib.train import train_lora

# four optimizer steps, a checkpoint every two, a learning rate that visibly moves the weights
OVERRIDES = ["train_completion.max_steps=4", "train_completion.save_steps=2", "train_completion.batch_size=2",
             "train_completion.learning_rate=0.001", "train_completion.warmup_steps=0", "split.max_tokens=128"]


@pytest.fixture(scope="module")
def params():
    return load_params("pg", "smoke", OVERRIDES)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, params, chunks):
    """The reference: the same run, never interrupted."""
    out = tmp_path_factory.mktemp("uninterrupted")
    summary = train_lora(read_jsonl(chunks), out, params["train_completion"], params["model"],
                         kind="completion", max_seq_length=128)
    return out, summary


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU choice; on CUDA auto picks unsloth")
def test_backend_on_a_cpu_machine():
    """auto picks the faster backend on a CPU (bench/results) and does not import unsloth
    for hf, so this process's transformers, trl and peft stay unpatched."""
    import sys

    assert pick_backend("auto") == AUTO_BACKEND_ON_CPU == "hf"
    assert pick_backend("hf") == "hf"
    assert "unsloth" not in sys.modules


def test_unsloth_where_it_cannot_run_names_the_reason_and_the_fix(monkeypatch):
    """Not installed: the install command. Installed but refusing (here: unsloth's CPU
    fallback turned off, as UNSLOTH_DISABLE_CPU_FALLBACK=1 does on a machine without a
    GPU): unsloth's own reason, and model.backend=hf. Checked in a child process, so this
    one never imports unsloth."""
    code = ("from lib.models import pick_backend\n"
            "try:\n    pick_backend('unsloth')\nexcept RuntimeError as err:\n    print(err)\n")
    result = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, UNSLOTH_DISABLE_CPU_FALLBACK="1"))
    message = result.stdout.strip().splitlines()[-1]
    assert message.startswith("model.backend=unsloth cannot run here: import unsloth failed: ")
    assert "You need a GPU" in message  # unsloth's own words
    assert message.endswith("UNSLOTH_DISABLE_CPU_FALLBACK turns unsloth's CPU mode off: unset it, or set model.backend=hf")

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "unsloth" else real_find_spec(name, *a))
    with pytest.raises(RuntimeError, match=r"the unsloth package is not installed: on a CPU machine `make setup` "
                                           r"installs it .* or set model.backend=hf"):
        pick_backend("unsloth")


def test_chunk_longer_than_split_max_tokens_is_a_clear_error(tokenizer):
    record = {"id": "pg-1#0", "text": "Title: X\n\n" + "word " * 300}
    with pytest.raises(ValueError, match=r"chunk pg-1#0: \d+ tokens, over split.max_tokens=128"):
        completion_examples(tokenizer, [record], 128)


def test_scored_heldout_chunks_cover_every_document(chunks):
    records = read_jsonl(chunks)
    picked = spread_over_documents(records, 4)
    documents = list(dict.fromkeys(r["doc_id"] for r in records))
    assert len(picked) == 4 and {r["doc_id"] for r in picked} == set(documents[:4])
    assert picked[0] == records[0]  # each document's first chunk first
    assert spread_over_documents(records, 0) == records


def test_length_grouped_order_pads_little_and_keeps_every_example():
    import random

    rng = random.Random(5)
    lengths = [rng.choice([150, 320, 400, 450, 480, 500, 512]) for _ in range(171)]
    order = length_grouped_order(lengths, batch_size=2, seed=0)
    assert sorted(order) == list(range(171))
    batches = [[lengths[i] for i in order[k:k + 2]] for k in range(0, 171, 2)]
    padded = sum(max(b) * len(b) for b in batches)
    assert sum(lengths) / padded > 0.97
    random_batches = [lengths[k:k + 2] for k in range(0, 171, 2)]
    assert sum(lengths) / sum(max(b) * len(b) for b in random_batches) < 0.95
    # the order is shuffled (long and short batches mixed through the run), and seeded
    assert order != sorted(order, key=lambda i: lengths[i]) and order == length_grouped_order(lengths, 2, seed=0)
    assert length_grouped_order(lengths, 2, seed=1) != order
    assert len(batches[-1]) == 1  # the one short batch comes last


def test_padding_free_batch_gives_the_loss_of_separate_examples(params, chunks):
    """Examples laid end to end in one row do not attend to each other: the summed loss of
    the packed row equals the summed losses of the examples run one by one (in fp32, so that
    rounding does not hide a leak)."""
    model, tokenizer = load_base_for_training(params["model"]["base"], dict(params["model"], dtype="float32"), "hf", 128)
    model = add_lora(model, params["train_completion"], "hf", [])
    examples, _ = completion_examples(tokenizer, read_jsonl(chunks)[:3], 128)
    batch = language_model_collator(tokenizer, padding_free=True)(examples)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    with torch.no_grad():
        packed = model(**batch).loss * (batch["labels"] != -100).sum()
        separate = sum(model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss
                       * (len(e["input_ids"]) - 1) for e in examples)
        leaky = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss * (batch["labels"] != -100).sum()
    assert torch.isclose(packed, separate, rtol=1e-4), (packed, separate)
    assert not torch.isclose(leaky, separate, rtol=1e-3), "without positions the examples would see each other"


@pytest.mark.slow
def test_uninterrupted_run_reports_and_is_reused(uninterrupted, params, chunks, tokenizer):
    out, summary = uninterrupted
    assert summary["finished"] and summary["steps"] == 4 and summary["backend"] == "hf"
    assert summary["nonpad_share"] >= 0.97 and summary["tokens_per_s"] > 0  # length-grouped batches on a CPU
    lengths = [len(e["input_ids"]) for e in completion_examples(tokenizer, read_jsonl(chunks), 128)[0]]
    assert 8 * min(lengths) <= summary["train_tokens_this_run"] <= 8 * max(lengths)  # 4 steps x 2 chunks
    log = read_jsonl(out / "train_log.jsonl")
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]
    assert any(w.abs().sum() > 0 for k, w in adapter_weights(out).items() if "lora_B" in k), "LoRA B never moved"
    stamp = (out / "adapter" / "adapter_model.safetensors").stat().st_mtime
    again = train_lora(read_jsonl(chunks), out, params["train_completion"], params["model"],
                       kind="completion", max_seq_length=128)
    assert again == summary
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_mtime == stamp


@pytest.mark.slow
def test_resume_after_sigkill_ends_where_an_uninterrupted_run_ends(tmp_path, uninterrupted, params, chunks):
    out = tmp_path / "killed"
    command = [PYTHON, "-m", "lib.train", "completion", "--persona", "pg", "--profile", "smoke",
               "--data", str(chunks), "--out", str(out)] + [arg for o in OVERRIDES for arg in ("--set", o)]
    killed_at = kill_at_first_checkpoint(command, out / "checkpoints")
    assert killed_at < 4

    summary = train_lora(read_jsonl(chunks), out, params["train_completion"], params["model"],
                         kind="completion", max_seq_length=128)
    assert summary["finished"] and summary["resumed_from_step"] == killed_at and summary["steps"] == 4
    assert_same_adapter(out, uninterrupted[0])
    log = read_jsonl(out / "train_log.jsonl")
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]  # the curve survives the kill


@pytest.mark.slow
def test_time_budget_saves_and_stops_and_the_next_run_finishes(tmp_path, uninterrupted, params, chunks):
    out = tmp_path / "budget"
    records = read_jsonl(chunks)
    budgeted = dict(params["train_completion"], time_budget_min=0.0001)
    stopped = train_lora(records, out, budgeted, params["model"], kind="completion", max_seq_length=128)
    assert not stopped["finished"] and stopped["stopped_by_time_budget"] and stopped["steps"] == 1
    assert find_resume_checkpoint(out / "checkpoints").name == "checkpoint-1"
    assert not (out / "adapter").exists()
    finished = train_lora(records, out, params["train_completion"], params["model"], kind="completion",
                          max_seq_length=128)
    assert finished["finished"] and finished["resumed_from_step"] == 1
    assert_same_adapter(out, uninterrupted[0])


@pytest.mark.slow
def test_checkpoints_of_other_settings_are_set_aside(tmp_path, uninterrupted):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(uninterrupted[0] / "checkpoints", checkpoints)
    config = json.loads((checkpoints / "run_config.json").read_text())
    newest = find_resume_checkpoint(checkpoints)
    assert prepare_checkpoints(checkpoints, config, is_main=True) == newest

    # a save killed while writing trainer_state.json: that checkpoint is skipped and removed
    state = newest / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    previous = find_resume_checkpoint(checkpoints, remove_incomplete=True)
    assert previous is not None and previous != newest and not newest.exists()

    changed = dict(config, train=dict(config["train"], lora_r=8))
    assert prepare_checkpoints(checkpoints, changed, is_main=True) is None
    assert (tmp_path / "checkpoints.old" / previous.name).is_dir()
    assert json.loads((checkpoints / "run_config.json").read_text()) == changed


def test_launch_command_passes_each_override_whole():
    """The notebooks' `overrides` string (shell rules) reaches each DDP process as one --set per override."""
    from lib.train import launch_command

    command = launch_command("chat", "pg", "t4", "persona.system_prompt='You are PG' train_chat.learning_rate=1e-4",
                             "data.jsonl", "out", None, 2)
    assert command[-4:] == ["--set", "persona.system_prompt=You are PG", "--set", "train_chat.learning_rate=1e-4"]


def fake_checkpoint(folder, files=("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt",
                                     "rng_state.pth", "trainer_state.json")):
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text('{"global_step": 1}' if name.endswith(".json") else "x")
    return folder


@pytest.mark.parametrize("missing", ["adapter_model.safetensors", "adapter_config.json", "optimizer.pt",
                                     "scheduler.pt", "trainer_state.json"])
def test_checkpoint_missing_a_file_is_passed_over_for_the_next_older(tmp_path, missing):
    """A partial copy (Drive, Kaggle output) of checkpoint-40 next to a complete checkpoint-30:
    transformers would stop with "Can't find a valid checkpoint" on it."""
    complete = fake_checkpoint(tmp_path / "checkpoint-30")
    fake_checkpoint(tmp_path / "checkpoint-40", ["trainer_state.json"])
    assert find_resume_checkpoint(tmp_path) == complete
    partial = tmp_path / "checkpoint-50"
    fake_checkpoint(partial)
    (partial / missing).unlink()
    assert find_resume_checkpoint(tmp_path) == complete and partial.is_dir()
    assert find_resume_checkpoint(tmp_path, remove_incomplete=True) == complete
    assert not partial.exists() and not (tmp_path / "checkpoint-40").exists() and complete.is_dir()


def test_checkpoint_with_empty_weights_or_full_model_weights(tmp_path):
    """An empty file (a copy cut short at the start) is missing; a full-model save
    (model.safetensors / pytorch_model.bin) counts as weights."""
    full = fake_checkpoint(tmp_path / "checkpoint-10", ["model.safetensors", "optimizer.pt", "scheduler.pt",
                                                        "trainer_state.json"])
    empty = fake_checkpoint(tmp_path / "checkpoint-20")
    (empty / "optimizer.pt").write_bytes(b"")
    assert find_resume_checkpoint(tmp_path) == full


@pytest.mark.slow
def test_partial_copy_of_a_real_checkpoint_resumes_from_the_older_one(tmp_path, uninterrupted):
    """The files a real checkpoint of this project holds make it complete; a copy of the
    newest one holding only trainer_state.json is passed over and removed."""
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(uninterrupted[0] / "checkpoints", checkpoints)
    newest = find_resume_checkpoint(checkpoints)
    assert newest.name == "checkpoint-4"
    older = checkpoints / "checkpoint-2"
    for name in os.listdir(newest):
        if name != "trainer_state.json":
            os.remove(newest / name)
    config = json.loads((checkpoints / "run_config.json").read_text())
    assert prepare_checkpoints(checkpoints, config, is_main=True) == older
    assert not newest.exists()


@pytest.mark.slow
def test_two_processes_over_gloo_train_and_save_one_adapter(tmp_path, chunks, tokenizer):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "lib.train", "completion", "--persona", "pg", "--profile", "smoke",
               "--data", str(chunks), "--out", str(out), "--set", "train_completion.max_steps=2",
               "--set", "split.max_tokens=128"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["finished"] and summary["steps"] == 2
    lengths = [len(e["input_ids"]) for e in completion_examples(tokenizer, read_jsonl(chunks), 128)[0]]
    # 2 steps x 2 processes x 2 chunks, counted over both processes
    assert 8 * min(lengths) <= summary["train_tokens_this_run"] <= 8 * max(lengths)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["adapter", "checkpoints"]
    assert any("lora_B" in key for key in adapter_weights(out))
