"""lib.talk without a finished 06: `make talk` / `make serve` refuse clearly; the Modelfile is
read back as 06 writes it. (Talking to and serving a real finished run: tests/test_chain.py.)"""
import json
import os
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lib.talk import TalkError, finished_model, parse_modelfile, with_persona_defaults

MODELFILE = '''# Paul Graham (pg), made by stage 06_quantize.
FROM ./pg-q4_k_m.gguf

TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}"""

SYSTEM """You are Paul Graham.
PARAMETER stop "not a parameter"
Answer as he would."""

PARAMETER stop "<|im_end|>"
PARAMETER stop "<|im_start|>"
PARAMETER temperature 0.7
PARAMETER top_p 0.9
PARAMETER repeat_penalty 1.1
PARAMETER num_ctx 2048
'''


def talk_cli(runs, *args, persona="pg"):
    env = {**os.environ, "RUNS_DIR": str(runs)}
    return subprocess.run([PYTHON, "-m", "lib.talk", persona, *args], cwd=ROOT, env=env, input="Who are you?\n/exit\n",
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", [[], ["--serve", "--port", "0"]], ids=["talk", "serve"])
def test_refuses_a_persona_without_a_finished_06(tmp_path, mode):
    result = talk_cli(tmp_path / "runs", *mode)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "persona 'pg' has no finished 06_quantize stage" in result.stderr
    assert "make pg-chat" in result.stderr and "make pg-quantize" in result.stderr


@pytest.mark.parametrize("mode", [[], ["--serve"]], ids=["talk", "serve"])
def test_refuses_a_failed_gate_and_a_missing_gguf(tmp_path, mode):
    folder = tmp_path / "runs" / "pg" / "06_quantize"
    folder.mkdir(parents=True)
    (folder / "Modelfile").write_text(MODELFILE)
    (folder / "metrics.json").write_text(json.dumps({"gate": {"passed": False}}))
    result = talk_cli(tmp_path / "runs", *mode)
    assert result.returncode == 2 and "quality gate did not pass" in result.stderr and "make pg-chat" in result.stderr
    (folder / "metrics.json").write_text(json.dumps({"gate": {"passed": True}}))
    result = talk_cli(tmp_path / "runs", *mode)
    assert result.returncode == 2 and "pg-q4_k_m.gguf" in result.stderr and "is missing" in result.stderr
    assert "make pg-chat" in result.stderr


def test_make_targets_refuse_without_a_finished_06(tmp_path):
    env = {**os.environ, "RUNS_DIR": str(tmp_path / "runs")}
    for target in ("talk", "serve"):  # -o: never reinstall .venv from a test
        result = subprocess.run(["make", "-s", "-o", ".venv/.installed", target, "PERSONA=trump"], cwd=ROOT, env=env,
                                input="", capture_output=True, text=True, timeout=120)
        assert result.returncode != 0, target
        assert "persona 'trump' has no finished 06_quantize stage" in result.stderr
        assert "make trump-chat" in result.stderr


def test_runs_dir_option_and_no_persona(tmp_path):
    with pytest.raises(TalkError, match="persona 'pg' has no finished"):
        finished_model("pg", tmp_path)
    with pytest.raises(TalkError, match="no persona given"):
        finished_model("")


def test_parse_modelfile_as_06_writes_it():
    parsed = parse_modelfile(MODELFILE)
    assert parsed["from"] == "./pg-q4_k_m.gguf"
    assert parsed["system"] == 'You are Paul Graham.\nPARAMETER stop "not a parameter"\nAnswer as he would.'
    assert parsed["stops"] == ["<|im_end|>", "<|im_start|>"]
    assert parsed["parameters"] == {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.1, "num_ctx": 2048}
    assert parsed["template"].startswith("{{ if .System }}<|im_start|>system\n")


def test_server_requests_get_the_persona_system_prompt_and_stops():
    seen = []
    handler = with_persona_defaults(lambda **kwargs: seen.append(kwargs), "You are PG.", ["<|im_end|>"])
    handler(messages=[{"role": "user", "content": "hi"}], stop=None, temperature=0.2)
    handler(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], stop="END")
    assert seen[0]["messages"][0] == {"role": "system", "content": "You are PG."} and seen[0]["temperature"] == 0.2
    assert seen[0]["stop"] == ["<|im_end|>"]
    assert [m["content"] for m in seen[1]["messages"]] == ["Be brief.", "hi"] and seen[1]["stop"] == ["END", "<|im_end|>"]


