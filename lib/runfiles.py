"""Where a stage's files live, and writing them atomically.

Each stage writes only into runs/<persona>/<NN_stage>/ and ends by writing metrics.json
there. Writes go to a temporary name in the same folder and are renamed into place, so a
killed stage never leaves a half-written file under the final name. RUNS_DIR, RESULTS_DIR
and CACHE_DIR (environment) move the folders, e.g. for tests.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("01_scrape", "02_split", "03_completion", "04_qa", "05_chat", "06_quantize", "07_evaluate")


def text_digest(text: str, length: int | None = None) -> str:
    """Hex sha256 of a text's UTF-8 bytes, cut to its first `length` hex digits when given."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def json_digest(obj, length: int | None = None) -> str:
    """text_digest of obj as JSON with sorted keys (what a cache key or a fingerprint is made of);
    values JSON cannot hold are written with str()."""
    return text_digest(json.dumps(obj, sort_keys=True, default=str), length)


def derived_seed(seed: int, key) -> int:
    """A sampling seed in [0, 2**31) made from a run's seed and what is sampled (a prompt id, a
    request's index: anything JSON holds). Each prompt gets its own random stream: llama.cpp
    and an OpenAI-compatible server restart their sampler from the request's seed, so one
    seed shared by every request draws the same random numbers for each of them, and their
    answers fail together (07's identity probes, measured in PROGRESS 2026-12-01 03:05)."""
    return int(json_digest([seed, key], 8), 16) & 0x7FFFFFFF


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (the one file digest of the project)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def display_path(path) -> str:
    """path relative to the current folder when it is inside it, else as given (for messages)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return relative if not relative.startswith("..") else str(path)


def runs_root() -> Path:
    return Path(os.environ.get("RUNS_DIR", ROOT / "runs"))


def results_root() -> Path:
    return Path(os.environ.get("RESULTS_DIR", ROOT / "results"))


def cache_root() -> Path:
    """Downloaded and converted models, HTTP caches: shared by runs, safe to delete."""
    return Path(os.environ.get("CACHE_DIR", ROOT / ".cache"))


def stage_dir(persona: str, stage: str, create: bool = True) -> Path:
    """runs/<persona>/<stage>/, the only folder a stage writes to."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
    path = runs_root() / persona / stage
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write data to path via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(path: Path):
    """Yield a temporary folder beside `path` to fill; on success it replaces `path`,
    on any error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, records) -> Path:
    """Write records (dicts), one JSON object per line, atomically."""
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a bad line raises ValueError naming the file and line number."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON: {err}") from None
    return records


def reset_if_inputs_changed(out_dir: Path, inputs: dict, keep: tuple = ()) -> bool:
    """Start over when what a stage builds from changed: if out_dir/.inputs.json differs from
    `inputs`, delete everything in out_dir except `keep` and record the new inputs. Returns
    True when it reset. With unchanged inputs, finished files are reused (resume)."""
    out_dir = Path(out_dir)
    marker = out_dir / ".inputs.json"
    text = json.dumps(inputs, sort_keys=True, indent=1, default=str)
    if marker.is_file() and marker.read_text(encoding="utf-8") == text:
        return False
    for item in out_dir.iterdir():
        if item.name in keep or item == marker:
            continue
        shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    marker.write_text(text, encoding="utf-8")
    return True


def write_metrics(out_dir: Path, metrics: dict) -> Path:
    """The last write of a stage: metrics.json marks the stage as finished."""
    return write_json(Path(out_dir) / "metrics.json", metrics)


def require_stage(persona: str, stage: str) -> Path:
    """The folder of an earlier stage, which must have finished (metrics.json present)."""
    path = stage_dir(persona, stage, create=False)
    if not (path / "metrics.json").is_file():
        raise FileNotFoundError(
            f"{path}: stage {stage} has not finished for persona '{persona}'; run it first "
            f"(make {persona}-{stage.split('_', 1)[1]})")
    return path


# ---------------------------------------------------------------- messages


def last_lines(text: str, lines: int = 25) -> str:
    """The last `lines` lines of a text (a tool's output, for an error message)."""
    return "\n".join(text.strip().splitlines()[-lines:])


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ('' if it cannot be read)."""
    try:
        return last_lines(Path(path).read_text(errors="replace"), lines)
    except OSError:
        return ""


def format_number(value, digits: int = 3, *, missing: str = "–", trim_zeros: bool = False) -> str:
    """A number for a table or log: `digits` decimals; None as `missing`. With trim_zeros,
    trailing zeros go, values of 1000 or more get `digits` significant digits, and
    non-floats are written as they are (the original log's style)."""
    if value is None:
        return missing
    if trim_zeros:
        if not isinstance(value, float):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return f"{value:.{digits}f}"
