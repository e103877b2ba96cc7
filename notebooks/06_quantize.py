# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 quantize — merge in 16 bit, export GGUF with llama.cpp, measure every quant, refuse a broken one
# Reads the LoRA adapters of `03_completion` and `05_chat` and the held-out text of `02_split`;
# writes to `runs/<persona>/06_quantize/`: `<persona>-f16.gguf`, one GGUF per level in
# `quantize.levels` (plus importance-matrix versions), the adapters as GGUF, an Ollama
# `Modelfile`, `gate.json` and `metrics.json`.
#
# In the original hand-run project the q4 GGUF "turned into gibberish" while q8_0 was fine.
# The known causes are merging LoRA into 4-bit weights, a wrong tokenizer or pre-tokenizer, a
# doubled BOS, a missing end-of-turn stop and a chat template that differs from training. So
# the adapters are merged into a 16-bit reload of the base, the GGUF is made by llama.cpp's own
# converter, and each quant's quality is measured with llama.cpp against f16 on text the model
# never trained on: perplexity, KL divergence and top-1 agreement. The stage fails, with the
# reasons, when q8_0 drifts too far from f16, when any quant's perplexity jumps, when a
# quant's chat replies degenerate (loop, repeat one token) more often than f16's on the same
# prompts and seeds (a small finetune loops now and then at any precision), or when the f16
# file's tokenizer, BOS, template or end-of-turn stop do not match training.

# %% tags=["parameters"]
persona = "pg"    # which params/<persona>.yaml
profile = "auto"  # auto | cpu | t4 | gpu | smoke
overrides = ""    # space-separated section.key overrides (SET in make), applied last
repo_url = "https://github.com/persona-llm/persona-llm"  # fetched when the notebook is opened on its own (Colab/Kaggle)

# %%
# Setup: find the repository, or fetch it and its requirements when opened on its own in Colab/Kaggle.
import os
import subprocess
import sys
from pathlib import Path

ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "lib" / "params.py").is_file()), None)
if ROOT is None:  # on its own: clone once (a restarted runtime reuses the clone), then install
    ROOT = Path("persona-llm").resolve()
    if not (ROOT / "lib" / "params.py").is_file():
        subprocess.run(["git", "clone", "--depth=1", repo_url, str(ROOT)], check=True)
    subprocess.run([sys.executable, "-m", "lib.environment", "install"], cwd=ROOT, check=True)
os.chdir(ROOT); sys.path.insert(0, str(ROOT))

from lib.stage import open_stage

stage = open_stage("06_quantize", persona, profile, overrides)
params, OUT = stage.params, stage.out

# %%
import shutil
import time

from tqdm.auto import tqdm
from transformers import AutoTokenizer

from lib import gguf_checks, gguf_export, quant_gate
from lib.modelfile import build_modelfile, write_modelfile
from lib.models import merge_adapters_16bit, resolve_model, tokenizer_folder
from lib.backend import pick_backend
from lib.runfiles import file_sha256, read_jsonl, require_stage, reset_if_inputs_changed, write_json, write_metrics

quant_params = params["quantize"]
split_dir = require_stage(persona, "02_split")
adapters = [require_stage(persona, "03_completion") / "adapter", require_stage(persona, "05_chat") / "adapter"]
for adapter in adapters:
    if not (adapter / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"{adapter}: no adapter_model.safetensors; rerun its stage")
print(f"base {params['model']['base']}; adapters {[str(a) for a in adapters]}")
print(f"quantize params: {quant_params}")

# What the files of this stage are built from; when it changes, earlier files are deleted (when it
# does not, a killed run resumes and reuses every finished file).
inputs = {
    "base": params["model"]["base"], "llama_cpp_python": gguf_export.llama_cpp_version(),
    "adapters": {a.parent.name: file_sha256(a / "adapter_model.safetensors") for a in adapters},
    "exporter": file_sha256(ROOT / "lib" / "gguf_export.py"),
    "quantize": {k: quant_params[k] for k in ("levels", "imatrix", "imatrix_chunks", "eval_chunk_tokens")},
}
if reset_if_inputs_changed(OUT, inputs):
    print("new inputs: starting from scratch")
gguf = lambda name: OUT / f"{persona}-{name}.gguf"
timings = {}

# %% [markdown]
# ## Merge the adapters into the base, in 16 bit
# Never into 4-bit weights: a QLoRA-trained model is reloaded in 16 bit and merged there
# (`lib.models.merge_adapters_16bit`). The merged folder carries the chat adapter's tokenizer,
# so the GGUF carries the chat template used in training.

# %%
merged = OUT / "merged"
started = time.time()
merge_backend = pick_backend(params["model"]["backend"])  # unsloth: its save_pretrained_merged; hf: peft's merge_and_unload
if not gguf("f16").is_file() and not (merged / "config.json").is_file():
    merge_adapters_16bit(params["model"]["base"], adapters, merged, params["model"])
    print(f"merged into {merged} with {merge_backend}")
timings["merge_s"] = round(time.time() - started, 1)

