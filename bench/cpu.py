"""CPU benchmark (`make bench`): stage 03's training path against plain padded batches.

Same model (the embedded SmolLM2-135M-Instruct, LoRA from the cpu profile), same data (the
Paul Graham snapshot split as 02 splits it on the cpu profile), same steps and batch size
(the cpu profile's). Setups:
- project: lib.train's own Trainer as the cpu profile runs it: length-grouped padded
  batches, bf16 autocast where the CPU has AMX or AVX512-BF16 (model.dtype auto)
- project_fp32: the same batches in fp32 (separates the two effects)
- padding_free: lib.train's GPU batching (one packed row per batch) with model.dtype auto
- padded: plain transformers + peft, the Trainer's default random order, batches padded
  to their longest example, fp32 (what the Trainer does on a CPU by default)
- unsloth: lib.train with model.backend=unsloth (unsloth's CPU mode: FastLanguageModel,
  its get_peft_model, trl's SFTTrainer as unsloth patches it) on the project's batches
Each measurement runs in its own process (so its peak memory is its own), the setups
rotate, and medians and the median of per-round ratios are reported: this machine is noisy.
Also collects the per-stage wall times the runner recorded for the last `make pg-chat`
(runs/pg/timings.jsonl).

    python -m bench.cpu                    # 3 rounds x 4 setups, 12 steps each
    python -m bench.cpu --repeats 5 --steps 20
    python -m bench.cpu --setups project,unsloth   # the backends only

Writes bench/results/cpu-<date>.json and bench/results/README.md (a markdown table).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
SETUPS = {
    "project": "lib.train on the cpu profile: length-grouped padded batches, model.dtype=auto",
    "project_fp32": "the same length-grouped padded batches in fp32",
    "padding_free": "lib.train's GPU batching (examples end to end in one row, position_ids restart), model.dtype=auto",
    "padded": "plain transformers + peft: random order, batches padded to their longest example, fp32",
    "unsloth": "lib.train with model.backend=unsloth (its CPU mode): the project's length-grouped batches, model.dtype=auto",
}
BATCHING = {"project": "length_grouped", "project_fp32": "length_grouped", "padding_free": "padding_free",
            "unsloth": "length_grouped"}
RATIOS = {"ratio_project_vs_padded": ("project", "padded"), "ratio_project_fp32_vs_padded": ("project_fp32", "padded"),
          "ratio_project_vs_project_fp32": ("project", "project_fp32"),
          "ratio_padding_free_vs_padded": ("padding_free", "padded"), "ratio_unsloth_vs_project": ("unsloth", "project")}


def benchmark_examples(params: dict) -> list[dict]:
    """02's cpu-profile training chunks of the committed Paul Graham snapshot, tokenized."""
    from lib.models import end_of_text_token, load_tokenizer
    from lib.scrape import collect_essays
    from lib.split import split_documents
    from lib.train_data import completion_examples

    docs, _ = collect_essays(base_url=params["scrape"]["base_url"], index_page=params["scrape"]["index_page"],
                             cache_dir=ROOT / ".cache" / "http" / "bench", snapshot_dir=ROOT / params["scrape"]["snapshot_dir"],
                             offline=True, log=lambda *a: None)
    tokenizer = load_tokenizer(params["model"]["base"])
    split = split_documents(docs, tokenizer, max_tokens=params["split"]["max_tokens"], overlap_tokens=0,
                            heldout_rule=params["split"]["heldout_rule"], heldout_count=params["split"]["heldout_count"],
                            seed=params["split"]["seed"], end_token=end_of_text_token(tokenizer))
    examples, _ = completion_examples(tokenizer, split["train"], params["split"]["max_tokens"])
    return examples


