"""Talk to a finished persona: a terminal chat with the GGUF that passed 06's quality gate,
or an OpenAI-compatible server for it.

    python -m lib.talk pg                       # make talk PERSONA=pg   (/reset, /exit)
    python -m lib.talk pg --serve --port 8080   # make serve PERSONA=pg PORT=8080

Both read what 06_quantize left in runs/<persona>/06_quantize/ (RUNS_DIR or --runs-dir move
runs/): the Modelfile names the GGUF (the level `quantize.modelfile_quant` chose), the
persona's system prompt, the stop strings and the sampling parameters. The prompt is built by
the chat template embedded in the GGUF (llama-cpp-python's "chat_template.default", the
template 06 checked against training's), never by a format llama.cpp guesses. A persona
without a finished 06 whose gate passed is refused with what to run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lib.runfiles import ROOT, read_json, stage_dir

CHAT_FORMAT = "chat_template.default"  # llama-cpp-python's name for the GGUF's own tokenizer.chat_template
DEFAULT_MAX_TOKENS = 512  # a reply's limit when the Modelfile sets no num_predict
# Ollama PARAMETER name -> llama-cpp-python create_chat_completion argument
SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
            "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty", "seed": "seed"}


class TalkError(RuntimeError):
    """The persona cannot be talked to (no finished 06, a failed gate, a missing file)."""


@dataclass
class PersonaModel:
    """What 06 made for one persona: the gated GGUF and how to prompt it."""
    persona: str
    gguf: Path
    level: str
    system_prompt: str
    stops: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)  # the Modelfile's other PARAMETERs (Ollama names)

    @property
    def sampling(self) -> dict:
        """The Modelfile's sampling parameters as create_chat_completion arguments."""
        return {SAMPLING[k]: v for k, v in self.parameters.items() if k in SAMPLING}

    @property
    def n_ctx(self) -> int:
        return int(self.parameters.get("num_ctx", 2048))

    @property
    def max_tokens(self) -> int | None:
        limit = int(self.parameters.get("num_predict", DEFAULT_MAX_TOKENS))
        return limit if limit > 0 else None  # Ollama: -1 = until the context is full


# ---------------------------------------------------------------- the finished 06


MODELFILE_COMMAND = re.compile(r'^(?P<cmd>[A-Za-z]+)[ \t]+(?:"""(?P<quoted>.*?)"""|(?P<plain>[^\n]*))',
                               re.MULTILINE | re.DOTALL)


