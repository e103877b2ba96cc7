"""06 quantize on the real embedded SmolLM2-135M-Instruct: llama.cpp's converter, its
quantizer, the quality gate (passing on a good export, failing on a corrupted quant, a wrong
chat template and an unloadable file), the LoRA adapter GGUF, the importance matrix, the
Ollama Modelfile, and the stage's notebook end to end."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib import gguf_export
from lib import gguf_checks, quant_gate
from lib.chat_template import CHATML_TEMPLATE
from lib.runfiles import reset_if_inputs_changed
from lib.modelfile import ModelfileError, build_modelfile, render_with_pieces, template_pieces

BASE = "embedded:smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DOCS = ROOT / "tests" / "fixtures" / "qa" / "pg_documents.jsonl"
SYSTEM = "You are Paul Graham, the essayist, programmer and co-founder of Y Combinator."
CONVERSATION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Who are you? Answer in one sentence."}]


def make_adapter(out_dir: Path, seed: int) -> Path:
    """A real peft LoRA adapter on the base, with small random B matrices (a trained
    adapter's delta, not zero), saved with the base's tokenizer as 05 saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lib.models import resolve_model

    base_dir = resolve_model(BASE)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    return out_dir


def split_records(tokenizer) -> dict:
    """02's train/eval chunks of the fixture essays, made by lib.split itself."""
    from lib.models import end_of_text_token
    from lib.runfiles import read_jsonl
    from lib.split import split_documents

    docs = read_jsonl(FIXTURE_DOCS)
    return split_documents(docs, tokenizer, max_tokens=256, overlap_tokens=0, heldout_rule="newest",
                           heldout_count=2, seed=1234, end_token=end_of_text_token(tokenizer))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="module")
def exported(work):
    """A LoRA adapter merged in 16 bit (lib.models.merge_adapters_16bit), converted to f16
    and quantized to q8_0 and q4_k_m."""
    from lib.models import merge_adapters_16bit

    adapter = make_adapter(work / "adapter", seed=0)
    merged = merge_adapters_16bit(BASE, [adapter], work / "merged", {"dtype": "float32"})
    files = {"adapter": adapter, "merged": merged, "f16": gguf_export.convert_hf_to_gguf(merged, work / "m-f16.gguf")}
    for level in ("q8_0", "q4_k_m"):
        files[level] = gguf_export.quantize_gguf(files["f16"], work / f"m-{level}.gguf", level)
    return files


@pytest.fixture(scope="module")
def chunks(exported, tokenizer):
    texts = [r["text"] for r in split_records(tokenizer)["eval"]]
    return quant_gate.heldout_token_chunks(texts, tokenizer, chunk_tokens=128, max_chunks=2)


@pytest.fixture(scope="module")
def scored(exported, chunks, work):
    reference = work / "f16_logprobs.npy"
    results = {"f16": gguf_checks.score_gguf(exported["f16"], chunks, reference, write_reference=True)}
    for level in ("q8_0", "q4_k_m"):
        results[level] = gguf_checks.score_gguf(exported[level], chunks, reference)
    return results, reference


