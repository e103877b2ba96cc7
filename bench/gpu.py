"""GPU training benchmark: the project's training path against a bare unsloth loop and
plain transformers + peft QLoRA, on the same randomly initialised Llama-3-shaped model
(no hub access needed: speed does not depend on weight values).

    python -m bench.gpu                       # 8b shape, batch 2 x 2048, every mode
    python -m bench.gpu --shape 1b --modes unsloth,hf_qlora
    python -m bench.gpu --shape tiny --modes hf_lora --steps 2 --warmup 1   # CPU check of the code

Modes:
  project     lib.train's own path (load_base_for_training + add_lora + its Trainer) on
              packed full-length rows
  unsloth     bare loop: FastLanguageModel QLoRA nf4, forward with labels, backward, AdamW
  hf_qlora    bare loop: transformers + bitsandbytes nf4 + peft (prepare_model_for_kbit_training)
  hf_lora     bare loop: transformers + peft LoRA in 16 bit (or fp32 on CPU)
  max_seq_t4  the longest sequence (batch 1) that trains with unsloth QLoRA in 15 GB

Writes bench/results/gpu-<date>-<device>.json: per mode tokens/s, peak memory, step time and
model FLOPs utilisation (4 x parameters + attention FLOPs per token over the card's dense
bf16 peak, 989 TFLOP/s for an H100 SXM). Reference figures: ../shared/measurements/.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {  # Llama-3 shapes, vocab 128256, 8 KV heads
    "8b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
               num_key_value_heads=8),
    "1b": dict(num_hidden_layers=16, hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
               num_key_value_heads=8),
    "tiny": dict(num_hidden_layers=2, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                 num_key_value_heads=2),
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "T4": 65.0}
LORA = dict(r=16, lora_alpha=16, lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def llama3_config(shape: str):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                       rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000,
                       eos_token_id=128001, **SHAPES[shape])


def save_random_model(shape: str, out_dir: Path, tokenizer: str) -> Path:
    """A randomly initialised Llama-3-shaped model in bf16, saved once with a tokenizer
    (a local folder, a hub id, or an embedded model, converted on first use)."""
    import torch
    from transformers import LlamaForCausalLM

    from lib.models import load_tokenizer

    if (out_dir / "config.json").is_file():
        return out_dir
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM(llama3_config(shape)).to(dtype)
    model.save_pretrained(out_dir)
    load_tokenizer(tokenizer).save_pretrained(out_dir)
    del model
    gc.collect()
    torch.cuda.empty_cache() if device == "cuda" else None
    return out_dir


def parameter_count(shape: str) -> int:
    c = llama3_config(shape)
    head = c.hidden_size // c.num_attention_heads
    attn = c.hidden_size * head * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)
    mlp = 3 * c.hidden_size * c.intermediate_size
    return c.num_hidden_layers * (attn + mlp) + 2 * c.vocab_size * c.hidden_size


def flops_per_token(shape: str, seq_len: int) -> float:
    """LoRA training: forward 2N + backward through activations 2N (frozen weights get no
    gradient), plus attention scores and values, forward and backward (~6 L s d)."""
    c = llama3_config(shape)
    return 4 * parameter_count(shape) + 6 * c.num_hidden_layers * seq_len * c.hidden_size


def device_peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def random_batch(batch: int, seq_len: int, vocab: int, device, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=generator).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def timed_loop(model, batch: dict, steps: int, warmup: int) -> dict:
    """Plain loop: forward with labels, backward, AdamW step. tokens/s over timed steps."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    cuda = torch.cuda.is_available()
    model.train()
    loss = None
    for step in range(warmup + steps):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    tokens = batch["input_ids"].numel()
    return {"tok_s": round(tokens / seconds), "step_s": round(seconds, 4), "loss": float(loss),
            "trainable": sum(p.numel() for p in params)}


def peak_memory_gb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def reset_memory():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_unsloth(model_dir: Path, args) -> dict:
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(str(model_dir), max_seq_length=args.seq, load_in_4bit=True,
                                                 dtype=None)
    model = FastLanguageModel.get_peft_model(model, use_gradient_checkpointing="unsloth", random_state=0, **LORA)
    return timed_loop(model, random_batch(args.batch, args.seq, 128256, model.device), args.steps, args.warmup)


def run_hf(model_dir: Path, args, quantized: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, device_map={"": 0} if cuda else None, **kwargs)
    if quantized:
        model = prepare_model_for_kbit_training(model)
    else:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    return timed_loop(model, random_batch(args.batch, args.seq, 128256, model.device), args.steps, args.warmup)


