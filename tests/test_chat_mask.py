"""Chat training: the loss covers exactly the assistant's words and end-of-turn tokens, on
conversations built from the real interview transcripts in data/snapshot/trump."""
import copy
import json
from pathlib import Path

import pytest
import torch

from conftest import labeled_runs
from lib.chat_data import IGNORE_INDEX, conversation_examples, read_conversations, tokenize_conversation
from lib.chat_template import CHATML_TEMPLATE, set_chat_template
from lib.params import load_params
from lib.train_data import language_model_collator
from lib.train import train_lora

@pytest.mark.parametrize("template", ["own", "chatml"])
@pytest.mark.parametrize("padding_free", [True, False])
def test_labels_of_a_real_batch_cover_exactly_the_assistant_turns(tokenizer, conversations, template, padding_free):
    tokenizer = copy.deepcopy(tokenizer)
    set_chat_template(tokenizer, template)
    examples, stats = conversation_examples(tokenizer, conversations, max_length=2048)
    assert stats["kept"] == len(conversations) and 0.2 < stats["loss_share"] < 0.95
    batch_records = [c for c in conversations if len(c["messages"]) >= 5][:2] + conversations[:3]
    batch_examples = [tokenize_conversation(tokenizer, c["messages"]) for c in batch_records]
    batch = language_model_collator(tokenizer, padding_free=padding_free)(batch_examples)

    lengths = [len(e["input_ids"]) for e in batch_examples]
    if padding_free:  # one row, positions restarting at each conversation, nothing padded
        assert batch["input_ids"].shape == (1, sum(lengths))
        starts = torch.nonzero(batch["position_ids"][0] == 0).flatten().tolist()
        assert starts == [sum(lengths[:i]) for i in range(len(lengths))]
        rows = [(batch["input_ids"][0, s:s + n].tolist(), batch["labels"][0, s:s + n].tolist())
                for s, n in zip(starts, lengths)]
    else:  # one row each, padded at the end: padding is masked out of attention and loss
        assert batch["input_ids"].shape == (len(lengths), max(lengths))
        assert batch["attention_mask"].sum(dim=1).tolist() == lengths
        assert all((batch["labels"][i, n:] == IGNORE_INDEX).all() for i, n in enumerate(lengths))
        rows = [(batch["input_ids"][i, :n].tolist(), batch["labels"][i, :n].tolist()) for i, n in enumerate(lengths)]

    for record, (ids, labels) in zip(batch_records, rows):
        answers = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
        assert [tokenizer.decode(run) for run in labeled_runs(labels)] == [answer + "<|im_end|>" for answer in answers]
        # every trained position predicts the very token at that position
        assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids))
    assert tokenizer.eos_token == "<|im_end|>"


def test_own_template_needs_a_template_and_chatml_sets_one(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(ValueError, match="no chat template of its own; set model.chat_template=chatml"):
        set_chat_template(bare, "own")
    assert set_chat_template(bare, "chatml") == ["<|im_start|>", "<|im_end|>"]
    assert bare.chat_template == CHATML_TEMPLATE


def test_bad_conversation_file_names_file_and_line(tmp_path):
    path = tmp_path / "conversations.jsonl"
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    bad = {"messages": [{"role": "user", "content": "Hi"}, {"speaker": "TRUMP", "content": "Hello."}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2: message 1 needs a role"):
        read_conversations(path)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:1: has no assistant message"):
        read_conversations(path)


@pytest.mark.slow
def test_chatml_on_a_base_trains_only_the_template_token_rows(tmp_path, conversations):
    """A template that is not the model's own: its two token rows are trained (besides LoRA),
    every other embedding row stays as it was, and the adapter's tokenizer carries the template."""
    from safetensors.torch import load_file

    from lib.models import load_with_adapters, resolve_model

    params = load_params("trump", "smoke", ["model.chat_template=chatml", "train_chat.max_steps=2",
                                            "train_chat.learning_rate=0.01", "train_chat.warmup_steps=0"])
    summary = train_lora(conversations[:4], tmp_path, params["train_chat"], params["model"], kind="chat",
                         max_seq_length=params["train_chat"]["max_length"] * 4)
    assert summary["finished"] and summary["steps"] == 2
    adapter = tmp_path / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] == {"embed_tokens": [1, 2]}  # tied: the output rows are the same
    saved = load_file(adapter / "adapter_model.safetensors")
    assert not any(key.endswith("embed_tokens.weight") for key in saved), "the whole embedding matrix was saved"

    merged, merged_tokenizer = load_with_adapters("embedded:smollm2-135m-instruct", [adapter],
                                                  dict(params["model"], dtype="float32"), merge=True)
    assert merged_tokenizer.chat_template == CHATML_TEMPLATE and merged_tokenizer.eos_token == "<|im_end|>"
    base_rows = load_file(Path(resolve_model("embedded:smollm2-135m-instruct")) / "model.safetensors")
    base_embed = base_rows["model.embed_tokens.weight"]
    changed = (merged.get_input_embeddings().weight != base_embed).any(dim=1).nonzero().flatten().tolist()
    assert changed == [1, 2]
