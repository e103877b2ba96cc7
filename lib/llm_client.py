"""Many chat-completion requests to any OpenAI-compatible endpoint, resumably.

    endpoint = Endpoint("http://127.0.0.1:8080/v1", "local", api_key=None, timeout_s=120)
    requests = [chat_request(endpoint.model, messages, temperature=0.7, max_tokens=64, seed=1)]
    results = complete_all(requests, endpoint, cache_path=OUT / "llm_cache.jsonl", concurrency=2)

OpenAI, Groq, vLLM, Ollama and llama.cpp servers all accept the same POST
{base_url}/chat/completions. Each request is identified by a hash of its content
(request_key: model, messages and sampling settings, not the server's address), and every
answer is appended to a JSONL cache and flushed to disk the moment it arrives. A rerun
after a crash, a SIGKILL or Ctrl-C reads the cache first and repeats no finished request;
a request that was in flight is simply sent again. Errors that may pass (429, 5xx,
timeouts, dropped connections, malformed JSON) are retried with exponential backoff
(backoff_seconds); a Retry-After header is honoured in both its forms (delay-seconds or an
HTTP-date, RFC 9110; lib.fetch.retry_after_seconds), and when it asks for a wait longer
than max_wait_s the request fails at once with an error that says so (no early retry).
Not retried, because sending the same request again gives the same: other 4xx (400, 401,
...), a 429 that says the quota is used up (insufficient_quota), and a reply with no
content whose finish_reason is "length" (a reasoning model spent max_tokens thinking; the
error says to raise qa.max_new_tokens or turn reasoning off). A message's
reasoning_content is never taken as its content. A tqdm bar shows done/total, retries and
failures.

    python -m lib.llm_client --base-url URL --model M --requests r.jsonl --cache c.jsonl --out o.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from lib.runfiles import text_digest
from lib.fetch import retry_after_seconds

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
MAX_WAIT_S = 60.0  # the longest wait between two tries (seconds); a longer Retry-After fails the request


@dataclass
class Endpoint:
    """Where requests go. api_key is the key itself (read from the environment by the caller)."""
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0


class RetryableError(RuntimeError):
    """The request may succeed if sent again (429, 5xx, timeout, bad JSON, dropped connection).
    retry_after_s: the wait the server asked for (Retry-After), in seconds, or None."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestFailed(RuntimeError):
    """The endpoint refused the request in a way that retrying will not fix."""


class EndpointUnusable(RequestFailed):
    """Every request to this endpoint will fail the same way (quota used up, a Retry-After
    past the cap, replies cut off by max_tokens before any content): complete_all sends no
    more requests and marks the rest with this error."""


def api_key_from_env(variable: str | None, param: str) -> str | None:
    """The API key held by the environment variable a param names (None when it names none);
    RuntimeError naming the param when the variable is not set (a key is never read from a file)."""
    if not variable:
        return None
    key = os.environ.get(variable)
    if not key:
        raise RuntimeError(f"params {param} names {variable}, which is not set "
                           f"in the environment; export it (the key is never read from a file)")
    return key


def endpoint_from_params(qa: dict, base_url: str | None = None, model: str | None = None) -> Endpoint:
    """An Endpoint from params qa (base_url, model, api_key_env, timeout_s); base_url/model
    given here win (the embedded server's). A named but unset key variable is an error."""
    key = api_key_from_env(qa["api_key_env"], "qa.api_key_env")
    url = base_url or qa["base_url"]
    if not url:
        raise ValueError("no endpoint: qa.base_url is null and no local server was started")
    return Endpoint(url.rstrip("/"), model or qa["model"], key, float(qa["timeout_s"]))


def chat_request(model: str, messages: list[dict], temperature: float = 0.7, max_tokens: int = 64,
                 seed: int | None = None) -> dict:
    """The JSON body of one chat-completions request."""
    body = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        body["seed"] = seed
    return body


def request_key(request: dict) -> str:
    """sha256 of the request's canonical JSON: equal content, equal key, on any server."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text_digest(canonical)


class RequestCache:
    """Append-only JSONL of finished requests: {"key", "request", "content", "finish_reason",
    "usage"} per line, flushed and fsynced per line. A torn last line (the process was
    killed while writing it) is cut off when the cache is opened."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        self.torn_lines = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load()
        self.handle = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        good_end = 0
        for line in data.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no newline")
                entry = json.loads(line)
                self.entries[entry["key"]] = entry
                good_end += len(line)
            except (ValueError, KeyError, TypeError):
                self.torn_lines += 1
                break  # appends are sequential: anything after a torn line is torn too
        if good_end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def add(self, key: str, request: dict, content: str, finish_reason: str | None, usage: dict | None) -> dict:
        entry = {"key": key, "request": request, "content": content,
                 "finish_reason": finish_reason, "usage": usage}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self.lock:
            self.handle.write(line)
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.entries[key] = entry
        return entry

    def close(self) -> None:
        self.handle.close()

    def __len__(self) -> int:
        return len(self.entries)


