"""model.backend=unsloth on this CPU (unsloth's CPU mode), on the embedded SmolLM2-135M and
on tiny models of the GPU profiles' families: the same guarantees the hf tests give.

- the labels of the batches unsloth's SFTTrainer feeds the model (from its own
  dataloader, after all its patching) cover exactly the assistant turns and end-of-turn
  tokens, in padded and padding-free batches, and a packed row gives the loss of its
  examples run one by one (unsloth's patched forward keeps them apart);
- a run killed by SIGKILL and run again ends where an uninterrupted run ends;
- adapter on/off and unsloth's 16-bit merge (save_pretrained_merged) give the same models;
- ChatML on an untied base trains the template rows of embed_tokens and lm_head only.
"""
import json
import subprocess
import sys

import pytest
import torch

from conftest import PYTHON, ROOT, assert_same_adapter, kill_at_first_checkpoint, labeled_runs
from lib.chat_data import IGNORE_INDEX, conversation_examples
from lib.backend import AUTO_BACKEND_ON_CPU, pick_backend
from lib.models import load_with_adapters, merge_adapters_16bit
from lib.params import load_params
from lib.runfiles import read_jsonl
from lib.train_model import add_lora, load_base_for_training
from lib.train_data import completion_examples, language_model_collator, training_order
from lib.train import make_trainer, training_arguments, train_lora
from tiny_models import CHAT_OVERRIDES, FAMILIES, build_tiny_model, moved_template_rows

pytestmark = pytest.mark.slow
BASE = "embedded:smollm2-135m-instruct"
OVERRIDES = ["model.backend=unsloth", "train_completion.max_steps=4", "train_completion.save_steps=2",
             "train_completion.batch_size=2", "train_completion.learning_rate=0.001",
             "train_completion.warmup_steps=0", "split.max_tokens=128"]


def test_unsloth_runs_and_auto_picks_it_on_cuda_only():
    """On this CPU in unsloth's CPU mode; auto keeps the faster backend on a CPU."""
    assert "unsloth" in sys.modules
    assert pick_backend("unsloth") == "unsloth"
    assert pick_backend("auto") == ("unsloth" if torch.cuda.is_available() else AUTO_BACKEND_ON_CPU)


@pytest.fixture(scope="module")
def chat_setup():
    """The embedded model loaded and wrapped by unsloth, as 05 does (its own template)."""
    params = load_params("trump", "smoke", ["model.backend=unsloth", "model.dtype=float32"])
    model, tokenizer = load_base_for_training(BASE, params["model"], "unsloth", 2048)
    model = add_lora(model, params["train_chat"], "unsloth", [])
    return params, model, tokenizer


@pytest.mark.parametrize("batching", ["length_grouped", "padding_free"])
def test_labels_of_unsloth_trainer_batches_cover_exactly_the_assistant_turns(tmp_path, chat_setup, conversations,
                                                                            batching):
    params, model, tokenizer = chat_setup
    records = [c for c in conversations if len(c["messages"]) >= 5][:2] + conversations[:4]
    examples, _ = conversation_examples(tokenizer, records, 2048)
    examples = training_order(examples, batching, 2, seed=1)
    args = training_arguments(params["train_chat"], params["model"], tmp_path, "unsloth")
    trainer = make_trainer(model, tokenizer, examples, args, "unsloth", [], batching)
    assert "SFTTrainer" in type(trainer).__qualname__  # trl's, as unsloth patches it
    answers = {tuple(e["input_ids"]): [m["content"] for m in r["messages"] if m["role"] == "assistant"]
               for e, r in zip(conversation_examples(tokenizer, records, 2048)[0], records)}
    seen = 0
    for batch in trainer.get_train_dataloader():
        if batching == "padding_free":
            assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
            starts = torch.nonzero(batch["position_ids"][0] == 0).flatten().tolist() + [batch["input_ids"].shape[1]]
            rows = [(batch["input_ids"][0, s:e].tolist(), batch["labels"][0, s:e].tolist())
                    for s, e in zip(starts, starts[1:])]
        else:
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            assert all((batch["labels"][i, n:] == IGNORE_INDEX).all() for i, n in enumerate(lengths))
            rows = [(batch["input_ids"][i, :n].tolist(), batch["labels"][i, :n].tolist()) for i, n in enumerate(lengths)]
        for ids, labels in rows:
            if batching == "padding_free":  # the collator masks each example's first label
                labels = [IGNORE_INDEX] + labels[1:]
            expected = [answer + "<|im_end|>" for answer in answers[tuple(ids)]]
            assert [tokenizer.decode(run) for run in labeled_runs(labels)] == expected
            assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids))
            seen += 1
    assert seen == len(examples)


