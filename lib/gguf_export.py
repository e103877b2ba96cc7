"""GGUF export with llama.cpp's own tools: HF folder -> f16 GGUF, quantized GGUFs, a LoRA
adapter GGUF, and an importance matrix calibrated on the persona's text.

The converter must match the llama.cpp that runs the files, so it is taken from the sdist of
the installed llama-cpp-python, which vendors llama.cpp with `convert_hf_to_gguf.py`,
`convert_lora_to_gguf.py` and its own `gguf-py` (PyPI's `gguf` lags behind the converter).
On first use the sdist is fetched with pip into <cache>/llama.cpp/ and unpacked; the
converters run in place with PYTHONPATH pointing at that gguf-py. Their requirements file
is never installed: it pins old torch/transformers.

Quantization goes through `llama_cpp.llama_model_quantize`. llama-cpp-python has no way to
compute an importance matrix, so `llama-imatrix` is built from the same vendored sources with
cmake (about 3.5 minutes on 2 cores, once per cache); its result is passed to
llama_model_quantize as a C array. Where cmake or a compiler is missing, imatrix_tool()
raises ImatrixUnavailable with the reason, and the stage records it.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path

from lib.llama import default_threads
from lib.runfiles import cache_root, last_lines

SDIST_PACKAGE = "llama-cpp-python"


class ExportError(RuntimeError):
    """A conversion or quantization step failed; the message names the file and the cause."""


class ImatrixUnavailable(RuntimeError):
    """The llama-imatrix tool cannot be built here; the message says why."""


def llama_cpp_version() -> str:
    """Version of the installed llama-cpp-python (whose vendored llama.cpp runs our GGUFs)."""
    return package_version("llama_cpp_python")


def llama_cpp_source() -> Path:
    """The vendored llama.cpp of the installed llama-cpp-python's sdist, fetched with pip
    into <cache>/llama.cpp/ and unpacked on first use. Returns the llama.cpp folder."""
    ver = llama_cpp_version()
    root = cache_root() / "llama.cpp"
    dest = root / f"llama.cpp-{ver}"
    if (dest / "convert_hf_to_gguf.py").is_file() and (dest / ".complete").is_file():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    sdist = root / f"llama_cpp_python-{ver}.tar.gz"
    if not sdist.is_file():
        print(f"fetching the {SDIST_PACKAGE}=={ver} sdist (vendors llama.cpp's converters) with pip ...")
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"{SDIST_PACKAGE}=={ver}", "-d", str(root)],
            capture_output=True, text=True)
        if download.returncode != 0 or not sdist.is_file():
            raise ExportError(
                f"pip download {SDIST_PACKAGE}=={ver} into {root} failed (exit {download.returncode}):\n"
                + last_lines(download.stdout + download.stderr))
    prefix = f"llama_cpp_python-{ver}/vendor/llama.cpp/"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".unpack."))
    try:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            if not members:
                raise ExportError(f"{sdist}: has no {prefix} folder")
            archive.extractall(tmp, members=members, filter="data")
        unpacked = tmp / prefix
        (unpacked / ".complete").write_text(f"{sdist.name}\n")
        if dest.exists():
            shutil.rmtree(dest)
        unpacked.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def converter_env(source: Path) -> dict:
    """Environment for running a vendored converter: its own gguf-py first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source / "gguf-py"), env.get("PYTHONPATH", "")]))
    env.pop("NO_LOCAL_GGUF", None)
    return env


def run_converter(script: str, args: list, log_path: Path) -> None:
    """Run a vendored llama.cpp converter script; on failure raise ExportError with its log."""
    source = llama_cpp_source()
    command = [sys.executable, str(source / script), *map(str, args)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=converter_env(source))
    if result.returncode != 0:
        raise ExportError(f"{script} failed (exit {result.returncode}), log {log_path}:\n"
                          + last_lines(log_path.read_text(encoding="utf-8", errors="replace")))