_session = threading.local()


def http_session() -> requests.Session:
    """One requests.Session per thread (connection reuse; Sessions are not thread-safe)."""
    if not hasattr(_session, "value"):
        _session.value = requests.Session()
    return _session.value


def quota_exhausted(response: requests.Response) -> str | None:
    """The error message when a 429's body says the account's quota is used up (OpenAI:
    {"error": {"code" or "type": "insufficient_quota", "message": ...}}), else None."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict) and "insufficient_quota" in (error.get("code"), error.get("type")):
        return str(error.get("message") or "insufficient_quota")
    return None


def post_chat_completion(endpoint: Endpoint, request: dict) -> tuple[str, str | None, dict | None]:
    """Send one request; return (content, finish_reason, usage). Raises RetryableError (with
    the Retry-After wait in seconds, if the server gave one) or RequestFailed, with the
    status and the start of the body. Only the message's "content" is read, never its
    "reasoning_content"."""
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    url = f"{endpoint.base_url}/chat/completions"
    try:
        response = http_session().post(url, json=request, headers=headers, timeout=endpoint.timeout_s)
    except requests.Timeout:
        raise RetryableError(f"timeout after {endpoint.timeout_s:g} s") from None
    except requests.RequestException as err:  # refused, reset, dropped mid-reply
        raise RetryableError(f"connection error: {type(err).__name__}") from None
    if response.status_code == 429 and (quota := quota_exhausted(response)) is not None:
        raise EndpointUnusable(f"{url}: HTTP 429 insufficient_quota: the account's quota is used up "
                            f"({quota[:200]!r}); not retried: add credit or raise the limit with the "
                            f"provider, or use another endpoint (qa.base_url)")
    if response.status_code in RETRYABLE_STATUS:
        header = response.headers.get("Retry-After")
        said = f" (Retry-After: {header.strip()})" if header else ""
        raise RetryableError(f"HTTP {response.status_code}{said}: {response.text[:200]!r}",
                             retry_after_seconds(header))
    if response.status_code != 200:
        raise RequestFailed(f"{url}: HTTP {response.status_code}: {response.text[:300]!r}")
    try:
        body = response.json()
        choice = body["choices"][0]
        message = choice["message"]
        content = message.get("content")
        finish_reason = choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        raise RetryableError(f"malformed reply ({type(err).__name__}): {response.text[:200]!r}") from None
    if finish_reason == "length" and (content is None or (isinstance(content, str) and not content.strip())):
        reasoned = " (the model was reasoning: the reply has only reasoning_content)" \
            if message.get("reasoning_content") else ""
        raise EndpointUnusable(
            f"{url}: the reply has no content: all max_tokens={request.get('max_tokens')} tokens were used up "
            f"before any answer (finish_reason \"length\"){reasoned}. Not retried: the same request gives the "
            f"same. Raise qa.max_new_tokens (the token limit of 04's questions), or turn reasoning off on the "
            f"server or model (e.g. llama-server --reasoning-budget 0, or a model that does not reason)")
    if not isinstance(content, str):
        raise RetryableError(f"malformed reply (content is {type(content).__name__}, finish_reason "
                             f"{finish_reason!r}): {response.text[:200]!r}")
    return content, finish_reason, body.get("usage")


def backoff_seconds(attempt: int, base_s: float, retry_after_s: float | None = None,
                    cap_s: float = MAX_WAIT_S) -> float:
    """Seconds to wait before retry number attempt + 1: exponential backoff with jitter,
    base_s * 2**attempt * U(0.5, 1.5), at least retry_after_s (Retry-After, seconds), at
    most cap_s. complete_with_retries never retries when retry_after_s is over cap_s."""
    delay = base_s * (2 ** attempt) * random.uniform(0.5, 1.5)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, cap_s)


def complete_with_retries(endpoint: Endpoint, request: dict, retries: int, backoff_s: float,
                          on_retry=None, max_wait_s: float = MAX_WAIT_S) -> tuple[str, str | None, dict | None]:
    """post_chat_completion, retried up to `retries` times on RetryableError, waiting
    backoff_seconds(attempt, backoff_s, Retry-After, max_wait_s) seconds between tries. A
    Retry-After longer than max_wait_s seconds raises RequestFailed at once, saying so."""
    for attempt in range(retries + 1):
        try:
            return post_chat_completion(endpoint, request)
        except RetryableError as err:
            if err.retry_after_s is not None and err.retry_after_s > max_wait_s:
                raise EndpointUnusable(
                    f"{endpoint.base_url}: the server asks to wait {err.retry_after_s:.0f} s before trying again "
                    f"(Retry-After), longer than the {max_wait_s:g} s cap; not retried early, run again later "
                    f"(answered requests are cached): {err}") from None
            if attempt == retries:
                raise RequestFailed(f"{endpoint.base_url}: gave up after {retries + 1} tries: {err}") from None
            if on_retry:
                on_retry(err)
            time.sleep(backoff_seconds(attempt, backoff_s, err.retry_after_s, max_wait_s))
    raise AssertionError("unreachable")


def complete_all(requests_: list[dict], endpoint: Endpoint, cache_path: Path, concurrency: int = 2,
                 retries: int = 4, backoff_s: float = 1.0, desc: str = "requests",
                 max_wait_s: float = MAX_WAIT_S) -> list[dict]:
    """Answer every request, in order, using and filling the on-disk cache.

    retries: extra tries per request; backoff_s: the first wait between tries in seconds (it
    doubles, with jitter; a server's Retry-After wins); max_wait_s: the longest wait in
    seconds, a longer Retry-After fails the request at once (complete_with_retries).
    Returns one dict per request: {"key", "content", "finish_reason", "cached", "error"}
    where content is None and error says why when the request failed for good (it is not
    cached, so a rerun tries it again). Equal requests are sent once. After an
    EndpointUnusable failure no further request is sent ("not sent: ..."; requests already
    in flight on other workers finish).
    """
    cache = RequestCache(cache_path)
    keys = [request_key(r) for r in requests_]
    todo = {}
    for key, request in zip(keys, requests_):
        if cache.get(key) is None:
            todo.setdefault(key, request)
    errors: dict[str, str] = {}
    counts = {"retries": 0, "failed": 0}
    count_lock = threading.Lock()
    bar = tqdm(total=len(set(keys)), initial=len(set(keys)) - len(todo), desc=desc, unit="req")

    def on_retry(err):
        with count_lock:
            counts["retries"] += 1
            bar.set_postfix(retries=counts["retries"], failed=counts["failed"], refresh=False)

    stopped: list[str] = []  # the EndpointUnusable message that stops the queue

    def work(key, request):
        if stopped:
            raise RequestFailed(f"not sent: an earlier request showed that none can succeed: {stopped[0]}")
        try:
            content, finish, usage = complete_with_retries(endpoint, request, retries, backoff_s, on_retry,
                                                           max_wait_s)
        except EndpointUnusable as err:
            stopped.append(str(err))  # before this worker takes the next request
            raise
        cache.add(key, request, content, finish, usage)

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    interrupted = False
    try:
        futures = {pool.submit(work, key, request): key for key, request in todo.items()}
        for future in as_completed(futures):
            try:
                future.result()
            except RequestFailed as err:
                errors[futures[future]] = str(err)
                with count_lock:
                    counts["failed"] += 1
            bar.set_postfix(retries=counts["retries"], failed=counts["failed"], refresh=False)
            bar.update(1)
    except BaseException:  # Ctrl-C: drop the queue; what finished is already on disk
        interrupted = True
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
        bar.close()
        if not interrupted:
            cache.close()
    results = []
    for key in keys:
        entry = cache.get(key)
        results.append({"key": key, "content": entry["content"] if entry else None,
                        "finish_reason": entry["finish_reason"] if entry else None,
                        "cached": key not in todo, "error": errors.get(key)})
    return results


def summarize(results: list[dict]) -> dict:
    """Counts for metrics: requests, answered, from_cache, failed."""
    return {"requests": len(results),
            "answered": sum(r["content"] is not None for r in results),
            "from_cache": sum(r["cached"] for r in results),
            "failed": sum(r["content"] is None for r in results)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Answer a JSONL of chat-completion request bodies, resumably.")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", help="overrides each request's model")
    parser.add_argument("--api-key-env", help="name of the environment variable holding the key")
    parser.add_argument("--requests", required=True, type=Path, help="JSONL: one request body a line")
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="JSONL: one result a line, in order")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument("--backoff-s", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    from lib.runfiles import read_jsonl, write_jsonl

    bodies = read_jsonl(args.requests)
    if args.model:
        bodies = [dict(body, model=args.model) for body in bodies]
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    endpoint = Endpoint(args.base_url.rstrip("/"), args.model or "", key, args.timeout_s)
    results = complete_all(bodies, endpoint, args.cache, args.concurrency, args.retries, args.backoff_s)
    write_jsonl(args.out, results)
    summary = summarize(results)
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
