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
import os, subprocess, sys
from pathlib import Path
ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "lib" / "params.py").is_file()), None)
if ROOT is None:  # on its own: clone once (a restarted runtime reuses the clone), then install
    ROOT = Path("persona-llm").resolve()
    if not (ROOT / "lib" / "params.py").is_file():
        subprocess.run(["git", "clone", "--depth=1", repo_url, str(ROOT)], check=True)
    subprocess.run([sys.executable, "-m", "lib.environment", "install"], cwd=ROOT, check=True)
os.chdir(ROOT); sys.path.insert(0, str(ROOT))

from lib.environment import describe_environment
from lib.params import load_params
from lib.runfiles import stage_dir, require_stage, write_metrics
P = load_params(persona, profile, overrides)
OUT = stage_dir(persona, "06_quantize")
describe_environment()

# %%
import shutil
import time

from tqdm.auto import tqdm
from transformers import AutoTokenizer

from lib import gguf_export as gx
from lib import quant_gate as gate
from lib.modelfile import build_modelfile, write_modelfile
from lib.models import merge_adapters_16bit, pick_backend, resolve_model, tokenizer_folder
from lib.runfiles import file_sha256, read_jsonl, write_json

Q = P["quantize"]
split_dir = require_stage(persona, "02_split")
adapters = [require_stage(persona, "03_completion") / "adapter", require_stage(persona, "05_chat") / "adapter"]
for adapter in adapters:
    if not (adapter / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"{adapter}: no adapter_model.safetensors; rerun its stage")
if Q["modelfile_quant"] not in [*Q["levels"], "f16"]:
    raise ValueError(f"params quantize.modelfile_quant={Q['modelfile_quant']!r} must be f16 or one of "
                     f"quantize.levels {Q['levels']}")
print(f"base {P['model']['base']}; adapters {[str(a) for a in adapters]}")
print(f"quantize params: {Q}")

# What the files of this stage are built from; when it changes, earlier files are deleted (when it
# does not, a killed run resumes and reuses every finished file).
inputs = {
    "base": P["model"]["base"], "llama_cpp_python": gx.llama_cpp_version(),
    "adapters": {a.parent.name: file_sha256(a / "adapter_model.safetensors") for a in adapters},
    "exporter": file_sha256(ROOT / "lib" / "gguf_export.py"),
    "quantize": {k: Q[k] for k in ("levels", "imatrix", "imatrix_chunks", "eval_chunk_tokens")},
}
if gx.reset_if_inputs_changed(OUT, inputs):
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
merge_backend = pick_backend(P["model"]["backend"])  # unsloth: its save_pretrained_merged; hf: peft's merge_and_unload
if not gguf("f16").is_file() and not (merged / "config.json").is_file():
    merge_adapters_16bit(P["model"]["base"], adapters, merged, P["model"])
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
    gx.convert_hf_to_gguf(merged, gguf("f16"), outtype="f16")
timings["convert_s"] = round(time.time() - started, 1)
meta = gx.gguf_metadata(gguf("f16"))
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
for level in tqdm(Q["levels"], desc="quantize"):
    if not gguf(level).is_file():
        gx.quantize_gguf(gguf("f16"), gguf(level), level)
    quants[level] = gguf(level)

imatrix_status = {"status": "off (quantize.imatrix=false)"}
if Q["imatrix"]:
    imatrix_file = OUT / f"{persona}.imatrix.gguf"
    try:
        if not imatrix_file.is_file():
            train_texts = [r["text"] for r in read_jsonl(split_dir / "train.jsonl")]
            gx.compute_imatrix(gguf("f16"), train_texts, imatrix_file, chunk_tokens=Q["eval_chunk_tokens"],
                               max_chunks=Q["imatrix_chunks"])
        imatrix = gx.read_imatrix(imatrix_file)
        for level in [lv for lv in Q["levels"] if lv != "q8_0"]:
            name = f"{level}-imatrix"
            if not gguf(name).is_file():
                gx.quantize_gguf(gguf("f16"), gguf(name), level, imatrix=imatrix)
            quants[name] = gguf(name)
        imatrix_status = {"status": "used", "entries": len(imatrix), "calibration": "02_split/train.jsonl",
                          "chunks": Q["imatrix_chunks"], "chunk_tokens": Q["eval_chunk_tokens"]}
    except (gx.ImatrixUnavailable, gx.ExportError) as err:  # optional: recorded, not fatal
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
            gx.convert_lora_to_gguf(adapter, resolve_model(P["model"]["base"]), gguf(name))
        adapter_files[name] = {"file": gguf(name).name, "size_mb": round(gguf(name).stat().st_size / 2**20, 2)}
    except gx.ExportError as err:
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
tokenizer_dir = tokenizer_folder(P["model"]["base"], adapters)
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
heldout = [r["text"] for r in read_jsonl(split_dir / "eval.jsonl")]
chunks = gate.heldout_token_chunks(heldout, tokenizer, Q["eval_chunk_tokens"], Q["eval_max_chunks"])
print(f"held-out text: {len(heldout)} chunks from 02 -> {len(chunks)} x {len(chunks[0])} tokens")
reference = OUT / ".gate" / "f16_logprobs.npy"
reference.parent.mkdir(exist_ok=True)

system = [{"role": "system", "content": P["persona"]["system_prompt"]}] if P["persona"]["system_prompt"] else []
stop_conversation = system + [{"role": "user", "content": Q["stop_check_prompt"]}]
sample_conversations = [system + [{"role": "user", "content": prompt}] for prompt in Q["sample_prompts"]]
started = time.time()
results = {"f16": gate.score_gguf(gguf("f16"), chunks, reference, write_reference=True)}
for name, path in tqdm(quants.items(), desc="score"):
    results[name] = gate.score_gguf(path, chunks, reference)
