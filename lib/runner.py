"""Run the chain's notebooks headless with papermill.

    python -m lib.runner pg all                 # 01 ... 07
    python -m lib.runner pg 02_split --force    # one stage, even if unchanged
    python -m lib.runner trump scrape split --profile smoke --set split.max_tokens=256
    python -m lib.runner pg qa --set "persona.system_prompt=You are PG"   # one override per --set

Params are loaded and validated before anything is written. The runner executes each
notebooks/NN_stage.ipynb, while its .py twin (jupytext) is what people edit: when the two
hold different cells, it refuses to run, before any stage, and says to run `make notebooks`.
A stage is skipped when its notebook, the lib/ modules it imports, params sections and
upstream runs are unchanged since it last finished (runs/<persona>/<stage>/.fingerprint);
--force (FORCE=1) reruns it. The executed notebook is rendered to
results/<persona>/<stage>.ipynb with secrets redacted; a failed stage keeps its rendered
notebook (the error visible) and has no metrics.json.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import re
import shlex
import sys
import time
from pathlib import Path

from lib.params import ParamsError, load_params
from lib.runfiles import ROOT, STAGES, atomic_write_text, json_digest, results_root, runs_root, stage_dir
from lib.runfiles import file_sha256 as file_digest

NOTEBOOKS = ROOT / "notebooks"

# What each stage reads: upstream stages, and the params sections it depends on.
UPSTREAM = {
    "01_scrape": (),
    "02_split": ("01_scrape",),
    "03_completion": ("02_split",),
    "04_qa": ("01_scrape", "02_split"),
    "05_chat": ("03_completion", "04_qa"),
    "06_quantize": ("02_split", "03_completion", "05_chat"),
    "07_evaluate": ("02_split", "03_completion", "04_qa", "05_chat", "06_quantize"),
}
SECTIONS = {
    "01_scrape": ("persona", "scrape"),
    "02_split": ("persona", "split", "model"),
    "03_completion": ("model", "train_completion"),
    "04_qa": ("persona", "qa"),
    "05_chat": ("persona", "model", "train_chat"),
    "06_quantize": ("persona", "model", "quantize"),
    "07_evaluate": ("persona", "model", "evaluate"),
}
ALIASES = {stage.split("_", 1)[1]: stage for stage in STAGES}
SECRET_NAME = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD)", re.I)

log = logging.getLogger("lib.runner")


def resolve_stages(names: list[str]) -> list[str]:
    """'all' or stage names ('02_split' or 'split') -> stages in chain order."""
    if not names or "all" in names:
        return list(STAGES)
    stages = []
    for name in names:
        stage = name if name in STAGES else ALIASES.get(name)
        if stage is None:
            raise SystemExit(f"unknown stage '{name}' (known: all, {', '.join(STAGES)})")
        stages.append(stage)
    return sorted(set(stages), key=STAGES.index)


def notebook_cells(notebook) -> list[tuple]:
    """(cell type, source, tags) of each cell: what a .py twin and its .ipynb must share
    (papermill finds the parameters cell by its tag)."""
    return [(cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", []))) for cell in notebook.cells]


def twin_difference(script: Path) -> str | None:
    """Why notebooks/NN_stage.py and its .ipynb twin are out of sync (one is missing, or
    their cells differ), or None when the .ipynb holds the .py's cells."""
    import jupytext
    import nbformat

    script, ipynb = Path(script), Path(script).with_suffix(".ipynb")
    for path in (script, ipynb):
        if not path.is_file():
            return f"{path} is missing"
    if notebook_cells(jupytext.read(script)) != notebook_cells(nbformat.read(ipynb, as_version=4)):
        return f"{script} and {ipynb.name} hold different cells (the .ipynb is what runs, the .py what is edited)"
    return None


def check_notebook(stage: str) -> None:
    """Raise RuntimeError, saying to run `make notebooks`, when a stage's .ipynb is not in
    sync with its .py twin."""
    problem = twin_difference(NOTEBOOKS / f"{stage}.py")
    if problem:
        raise RuntimeError(f"{problem}; run `make notebooks` to regenerate every .ipynb from its .py "
                           "(jupytext --to ipynb), then run again")