def run_project(model_dir: Path, args) -> dict:
    """lib.train's own path (its model loading, LoRA, trainer arguments and trainer, with
    the unsloth backend where installed) on rows of exactly seq tokens, timed after warmup."""
    import torch
    from transformers import TrainerCallback

    from lib.backend import pick_backend
    from lib.train_model import add_lora, load_base_for_training
    from lib.train import make_trainer, training_arguments
    from lib.train_data import pick_batching, training_order

    backend = pick_backend("auto")
    model_params = {"base": str(model_dir), "dtype": "auto", "load_in_4bit": torch.cuda.is_available(),
                    "chat_template": "own", "backend": backend}
    train = {"lora_r": LORA["r"], "lora_alpha": LORA["lora_alpha"], "lora_dropout": 0.0,
             "target_modules": LORA["target_modules"], "learning_rate": 1e-4, "max_steps": args.warmup + args.steps,
             "num_epochs": 1.0, "batch_size": args.batch, "grad_accum": 1, "warmup_steps": 0,
             "save_steps": 10**6, "logging_steps": 10**6, "seed": 0}
    model, tokenizer = load_base_for_training(str(model_dir), model_params, backend, args.seq)
    model = add_lora(model, train, backend, [])
    ids = random_batch(args.batch * (args.warmup + args.steps), args.seq, 128256, "cpu")["input_ids"].tolist()
    batching = pick_batching(backend)
    examples = training_order([{"input_ids": row, "labels": row} for row in ids], batching, args.batch, 0)

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                torch.cuda.synchronize() if torch.cuda.is_available() else None
                self.started = time.perf_counter()

    timer = Timer()
    out = Path("/tmp/bench-project")
    trainer = make_trainer(model, tokenizer, examples, training_arguments(train, model_params, out, backend),
                           backend, [timer], batching)
    trainer.args.save_strategy = "no"
    trainer.train()
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    seconds = (time.perf_counter() - timer.started) / args.steps
    return {"tok_s": round(args.batch * args.seq / seconds), "step_s": round(seconds, 4), "backend": backend,
            "batching": batching}


def run_max_seq(model_dir: Path, args) -> dict:
    """Longest sequence (batch 1) that trains with unsloth QLoRA within 15 GB (a T4)."""
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(15 * 2**30 / total)
    from unsloth import FastLanguageModel

    best, tried = 0, {}
    for seq in (2048, 4096, 8192, 12288, 16384, 24576, 32768):
        reset_memory()
        try:
            model, _ = FastLanguageModel.from_pretrained(str(model_dir), max_seq_length=seq, load_in_4bit=True)
            model = FastLanguageModel.get_peft_model(model, use_gradient_checkpointing="unsloth", **LORA)
            result = timed_loop(model, random_batch(1, seq, 128256, model.device), 1, 1)
            tried[seq] = {"ok": True, "peak_gb": peak_memory_gb(), "tok_s": result["tok_s"]}
            best = seq
        except torch.OutOfMemoryError:
            tried[seq] = {"ok": False}
            break
        finally:
            model = None
            reset_memory()
    return {"max_seq_len_15gb": best, "tried": tried}


MODES = {"project": run_project, "unsloth": run_unsloth, "hf_qlora": lambda d, a: run_hf(d, a, True),
         "hf_lora": lambda d, a: run_hf(d, a, False), "max_seq_t4": run_max_seq}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="8b", choices=SHAPES)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="project,unsloth,hf_qlora,max_seq_t4")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--tokenizer", default="embedded:smollm2-135m-instruct",
                        help="tokenizer to save with the random model: folder, hub id or embedded:<name>")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)

    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    model_dir = args.model_dir or Path(os.environ.get("BENCH_MODEL_DIR", "/tmp")) / f"random-llama3-{args.shape}"
    save_random_model(args.shape, model_dir, args.tokenizer)
    peak = device_peak_tflops()
    report = {"date": datetime.date.today().isoformat(), "device": device, "torch": torch.__version__,
              "transformers": transformers.__version__, "shape": args.shape, "seq_len": args.seq,
              "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
              "params": parameter_count(args.shape), "results": {}}
    for mode in args.modes.split(","):
        reset_memory()
        started = time.time()
        try:
            result = MODES[mode](model_dir, args)
            result["peak_gb"] = result.get("peak_gb", peak_memory_gb())
            if "tok_s" in result and peak:
                result["mfu"] = round(result["tok_s"] * flops_per_token(args.shape, args.seq) / (peak * 1e12), 3)
        except Exception as err:  # an OOM or a missing package is a result too
            result = {"ok": False, "error": f"{type(err).__name__}: {str(err)[:300]}"}
            traceback.print_exc()
        result["wall_s"] = round(time.time() - started, 1)
        report["results"][mode] = result
        print(json.dumps({mode: result}), flush=True)
    res = report["results"]
    if res.get("project", {}).get("tok_s") and res.get("unsloth", {}).get("tok_s"):
        report["project_vs_unsloth"] = round(res["project"]["tok_s"] / res["unsloth"]["tok_s"], 3)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"gpu-{report['date']}-{device.split()[-1].lower() if device != 'cpu' else 'cpu'}-{args.shape}.json"
    (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
