"""A local llama.cpp chat server (llama-cpp-python) for generating data on this machine.

    with embedded_llama_server("smollm2-135m-instruct", log_path=OUT / "llama_server.log") as server:
        ...  # server.base_url is an OpenAI-compatible endpoint: server.base_url + "/chat/completions"

The server is `python -m llama_cpp.server` started through this module's `__main__`, which
first turns off llama.cpp's CPU weight repacking where the CPU reports AMX (see
avoid_amx_weight_repacking), then hands over to llama_cpp.server unchanged. It listens on
127.0.0.1 on a free port, is waited for until it answers, and is always stopped at the end,
also on an error; if the process that started it dies (even by SIGKILL) it stops itself.

    python -m lib.llama_server --model FILE.gguf --port 8080   # run one by hand
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from lib.runfiles import log_tail

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LlamaServer:
    """A running server: its process, OpenAI base URL (ends in /v1), model alias and log."""
    process: subprocess.Popen
    base_url: str
    model: str
    log_path: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_reports_amx() -> bool:
    """True when /proc/cpuinfo lists Intel AMX (amx_int8/amx_tile)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " amx_tile" in text or " amx_int8" in text


def avoid_amx_weight_repacking() -> bool:
    """On a CPU that reports AMX, make every llama_cpp.Llama load its weights without
    llama.cpp's "extra buffer types" (weight repacking). Returns True when it did.

    Why: a llama-cpp-python built with GGML_NATIVE on an AMX CPU routes Q4/Q8 matrix
    products through AMX tiles; in VMs that list the AMX flags but do not enable the tile
    state (this project's build machines), the first `ldtilecfg` kills the process with a
    general protection fault (a segfault on the first generated token). Without repacking the
    ordinary AVX kernels run: SmolLM2-135M Q4_1 then generates about 40 tokens/s on one
    thread of this 2-core machine while other jobs load it. Call it before creating a Llama."""
    if not cpu_reports_amx():
        return False
    import llama_cpp
    import llama_cpp.llama

    original = llama_cpp.llama_model_default_params
    if getattr(original, "_no_extra_bufts", False):
        return True

    def default_params_without_repacking():
        params = original()
        params.use_extra_bufts = False
        return params

    default_params_without_repacking._no_extra_bufts = True
    llama_cpp.llama_model_default_params = default_params_without_repacking
    llama_cpp.llama.llama_cpp.llama_model_default_params = default_params_without_repacking
    return True


def wait_until_ready(server: LlamaServer, timeout_s: float = 180.0) -> None:
    """Poll GET /v1/models until it answers 200; raise RuntimeError with the log's tail if
    the process exits or timeout_s passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"llama.cpp server exited with code {server.process.returncode} before it was ready; "
                f"last lines of {server.log_path}:\n{log_tail(server.log_path)}")
        try:
            if requests.get(f"{server.base_url}/models", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    stop_llama_server(server)
    raise RuntimeError(f"llama.cpp server not ready after {timeout_s:.0f} s; last lines of "
                       f"{server.log_path}:\n{log_tail(server.log_path)}")


def start_llama_server(gguf_path: Path, model_alias: str, log_path: Path, n_ctx: int = 2048,
                       n_threads: int | None = None, ready_timeout_s: float = 180.0) -> LlamaServer:
    """Start a llama.cpp server for one GGUF on 127.0.0.1 (a free port), wait until it
    answers, and return it. Its output goes to log_path. Stop it with stop_llama_server."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"{gguf_path}: GGUF model file not found")
    port = free_port()
    from lib.llama import default_threads

    threads = n_threads or default_threads()
    command = [sys.executable, "-m", "lib.llama_server", "--model", str(gguf_path),
               "--model_alias", model_alias, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with open(log_path, "ab") as log:
        log.write(f"# {' '.join(command)}\n".encode())  # the threads it was given, among the rest
        log.flush()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LlamaServer(process, f"http://127.0.0.1:{port}/v1", model_alias, log_path)
    try:
        wait_until_ready(server, ready_timeout_s)
    except BaseException:
        stop_llama_server(server)
        raise
    return server


def stop_llama_server(server: LlamaServer, grace_s: float = 10.0) -> None:
    """Stop the server: SIGTERM to its process group, SIGKILL after grace_s."""
    process = server.process
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


@contextmanager
def embedded_llama_server(name: str, log_path: Path, n_ctx: int = 2048, n_threads: int | None = None):
    """Serve the GGUF of an embedded model (lib.models.EMBEDDED_MODELS) for the length of a
    with-block; the model alias sent by clients is "embedded:<name>"."""
    from lib.models import embedded_gguf_path

    server = start_llama_server(embedded_gguf_path(name), f"embedded:{name}", log_path, n_ctx, n_threads)
    try:
        yield server
    finally:
        stop_llama_server(server)


def exit_when_parent_dies(poll_s: float = 1.0) -> None:
    """Start a daemon thread that ends this process once the process that started it is
    gone (the server must not outlive a killed notebook or test)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-when-parent-dies").start()


def main() -> None:
    """`python -m lib.llama_server ARGS`: llama_cpp.server with the AMX workaround applied."""
    exit_when_parent_dies()
    if avoid_amx_weight_repacking():
        print("lib.llama_server: CPU reports AMX; llama.cpp weight repacking turned off", flush=True)
    from llama_cpp.server.__main__ import main as llama_server_main

    sys.argv[0] = "llama_cpp.server"
    llama_server_main()


if __name__ == "__main__":
    main()