# f16: tokenizer, template, BOS and end-of-turn checks, and a reply that must stop by itself
results["f16"]["format"] = gate.check_gguf_format(gguf("f16"), tokenizer_dir, sample_conversations[0],
                                                  samples=heldout[:3])
results["f16"]["stop_reply"] = gate.stop_check_gguf(gguf("f16"), stop_conversation, Q["stop_check_max_tokens"],
                                                    seed=Q["seed"])
# every file answers the same prompts with the same seeds; each quant carries f16's metadata
for name, path in tqdm({"f16": gguf("f16"), **quants}.items(), desc="chat samples"):
    if name != "f16":
        results[name]["format"] = {"problems": gate.metadata_problems(gguf("f16"), path)}
    results[name]["chat"] = gate.chat_with_gguf(path, sample_conversations, seed=Q["seed"], n_seeds=Q["sample_seeds"],
                                                max_tokens=Q["sample_max_new_tokens"])
    results[name]["size_mb"] = round(path.stat().st_size / 2**20, 2)
timings["gate_s"] = round(time.time() - started, 1)
problems = gate.gate_problems(results, Q["max_kld_q8_0"], Q["max_ppl_ratio"], Q["max_degenerate_excess"])
write_json(OUT / "gate.json", {"passed": not problems, "problems": problems, "results": results})

# %%
print(f"{'file':<16}{'size MB':>9}{'ppl':>9}{'ppl/f16':>9}{'KLD':>9}{'KLD p99':>9}{'top-1':>8}")
for name, r in results.items():
    ratio = r["ppl"] / results["f16"]["ppl"] if r.get("ppl") and results["f16"].get("ppl") else float("nan")
    kld, p99, top1 = (r.get(k) for k in ("kld", "kld_p99", "top1"))
    print(f"{name:<16}{r['size_mb']:>9.1f}{(r['ppl'] or float('nan')):>9.2f}{ratio:>9.3f}"
          + (f"{kld:>9.4f}{p99:>9.3f}{top1:>8.1%}" if kld is not None else f"{'(ref)':>9}{'':>9}{'':>8}"))
print("\nf16 checks:", results["f16"]["format"]["facts"])
stop = results["f16"]["stop_reply"]
print(f"\nstop check on f16, {Q['stop_check_prompt']!r}: {stop['finish_reason']} after "
      f"{stop['completion_tokens']} tokens (try {stop['attempts']})\n{stop['text']}")
print(f"\ndegenerate chat replies ({len(Q['sample_prompts'])} prompts x {Q['sample_seeds']} seeds):")
for name, r in results.items():
    print(f"  {name:<16}{len(gate.degenerate_replies(r['chat']))} of {len(r['chat'])}")
print(f"\nfirst chat sample, {Q['sample_prompts'][0]!r}, seed {Q['seed']}:")
for name, r in results.items():
    print(f"--- {name}\n{r['chat'][0]['text']}")

# %%
if problems:
    print("GATE FAILED:\n- " + "\n- ".join(problems))
gate.enforce_gate(problems)
print("gate passed")

# %% [markdown]
# ## Ollama Modelfile
# Ollama does not run the GGUF's Jinja template, so the training template is rewritten as an
# Ollama template (checked to render the same prompt), with its end-of-turn stop, the persona's
# system prompt and sampling parameters. `ollama create <name> -f Modelfile` in this folder.

# %%
modelfile_text = build_modelfile(
    gguf(Q["modelfile_quant"]).name, tokenizer, P["persona"]["system_prompt"], Q["modelfile_parameters"],
    comment=(f"{P['persona']['name']} ({persona}), made by stage 06_quantize from {P['model']['base']}.\n"
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
if not Q["keep_merged"]:
    shutil.rmtree(merged, ignore_errors=True)
per_file = {name: {"file": (gguf("f16") if name == "f16" else quants[name]).name, "size_mb": r["size_mb"],
                   "ppl": r["ppl"], "ppl_ratio": r["ppl"] / results["f16"]["ppl"] if r["ppl"] else None,
                   "kld": r.get("kld"), "kld_p99": r.get("kld_p99"), "top1": r.get("top1"),
                   "chat_sample": r["chat"][0]["text"],
                   "degenerate_replies": len(gate.degenerate_replies(r["chat"])), "chat_replies": len(r["chat"])}
            for name, r in results.items()}
write_metrics(OUT, {
    "quants": {name: v for name, v in per_file.items() if name != "f16"},
    "f16": per_file["f16"],
    "eval_tokens": results["f16"]["n_tokens"], "eval_chunks": len(chunks),
    "checks": dict(results["f16"]["format"]["facts"], stop_check_finish=results["f16"]["stop_reply"]["finish_reason"],
                   stop_check_tokens=results["f16"]["stop_reply"]["completion_tokens"],
                   stop_check_attempts=results["f16"]["stop_reply"]["attempts"]),
    "imatrix": imatrix_status, "adapters": adapter_files, "merge_backend": merge_backend, "modelfile_from": gguf(Q["modelfile_quant"]).name,
    "gate": {"passed": True, "max_kld_q8_0": Q["max_kld_q8_0"], "max_ppl_ratio": Q["max_ppl_ratio"]},
    "gguf_tokenizer": {k: meta.get(k) for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre")},
    "timings": timings,
})
print(f"metrics written to {OUT / 'metrics.json'}")