# %% [markdown]
# ## f16 GGUF with llama.cpp's converter
# `convert_hf_to_gguf.py` from the llama.cpp that llama-cpp-python vendors (fetched with pip on
# first use), with its own gguf-py. It picks the tokenizer model and pre-tokenizer by hashing how
# the tokenizer splits a test text, which the checks below verify.

# %%
started = time.time()
if not gguf("f16").is_file():
    gguf_export.convert_hf_to_gguf(merged, gguf("f16"), outtype="f16")
timings["convert_s"] = round(time.time() - started, 1)
meta = gguf_export.gguf_metadata(gguf("f16"))
for key in ("general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token"):
    print(f"{key:>32}: {meta.get(key)}")

# %% [markdown]
# ## Quantize
# `llama_cpp.llama_model_quantize` for each level in `quantize.levels`. Where llama.cpp's
# `llama-imatrix` can be built here (cmake and a compiler; a few minutes, once per cache), an
# importance matrix from the persona's own training text weights the quantization of every level
# below q8_0 (held-out text is not used: it measures the result).

# %%
started = time.time()
quants = {}
for level in tqdm(quant_params["levels"], desc="quantize"):
    if not gguf(level).is_file():
        gguf_export.quantize_gguf(gguf("f16"), gguf(level), level)
    quants[level] = gguf(level)

imatrix_status = {"status": "off (quantize.imatrix=false)"}
if quant_params["imatrix"]:
    imatrix_file = OUT / f"{persona}.imatrix.gguf"
    try:
        if not imatrix_file.is_file():
            train_texts = [r["text"] for r in read_jsonl(split_dir / "train.jsonl")]
            gguf_export.compute_imatrix(gguf("f16"), train_texts, imatrix_file, chunk_tokens=quant_params["eval_chunk_tokens"],
                               max_chunks=quant_params["imatrix_chunks"])
        imatrix = gguf_export.read_imatrix(imatrix_file)
        for level in [lv for lv in quant_params["levels"] if lv != "q8_0"]:
            name = f"{level}-imatrix"
            if not gguf(name).is_file():
                gguf_export.quantize_gguf(gguf("f16"), gguf(name), level, imatrix=imatrix)
            quants[name] = gguf(name)
        imatrix_status = {"status": "used", "entries": len(imatrix), "calibration": "02_split/train.jsonl",
                          "chunks": quant_params["imatrix_chunks"], "chunk_tokens": quant_params["eval_chunk_tokens"]}
    except (gguf_export.ImatrixUnavailable, gguf_export.ExportError) as err:  # optional: recorded, not fatal
        imatrix_status = {"status": "unavailable", "reason": " ".join(str(err).split())[:300]}
        print(f"importance matrix unavailable: {err}")
timings["quantize_s"] = round(time.time() - started, 1)
print(f"imatrix: {imatrix_status}")
for name, path in {"f16": gguf("f16"), **quants}.items():
    print(f"{name:>16}: {path.name} {path.stat().st_size / 2**20:8.1f} MB")

# %% [markdown]
# ## The adapters as GGUF
# For runtimes that load a base GGUF plus adapters (`llama-cli -m base.gguf --lora completion.gguf
# --lora chat.gguf`, Ollama `ADAPTER`): LoRA deltas add up, so both adapters on the base equal
# the merged model.

# %%
adapter_files = {}
for adapter in adapters:
    name = f"{adapter.parent.name.split('_', 1)[1]}-lora-f16"
    try:
        if not gguf(name).is_file():
            gguf_export.convert_lora_to_gguf(adapter, resolve_model(params["model"]["base"]), gguf(name))
        adapter_files[name] = {"file": gguf(name).name, "size_mb": round(gguf(name).stat().st_size / 2**20, 2)}
    except gguf_export.ExportError as err:
        adapter_files[name] = {"error": str(err).splitlines()[0]}
        print(f"adapter {adapter} could not be exported as GGUF: {err}")
print(adapter_files)

# %% [markdown]
# ## The quality gate
# On the held-out text of 02, through llama.cpp: f16 is the reference; each quant gets its
# perplexity, the mean KL divergence of its next-token distributions from f16's, and how often
# its most likely token is f16's. For scale, llama.cpp measures Llama-3-8B at q8_0 KLD 0.0014 /
# top-1 97.7% and q4_k_m KLD 0.031 / top-1 91.9%; a 135M model loses more to quantization.

# %%
tokenizer_dir = tokenizer_folder(params["model"]["base"], adapters)
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
heldout = [r["text"] for r in read_jsonl(split_dir / "eval.jsonl")]
chunks = quant_gate.heldout_token_chunks(heldout, tokenizer, quant_params["eval_chunk_tokens"], quant_params["eval_max_chunks"])
print(f"held-out text: {len(heldout)} chunks from 02 -> {len(chunks)} x {len(chunks[0])} tokens")
reference = OUT / ".gate" / "f16_logprobs.npy"
reference.parent.mkdir(exist_ok=True)