def spy_on(llm, calls: list) -> None:
    """Wrap the real Llama's create_chat_completion with a pass-through recorder: every call
    goes to llama.cpp unchanged; each call's messages (copied: stream_reply edits the list),
    its other arguments and the text it streamed back are appended to calls."""
    real = llm.create_chat_completion

    def recording(*, messages, **kwargs):
        call = {"messages": [dict(m) for m in messages], "kwargs": kwargs, "text": ""}
        calls.append(call)
        chunks = real(messages=messages, **kwargs)

        def passing_through():
            for chunk in chunks:
                call["text"] += chunk["choices"][0]["delta"].get("content") or ""
                yield chunk
        return passing_through() if kwargs.get("stream") else chunks

    llm.create_chat_completion = recording


def real_chat(monkeypatch, text, num_ctx=2048):
    """talk.chat on the embedded SmolLM2-135M-Instruct GGUF (prompted through its own chat
    template), loaded by talk.load_model, greedy and short. Returns (exit code, stdout,
    stderr, the recorded create_chat_completion calls)."""
    import io

    from lib import talk
    from lib.models import embedded_gguf_path

    model = talk.PersonaModel("pg", embedded_gguf_path("smollm2-135m-instruct"), "q4_1", "You are PG.",
                              ["<|im_end|>"], {"temperature": 0.0, "seed": 0, "num_predict": 16, "num_ctx": num_ctx})
    calls, load_model = [], talk.load_model

    def load_and_spy(model, n_threads=None):
        llm = load_model(model, n_threads)
        spy_on(llm, calls)
        return llm

    monkeypatch.setattr(talk, "load_model", load_and_spy)
    out, err = io.StringIO(), io.StringIO()
    code = talk.chat(model, stdin=io.StringIO(text), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue(), calls


def replies_only(calls) -> str:
    """What stdout must hold: each streamed reply, leading blanks dropped, and a newline."""
    return "".join(call["text"].lstrip() + "\n" for call in calls)


def test_chat_keeps_history_resets_and_leaves(monkeypatch):
    code, out, err, calls = real_chat(monkeypatch, "Hi\n\nWhat is your name?\n/reset\n/nope\nThird\n/exit\nnever read\n")
    assert code == 0
    replies = [call["text"].lstrip() for call in calls]
    assert len(calls) == 3 and all(replies), replies  # one non-empty reply per user turn
    assert out == replies_only(calls)  # stdout: the replies only, one after another
    assert err.startswith("pg: ") and "q4_1" in err and "(conversation cleared)" in err and "unknown command /nope" in err
    history = [[(m["role"], m["content"]) for m in call["messages"]] for call in calls]
    assert history == [[("system", "You are PG."), ("user", "Hi")],
                       [("system", "You are PG."), ("user", "Hi"), ("assistant", replies[0]),
                        ("user", "What is your name?")],
                       [("system", "You are PG."), ("user", "Third")]]  # after /reset: system + the new turn
    assert calls[0]["kwargs"]["stop"] == ["<|im_end|>"] and calls[0]["kwargs"]["temperature"] == 0.0
    assert calls[0]["kwargs"]["max_tokens"] == 16
    code, out, _, calls = real_chat(monkeypatch, "Hi")  # end of input (no /exit, no newline) leaves
    assert code == 0 and len(calls) == 1 and calls[0]["text"].strip() and out == replies_only(calls)


def test_chat_drops_the_oldest_exchange_when_the_context_is_full(monkeypatch):
    # ~85 tokens a turn in a 256-token context: two exchanges fit, the third turn's prompt does not
    words = "startups, essays, programming languages, Lisp, painters, hackers and cities " * 5
    turns = [f"{n}: tell me what you think about {words}" for n in ("one", "two", "three")]
    code, out, err, calls = real_chat(monkeypatch, "".join(t + "\n" for t in turns), num_ctx=256)
    assert code == 0 and "no reply" not in err, err
    contents = [[m["content"] for m in call["messages"]] for call in calls]
    assert len(calls) == 4  # the third turn was refused by llama.cpp once, then sent again shorter
    assert contents[2] == ["You are PG.", turns[0], calls[0]["text"].lstrip(), turns[1], calls[1]["text"].lstrip(),
                           turns[2]]
    assert calls[2]["text"] == ""  # refused before a token was made
    assert contents[3] == ["You are PG.", turns[1], calls[1]["text"].lstrip(), turns[2]]  # the first exchange dropped
    assert calls[3]["text"].strip() and out == replies_only([calls[0], calls[1], calls[3]])


def test_a_persona_of_its_own_is_told_the_generic_targets(tmp_path):
    with pytest.raises(TalkError, match=r"persona 'ada' has no finished .*make chat PERSONA=ada.*make quantize PERSONA=ada"):
        finished_model("ada", tmp_path)
