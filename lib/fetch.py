"""Polite, resumable HTTP fetching with a disk cache.

One request at a time, a delay between network requests, a clear User-Agent, retries with
exponential backoff (backoff_s, 2*backoff_s, ...) on timeouts, connection errors, 5xx and
429 answers. A 429 or 5xx answer's ``Retry-After`` header is honoured in both forms (RFC
9110 section 10.2.3: delay-seconds or an HTTP-date; ``retry_after_seconds``): the retry
waits at least that long. When the server asks for a wait longer than ``max_wait_s`` the
URL fails at once with a FetchError that says how long was asked (no early retry), and the
same Fetcher makes no further request to that host until that time has passed.

A 429 or 503 is never a final answer: it is not cached, so a later crawl asks again (a 429
or 503 remembered by an older version of this module is dropped and asked again). Any
other 4xx answer (404, 403, ...) is logged and skipped (``get`` returns None), never
retried, and remembered (a small ``.status`` file), so a second crawl makes no request for
it. Every body fetched is written to the cache directory (file name = sha256 of the URL,
written atomically: a temp file, then os.replace), and anything in the cache is never
fetched again, so a crawl that is killed resumes where it stopped.

    from lib.fetch import Fetcher
    fetcher = Fetcher("cache/pg", delay_s=1.0, retries=3)
    body = fetcher.get("http://www.paulgraham.com/articles.html")   # bytes, or None on 4xx
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from datetime import timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests

from lib.runfiles import text_digest

log = logging.getLogger("lib.fetch")

DEFAULT_USER_AGENT = "persona-llm/0.1 (research; one request at a time)"
MAX_WAIT_S = 60.0  # the longest Retry-After a Fetcher waits out by default (seconds)
NOT_FINAL_STATUS = (429, 503)  # "come back later": retried, never cached as the answer


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait according to a Retry-After header value (RFC 9110 section 10.2.3).

    value: delay-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"; the
    obsolete RFC 850 and asctime forms too, read as GMT). now: the current time in seconds
    since the epoch (default time.time()), what a date is counted from. Returns seconds
    (float, 0.0 for a date already past), or None when value is None, empty or unreadable.
    Used by this module and by lib/llm_client.py.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)  # delay-seconds (1*DIGIT; a fraction is accepted too)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" carry no zone; an HTTP-date is always GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class FetchError(RuntimeError):
    """A URL could not be fetched (timeouts, connection errors, 5xx or 429 after all retries,
    or a Retry-After longer than the Fetcher's max_wait_s).

    ``kind`` is "connection" (nothing answered: DNS, refused, unreachable), "timeout",
    "http" (a 5xx answer), "rate_limited" (429 answers after all retries, a Retry-After past
    max_wait_s, or the host asked this Fetcher to wait and that time has not passed: the
    server is up, so callers should not treat it as "offline") or "request" (a bad URL);
    ``status`` is the last HTTP status, if any; ``retry_after_s`` the wait the server asked
    for in seconds (Retry-After), if it said.
    """

    def __init__(self, url: str, message: str, *, kind: str, status: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(f"{url}: {message}")
        self.url = url
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s


def url_key(url: str) -> str:
    """The cache key of a URL: the hex sha256 of the URL string."""
    return text_digest(url)


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

    cache_dir:   folder of cached bodies (<sha256>.body) and remembered 4xx (<sha256>.status;
                 never 429 or 503)
    delay_s:     minimum seconds between two network requests (retries included)
    user_agent:  User-Agent header sent with every request
    retries:     extra tries after a timeout, connection error, 5xx or 429 (0 = try once)
    timeout_s:   connect/read timeout of one request, in seconds
    backoff_s:   first backoff wait in seconds; it doubles at every retry (backoff_s,
                 2*backoff_s, ...); a longer Retry-After wins
    max_wait_s:  the longest Retry-After (seconds) waited out; a longer one fails the URL at
                 once (FetchError kind "rate_limited" or "http", saying how long was asked)

    ``stats`` counts: requests (network requests made), fetched (bodies downloaded),
    cached (answered from the cache), skipped_4xx, failed.
    """

    def __init__(self, cache_dir, *, delay_s: float = 1.0, user_agent: str = DEFAULT_USER_AGENT,
                 retries: int = 3, timeout_s: float = 20.0, backoff_s: float = 1.0,
                 max_wait_s: float = MAX_WAIT_S, session: requests.Session | None = None):
        self.cache_dir = Path(cache_dir)
        self.delay_s = float(delay_s)
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self.retries = max(0, int(retries))
        self.timeout_s = float(timeout_s)
        self.backoff_s = float(backoff_s)
        self.max_wait_s = float(max_wait_s)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = self.user_agent
        self._lock = threading.Lock()
        self._last_request = None  # time.monotonic() of the last network request
        self._host_wait = {}  # host -> (time.monotonic() before which it is not asked, FetchError)
        self.stats = {"requests": 0, "fetched": 0, "cached": 0, "skipped_4xx": 0, "failed": 0}

    # -- cache -------------------------------------------------------------------------
    def body_path(self, url: str) -> Path:
        """Where the cached body of url lives (it may not exist yet)."""
        return self.cache_dir / f"{url_key(url)}.body"

    def status_path(self, url: str) -> Path:
        """Where a remembered 4xx answer for url lives (it may not exist yet)."""
        return self.cache_dir / f"{url_key(url)}.status"

    def remembered_status(self, url: str) -> int | None:
        """The final 4xx status remembered for url, or None. A remembered 429 or 503 (older
        versions of this module wrote them) is not final: None."""
        path = self.status_path(url)
        if not path.is_file():
            return None
        try:
            status = int(json.loads(path.read_text())["status"])
        except (OSError, ValueError, KeyError, TypeError):
            return 400  # unreadable: still a remembered 4xx, as before
        return None if status in NOT_FINAL_STATUS else status

    def is_cached(self, url: str) -> bool:
        """True if url's body or its final 4xx answer is in the cache (no request will be made)."""
        return self.body_path(url).is_file() or self.remembered_status(url) is not None

    # -- network -----------------------------------------------------------------------
    def _wait_turn(self) -> None:
        """Sleep until delay_s has passed since the previous network request."""
        if self._last_request is not None:
            wait = self.delay_s - (time.monotonic() - self._last_request)
            if wait > 0:
                time.sleep(wait)
        self._last_request = time.monotonic()

    def get(self, url: str) -> bytes | None:
        """The body of url (bytes), from the cache when there; None on a final 4xx answer.

        Raises FetchError when the URL still fails after ``retries`` retries, when the
        server asks (Retry-After) for a wait longer than ``max_wait_s`` seconds, or when it
        asked so earlier and that time has not passed (no request is made then).
        """
        with self._lock:
            body_path, status_path = self.body_path(url), self.status_path(url)
            if body_path.is_file():
                self.stats["cached"] += 1
                log.debug("cached %s", url)
                return body_path.read_bytes()
            if self.remembered_status(url) is not None:
                self.stats["cached"] += 1
                self.stats["skipped_4xx"] += 1
                log.info("skip %s (remembered HTTP %s)", url, status_path.read_text().strip()[:40])
                return None
            if status_path.is_file():  # a 429/503 remembered by an older version: ask again
                status_path.unlink()
            host = urlsplit(url).netloc
            until, cause = self._host_wait.get(host, (0.0, None))
            if cause is not None and time.monotonic() < until:
                self.stats["failed"] += 1
                raise FetchError(url, f"not asked: {host} asked to wait {until - time.monotonic():.0f} s more "
                                      f"(Retry-After on {cause.url}, past max_wait_s={self.max_wait_s:g} s); "
                                      f"try again later", kind=cause.kind, status=cause.status,
                                 retry_after_s=until - time.monotonic())
            return self._fetch(url, body_path, status_path)

    def _fetch(self, url: str, body_path: Path, status_path: Path) -> bytes | None:
        last: FetchError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                wait = self.backoff_s * (2 ** (attempt - 1))
                if last.retry_after_s is not None:
                    wait = max(wait, last.retry_after_s)  # at most max_wait_s: checked when it came
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
            status = resp.status_code
            if status >= 500 or status == 429:
                kind = "rate_limited" if status == 429 else "http"
                header = resp.headers.get("Retry-After")
                retry_after = retry_after_seconds(header)
                if retry_after is not None and retry_after > self.max_wait_s:
                    self.stats["failed"] += 1
                    err = FetchError(url, f"HTTP {status}: the server asks to wait {retry_after:.0f} s "
                                          f"(Retry-After: {header.strip()}), longer than max_wait_s="
                                          f"{self.max_wait_s:g} s; not retried early, try again later",
                                     kind=kind, status=status, retry_after_s=retry_after)
                    self._host_wait[urlsplit(url).netloc] = (time.monotonic() + retry_after, err)
                    log.error("%s", err)
                    raise err
                said = f" (Retry-After: {header.strip()})" if retry_after is not None else ""
                last = FetchError(url, f"HTTP {status}{said}", kind=kind, status=status, retry_after_s=retry_after)
                continue
            if status >= 400:
                self.stats["skipped_4xx"] += 1
                log.warning("skip %s: HTTP %d (not retried)", url, status)
                write_atomic(status_path, json.dumps({"url": url, "status": status}).encode())
                return None
            body = resp.content
            write_atomic(body_path, body)
            self.stats["fetched"] += 1
            log.info("fetched %s (%d bytes)", url, len(body))
            return body
        self.stats["failed"] += 1
        log.error("failed %s after %d tries: %s", url, self.retries + 1, last)
        raise last