def parse_value(text: str):
    """A PARAMETER value: a quoted string unquoted, a number as a number."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_modelfile(text: str) -> dict:
    """{"from", "system", "template", "stops", "parameters"} of an Ollama Modelfile as
    lib.modelfile writes it (triple-quoted TEMPLATE/SYSTEM, one PARAMETER per line)."""
    parsed = {"from": None, "system": "", "template": None, "stops": [], "parameters": {}}
    for match in MODELFILE_COMMAND.finditer(text):
        cmd = match["cmd"].upper()
        value = match["quoted"] if match["quoted"] is not None else match["plain"].strip()
        if cmd == "FROM":
            parsed["from"] = value
        elif cmd == "SYSTEM":
            parsed["system"] = value
        elif cmd == "TEMPLATE":
            parsed["template"] = value
        elif cmd == "PARAMETER":
            name, _, raw = value.partition(" ")
            if name == "stop":
                parsed["stops"].append(parse_value(raw))
            else:
                parsed["parameters"][name] = parse_value(raw)
    return parsed


def quantize_dir(persona: str, runs_dir: str | Path | None = None) -> Path:
    """runs/<persona>/06_quantize/ (runs_dir, else RUNS_DIR, else runs/)."""
    if runs_dir is not None:
        return Path(runs_dir) / persona / "06_quantize"
    return stage_dir(persona, "06_quantize", create=False)


def what_to_run(persona: str) -> str:
    """The make commands that produce a finished 06 for persona: `make pg-chat` for the
    Makefile's own PERSONAS, `make chat PERSONA=<name>` for any other params file."""
    try:
        listed = re.search(r"^PERSONAS\s*:?=(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    except OSError:
        listed = None
    if listed is None or persona in listed[1].split():
        return f"run `make {persona}-chat` (the whole chain) or its 06 stage, `make {persona}-quantize`, first"
    return (f"run `make chat PERSONA={persona}` (the whole chain) or its 06 stage, "
            f"`make quantize PERSONA={persona}`, first")


def finished_model(persona: str, runs_dir: str | Path | None = None) -> PersonaModel:
    """The GGUF 06 made and gated for persona, as its Modelfile names it. Raises TalkError
    naming the persona and what to run when 06 has not finished or its gate did not pass."""
    if not persona or not re.fullmatch(r"[A-Za-z0-9_.-]+", persona) or persona.startswith("."):
        raise TalkError(f"no persona given or not a persona name: {persona!r} (e.g. make talk PERSONA=pg)")
    folder = quantize_dir(persona, runs_dir)
    todo = what_to_run(persona)
    metrics_file, modelfile = folder / "metrics.json", folder / "Modelfile"
    if not metrics_file.is_file():
        raise TalkError(f"persona '{persona}' has no finished 06_quantize stage ({metrics_file} is missing): {todo}")
    try:
        metrics = read_json(metrics_file)
    except (OSError, ValueError) as err:
        raise TalkError(f"persona '{persona}': {metrics_file} cannot be read ({err}): {todo}") from None
    if not (metrics.get("gate") or {}).get("passed"):
        raise TalkError(f"persona '{persona}': 06_quantize's quality gate did not pass ({metrics_file}); "
                        f"nothing to talk to: {todo}")
    if not modelfile.is_file():
        raise TalkError(f"persona '{persona}' has no Modelfile in {folder}: {todo}")
    parsed = parse_modelfile(modelfile.read_text(encoding="utf-8"))
    if not parsed["from"]:
        raise TalkError(f"persona '{persona}': {modelfile} has no FROM line: {todo}")
    gguf = (folder / parsed["from"]).resolve()
    if gguf.suffix != ".gguf" or not gguf.is_file():
        raise TalkError(f"persona '{persona}': the GGUF its Modelfile names, {folder / parsed['from']}, "
                        f"is missing: {todo}")
    level = gguf.stem[len(persona) + 1:] if gguf.stem.startswith(f"{persona}-") else gguf.stem
    return PersonaModel(persona, gguf, level, parsed["system"], parsed["stops"], parsed["parameters"])


def describe(model: PersonaModel) -> str:
    """One line: which persona, GGUF, level and sampling."""
    sampling = " ".join(f"{k}={v}" for k, v in model.sampling.items())
    return (f"{model.persona}: {model.gguf} ({model.level}, the level its Modelfile names; "
            f"chat template from the GGUF{'; ' + sampling if sampling else ''})")


# ---------------------------------------------------------------- chat in the terminal


def base_messages(model: PersonaModel) -> list[dict]:
    return [{"role": "system", "content": model.system_prompt}] if model.system_prompt else []


def start_seed(model: PersonaModel) -> int:
    """The Modelfile's seed, else a fresh one (llama-cpp-python's default seed would give
    every session the same replies)."""
    return int(model.parameters["seed"]) if "seed" in model.parameters else random.randrange(2**31)


def load_model(model: PersonaModel, n_threads: int | None = None):
    """A quiet llama_cpp.Llama that prompts through the GGUF's own chat template."""
    from lib.llama import load_llama

    extra = {"n_threads": n_threads} if n_threads else {}
    llm = load_llama(str(model.gguf), n_ctx=model.n_ctx, chat_format=CHAT_FORMAT, seed=start_seed(model), **extra)
    if CHAT_FORMAT not in llm._chat_handlers:  # llama-cpp-python registers it from tokenizer.chat_template
        raise TalkError(f"{model.gguf}: has no tokenizer.chat_template; rerun `make {model.persona}-quantize`")
    return llm


def context_overflow(err: Exception) -> bool:
    return isinstance(err, ValueError) and "exceed context window" in str(err)


def stream_reply(llm, model: PersonaModel, messages: list[dict], out) -> str:
    """Write the reply to out as its tokens are made; return its text. When the conversation
    no longer fits the context, its oldest turns are dropped (from messages, in place)."""
    while True:
        try:
            chunks = llm.create_chat_completion(messages=messages, stream=True, stop=model.stops or None,
                                                max_tokens=model.max_tokens, **model.sampling)
            parts, started = [], False
            for chunk in chunks:
                text = chunk["choices"][0]["delta"].get("content") or ""
                if not started:  # no leading blank lines
                    text = text.lstrip()
                    started = bool(text)
                if text:
                    parts.append(text)
                    out.write(text)
                    out.flush()
            return "".join(parts)
        except ValueError as err:
            first = 1 if messages and messages[0]["role"] == "system" else 0
            if not context_overflow(err) or len(messages) - first <= 1:
                raise
            del messages[first:first + 2]  # the oldest exchange (a user turn and its reply)


def read_line(interactive: bool, stdin) -> str | None:
    """The next line the user typed, without its newline; None at end of input."""
    if interactive:
        try:
            return input("you> ")
        except EOFError:
            return None
    line = stdin.readline()
    return None if line == "" else line.rstrip("\r\n")


def chat(model: PersonaModel, stdin=None, stdout=None, stderr=None, n_threads: int | None = None) -> int:
    """The chat loop: a line in, the persona's reply streamed out; /reset clears the
    history, /exit or end of input leaves. On a terminal there are prompts; on a pipe only
    the replies go to stdout."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    interactive = stdin.isatty() and stdout.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    print(describe(model), file=stderr, flush=True)
    llm = load_model(model, n_threads)
    if interactive:
        print("type a message; /reset clears the conversation, /exit (or Ctrl-D) leaves", file=stderr, flush=True)
    messages = base_messages(model)
    while True:
        try:
            line = read_line(interactive, stdin)
        except KeyboardInterrupt:
            print(file=stderr)
            return 0
        if line is None:
            if interactive:
                print(file=stderr)
            return 0
        command = line.strip()
        if not command:
            continue
        if command in ("/exit", "/quit", "/bye"):
            return 0
        if command == "/reset":
            messages = base_messages(model)
            llm.reset()  # and llama.cpp's cache: the next reply is computed as in a fresh session
            print("(conversation cleared)", file=stderr, flush=True)
            continue
        if command.startswith("/") and " " not in command:
            print(f"unknown command {command}: /reset clears the conversation, /exit leaves", file=stderr, flush=True)
            continue
        messages.append({"role": "user", "content": line})
        if interactive:
            stdout.write(f"{model.persona}> ")
            stdout.flush()
        try:
            reply = stream_reply(llm, model, messages, stdout)
        except KeyboardInterrupt:  # stop this reply, keep the conversation
            reply = None
            print("\n(interrupted)", file=stderr, flush=True)
        except ValueError as err:
            messages.pop()
            print(f"\n(no reply: {err})", file=stderr, flush=True)
            continue
        stdout.write("\n")
        stdout.flush()
        if reply is None:
            messages.pop()
        else:
            messages.append({"role": "assistant", "content": reply})


# ---------------------------------------------------------------- an OpenAI-compatible server


def with_persona_defaults(handler, system_prompt: str, stops: list[str]):
    """A chat handler that gives a request without a system message the persona's system
    prompt (as Ollama does with a Modelfile's SYSTEM) and adds the Modelfile's stops."""
    def handle(*, messages, stop=None, **kwargs):
        if system_prompt and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system_prompt}, *messages]
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        stop += [s for s in stops if s not in stop]
        return handler(messages=messages, stop=stop or None, **kwargs)
    return handle


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def usage_example(model: PersonaModel, base_url: str) -> str:
    """How to call the server: curl and the openai client, with the Modelfile's sampling."""
    sampling = {k: model.parameters[k] for k in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")
                if k in model.parameters}
    body = {"model": model.persona, "messages": [{"role": "user", "content": "Who are you?"}], **sampling}
    openai_sampling = {k: v for k, v in sampling.items() if k in ("temperature", "top_p")}
    extra = {k: v for k, v in sampling.items() if k not in openai_sampling}
    args = "".join(f", {k}={v!r}" for k, v in openai_sampling.items())
    if extra:
        args += f", extra_body={extra!r}"
    return "\n".join([
        f"  curl {base_url}/chat/completions -H 'Content-Type: application/json' \\",
        f"    -d '{json.dumps(body)}'",
        "",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{base_url}", api_key="none")',
        f'  reply = client.chat.completions.create(model="{model.persona}", '
        f'messages=[{{"role": "user", "content": "Who are you?"}}]{args})',
        "  print(reply.choices[0].message.content)",
    ])


def serve(model: PersonaModel, host: str = "127.0.0.1", port: int = 8080, n_threads: int | None = None) -> int:
    """Serve the GGUF with llama-cpp-python's server (llama_cpp.server: its app, run by
    uvicorn as `python -m llama_cpp.server` does) until Ctrl-C or SIGTERM. Model alias: the
    persona's name; the prompt: the GGUF's chat template; a request without a system message
    gets the persona's system prompt."""
    from lib.llama import default_threads
    from lib.llama_server import avoid_amx_weight_repacking

    if not port_free(host, port):
        raise TalkError(f"port {port} on {host} is in use: pick another, e.g. make serve PERSONA={model.persona} "
                        f"PORT={port + 1}")
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.model import LlamaProxy
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    avoid_amx_weight_repacking()
    threads = n_threads or default_threads()
    settings = ModelSettings(model=str(model.gguf), model_alias=model.persona, chat_format=CHAT_FORMAT,
                             n_ctx=model.n_ctx, n_gpu_layers=-1, n_threads=threads, n_threads_batch=threads,
                             seed=start_seed(model), verbose=False)
    load = LlamaProxy.load_llama_from_model_settings

    def load_with_persona_defaults(model_settings):
        llm = load(model_settings)
        if CHAT_FORMAT not in llm._chat_handlers:
            raise TalkError(f"{model.gguf}: has no tokenizer.chat_template; rerun `make {model.persona}-quantize`")
        llm.chat_handler = with_persona_defaults(llm._chat_handlers[CHAT_FORMAT], model.system_prompt, model.stops)
        return llm

    LlamaProxy.load_llama_from_model_settings = staticmethod(load_with_persona_defaults)
    print(describe(model), file=sys.stderr, flush=True)
    app = create_app(server_settings=ServerSettings(host=host, port=port), model_settings=[settings])
    base_url = f"http://{host}:{port}/v1"
    print(f"serving {model.persona} at {base_url} (OpenAI-compatible, model \"{model.persona}\"; requests without a "
          f"system message get the persona's; Ctrl-C stops it). For example:\n{usage_example(model, base_url)}\n",
          flush=True)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: end with 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app, host=host, port=port)
    return 0


# ---------------------------------------------------------------- command line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("persona", nargs="?", default="", help="a persona whose 06_quantize has finished, e.g. pg")
    parser.add_argument("--serve", action="store_true", help="start an OpenAI-compatible server instead of a chat")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--runs-dir", default=None, help="where the runs are (default: RUNS_DIR, else runs/)")
    parser.add_argument("--seed", type=int, default=None, help="sample every reply with this seed (reproducible "
                        "replies; default: the Modelfile's seed, else a random one)")
    parser.add_argument("--max-tokens", type=int, default=None, help="a reply's length limit in tokens "
                        f"(default: the Modelfile's num_predict, else {DEFAULT_MAX_TOKENS})")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: every core, "
                        "one when the machine is busy)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before llama.cpp starts threads
    try:
        model = finished_model(args.persona, args.runs_dir)
        if args.seed is not None:
            model.parameters["seed"] = args.seed
        if args.max_tokens is not None:
            model.parameters["num_predict"] = args.max_tokens
        if args.serve:
            return serve(model, args.host, args.port, args.threads)
        return chat(model, n_threads=args.threads)
    except TalkError as err:
        print(f"{'serve' if args.serve else 'talk'}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