def byte_level_tokenizer_fix(tokenizer_json: dict) -> dict | None:
    """A corrected copy of a byte-level BPE tokenizer.json that claims byte_fallback, or None
    when it needs no fix.

    transformers' GGUF loader writes such files (e.g. for the embedded SmolLM2): a ByteLevel
    pre-tokenizer with byte_fallback=True and a ByteFallback decoder. Encoding is unaffected
    (every byte has a token), but llama.cpp's converter then takes it for a SentencePiece
    vocabulary ("llama" tokenizer, "default" pre-tokenizer), and llama.cpp crashes or
    mis-tokenizes. Without byte_fallback it is converted as the gpt2/BPE vocabulary it is."""
    model = tokenizer_json.get("model") or {}
    pre = tokenizer_json.get("pre_tokenizer") or {}
    pre_types = {pre.get("type")} | {p.get("type") for p in pre.get("pretokenizers", []) or []}
    if model.get("type") != "BPE" or not model.get("byte_fallback") or "ByteLevel" not in pre_types:
        return None
    fixed = json.loads(json.dumps(tokenizer_json))
    fixed["model"]["byte_fallback"] = False
    fixed["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    return fixed


def conversion_input(model_dir: Path, work_dir: Path) -> Path:
    """The folder to hand to convert_hf_to_gguf.py: model_dir itself, or, when its
    tokenizer.json needs byte_level_tokenizer_fix, a folder of links to its files with a
    corrected tokenizer.json (the model folder itself is left as training saved it)."""
    model_dir = Path(model_dir)
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        return model_dir
    fixed = byte_level_tokenizer_fix(json.loads(tokenizer_file.read_text(encoding="utf-8")))
    if fixed is None:
        return model_dir
    staged = Path(work_dir) / f"{model_dir.name}.convert"
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    for item in model_dir.iterdir():
        if item.name != "tokenizer.json":
            (staged / item.name).symlink_to(item.resolve())
    (staged / "tokenizer.json").write_text(json.dumps(fixed, ensure_ascii=False), encoding="utf-8")
    return staged


def convert_hf_to_gguf(model_dir: Path, out_path: Path, outtype: str = "f16") -> Path:
    """Convert a transformers model folder to one GGUF file with llama.cpp's converter.
    Written under a temporary name and renamed, so a killed run leaves no partial file."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir}: not a transformers model folder (no config.json)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    source = conversion_input(model_dir, out_path.parent)
    partial = out_path.with_name(f".{out_path.name}.partial")
    try:
        run_converter("convert_hf_to_gguf.py", [source, "--outtype", outtype, "--outfile", partial],
                      out_path.with_suffix(".convert.log"))
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
        if source != model_dir:
            shutil.rmtree(source, ignore_errors=True)
    return out_path


def convert_lora_to_gguf(adapter_dir: Path, base_dir: Path, out_path: Path, outtype: str = "f16") -> Path:
    """Convert a peft LoRA adapter to a GGUF adapter (llama.cpp --lora, Ollama ADAPTER).
    base_dir: the transformers folder of the model the adapter was trained on (its config)."""
    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ExportError(f"{adapter_dir}: not a peft adapter folder (no adapter_config.json)")
    partial = out_path.with_name(f".{out_path.name}.partial")
    try:
        run_converter("convert_lora_to_gguf.py",
                      [adapter_dir, "--base", base_dir, "--outtype", outtype, "--outfile", partial],
                      out_path.with_suffix(".convert.log"))
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    return out_path


def quant_ftype(level: str) -> int:
    """llama_ftype of a quantization level name such as 'q4_k_m'."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{level.upper()}", None)
    if ftype is None:
        raise ExportError(f"unknown quantization level {level!r}")
    return ftype


def imatrix_array(imatrix: dict):
    """A NULL-terminated C array of llama_model_imatrix_data for llama_model_quantize, and
    the buffers it points into (keep them alive while quantizing)."""
    import llama_cpp
    import numpy as np

    entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
    keep = []
    for i, (name, values) in enumerate(sorted(imatrix.items())):
        data = np.ascontiguousarray(values, dtype=np.float32)
        keep += [name.encode(), data]
        entries[i].name = keep[-2]
        entries[i].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entries[i].size = data.size
    entries[len(imatrix)].name = None
    return entries, keep


@contextlib.contextmanager
def llama_log_to(log_path: Path):
    """Send llama.cpp's log to log_path (appended) for the duration: its quantizer prints a
    few lines per tensor, 3,000 of them for a 135M model, which would bury a rendered
    notebook. llama-cpp-python forwards the log to Python's sys.stderr, filtered by its
    "llama-cpp-python" logger, which any Llama(verbose=False) earlier in the process sets to
    errors only: the whole log is let through here, into the file. What C code writes to
    file descriptor 2 directly goes there too."""
    import logging

    llama_logger = logging.getLogger("llama-cpp-python")
    level = llama_logger.level
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        os.dup2(log.fileno(), 2)
        llama_logger.setLevel(logging.DEBUG)
        try:
            with contextlib.redirect_stderr(log):
                yield
        finally:
            llama_logger.setLevel(level)
            log.flush()
            os.dup2(saved, 2)
            os.close(saved)


def quantize_gguf(src: Path, dst: Path, level: str, imatrix: dict | None = None, nthread: int = 0) -> Path:
    """Quantize an f16 GGUF to `level` with llama_cpp.llama_model_quantize, optionally with an
    importance matrix ({tensor name: per-column weights}, see read_imatrix). llama.cpp's
    per-tensor log goes to <dst>.log next to the file; a failure quotes its end."""
    import llama_cpp

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ExportError(f"{src}: GGUF to quantize not found")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = quant_ftype(level)
    params.nthread = nthread
    keep = None
    if imatrix:
        params.imatrix, keep = imatrix_array(imatrix)
    partial = dst.with_name(f".{dst.name}.partial")
    log_path = dst.with_name(f"{dst.name}.log")
    log_path.unlink(missing_ok=True)
    try:
        with llama_log_to(log_path):
            status = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
        if status != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:] if log_path.is_file() else []
            raise ExportError(f"llama_model_quantize {src.name} -> {level} failed with status {status}; "
                              f"the end of {log_path}:\n" + "\n".join(tail))
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
    del keep
    return dst


