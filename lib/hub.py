"""Push a finished run to the Hugging Face hub: both LoRA adapters, the GGUF files that
passed 06's gate, the Ollama Modelfile, 07's report, and a model card made from the run's
own measurements. Optional, and never part of a stage: a failed push loses nothing.

    python -m lib.hub pg --dry-run                          # what would be uploaded, and the card
    HF_TOKEN=hf_... python -m lib.hub pg --set hub.repo_id=you/pg-llama3-8b
    make pg-push                                            # the same, with PROFILE/SET

The token comes from the environment only (HF_TOKEN); it is never written or printed.
Everything goes up in one commit. The hub skips large files it already has (they are
addressed by sha256), so rerunning a push that was killed sends only what is missing.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from lib.params import ParamsError, load_params, persona_params_dir
from lib.runfiles import format_number, read_json, require_stage

TOKEN_ENV = "HF_TOKEN"
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# the hub id of each embedded model (lib.models.EMBEDDED_MODELS), for the card's base_model
EMBEDDED_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


class HubError(RuntimeError):
    """A push cannot start or did not finish. The message says why and what to do."""


def hub_token(environ=os.environ) -> str:
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise HubError(f"set {TOKEN_ENV} in the environment to push (a write token from "
                       "https://huggingface.co/settings/tokens); it is never read from params")
    return token


def checked_repo_id(params: dict) -> str:
    repo_id = params["hub"]["repo_id"]
    source = persona_params_dir() / f"{params['run']['persona']}.yaml"
    if not repo_id:
        raise HubError(f"{source}: hub.repo_id is empty; set it there or with --set hub.repo_id=you/name")
    if not REPO_ID.fullmatch(repo_id) or len(repo_id) > 96:
        raise HubError(f"{source}: hub.repo_id must look like 'user/name', got {repo_id!r}")
    return repo_id


def base_model_id(base: str) -> str:
    return EMBEDDED_HUB_IDS.get(base.removeprefix("embedded:"), base) if base.startswith("embedded:") else base


def upload_plan(persona: str, base: str, gguf_levels: list[str]) -> list[tuple[Path, str]]:
    """(local file, path in the repo) for a finished run: 03's and 05's adapters, 06's GGUF
    files of the given levels (plus the one the Modelfile loads), the adapter GGUFs, the
    Modelfile, and 07's report when 07 has run. 06 must have finished (so its gate passed)
    from `base`, the params' model.base."""
    quantize = require_stage(persona, "06_quantize")
    q = read_json(quantize / "metrics.json")
    made_from = read_json(quantize / ".inputs.json").get("base") if (quantize / ".inputs.json").is_file() else None
    if made_from and made_from != base:
        raise HubError(f"{quantize} was made from {made_from}, but these params say model.base {base}; "
                       "push with the profile the run used (PROFILE=...)")
    if not q.get("gate", {}).get("passed"):
        raise HubError(f"{quantize / 'metrics.json'}: 06's quality gate did not pass; nothing to push")
    plan = []
    for stage, folder in (("03_completion", "completion-adapter"), ("05_chat", "chat-adapter")):
        adapter = require_stage(persona, stage) / "adapter"
        plan += [(f, f"{folder}/{f.name}") for f in sorted(adapter.iterdir()) if f.is_file()]
    files = {"f16": q["f16"]["file"], **{level: info["file"] for level, info in q["quants"].items()}}
    unknown = [level for level in gguf_levels if level not in files]
    if unknown:
        raise HubError(f"hub.gguf_levels: {', '.join(unknown)} not made by 06 (made: {', '.join(files)})")
    wanted = [files[level] for level in gguf_levels] + [q["modelfile_from"]]
    wanted += [info["file"] for info in q["adapters"].values()]
    plan += [(quantize / name, name) for name in dict.fromkeys(wanted)]
    plan.append((quantize / "Modelfile", "Modelfile"))
    report = quantize.parent / "07_evaluate" / "report.md"
    if (report.parent / "metrics.json").is_file():
        plan.append((report, "evaluation.md"))
    missing = [str(src) for src, _ in plan if not src.is_file()]
    if missing:
        raise HubError(f"files of the finished run are missing: {', '.join(missing)}; rerun the stage with FORCE=1")
    return plan