system = [{"role": "system", "content": params["persona"]["system_prompt"]}] if params["persona"]["system_prompt"] else []
stop_conversation = system + [{"role": "user", "content": quant_params["stop_check_prompt"]}]
sample_conversations = [system + [{"role": "user", "content": prompt}] for prompt in quant_params["sample_prompts"]]
started = time.time()
results = {"f16": gguf_checks.score_gguf(gguf("f16"), chunks, reference, write_reference=True)}
for name, path in tqdm(quants.items(), desc="score"):
    results[name] = gguf_checks.score_gguf(path, chunks, reference)
# f16: tokenizer, template, BOS and end-of-turn checks, and a reply that must stop by itself
results["f16"]["format"] = gguf_checks.check_gguf_format(gguf("f16"), tokenizer_dir, sample_conversations[0],
                                                  samples=heldout[:3])
results["f16"]["stop_reply"] = gguf_checks.stop_check_gguf(gguf("f16"), stop_conversation, quant_params["stop_check_max_tokens"],
                                                    seed=quant_params["seed"])
# every file answers the same prompts with the same seeds; each quant carries f16's metadata
for name, path in tqdm({"f16": gguf("f16"), **quants}.items(), desc="chat samples"):
    if name != "f16":
        results[name]["format"] = {"problems": gguf_checks.metadata_problems(gguf("f16"), path)}
    results[name]["chat"] = gguf_checks.chat_with_gguf(path, sample_conversations, seed=quant_params["seed"],
                                                       n_seeds=quant_params["sample_seeds"],
                                                max_tokens=quant_params["sample_max_new_tokens"])
    results[name]["size_mb"] = round(path.stat().st_size / 2**20, 2)
timings["gate_s"] = round(time.time() - started, 1)
problems = quant_gate.gate_problems(results, quant_params["max_kld_q8_0"], quant_params["max_ppl_ratio"],
                                    quant_params["max_degenerate_excess"])
write_json(OUT / "gate.json", quant_gate.gate_result(results, problems))

# %%
print(quant_gate.gate_table(results))
print("\nf16 checks:", results["f16"]["format"]["facts"])
stop = results["f16"]["stop_reply"]
print(f"\nstop check on f16, {quant_params['stop_check_prompt']!r}: {stop['finish_reason']} after "
      f"{stop['completion_tokens']} tokens (try {stop['attempts']})\n{stop['text']}")
print(f"\ndegenerate chat replies ({len(quant_params['sample_prompts'])} prompts x {quant_params['sample_seeds']} seeds):")
for name, r in results.items():
    print(f"  {name:<16}{len(quant_gate.degenerate_replies(r['chat']))} of {len(r['chat'])}")
print(f"\nfirst chat sample, {quant_params['sample_prompts'][0]!r}, seed {quant_params['seed']}:")
for name, r in results.items():
    print(f"--- {name}\n{r['chat'][0]['text']}")

# %%
if problems:
    print("GATE FAILED:\n- " + "\n- ".join(problems))
quant_gate.enforce_gate(problems)
print("gate passed")

# %% [markdown]
# ## Ollama Modelfile
# Ollama does not run the GGUF's Jinja template, so the training template is rewritten as an
# Ollama template (checked to render the same prompt), with its end-of-turn stop, the persona's
# system prompt and sampling parameters. `ollama create <name> -f Modelfile` in this folder.

# %%
modelfile_text = build_modelfile(
    gguf(quant_params["modelfile_quant"]).name, tokenizer, params["persona"]["system_prompt"],
    quant_params["modelfile_parameters"],
    comment=(f"{params['persona']['name']} ({persona}), made by stage 06_quantize from {params['model']['base']}.\n"
             f"ollama create {persona} -f Modelfile && ollama run {persona}\n"
             f"Other files here: {', '.join(p.name for p in quants.values())}; base + adapters: "
             f"{', '.join(v['file'] for v in adapter_files.values() if 'file' in v) or 'none'}."))
write_modelfile(OUT / "Modelfile", modelfile_text)
print(modelfile_text)

# %% [markdown]
# ## Clean up and metrics
# The f16 reference log-probabilities are deleted; the merged transformers folder too unless
# `quantize.keep_merged` (the f16 GGUF holds the same weights).

# %%
shutil.rmtree(reference.parent, ignore_errors=True)
if not quant_params["keep_merged"]:
    shutil.rmtree(merged, ignore_errors=True)
per_file = quant_gate.per_file_metrics(
    results, {name: (gguf("f16") if name == "f16" else quants[name]).name for name in results})
write_metrics(OUT, {
    "quants": {name: v for name, v in per_file.items() if name != "f16"},
    "f16": per_file["f16"],
    "eval_tokens": results["f16"]["n_tokens"], "eval_chunks": len(chunks),
    "checks": quant_gate.f16_checks(results["f16"]),
    "imatrix": imatrix_status, "adapters": adapter_files, "merge_backend": merge_backend,
    "modelfile_from": gguf(quant_params["modelfile_quant"]).name,
    "gate": {"passed": True, "max_kld_q8_0": quant_params["max_kld_q8_0"], "max_ppl_ratio": quant_params["max_ppl_ratio"]},
    "gguf_tokenizer": {k: meta.get(k) for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre")},
    "timings": timings,
})
print(f"metrics written to {OUT / 'metrics.json'}")