def imatrix_tool() -> Path:
    """Path of the llama-imatrix binary, built once from the vendored llama.cpp with cmake
    into <cache>/llama.cpp/build-<version>/. Raises ImatrixUnavailable if it cannot be built."""
    build = cache_root() / "llama.cpp" / f"build-{llama_cpp_version()}"
    binary = build / "bin" / "llama-imatrix"
    if binary.is_file():
        return binary
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise ImatrixUnavailable(f"llama-imatrix needs {tool} to be built from the vendored llama.cpp, "
                                     f"and {tool} is not installed")
    source = llama_cpp_source()
    log_path = build.parent / f"{build.name}.log"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    steps = [
        ["cmake", "-S", str(source), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Release",
         "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
         "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
        ["cmake", "--build", str(build), "--target", "llama-imatrix", "-j", str(os.cpu_count() or 2)],
    ]
    print(f"building llama-imatrix from {source} (a few minutes, once; log {log_path}) ...")
    with open(log_path, "w", encoding="utf-8") as log:
        for step in steps:
            log.write(" ".join(step) + "\n")
            log.flush()
            if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                raise ImatrixUnavailable(f"building llama-imatrix failed, log {log_path}:\n"
                                         + last_lines(log_path.read_text(errors="replace"), 15))
    if not binary.is_file():
        raise ImatrixUnavailable(f"the llama-imatrix build finished without {binary}")
    return binary


def compute_imatrix(gguf_path: Path, texts: list[str], out_path: Path, chunk_tokens: int = 256,
                    max_chunks: int = 64, threads: int = 0) -> Path:
    """Importance matrix of a GGUF over calibration texts (the persona's training chunks),
    with llama-imatrix, written as llama.cpp's imatrix GGUF."""
    binary = imatrix_tool()
    out_path = Path(out_path)
    partial = out_path.with_name(f".{out_path.name}.partial")
    with tempfile.TemporaryDirectory(prefix="imatrix.") as tmp:
        calibration = Path(tmp) / "calibration.txt"
        calibration.write_text("\n\n".join(texts), encoding="utf-8")
        command = [str(binary), "-m", str(gguf_path), "-f", str(calibration), "-o", str(partial),
                   "-c", str(chunk_tokens), "--chunks", str(max_chunks), "-t", str(threads or default_threads()),
                   "--no-ppl", "--parse-special", "--process-output"]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise ExportError(f"llama-imatrix on {gguf_path} failed (exit {result.returncode}):\n"
                          + last_lines(result.stdout + result.stderr))
    os.replace(partial, out_path)
    return out_path


def read_imatrix(path: Path) -> dict:
    """{tensor name: per-column importance} from an imatrix GGUF: in_sum2 / counts per expert,
    exactly as llama-quantize loads it (a column block never seen gets weight 1)."""
    import numpy as np

    reader = gguf_reader(path)
    sums, counts = {}, {}
    for tensor in reader.tensors:
        name = tensor.name
        if name.endswith(".in_sum2"):
            sums[name[: -len(".in_sum2")]] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
        elif name.endswith(".counts"):
            counts[name[: -len(".counts")]] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    if not sums:
        raise ExportError(f"{path}: no imatrix entries (*.in_sum2 tensors)")
    imatrix = {}
    for name, total in sums.items():
        count = counts.get(name)
        if count is None:
            raise ExportError(f"{path}: {name} has in_sum2 but no counts")
        per_expert = total.reshape(len(count), -1)
        values = np.where(count[:, None] > 0, per_expert / np.maximum(count[:, None], 1), 1.0)
        imatrix[name] = values.reshape(-1).astype(np.float32)
    return imatrix


def gguf_reader(path: Path, mode: str = "r"):
    """gguf-py's GGUFReader for a file (the vendored gguf-py when it is unpacked)."""
    source = cache_root() / "llama.cpp" / f"llama.cpp-{llama_cpp_version()}" / "gguf-py"
    if source.is_dir() and str(source) not in sys.path:
        sys.path.insert(0, str(source))
    import gguf

    try:
        return gguf.GGUFReader(str(path), mode)
    except Exception as err:
        raise ExportError(f"{path}: not a readable GGUF file: {err}") from None


def gguf_metadata(path: Path) -> dict:
    """The scalar and string key/values of a GGUF (arrays summarised by their length)."""
    reader = gguf_reader(path)
    meta = {}
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        try:
            value = field.contents()
        except Exception:  # noqa: BLE001 - an unreadable field is reported, not fatal
            value = None
        if isinstance(value, list) and len(value) > 8:
            value = f"[{len(value)} items]"
        meta[field.name] = value
    return meta