def lib_imports(path: Path) -> set[str]:
    """The lib modules a Python file (a notebook's .py or a lib module) imports, anywhere in it
    (inside functions too), or runs as `python -m lib.<name>` (a string "lib.<name>" in its code)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"lib\.\w+", node.value):
            names.add(node.value[len("lib."):])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("lib."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "lib":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("lib."):
                names.add(node.module.split(".")[1])
    packages = sorted(name for name in names if (ROOT / "lib" / name).is_dir())
    if packages:  # the digest follows lib/<name>.py files only: a module in a subpackage would drop out of it
        raise ValueError(f"{path}: imports lib subpackage(s) {packages}; stage digests only follow lib/<name>.py "
                         "modules (lib.runner.lib_imports)")
    return {name for name in names if (ROOT / "lib" / f"{name}.py").is_file()}


def stage_modules(stage: str) -> set[str]:
    """The lib modules a stage's notebook uses, directly or through other lib modules."""
    todo, modules = list(lib_imports(NOTEBOOKS / f"{stage}.py")), set()
    while todo:
        name = todo.pop()
        if name not in modules:
            modules.add(name)
            todo.extend(lib_imports(ROOT / "lib" / f"{name}.py"))
    return modules


def stage_code_digest(stage: str) -> str:
    """One digest over the lib modules a stage's notebook uses (stage_modules): a change to
    07's scoring code does not retrain 03."""
    modules = stage_modules(stage)
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + file_digest(ROOT / "lib" / f"{name}.py").encode())
    return digest.hexdigest()


def folder_listing(folder: Path) -> list:
    """[relative path, bytes, mtime in ns] of every file under a folder persona's folder (what
    01 reads: a file added, changed or removed changes 01's fingerprint)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [[p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(folder.rglob("*")) if p.is_file()]


def stage_fingerprint(persona: str, stage: str, params: dict) -> str:
    """Digest of what a stage's result depends on: its notebook, the lib code it uses, its params sections,
    OFFLINE, the fingerprints of the upstream runs it reads, and for 01 of a folder persona
    the folder's files (folder_listing)."""
    upstream = {}
    for up in UPSTREAM[stage]:
        marker = stage_dir(persona, up, create=False) / ".fingerprint"
        upstream[up] = marker.read_text() if marker.is_file() else None
    material = {
        "notebook": file_digest(NOTEBOOKS / f"{stage}.ipynb"),
        "code": stage_code_digest(stage),
        "params": {section: params[section] for section in SECTIONS[stage]},
        "profile": params["run"]["profile"],
        "offline": os.environ.get("OFFLINE", ""),
        "upstream": upstream,
    }
    if stage == "01_scrape" and params["persona"]["kind"] == "folder":
        from lib.params import source_folder

        material["folder"] = folder_listing(source_folder(params))
    return json_digest(material)


def is_up_to_date(out_dir: Path, fingerprint: str) -> bool:
    marker = out_dir / ".fingerprint"
    if not (out_dir / "metrics.json").is_file() or not marker.is_file():
        return False
    return marker.read_text().split("\n", 1)[0] == fingerprint


def secret_values() -> list[str]:
    """Values of environment variables that hold secrets (HF_TOKEN, *_API_KEY, ...)."""
    return sorted({value for name, value in os.environ.items()
                   if SECRET_NAME.search(name) and len(value) >= 8}, key=len, reverse=True)


def redact_secrets(path: Path, secrets: list[str]) -> int:
    """Replace every secret value in a file by '***'; returns how many were found."""
    if not secrets or not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8")
    found = 0
    for secret in secrets:
        found += text.count(secret)
        text = text.replace(secret, "***")
    if found:
        atomic_write_text(path, text)
    return found


def execute_notebook(notebook: Path, rendered: Path, parameters: dict) -> None:
    """Run a notebook with papermill, writing the executed copy to `rendered` as it goes;
    secrets are redacted from the rendered copy whether the run succeeds or fails."""
    import papermill

    rendered.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TQDM_MININTERVAL", "15")  # keep progress bars from flooding the log
    # idle OpenMP threads sleep instead of spinning: on 2 shared cores, spinning torch and
    # llama.cpp threads slowed generation 10-20x (measured in 07's development)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        papermill.execute_notebook(
            str(notebook), str(rendered), parameters=parameters, kernel_name="python3",
            cwd=str(ROOT), log_output=True, progress_bar=False)
    finally:
        leaked = redact_secrets(rendered, secret_values())
        if leaked:
            log.warning("redacted %d secret value(s) from %s", leaked, rendered)