def test_f16_gguf_has_the_training_tokenizer_and_template(exported, tokenizer):
    meta = gguf_export.gguf_metadata(exported["f16"])
    assert meta["general.architecture"] == "llama"
    # the byte-level BPE vocabulary, not a SentencePiece one (which crashes llama.cpp's tokenizer)
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "smollm"
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_transformers_gguf_tokenizer_is_fixed_for_conversion(tokenizer):
    from lib.models import resolve_model

    raw = json.loads((Path(resolve_model(BASE)) / "tokenizer.json").read_text())
    broken = json.loads(json.dumps(raw))
    broken["model"]["byte_fallback"] = True
    broken["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "ByteLevel"}]}
    fixed = gguf_export.byte_level_tokenizer_fix(broken)
    assert fixed["model"]["byte_fallback"] is False and fixed["decoder"]["type"] == "ByteLevel"
    assert gguf_export.byte_level_tokenizer_fix(fixed) is None


def test_quantized_files_shrink(exported):
    size = {name: exported[name].stat().st_size for name in ("f16", "q8_0", "q4_k_m")}
    assert 0.50 < size["q8_0"] / size["f16"] < 0.56      # 8.5 bits per weight of 16
    assert size["q4_k_m"] < 0.8 * size["q8_0"]
    assert gguf_export.gguf_metadata(exported["q8_0"])["general.file_type"] == 7   # LLAMA_FTYPE_MOSTLY_Q8_0
    # llama.cpp's per-tensor log went to a file next to the quant, not to the notebook
    log = exported["q8_0"].with_name(exported["q8_0"].name + ".log").read_text()
    assert "llama_model_quantize" in log or "q8_0" in log


def test_gate_measures_a_good_export_and_passes_it(exported, scored, tokenizer):
    results, _ = scored
    f16, q8, q4 = results["f16"], results["q8_0"], results["q4_k_m"]
    assert f16["n_tokens"] == 254 and 5 < f16["ppl"] < 200
    assert q8["kld"] < 0.01 and q8["top1"] > 0.9
    assert q4["kld"] > q8["kld"] and q4["top1"] < q8["top1"]   # fewer bits, further from f16
    assert abs(q8["ppl"] / f16["ppl"] - 1) < 0.1
    results["f16"]["format"] = gguf_checks.check_gguf_format(exported["f16"], exported["merged"], CONVERSATION)
    results["f16"]["stop_reply"] = gguf_checks.stop_check_gguf(exported["f16"], CONVERSATION, max_tokens=160, seed=1234)
    for name in ("q8_0", "q4_k_m"):
        results[name]["format"] = {"problems": gguf_checks.metadata_problems(exported["f16"], exported[name])}
        results[name]["chat"] = gguf_checks.chat_with_gguf(exported[name], [CONVERSATION], max_tokens=48, seed=1234)
    facts = results["f16"]["format"]["facts"]
    assert facts["tokenizer_mismatches"] == 0 and facts["template_matches_training"] and facts["prompt_matches_training"]
    assert facts["leading_bos"] == 1 and facts["end_of_turn"] == "<|im_end|>"
    assert results["f16"]["stop_reply"]["finish_reason"] == "stop"
    assert quant_gate.gate_problems(results, max_kld_q8_0=0.01, max_ppl_ratio=1.5) == []


def corrupt_blocks(path: Path, pattern: str, seed: int = 0) -> int:
    """Shuffle the quantized rows of matching tensors in place: every value stays a valid
    q8_0 block (finite), but the weights no longer mean anything. Returns tensors changed."""
    reader = gguf_export.gguf_reader(path, mode="r+")
    rng = np.random.default_rng(seed)
    changed = 0
    for tensor in reader.tensors:
        if pattern in tensor.name and tensor.data.ndim == 2:
            tensor.data[:] = tensor.data[rng.permutation(tensor.data.shape[0])]
            changed += 1
    reader.data.flush()
    return changed


def test_gate_fails_on_a_corrupted_quant(exported, scored, chunks, work):
    _, reference = scored
    broken = work / "broken-q8_0.gguf"
    shutil.copy(exported["q8_0"], broken)
    assert corrupt_blocks(broken, "ffn_down") == 30
    results = {"f16": scored[0]["f16"], "q8_0": gguf_checks.score_gguf(broken, chunks, reference)}
    assert results["q8_0"]["kld"] > 0.5 and results["q8_0"]["top1"] < 0.7
    results["q8_0"]["chat"] = gguf_checks.chat_with_gguf(broken, [CONVERSATION], max_tokens=48, seed=1234)
    problems = quant_gate.gate_problems(results, max_kld_q8_0=0.01, max_ppl_ratio=1.5)
    assert any(p.startswith("q8_0: mean KL divergence from f16 is") for p in problems), problems
    assert any(p.startswith("q8_0: perplexity") for p in problems), problems
    with pytest.raises(gguf_checks.QualityGateError, match="failed its quality gate"):
        quant_gate.enforce_gate(problems)


def test_gate_fails_on_a_wrong_chat_template(exported, work):
    wrong = work / "wrong-template-f16.gguf"
    llama2 = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] "
              "+ ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
    source = gguf_export.llama_cpp_source()
    subprocess.run([sys.executable, str(source / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"),
                    str(exported["f16"]), str(wrong), "--chat-template", llama2, "--force"],
                   check=True, env=gguf_export.converter_env(source), capture_output=True)
    result = gguf_checks.check_gguf_format(wrong, exported["merged"], CONVERSATION)
    assert not result["facts"]["template_matches_training"]
    assert any("is not the template used in training" in p for p in result["problems"]), result["problems"]
    assert any("renders a different prompt" in p for p in result["problems"]), result["problems"]
    problems = quant_gate.gate_problems({"f16": {"format": result}}, 0.01, 1.5)
    with pytest.raises(gguf_checks.QualityGateError, match="wrong-template-f16.gguf"):
        quant_gate.enforce_gate(problems)
    # a quant whose template differs from its f16 file is caught by the metadata comparison
    assert gguf_checks.metadata_problems(exported["f16"], wrong)[0].startswith("wrong-template-f16.gguf: tokenizer.chat_template")


def test_gate_reports_an_unloadable_gguf_without_crashing(exported, work):
    truncated = work / "truncated.gguf"
    truncated.write_bytes(exported["q4_k_m"].read_bytes()[: 4 << 20])
    with pytest.raises(gguf_checks.QualityGateError, match=r"truncated.gguf: llama.cpp (exited with code|was killed by)"):
        gguf_checks.chat_with_gguf(truncated, [CONVERSATION], max_tokens=8)


def test_degenerate_replies_are_recognised():
    looping = {"text": "the the the", "token_ids": [260] * 30}
    cycle = {"text": "a b c", "token_ids": [1, 2, 3] * 10}
    fine = {"text": "I write essays.", "token_ids": list(range(100, 130))}
    assert quant_gate.degeneration_problems({"text": "  ", "token_ids": []}) == ["the reply is empty"]
    assert any("one token" in p for p in quant_gate.degeneration_problems(looping))
    assert any("distinct tokens" in p for p in quant_gate.degeneration_problems(cycle))
    assert quant_gate.degeneration_problems(fine) == []


def test_degeneration_is_judged_against_f16_on_the_same_prompts():
    fine = {"text": "I write essays.", "token_ids": list(range(100, 130))}
    loop = {"text": "I have a lot of projects going on. " * 8, "token_ids": [40, 617, 253, 2846, 282, 2066] * 8}
    chat = {"f16": [loop, fine, fine, fine], "q8_0": [fine, loop, fine, fine], "q4_k_m": [loop, loop, loop, fine]}
    problems = quant_gate.chat_degeneration_problems({name: {"chat": replies} for name, replies in chat.items()}, 0.25)
    # one loop in four, as often as f16: a trait of the finetune, not of the quant
    assert not any(p.startswith("q8_0") for p in problems)
    assert len(problems) == 1 and problems[0].startswith("q4_k_m: 3 of 4 sampled chat replies are degenerate "
                                                         "against f16's 25%"), problems
    # a file that only loops is refused whatever f16 does, f16 included
    chat = {"f16": [loop, loop], "q8_0": [loop, loop]}
    problems = quant_gate.chat_degeneration_problems({name: {"chat": replies} for name, replies in chat.items()}, 0.25)
    assert [p.split(":")[0] for p in problems] == ["f16", "q8_0"]
    assert "all 2 sampled chat replies are degenerate" in problems[0]


def test_adapter_gguf_on_the_base_equals_the_merged_model(exported, chunks, work):
    from lib.models import resolve_model

    adapter_gguf = gguf_export.convert_lora_to_gguf(exported["adapter"], resolve_model(BASE), work / "lora-f16.gguf")
    assert gguf_export.gguf_metadata(adapter_gguf)["general.type"] == "adapter"
    base_gguf = gguf_export.convert_hf_to_gguf(resolve_model(BASE), work / "base-f16.gguf")
    probe = [chunks[0][:64]]
    merged_ref = work / "merged_logprobs.npy"
    gguf_checks.score_gguf(exported["f16"], probe, merged_ref, write_reference=True)
    base_only = gguf_checks.score_gguf(base_gguf, probe, merged_ref)
    with_adapter = gguf_checks.score_gguf(base_gguf, probe, merged_ref, lora_path=adapter_gguf)
    assert with_adapter["kld"] < 0.01 and with_adapter["top1"] > 0.95
    assert base_only["kld"] > 5 * with_adapter["kld"]     # the adapter does change the model


def test_reset_if_inputs_changed(tmp_path):
    (tmp_path / "old.gguf").write_text("x")
    assert reset_if_inputs_changed(tmp_path, {"adapter": "a"})
    assert not (tmp_path / "old.gguf").exists()
    (tmp_path / "kept.gguf").write_text("y")
    assert not reset_if_inputs_changed(tmp_path, {"adapter": "a"})
    assert (tmp_path / "kept.gguf").exists()
    assert reset_if_inputs_changed(tmp_path, {"adapter": "b"}) and not (tmp_path / "kept.gguf").exists()


def test_modelfile_reproduces_the_training_template(tokenizer):
    pieces = template_pieces(tokenizer)
    assert pieces["suffix"] == "<|im_end|>\n" and pieces["user_prefix"] == "<|im_start|>user\n"
    assert pieces["default_system"].startswith("You are a helpful AI assistant named SmolLM")
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And?"}]
    assert render_with_pieces(pieces, messages) == tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
    text = build_modelfile("pg-q4_k_m.gguf", tokenizer, SYSTEM, {"temperature": 0.7, "num_ctx": 2048})
    assert text.splitlines()[0] == "FROM ./pg-q4_k_m.gguf"
    assert 'PARAMETER stop "<|im_end|>"' in text and f'SYSTEM """{SYSTEM}"""' in text
    assert "PARAMETER num_ctx 2048" in text
    assert '{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n' in text


GO_RENDER = """package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct{ Role, Content string }

func main() {
	text, _ := os.ReadFile(os.Args[1])
	raw, _ := os.ReadFile(os.Args[2])
	var data struct {
		System   string
		Messages []Message
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("t").Parse(string(text)))
	if err := tmpl.Execute(os.Stdout, data); err != nil {
		panic(err)
	}
}
"""


def test_ollama_template_renders_like_training_in_go(tokenizer, tmp_path):
    """The Modelfile TEMPLATE, executed by Go's text/template as Ollama executes it (system
    messages collated into .System and kept in .Messages), gives training's prompt. Go's
    standard library only: no module or toolchain is downloaded. Skipped without go, except
    in CI (.ci/run installs golang-go and sets PERSONA_LLM_REQUIRE_GO=1), where it fails."""
    from lib.modelfile import ollama_template

    if shutil.which("go") is None:
        if os.environ.get("PERSONA_LLM_REQUIRE_GO"):
            pytest.fail("go is not on PATH but PERSONA_LLM_REQUIRE_GO is set (apt-get install golang-go)")
        pytest.skip("needs Go (apt-get install golang-go) to run text/template")

    template = tmp_path / "template.txt"
    template.write_text(ollama_template(template_pieces(tokenizer)))
    (tmp_path / "render.go").write_text(GO_RENDER)
    cases = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}],
             [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And\nthen?"}],
             [{"role": "user", "content": "No system prompt"}]]
    binary = tmp_path / "render"
    subprocess.run(["go", "build", "-o", str(binary), str(tmp_path / "render.go")], check=True, cwd=tmp_path,
                   env={**os.environ, "GO111MODULE": "off", "GOPROXY": "off", "GOTOOLCHAIN": "local",
                        "GOFLAGS": ""})
    for messages in cases:
        data = tmp_path / "data.json"
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        data.write_text(json.dumps({"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]}
                                                                   for m in messages]}))
        rendered = subprocess.run([str(binary), str(template), str(data)], check=True, capture_output=True,
                                  text=True).stdout
        assert rendered == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_modelfile_for_chatml_and_a_template_it_cannot_express(tokenizer):
    from transformers import AutoTokenizer

    from lib.models import resolve_model

    chatml = AutoTokenizer.from_pretrained(resolve_model(BASE))
    chatml.chat_template = CHATML_TEMPLATE
    assert template_pieces(chatml)["default_system"] is None
    odd = AutoTokenizer.from_pretrained(resolve_model(BASE))
    odd.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\n' }}"
                         "{% else %}{{ 'A: ' + m['content'] + '\n\n' }}{% endif %}{% endfor %}")
    with pytest.raises(ModelfileError, match="same suffix"):
        template_pieces(odd)