def measure_one(setup: str, steps: int, batch_size: int) -> dict:
    """Train `steps` optimizer steps in this process; tokens/s counts real (non-pad) tokens."""
    import random

    from lib.backend import pick_backend

    backend = pick_backend("unsloth" if setup == "unsloth" else "hf")  # unsloth before transformers

    import torch
    from datasets import Dataset
    from transformers import Trainer

    from lib.environment import pick_dtype
    from lib.params import load_params
    from lib.train_model import add_lora, load_base_for_training
    from lib.train_data import language_model_collator, nonpad_share, training_order
    from lib.train import make_trainer, training_arguments

    params = load_params("pg", "cpu", ["model.dtype=float32"] if setup in ("project_fp32", "padded") else [])
    train = dict(params["train_completion"], max_steps=steps, batch_size=batch_size, grad_accum=1,
                 save_steps=10**6, logging_steps=10**6, warmup_steps=0)
    examples = benchmark_examples(params)
    random.Random(0).shuffle(examples)
    examples = examples[: steps * batch_size]
    torch.manual_seed(0)
    model, tokenizer = load_base_for_training(params["model"]["base"], params["model"], backend,
                                              params["split"]["max_tokens"])
    model = add_lora(model, train, backend, [])
    args = training_arguments(train, params["model"], ROOT / "bench" / "tmp" / setup, backend)
    args.save_strategy = "no"
    if setup in BATCHING:
        examples = training_order(examples, BATCHING[setup], batch_size, train["seed"])
        trainer = make_trainer(model, tokenizer, examples, args, backend, [], BATCHING[setup])
    else:
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                          data_collator=language_model_collator(tokenizer, padding_free=False))
    share = nonpad_share(trainer.data_collator, examples, batch_size)
    real = sum(len(e["input_ids"]) for e in examples)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"setup": setup, "backend": backend, "steps": steps, "batch_size": batch_size, "real_tokens": real,
            "positions": round(real / share), "nonpad_share": round(share, 4), "seconds": round(seconds, 2),
            "dtype": str(pick_dtype(params["model"]["dtype"])).replace("torch.", ""),
            "tok_s": round(real / seconds, 1), "final_loss": trainer.state.log_history[-1].get("train_loss"),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "torch_threads": torch.get_num_threads()}


def run_in_subprocess(setup: str, steps: int, batch_size: int) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.cpu", "--one", setup, "--steps", str(steps),
                             "--batch-size", str(batch_size)], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bench {setup} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def last_chain_timings(persona: str = "pg") -> dict:
    """Per-stage wall seconds of the newest run of each stage in runs/<persona>/timings.jsonl."""
    path = ROOT / "runs" / persona / "timings.jsonl"
    if not path.is_file():
        return {}
    latest = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["status"] == "ran":
            latest[row["stage"]] = row
    return latest


def setups_section(report: dict) -> list[str]:
    """One measured report as markdown: what ran, the per-setup table and the ratios."""
    lines = [f"{report['date']}, CPU: {report['machine']}. Command: `{report['command']}`.", "",
             f"SmolLM2-135M-Instruct + LoRA r={report['lora_r']}, Paul Graham chunks of at most "
             f"{report['max_tokens']} tokens, batch {report['batch_size']}, {report['steps']} steps per run, "
             f"{report['repeats']} runs per setup, rotating, each in its own process.", "",
             "| setup | dtype | median tokens/s | runs (tokens/s) | non-pad share | median peak RSS |",
             "|---|---|---|---|---|---|"]
    for setup, s in report["setups"].items():
        lines.append(f"| {setup}: {SETUPS[setup]} | {s['dtype']} | {s['median_tok_s']:.0f} | "
                     f"{', '.join(f'{x:.0f}' for x in s['tok_s'])} | {s['nonpad_share']:.3f} "
                     f"| {s['median_peak_rss_gb']:.2f} GB |")
    lines += ["", "Median of the per-round ratios (each round runs every setup once, in rotating order):", ""]
    lines += [f"- {name.replace('ratio_', '').replace('_vs_', ' / ')}: **{value:.2f}x**"
              + (" (target 1.3x)" if name == "ratio_project_vs_padded" else "")
              for name, value in report["ratios"].items()]
    return lines + [""]


