"""The GPU profiles' model families on tiny shapes, on this CPU (tests/tiny_models.py):
Llama-3 (untied embeddings, a tokenizer that adds BOS) and Qwen3 (untied, no BOS), base
models given ChatML, trained with the hf backend (tests/unsloth/ repeats the training
test through unsloth).

- The template tokens' input *and* output rows train; every other row of embed_tokens
  and lm_head stays bitwise unchanged (peft given a plain list trained the input rows
  only: <|im_end|>'s output row had a gradient of exactly 0 on an untied model).
- One BOS rule (lib/bos.py) in 03's chunks, 05's conversations, 07's transformers
  prompts and the GGUF runtime: the token sequences agree.
- 06's steps convert, quantize and check it: llama.cpp's converter, q8_0 and q4_k_m,
  the format gate (template, tokenizer, BOS as 05 trained, end of turn) and the q8_0 KLD.
  (The sampled-reply checks of the gate need a model that can talk; random weights cannot.)
"""
import json

import pytest
import torch

from conftest import ROOT
from lib.bos import encode, uses_bos
from lib.chat_data import IGNORE_INDEX, conversation_examples
from lib.chat_template import CHATML_TOKENS, chat_prompt, set_chat_template
from lib.models import merge_adapters_16bit
from lib.params import load_params
from lib.runfiles import read_jsonl
from lib.train_data import completion_examples
from lib.train import train_lora
from tiny_models import CHAT_OVERRIDES, FAMILIES, build_tiny_model, moved_template_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request, tmp_path_factory, conversations):
    """A tiny model of the family and a ChatML chat adapter trained on it for 2 steps."""
    family = request.param
    tmp = tmp_path_factory.mktemp(family)
    base = build_tiny_model(family, tmp / "base")
    params = load_params("trump", "smoke", CHAT_OVERRIDES + ["model.backend=hf"])
    summary = train_lora(conversations[:4], tmp / "chat", params["train_chat"], params["model"], kind="chat",
                         base=str(base), max_seq_length=2048)
    assert summary["finished"] and summary["steps"] == 2 and summary["backend"] == "hf"
    return {"family": family, "base": base, "adapter": tmp / "chat" / "adapter", "tmp": tmp, "params": params}


def test_template_token_rows_train_in_both_matrices_and_no_other_row_moves(trained):
    config = json.loads((trained["adapter"] / "adapter_config.json").read_text())
    moved = moved_template_rows(trained["base"], trained["adapter"])
    ids = moved["template_ids"]
    assert config["trainable_token_indices"] == {"embed_tokens": ids, "lm_head": ids}
    assert moved["embed_tokens"] == ids and moved["lm_head"] == ids, moved


def test_one_bos_rule_from_training_to_the_prompt(trained, conversations):
    """03's chunks, 05's conversations and 07's prompts start with exactly one BOS where the
    family uses one (llama3), and with none where it does not (qwen3)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained["adapter"])
    bos = FAMILIES[trained["family"]]["bos"]
    assert uses_bos(tokenizer) == bool(bos)
    chunk = {"id": "x#0", "text": "Title: How to Do Great Work\n\nThe way to do great work is to care.<|endoftext|>"}
    chunk_ids = completion_examples(tokenizer, [chunk], 512)[0][0]["input_ids"]
    chat = conversation_examples(tokenizer, conversations[:1], 2048)[0][0]
    prompt_ids = encode(tokenizer, chat_prompt(tokenizer, "Who are you?", "You are Donald Trump."))
    texts = (chunk["text"], tokenizer.apply_chat_template(conversations[0]["messages"], tokenize=False),
             chat_prompt(tokenizer, "Who are you?", "You are Donald Trump."))
    for ids, text in zip((chunk_ids, chat["input_ids"], prompt_ids), texts):
        plain = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == ([tokenizer.bos_token_id] if bos else []) + plain  # exactly one BOS, or none
    if bos:
        assert chat["labels"][0] == IGNORE_INDEX  # BOS is read, never trained


@pytest.fixture(scope="module")
def exported(trained):
    """06's steps on the trained tiny model: 16-bit merge, f16 GGUF, q8_0 and q4_k_m."""
    from lib.gguf_export import convert_hf_to_gguf, quantize_gguf

    tmp = trained["tmp"]
    merged = merge_adapters_16bit(str(trained["base"]), [trained["adapter"]], tmp / "merged",
                                  dict(trained["params"]["model"]))
    files = {"f16": convert_hf_to_gguf(merged, tmp / "model-f16.gguf")}
    for level in ("q8_0", "q4_k_m"):
        files[level] = quantize_gguf(files["f16"], tmp / f"model-{level}.gguf", level)
    return {"merged": merged, "files": files}


def test_06_converts_quantizes_and_its_format_gate_passes(trained, exported, conversations):
    from transformers import AutoTokenizer

    from lib.gguf_checks import check_gguf_format, score_gguf
    from lib.quant_gate import heldout_token_chunks

    tokenizer = AutoTokenizer.from_pretrained(exported["merged"])
    conversation = conversations[0]["messages"][:2]
    for name, path in exported["files"].items():
        assert path.stat().st_size > 0
        result = check_gguf_format(path, exported["merged"], conversation)
        assert result["problems"] == [], (name, result["problems"])
        facts = result["facts"]
        assert facts["add_bos_token"] == bool(FAMILIES[trained["family"]]["bos"]), facts
        assert facts["leading_bos"] == (1 if FAMILIES[trained["family"]]["bos"] else 0), facts
        assert facts["runtime_prompt_matches_training"] and facts["end_of_turn"] == "<|im_end|>"
    sizes = [exported["files"][level].stat().st_size for level in ("f16", "q8_0", "q4_k_m")]
    assert sizes == sorted(sizes, reverse=True)

    text = read_jsonl(ROOT / "tests" / "fixtures" / "style" / "pg_documents.jsonl")[0]["text"]
    chunks = heldout_token_chunks([text], tokenizer, chunk_tokens=128, max_chunks=2)
    reference = trained["tmp"] / "f16.logprobs.npy"
    score_gguf(exported["files"]["f16"], chunks, reference, write_reference=True)
    q8 = score_gguf(exported["files"]["q8_0"], chunks, reference)
    assert q8["kld"] < 0.01, q8


def test_set_chat_template_on_a_base_without_one(trained):
    """A base model of the family gets ChatML, with <|im_end|> as its end of turn."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained["base"])
    assert tokenizer.chat_template is None
    assert set_chat_template(tokenizer, "chatml") == list(CHATML_TOKENS) and tokenizer.eos_token == "<|im_end|>"
    assert torch.tensor(encode(tokenizer, "<|im_start|>user\nhi<|im_end|>")).numel() == 5 + uses_bos(tokenizer)
