"""Polite, resumable HTTP fetching with a disk cache.

One request at a time, a delay between network requests, a clear User-Agent, retries with
exponential backoff on timeouts, connection errors and 5xx answers. A 4xx answer (404, 403,
...) is logged and skipped (``get`` returns None), never retried. Every body fetched is
written to the cache directory (file name = sha256 of the URL, written atomically: a temp
file, then os.replace), and anything in the cache is never fetched again, so a crawl that is
killed resumes where it stopped. 4xx answers are remembered too (a small ``.status`` file),
so a second crawl makes no request at all.

    from lib.fetch import Fetcher
    fetcher = Fetcher("cache/pg", delay_s=1.0, retries=3)
    body = fetcher.get("http://www.paulgraham.com/articles.html")   # bytes, or None on 4xx
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import requests

log = logging.getLogger("lib.fetch")

DEFAULT_USER_AGENT = "persona-llm/0.1 (research; one request at a time)"


class FetchError(RuntimeError):
    """A URL could not be fetched after all retries (timeouts, connection errors, 5xx).

    ``kind`` is "connection" (nothing answered: DNS, refused, unreachable), "timeout" or
    "http" (a 5xx answer); ``status`` is the last HTTP status, if any.
    """

    def __init__(self, url: str, message: str, *, kind: str, status: int | None = None):
        super().__init__(f"{url}: {message}")
        self.url = url
        self.kind = kind
        self.status = status


def url_key(url: str) -> str:
    """The cache key of a URL: the hex sha256 of the URL string."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to path atomically: a temp file in the same folder, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Fetcher:
    """Fetch URLs politely through a disk cache.

    cache_dir:   folder of cached bodies (<sha256>.body) and remembered 4xx (<sha256>.status)
    delay_s:     minimum seconds between two network requests (retries included)
    user_agent:  User-Agent header sent with every request
    retries:     extra tries after a timeout, connection error or 5xx (0 = try once)
    timeout_s:   connect/read timeout of one request
    backoff_s:   first backoff wait; it doubles at every retry (backoff_s, 2*backoff_s, ...)

    ``stats`` counts: requests (network requests made), fetched (bodies downloaded),
    cached (answered from the cache), skipped_4xx, failed.
    """

    def __init__(self, cache_dir, *, delay_s: float = 1.0, user_agent: str = DEFAULT_USER_AGENT,
                 retries: int = 3, timeout_s: float = 20.0, backoff_s: float = 1.0,
                 session: requests.Session | None = None):
        self.cache_dir = Path(cache_dir)
        self.delay_s = float(delay_s)
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self.retries = max(0, int(retries))
        self.timeout_s = float(timeout_s)
        self.backoff_s = float(backoff_s)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = self.user_agent
        self._lock = threading.Lock()
        self._last_request = None  # time.monotonic() of the last network request
        self.stats = {"requests": 0, "fetched": 0, "cached": 0, "skipped_4xx": 0, "failed": 0}

    # -- cache -------------------------------------------------------------------------
    def body_path(self, url: str) -> Path:
        """Where the cached body of url lives (it may not exist yet)."""
        return self.cache_dir / f"{url_key(url)}.body"

    def status_path(self, url: str) -> Path:
        """Where a remembered 4xx answer for url lives (it may not exist yet)."""
        return self.cache_dir / f"{url_key(url)}.status"

    def is_cached(self, url: str) -> bool:
        """True if url's body or its 4xx answer is in the cache (no request will be made)."""
        return self.body_path(url).is_file() or self.status_path(url).is_file()

    # -- network -----------------------------------------------------------------------
    def _wait_turn(self) -> None:
        """Sleep until delay_s has passed since the previous network request."""
        if self._last_request is not None:
            wait = self.delay_s - (time.monotonic() - self._last_request)
            if wait > 0:
                time.sleep(wait)
        self._last_request = time.monotonic()

    def get(self, url: str) -> bytes | None:
        """The body of url (bytes), from the cache when there; None on a 4xx answer.

        Raises FetchError when the URL still fails after ``retries`` retries.
        """
        with self._lock:
            body_path, status_path = self.body_path(url), self.status_path(url)
            if body_path.is_file():
                self.stats["cached"] += 1
                log.debug("cached %s", url)
                return body_path.read_bytes()
            if status_path.is_file():
                self.stats["cached"] += 1
                self.stats["skipped_4xx"] += 1
                log.info("skip %s (remembered HTTP %s)", url, status_path.read_text().strip()[:40])
                return None
            return self._fetch(url, body_path, status_path)

    def _fetch(self, url: str, body_path: Path, status_path: Path) -> bytes | None:
        last: FetchError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                wait = self.backoff_s * (2 ** (attempt - 1))
                log.warning("retry %d/%d for %s in %.1fs (%s)", attempt, self.retries, url, wait, last)
                time.sleep(wait)
            self._wait_turn()
            self.stats["requests"] += 1
            try:
                resp = self.session.get(url, timeout=self.timeout_s)
            except requests.exceptions.Timeout as err:
                last = FetchError(url, f"timed out after {self.timeout_s:g}s ({type(err).__name__})",
                                  kind="timeout")
                continue
            except requests.exceptions.ConnectionError as err:
                last = FetchError(url, f"connection error: {err}", kind="connection")
                continue
            except requests.exceptions.RequestException as err:  # bad URL etc.: not retried
                self.stats["failed"] += 1
                raise FetchError(url, f"request failed: {err}", kind="request") from err
            if resp.status_code >= 500:
                last = FetchError(url, f"HTTP {resp.status_code}", kind="http", status=resp.status_code)
                continue
            if resp.status_code >= 400:
                self.stats["skipped_4xx"] += 1
                log.warning("skip %s: HTTP %d (not retried)", url, resp.status_code)
                write_atomic(status_path, json.dumps({"url": url, "status": resp.status_code}).encode())
                return None
            body = resp.content
            write_atomic(body_path, body)
            self.stats["fetched"] += 1
            log.info("fetched %s (%d bytes)", url, len(body))
            return body
        self.stats["failed"] += 1
        log.error("failed %s after %d tries: %s", url, self.retries + 1, last)
        raise last