def readme_text(results_dir: Path) -> str:
    """bench/results/README.md from the reports there: the newest run of every setup first
    (with the chain timings), then each later run of some setups (--setups), then the GPU
    results."""
    reports = [(p.name, json.loads(p.read_text())) for p in sorted(Path(results_dir).glob("cpu-*.json"))]
    full = [(name, r) for name, r in reports if "--setups" not in r["command"]]
    main_name, main_report = full[-1] if full else reports[-1]
    later = [(name, r) for name, r in reports if "--setups" in r["command"] and r["date"] >= main_report["date"]
             and name != main_name]
    lines = ["# Benchmarks", "", "## Stage 03 training: the project's path against plain padded batches", ""]
    lines += setups_section(main_report)
    report = main_report
    if report.get("chain_timings"):
        lines += ["## `make pg-chat` on the cpu profile, wall time per stage", "", "| stage | seconds | finished |",
                  "|---|---|---|"]
        lines += [f"| {stage} | {row['seconds']:.0f} | {row['finished']} |" for stage, row in report["chain_timings"].items()]
        lines += [f"| total | {sum(r['seconds'] for r in report['chain_timings'].values()):.0f} | |", ""]
    for name, later_report in later:
        lines += [f"## {', '.join(later_report['setups'])} ({name})", ""] + setups_section(later_report)
    shown = {main_name} | {name for name, _ in later}
    earlier = [name for name, _ in reports if name not in shown]
    if earlier:
        lines += ["Earlier CPU runs (other setups or batch sizes): " + ", ".join(earlier) + ".", ""]
    gpu = sorted(Path(results_dir).glob("gpu-*.json"))
    lines += ["## GPU", "", "`python -m bench.gpu` (on a CUDA machine) compares the project's training path, a bare "
              "unsloth loop and plain transformers + peft QLoRA on a random Llama-3-8B-shaped model; "
              "`bash bench/gpu_check.sh` runs it with the smoke chain through unsloth. "
              + (f"Results: {', '.join(p.name for p in gpu)}." if gpu else
                 "No GPU was available to this project's sessions yet, so no GPU results are committed."), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=0, help="default: the cpu profile's train_completion.batch_size")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and README.md")
    parser.add_argument("--timings-only", action="store_true",
                        help="refresh the chain timings of today's report from runs/pg/timings.jsonl, measure nothing")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, from {', '.join(SETUPS)}")
    parser.add_argument("--one", choices=SETUPS, help="measure one setup in this process (internal)")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.steps, args.batch_size)))
        return 0
    if args.timings_only:
        path = args.out / f"cpu-{datetime.date.today().isoformat()}.json"
        report = json.loads(path.read_text())
        report["chain_timings"] = last_chain_timings("pg")
        path.write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "README.md").write_text(readme_text(args.out))
        print(f"refreshed the chain timings in {path} and {args.out / 'README.md'}")
        return 0
    from lib.params import load_params

    params = load_params("pg", "cpu")
    args.batch_size = args.batch_size or params["train_completion"]["batch_size"]
    order = [setup.strip() for setup in args.setups.split(",") if setup.strip()]
    unknown = sorted(set(order) - set(SETUPS))
    if unknown or not order:
        parser.error(f"--setups: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(SETUPS)}")
    runs = {setup: [] for setup in order}
    for repeat in range(args.repeats):
        for setup in order[repeat % len(order):] + order[:repeat % len(order)]:
            runs[setup].append(run_in_subprocess(setup, args.steps, args.batch_size))
            print(json.dumps(runs[setup][-1]), flush=True)

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x["tok_s"] / y["tok_s"] for x, y in zip(runs[a], runs[b])), 3)

    report = {
        "date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} cores",
        "command": f"python -m bench.cpu --repeats {args.repeats} --steps {args.steps} --batch-size {args.batch_size}"
                   + (f" --setups {','.join(order)}" if order != list(SETUPS) else ""),
        "lora_r": params["train_completion"]["lora_r"], "max_tokens": params["split"]["max_tokens"],
        "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
        "setups": {setup: {"tok_s": [r["tok_s"] for r in rs], "median_tok_s": statistics.median(r["tok_s"] for r in rs),
                           "nonpad_share": rs[0]["nonpad_share"], "dtype": rs[0]["dtype"],
                           "median_peak_rss_gb": statistics.median(r["peak_rss_gb"] for r in rs), "runs": rs}
                   for setup, rs in runs.items()},
        "ratios": {name: ratio(a, b) for name, (a, b) in RATIOS.items() if a in runs and b in runs},
        "chain_timings": last_chain_timings("pg"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / (f"cpu-{report['date']}.json" if order == list(SETUPS) else f"cpu-{report['date']}-{'-'.join(order)}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "README.md").write_text(readme_text(args.out))
    print(f"wrote {out} and {args.out / 'README.md'}; ratios {report['ratios']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
