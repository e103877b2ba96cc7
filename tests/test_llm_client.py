"""lib/llm_client.py and lib/llama_server.py against real local servers.

A deliberately faulty OpenAI-compatible server (threaded http.server on 127.0.0.1) answers
with 429s, 500s, malformed JSON, slow replies, dropped and cut-off connections before it
answers each request; a scripted server answers as the cases in ../shared/cases/README.md
(Retry-After as an HTTP date or past the cap, content null with finish_reason "length",
insufficient_quota); the real llama.cpp server serves the embedded SmolLM2 GGUF. All
traffic stays on 127.0.0.1, every request loop is bounded.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lib.llama_server import embedded_llama_server
from lib.llm_client import (Endpoint, RequestCache, chat_request, complete_all,
                            endpoint_from_params, request_key, summarize)
from lib.runfiles import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ("429", "500", "503", "malformed_json", "no_choices", "slow", "drop", "cut_off")


def answer_for(body: dict) -> str:
    """What the test server answers to a request: derived from its last message."""
    return "answer to: " + body["messages"][-1]["content"]


class ChatServer:
    """An OpenAI-compatible /v1/chat/completions server on 127.0.0.1 that fails each request
    key `faults_for(key)` times (modes from FAULTS, in a fixed rotation) before answering.
    Counts every request per key (`attempts`), every answer sent (`answered`) and every
    fault by mode (`faults`)."""

    def __init__(self, faults_for=lambda key: 0, delay_s: float = 0.0, slow_s: float = 1.0):
        self.faults_for, self.delay_s, self.slow_s = faults_for, delay_s, slow_s
        self.lock = threading.Lock()
        self.attempts = collections.Counter()
        self.answered = collections.Counter()
        self.faults = collections.Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send_json(self, status: int, payload: bytes, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def drop(self):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = request_key(body)
                with server.lock:
                    attempt = server.attempts[key]
                    server.attempts[key] += 1
                n_faults = server.faults_for(key)
                mode = FAULTS[(int(key[:8], 16) + attempt) % len(FAULTS)] if attempt < n_faults else None
                if mode:
                    with server.lock:
                        server.faults[mode] += 1
                reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer_for(body)},
                                                 "finish_reason": "stop"}],
                                    "usage": {"completion_tokens": 3}}).encode()
                try:
                    if mode == "429":
                        self.send_json(429, b'{"error": "rate limited"}', [("Retry-After", "0")])
                    elif mode in ("500", "503"):
                        self.send_json(int(mode), b'{"error": "server error"}')
                    elif mode == "malformed_json":
                        self.send_json(200, b'{"choices": [{"message": {"content": "cut')
                    elif mode == "no_choices":
                        self.send_json(200, b'{"error": {"message": "overloaded"}}')
                    elif mode == "drop":
                        self.drop()
                    elif mode == "cut_off":
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(reply)))
                        self.end_headers()
                        self.wfile.write(reply[:15])
                        self.wfile.flush()
                        self.drop()
                    else:
                        time.sleep(server.slow_s if mode == "slow" else server.delay_s)
                        self.send_json(200, reply)
                        if mode is None:
                            with server.lock:
                                server.answered[key] += 1
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_requests(n: int) -> list[dict]:
    return [chat_request("test-model", [{"role": "user", "content": f"item {i}"}], 0.7, 16, seed=1)
            for i in range(n)]


def cache_lines(path: Path) -> list[dict]:
    return read_jsonl(path) if path.exists() else []


def test_request_key_is_content_only():
    body = chat_request("m", [{"role": "user", "content": "hi"}], 0.7, 16, seed=1)
    assert request_key(body) == request_key(json.loads(json.dumps(body)))
    assert request_key(body) == request_key(dict(reversed(list(body.items()))))
    assert request_key(body) != request_key(dict(body, temperature=0.8))
    assert request_key(body) != request_key(dict(body, model="other"))
    assert len(request_key(body)) == 64


def test_faulty_server_every_item_exactly_once(tmp_path):
    """40 items, most failing 1-3 times in every way first: all answered, each once."""
    faults = lambda key: int(key[-2:], 16) % 4  # 0..3 faults per item
    requests_ = make_requests(40)
    cache = tmp_path / "cache.jsonl"
    with ChatServer(faults, slow_s=1.0) as server:
        endpoint = Endpoint(server.base_url, "test-model", timeout_s=0.5)
        results = complete_all(requests_, endpoint, cache, concurrency=4, retries=4, backoff_s=0.01)
        attempts_after_first_run = sum(server.attempts.values())
        again = complete_all(requests_, endpoint, cache, concurrency=4, retries=4, backoff_s=0.01)
        assert sum(server.attempts.values()) == attempts_after_first_run  # the rerun sent nothing
    assert set(server.faults) == set(FAULTS), f"not every fault happened: {server.faults}"
    assert [r["content"] for r in results] == [answer_for(r) for r in requests_]
    assert summarize(results) == {"requests": 40, "answered": 40, "from_cache": 0, "failed": 0}
    assert summarize(again)["from_cache"] == 40
    lines = cache_lines(cache)
    assert len(lines) == 40 and {line["key"] for line in lines} == {request_key(r) for r in requests_}
    expected_attempts = {request_key(r): faults(request_key(r)) + 1 for r in requests_}
    assert dict(server.attempts) == expected_attempts


def test_retries_exhausted_is_reported_not_cached_and_rerun_completes(tmp_path):
    requests_ = make_requests(6)
    always_failing = {request_key(requests_[1]), request_key(requests_[4])}
    cache = tmp_path / "cache.jsonl"
    with ChatServer(lambda key: 99 if key in always_failing else 0) as server:
        endpoint = Endpoint(server.base_url, "test-model", timeout_s=0.5)
        results = complete_all(requests_, endpoint, cache, concurrency=2, retries=2, backoff_s=0.01)
    assert [r["content"] is None for r in results] == [False, True, False, False, True, False]
    assert "gave up after 3 tries" in results[1]["error"]
    assert len(cache_lines(cache)) == 4
    with ChatServer() as healthy:
        results = complete_all(requests_, Endpoint(healthy.base_url, "test-model"), cache, retries=0)
    assert set(healthy.attempts) == always_failing  # only the two missing ones were sent
    assert [r["content"] for r in results] == [answer_for(r) for r in requests_]


def test_client_error_is_not_retried(tmp_path):
    class Refusing(BaseHTTPRequestHandler):
        calls = 0

        def log_message(self, *args):
            pass

        def do_POST(self):
            Refusing.calls += 1
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(401)
            self.send_header("Content-Length", "24")
            self.end_headers()
            self.wfile.write(b'{"error": "bad api key"}')

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        endpoint = Endpoint(f"http://127.0.0.1:{httpd.server_address[1]}/v1", "m", api_key="k")
        results = complete_all(make_requests(1), endpoint, tmp_path / "c.jsonl", retries=5, backoff_s=0.01)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert Refusing.calls == 1
    assert "HTTP 401" in results[0]["error"] and "bad api key" in results[0]["error"]


class ScriptedServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers the n-th POST (any request) with
    replies[n], then the last reply forever. A reply is (status, headers, body); headers
    and body may be callables, called at request time. Each POST's wall-clock time
    (time.time()) is appended to `times`."""

    def __init__(self, replies):
        self.replies, self.times, self.lock = replies, [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    server.times.append(time.time())
                    status, headers, body = server.replies[min(len(server.times), len(server.replies)) - 1]
                headers = headers() if callable(headers) else headers
                body = body() if callable(body) else body
                body = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_reply(content, finish_reason="stop", **message) -> dict:
    return {"choices": [{"message": dict(role="assistant", content=content, **message),
                         "finish_reason": finish_reason}], "usage": {"completion_tokens": 64}}


def test_429_with_retry_after_as_an_http_date_is_waited_out(tmp_path):
    dates = []

    def three_seconds_ahead():
        dates.append(formatdate(time.time() + 3, usegmt=True))  # whole seconds: 2-3 s ahead
        return [("Retry-After", dates[-1])]

    replies = [(429, three_seconds_ahead, {"error": {"message": "Rate limit reached", "type": "requests",
                                                     "code": "rate_limit_exceeded"}}),
               (200, [], chat_reply("How did you pick your first hire?"))]
    with ScriptedServer(replies) as server:
        results = complete_all(make_requests(1), Endpoint(server.base_url, "m"), tmp_path / "c.jsonl",
                               retries=4, backoff_s=0.01)
    assert results[0]["content"] == "How did you pick your first hire?"
    first, second = server.times
    assert second >= parsedate_to_datetime(dates[0]).timestamp() - 0.05  # not retried early
    assert second - first >= 1.9


def test_retry_after_past_the_cap_is_reported_not_retried_early(tmp_path):
    with ScriptedServer([(503, [("Retry-After", "3600")], {"error": "overloaded"})]) as server:
        started = time.monotonic()
        results = complete_all(make_requests(1), Endpoint(server.base_url, "m"), tmp_path / "c.jsonl",
                               retries=4, backoff_s=0.01)
        assert time.monotonic() - started < 5
    assert len(server.times) == 1
    error = results[0]["error"]
    assert "3600" in error and "Retry-After" in error and "60" in error  # the wait asked for and the cap
    assert results[0]["content"] is None


def test_content_null_with_finish_reason_length_is_not_retried_and_says_what_to_change(tmp_path):
    """A reasoning model spent max_tokens thinking: the reply has reasoning_content but no content."""
    reply = chat_reply(None, "length", reasoning_content="The user wants a question about hiring. Why would")
    with ScriptedServer([(200, [], reply)]) as server:
        results = complete_all(make_requests(1), Endpoint(server.base_url, "m"), tmp_path / "c.jsonl",
                               retries=4, backoff_s=0.01)
    assert len(server.times) == 1  # deterministic: sending it again gives the same
    assert results[0]["content"] is None  # reasoning_content is never taken as the answer
    error = results[0]["error"]
    assert "max_new_tokens" in error and "reasoning" in error and "malformed" not in error


def test_429_insufficient_quota_is_not_retried(tmp_path):
    body = {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                      "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
    with ScriptedServer([(429, [("Retry-After", "1")], body)]) as server:
        results = complete_all(make_requests(2), Endpoint(server.base_url, "m", api_key="k"), tmp_path / "c.jsonl",
                               concurrency=1, retries=5, backoff_s=0.01)
    assert len(server.times) == 1  # not retried, and the other request is not sent
    error = results[0]["error"]
    assert "quota" in error and "HTTP 429" in error and "gave up" not in error
    assert results[1]["error"].startswith("not sent: an earlier request showed that none can succeed")


def test_kill_and_rerun_resumes_from_cache(tmp_path):
    """SIGKILL a generation run midway; the rerun sends only what was not finished."""
    n = 40
    requests_file, cache, out = tmp_path / "requests.jsonl", tmp_path / "cache.jsonl", tmp_path / "out.jsonl"
    requests_ = make_requests(n)
    requests_file.write_text("".join(json.dumps(r) + "\n" for r in requests_))
    with ChatServer(delay_s=0.1) as server:
        command = [sys.executable, "-m", "lib.llm_client", "--base-url", server.base_url,
                   "--requests", str(requests_file), "--cache", str(cache), "--out", str(out),
                   "--concurrency", "2", "--backoff-s", "0.01"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(cache_lines(cache)) < 10 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        finished_at_kill = {line["key"] for line in RequestCache(cache).entries.values()}
        assert 10 <= len(finished_at_kill) < n
        sent_before = collections.Counter(server.attempts)

        rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        sent_in_rerun = server.attempts - sent_before

    assert not finished_at_kill & set(sent_in_rerun), "finished requests were sent again"
    unfinished = {request_key(r) for r in requests_} - finished_at_kill
    assert set(sent_in_rerun) == unfinished and all(v == 1 for v in sent_in_rerun.values())
    sent_twice = [key for key, count in server.attempts.items() if count > 1]
    assert len(sent_twice) <= 2  # at most the requests in flight when it was killed
    results = read_jsonl(out)
    assert [r["content"] for r in results] == [answer_for(r) for r in requests_]
    assert sum(r["cached"] for r in results) == len(finished_at_kill)
    lines = cache_lines(cache)
    assert len(lines) == n and len({line["key"] for line in lines}) == n
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["failed"] == 0


def test_torn_last_cache_line_is_cut_off_and_redone(tmp_path):
    requests_ = make_requests(3)
    cache = tmp_path / "cache.jsonl"
    with ChatServer() as server:
        endpoint = Endpoint(server.base_url, "test-model")
        complete_all(requests_[:2], endpoint, cache, retries=0)
        whole = cache.read_bytes()
        cache.write_bytes(whole + b'{"key": "' + request_key(requests_[2]).encode() + b'", "content": "half')
        reopened = RequestCache(cache)
        assert reopened.torn_lines == 1 and len(reopened) == 2
        reopened.close()
        assert cache.read_bytes() == whole
        results = complete_all(requests_, endpoint, cache, retries=0)
    assert [r["cached"] for r in results] == [True, True, False]
    assert len(cache_lines(cache)) == 3


def test_endpoint_from_params_reads_the_key_from_the_named_variable(monkeypatch):
    qa = {"base_url": "https://api.example.org/v1/", "model": "m", "api_key_env": "PERSONA_TEST_KEY", "timeout_s": 5.0}
    monkeypatch.delenv("PERSONA_TEST_KEY", raising=False)
    with pytest.raises(RuntimeError, match="PERSONA_TEST_KEY"):
        endpoint_from_params(qa)
    monkeypatch.setenv("PERSONA_TEST_KEY", "secret-value")
    endpoint = endpoint_from_params(qa)
    assert (endpoint.base_url, endpoint.api_key, endpoint.timeout_s) == ("https://api.example.org/v1", "secret-value", 5.0)
    with pytest.raises(ValueError, match="qa.base_url is null"):
        endpoint_from_params(dict(qa, base_url=None, api_key_env=None))


# ------------------------------------------------------------------ the real llama.cpp server

def post_count(log: Path) -> int:
    return sum("POST /v1/chat/completions" in line for line in log.read_text(errors="replace").splitlines())


def test_real_llama_server_answers_caches_and_stops(tmp_path):
    log, cache = tmp_path / "server.log", tmp_path / "cache.jsonl"
    questions = ["What is the capital of France? Answer in English.", "What is 2 + 2?", "Say hello."]
    with embedded_llama_server("smollm2-135m-instruct", log, n_ctx=512, n_threads=1) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        bodies = [chat_request(server.model, [{"role": "user", "content": q}], 0.0, 12, seed=1) for q in questions]
        endpoint = Endpoint(server.base_url, server.model, timeout_s=120)
        first = complete_all(bodies, endpoint, cache, concurrency=2)
        assert post_count(log) == 3
        second = complete_all(bodies, endpoint, cache, concurrency=2)
        assert post_count(log) == 3  # all three came from the cache
        process = server.process
    assert process.poll() is not None, "server still running after the with-block"
    assert all(isinstance(r["content"], str) and r["content"].strip() for r in first)
    assert "paris" in first[0]["content"].lower() and "4" in first[1]["content"]
    assert [r["content"] for r in second] == [r["content"] for r in first]
    assert all(r["finish_reason"] in ("stop", "length") for r in first)


def test_real_llama_server_is_stopped_on_error(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with embedded_llama_server("smollm2-135m-instruct", tmp_path / "server.log", n_ctx=256) as server:
            process = server.process
            1 / 0
    assert process.poll() is not None


def test_real_llama_server_exits_when_its_parent_is_killed(tmp_path):
    script = (
        "import sys, time\n"
        "from lib.llama_server import embedded_llama_server\n"
        f"with embedded_llama_server('smollm2-135m-instruct', {str(tmp_path / 'server.log')!r}, n_ctx=256) as s:\n"
        "    print(s.process.pid, flush=True)\n"
        "    time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process_alive(server_pid):
        time.sleep(0.2)
    if process_alive(server_pid):
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("llama.cpp server outlived the process that started it")


def process_alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by init counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_missing_gguf_is_a_clear_error(tmp_path):
    from lib.llama_server import start_llama_server

    with pytest.raises(FileNotFoundError, match="nothing.gguf"):
        start_llama_server(tmp_path / "nothing.gguf", "x", tmp_path / "log")