def test_a_packed_row_gives_the_loss_of_its_examples_alone(chat_setup, chunks):
    """unsloth's patched forward keeps the examples of a padding-free row apart (fp32)."""
    _, model, tokenizer = chat_setup
    examples, _ = completion_examples(tokenizer, read_jsonl(chunks)[:3], 128)
    batch = language_model_collator(tokenizer, padding_free=True)(examples)
    with torch.no_grad():
        packed = model(**batch).loss * (batch["labels"] != -100).sum()
        separate = sum(model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss
                       * (len(e["input_ids"]) - 1) for e in examples)
    assert torch.isclose(packed, separate, rtol=1e-3), (packed, separate)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, chunks):
    out = tmp_path_factory.mktemp("unsloth-uninterrupted")
    params = load_params("pg", "smoke", OVERRIDES)
    summary = train_lora(read_jsonl(chunks), out, params["train_completion"], params["model"],
                         kind="completion", max_seq_length=128)
    assert summary["finished"] and summary["steps"] == 4 and summary["backend"] == "unsloth"
    return out, summary


def test_resume_after_sigkill_ends_where_an_uninterrupted_unsloth_run_ends(tmp_path, uninterrupted, chunks):
    out = tmp_path / "killed"
    command = [PYTHON, "-m", "lib.train", "completion", "--persona", "pg", "--profile", "smoke",
               "--data", str(chunks), "--out", str(out)] + [arg for o in OVERRIDES for arg in ("--set", o)]
    killed_at = kill_at_first_checkpoint(command, out / "checkpoints")
    assert killed_at < 4

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["finished"] and summary["backend"] == "unsloth"
    assert summary["resumed_from_step"] == killed_at and summary["steps"] == 4
    assert_same_adapter(out, uninterrupted[0])
    assert [e["step"] for e in read_jsonl(out / "train_log.jsonl") if "loss" in e] == [1, 2, 3, 4]


def test_adapter_on_off_and_unsloth_16bit_merge_give_the_same_models(tmp_path, uninterrupted, tokenizer):
    adapter = uninterrupted[0] / "adapter"
    model_params = {"dtype": "float32", "load_in_4bit": False, "backend": "unsloth"}
    inputs = tokenizer("The most important thing for a startup is to make something people want.", return_tensors="pt")
    plain, _ = load_with_adapters(BASE, [], model_params)
    with torch.no_grad():
        base_logits = plain(**inputs).logits
    model, _ = load_with_adapters(BASE, [adapter], model_params)
    with torch.no_grad():
        tuned_logits = model(**inputs).logits
        with model.disable_adapter():
            assert torch.allclose(model(**inputs).logits, base_logits, atol=1e-5)
    assert (tuned_logits - base_logits).abs().max() > 1e-2, "the adapter changed nothing"

    merged_dir = merge_adapters_16bit(BASE, [adapter], tmp_path / "merged", model_params)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no temporary folder left behind
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        merged_logits = merged(**inputs).logits
    # unsloth writes the merged weights in 16 bit: equal to the adapter's model up to bf16 rounding
    assert (merged_logits - tuned_logits).abs().max() < 0.25 * (tuned_logits - base_logits).abs().max()
    assert (merged_dir / "tokenizer_config.json").is_file()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_chatml_on_an_untied_base_trains_the_template_rows_of_both_matrices(tmp_path, family, conversations):
    base = build_tiny_model(family, tmp_path / "base")
    params = load_params("trump", "smoke", CHAT_OVERRIDES + ["model.backend=unsloth"])
    summary = train_lora(conversations[:4], tmp_path / "chat", params["train_chat"], params["model"], kind="chat",
                         base=str(base), max_seq_length=2048)
    assert summary["finished"] and summary["backend"] == "unsloth"
    moved = moved_template_rows(base, tmp_path / "chat" / "adapter")
    assert moved["embed_tokens"] == moved["template_ids"] and moved["lm_head"] == moved["template_ids"], moved