@pytest.mark.slow
def test_imatrix_quantization(exported, scored, chunks, tokenizer, work):
    try:
        gguf_export.imatrix_tool()
    except gguf_export.ImatrixUnavailable as err:
        pytest.skip(f"llama-imatrix cannot be built here: {err}")
    texts = [r["text"] for r in split_records(tokenizer)["train"]]
    imatrix_file = gguf_export.compute_imatrix(exported["f16"], texts, work / "m.imatrix.gguf", chunk_tokens=128, max_chunks=16)
    imatrix = gguf_export.read_imatrix(imatrix_file)
    assert len(imatrix) >= 30 * 7                               # every matrix of every layer
    assert imatrix["blk.0.ffn_down.weight"].shape == (1536,) and (imatrix["blk.0.ffn_down.weight"] > 0).all()
    path = gguf_export.quantize_gguf(exported["f16"], work / "m-q4_k_m-imatrix.gguf", "q4_k_m", imatrix=imatrix)
    result = gguf_checks.score_gguf(path, chunks, scored[1])
    plain = scored[0]["q4_k_m"]
    assert result["kld"] < 1.1 * plain["kld"], (result, plain)  # calibrated on the persona's text: no worse


@pytest.mark.slow
def test_notebook_runs_the_stage_and_writes_metrics(exported, tokenizer, run_env, tmp_path):
    from lib.runfiles import write_jsonl

    runs = Path(run_env["RUNS_DIR"]) / "pg"
    records = split_records(tokenizer)
    write_jsonl(runs / "02_split" / "train.jsonl", records["train"])
    write_jsonl(runs / "02_split" / "eval.jsonl", records["eval"])
    (runs / "02_split" / "metrics.json").write_text("{}")
    for stage, seed in (("03_completion", 1), ("05_chat", 2)):
        make_adapter(runs / stage / "adapter", seed=seed)
        (runs / stage / "metrics.json").write_text("{}")
    subprocess.run([sys.executable, "-m", "lib.runner", "pg", "06_quantize", "--profile", "smoke"],
                   cwd=ROOT, env=run_env, check=True, timeout=600)
    out = runs / "06_quantize"
    metrics = json.loads((out / "metrics.json").read_text())
    for level in ("q8_0", "q4_k_m"):
        quant = metrics["quants"][level]
        assert set(quant) >= {"size_mb", "ppl", "kld", "top1"}
        assert (out / quant["file"]).is_file() and quant["size_mb"] > 10
    assert metrics["quants"]["q8_0"]["kld"] < 0.01 and metrics["gate"]["passed"]
    assert metrics["imatrix"]["status"].startswith("off")
    assert set(metrics["adapters"]) == {"completion-lora-f16", "chat-lora-f16"}
    assert all((out / a["file"]).is_file() for a in metrics["adapters"].values())
    assert (out / "Modelfile").read_text().startswith("# Paul Graham")
    assert not (out / "merged").exists() and not (out / ".gate").exists()


LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
                   " + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


def test_modelfile_stops_at_the_next_turn_header(tokenizer):
    """Stop strings: the end-of-turn suffix, EOS and the token that opens the next turn, so a
    reply that runs on into a new turn header stops there."""
    from lib.modelfile import stop_strings
    from tiny_models import tiny_tokenizer

    text = build_modelfile("pg-q4_k_m.gguf", tokenizer, SYSTEM, {"temperature": 0.7})
    stops = [line for line in text.splitlines() if line.startswith("PARAMETER stop ")]
    assert stops == ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|im_start|>"']  # ChatML; EOS is <|im_end|>
    llama3 = tiny_tokenizer("llama3")
    llama3.chat_template = LLAMA3_TEMPLATE
    assert stop_strings(llama3, template_pieces(llama3)) == ["<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>"]
    # a turn header that is plain text, not a token of its own: no turn-start stop (it would cut "### " in a reply)
    plain = tiny_tokenizer("llama3")
    plain.chat_template = ("{% for m in messages %}{{ '### ' + m['role'] + ':\n' + m['content'] + '<|eot_id|>' }}"
                           "{% endfor %}{% if add_generation_prompt %}{{ '### assistant:\n' }}{% endif %}")
    assert stop_strings(plain, template_pieces(plain)) == ["<|eot_id|>", "<|end_of_text|>"]


def test_llama_cpp_takes_one_thread_while_another_process_keeps_a_core_busy():
    """default_threads reads what runs now (/proc/stat), not the trailing load average."""
    from lib.llama import busy_cores, default_threads

    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    try:
        import time
        time.sleep(0.5)
        assert busy_cores() >= 0.5
        assert default_threads() == 1
    finally:
        spinner.kill()