def model_card(params: dict, repo_id: str, quant_metrics: dict, eval_metrics: dict | None) -> str:
    """README.md for the repo: what the model is, how to run it, and the run's own numbers."""
    persona, name = params["run"]["persona"], params["persona"]["name"]
    base = base_model_id(params["model"]["base"])
    gguf = quant_metrics["modelfile_from"]
    lines = ["---", f"base_model: {base}", "library_name: peft",
             "tags: [persona, lora, gguf, llama.cpp, ollama, persona-llm]", "---", "",
             f"# {name}: a persona chat model ({persona})", "",
             f"{base} with two LoRA adapters trained by persona-llm on {name}'s own words: "
             f"`completion-adapter/` (continued pretraining on the texts, stage 03) and `chat-adapter/` "
             f"(chat tuning on answers taken from the texts, stage 05, trained on top of the base merged "
             f"with the completion adapter). The `.gguf` files are the merged model for llama.cpp and Ollama "
             f"(`*-lora-f16.gguf`: the adapters alone, for runtimes that load base + adapter).", "",
             "## Run it", "", "```sh",
             f"ollama run hf.co/{repo_id}:{gguf.removeprefix(persona + '-').removesuffix('.gguf').upper()}",
             f"llama-cli --hf-repo {repo_id} --hf-file {gguf} -cnv", "```", "",
             f"or download `{gguf}` and the `Modelfile` into one folder: `ollama create {persona} -f Modelfile`.",
             "", "## Quantization quality (06, on held-out text, against f16)", "",
             "| file | size MB | perplexity | KLD | top-1 agreement |", "|---|---:|---:|---:|---:|"]
    for info in [quant_metrics["f16"], *quant_metrics["quants"].values()]:
        lines.append(f"| {info['file']} | {info['size_mb']:.0f} | {format_number(info['ppl'], 2)} "
                     f"| {format_number(info['kld'], 4)} | {format_number(info['top1'], 3)} |")
    if eval_metrics:
        lines += ["", f"## Evaluation (07; baseline: the base model prompted to be {name})", "",
                  "| system | identity rate | style score | held-out perplexity |", "|---|---:|---:|---:|"]
        for system in eval_metrics["systems"]:
            lines.append(f"| {system} | " + " | ".join(format_number(eval_metrics[key][system], 2) for key in
                                                     ("identity_rate", "style_score", "heldout_ppl")) + " |")
        lines += ["", "Style score: 0 = the prompted base model, 1 = the person's own held-out text. "
                  "Definitions and samples: `evaluation.md`."]
    lines += ["", "Made with persona-llm: its rendered notebooks and `PROGRESS.md` entry hold the whole run."]
    return "\n".join(lines) + "\n"


def push(plan: list[tuple[Path, str]], card: str, repo_id: str, token: str, private: bool) -> str:
    """Create the repo if needed and upload everything in one commit; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=str(src)) for src, dest in plan]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations=operations, commit_message="persona-llm: adapters, GGUF files, card")
    except Exception as err:  # network, auth, quota: say which, without the token
        message = str(err).replace(token, "***")[:500]
        raise HubError(f"push to {repo_id} failed ({type(err).__name__}: {message}); the run's files are "
                       "unchanged, rerun the push to send what is missing") from None
    return info.commit_url


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("persona")
    parser.add_argument("--profile", default=os.environ.get("PROFILE", "auto"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--dry-run", action="store_true", help="list the files and print the card; upload nothing")
    parser.add_argument("--if-enabled", action="store_true", help="do nothing unless hub.push is true")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.persona, args.profile, args.overrides)
        if args.if_enabled and not params["hub"]["push"]:
            return 0
        repo_id = checked_repo_id(params)
        token = None if args.dry_run else hub_token()
        plan = upload_plan(args.persona, params["model"]["base"], params["hub"]["gguf_levels"])
        quantize = require_stage(args.persona, "06_quantize")
        evaluate = quantize.parent / "07_evaluate" / "metrics.json"
        card = model_card(params, repo_id, read_json(quantize / "metrics.json"),
                          read_json(evaluate) if evaluate.is_file() else None)
        total_mb = sum(src.stat().st_size for src, _ in plan) / 2**20
        for src, dest in plan:
            print(f"{dest:48s} {src.stat().st_size / 2**20:9.1f} MB  {src}")
        print(f"{len(plan) + 1} files, {total_mb:.1f} MB, to https://huggingface.co/{repo_id}")
        if args.dry_run:
            print("\n--- README.md ---\n" + card)
            return 0
        print(f"pushed: {push(plan, card, repo_id, token, params['hub']['private'])}")
        return 0
    except (HubError, ParamsError, FileNotFoundError) as err:
        print(f"hub: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