def run_stage(persona: str, stage: str, params: dict, overrides: list[str], force: bool) -> str:
    """Run one stage unless it is up to date; returns 'skipped' or 'ran'. Raises on failure,
    and before anything else when the stage's .ipynb is out of sync with its .py
    (check_notebook). overrides: one per item; the notebook gets them as one string
    (shlex.join, which lib.params.split_overrides splits back)."""
    check_notebook(stage)
    out_dir = stage_dir(persona, stage, create=False)
    fingerprint = stage_fingerprint(persona, stage, params)
    if not force and is_up_to_date(out_dir, fingerprint):
        log.info("%s/%s: unchanged since its last run, skipped (FORCE=1 reruns it)", persona, stage)
        return "skipped"
    out_dir.mkdir(parents=True, exist_ok=True)
    for marker in (out_dir / "metrics.json", out_dir / ".fingerprint"):
        marker.unlink(missing_ok=True)
    rendered = results_root() / persona / f"{stage}.ipynb"
    log.info("%s/%s: running notebooks/%s.ipynb -> %s", persona, stage, stage, rendered)
    started = time.time()
    execute_notebook(NOTEBOOKS / f"{stage}.ipynb", rendered, {
        "persona": persona, "profile": params["run"]["profile"], "overrides": shlex.join(overrides)})
    if not (out_dir / "metrics.json").is_file():
        raise RuntimeError(f"{rendered}: the notebook finished without writing {out_dir / 'metrics.json'}")
    atomic_write_text(out_dir / ".fingerprint", f"{fingerprint}\nfinished {time.time():.3f}\n")
    log.info("%s/%s: done in %.1f s", persona, stage, time.time() - started)
    return "ran"


def record_timings(persona: str, profile: str, timings: dict) -> None:
    """Append each stage's wall time to runs/<persona>/timings.jsonl (read by bench/)."""
    path = runs_root() / persona / "timings.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for stage, (status, seconds) in timings.items():
            handle.write(json.dumps({"stage": stage, "status": status, "seconds": round(seconds, 1),
                                     "profile": profile, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("persona", help="params/<persona>.yaml")
    parser.add_argument("stages", nargs="*", default=["all"], help="all, or stage names")
    parser.add_argument("--profile", default=os.environ.get("PROFILE") or "auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value, one override each, spaces and all (repeatable; make's SET "
                             "holds several: SET=\"a.b=1 persona.system_prompt='You are ...'\")")
    parser.add_argument("--force", action="store_true", default=os.environ.get("FORCE", "") not in ("", "0"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    overrides = list(args.overrides)
    stages = resolve_stages(args.stages)
    try:
        params = load_params(args.persona, args.profile, overrides)
    except ParamsError as err:
        print(f"params error: {err}", file=sys.stderr)
        return 2
    for stage in stages:  # a stale notebook stops the run before any stage runs
        try:
            check_notebook(stage)
        except RuntimeError as err:
            print(f"notebook error: {err}", file=sys.stderr)
            return 2
    log.info("persona %s, profile %s, stages %s", args.persona, params["run"]["profile"], " ".join(stages))
    timings = {}
    for stage in stages:
        started = time.time()
        try:
            timings[stage] = (run_stage(args.persona, stage, params, overrides, args.force), time.time() - started)
        except Exception as err:  # papermill's error names the cell; the rendered notebook shows it
            rendered = results_root() / args.persona / f"{stage}.ipynb"
            first_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            print(f"\nstage {stage} FAILED for persona {args.persona}: {first_line}\n"
                  f"the rendered notebook shows the error: {rendered}", file=sys.stderr)
            return 1
    record_timings(args.persona, params["run"]["profile"], timings)
    for stage, (status, seconds) in timings.items():
        print(f"{stage:<14} {status:<8} {seconds:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
