"""lib.fetch against a real local HTTP server (threaded, 127.0.0.1, port 0) serving real pages."""
import json
import logging
import threading
import time
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from lib.fetch import Fetcher, FetchError, retry_after_seconds, url_key

ROOT = Path(__file__).resolve().parent.parent
PG_SNAPSHOT = ROOT / "data/snapshot/pg"


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 serving files from a folder, plus test routes.

    /<file>          the file from `folder` (404 when absent)
    /flaky/<file>    500 on the first `flaky_failures` requests for that path, then the file
    /broken          always 500
    /slow/<file>     the first request waits `slow_s` seconds before answering, later ones don't
    /limit/<status>/<n>/<file>
                     the first n requests for that path answer `status` (429, 503, ...) with a
                     Retry-After header of `retry_after` (a string, or a callable returning one
                     at request time; None = no header), then the file; n = "always": never the file
    Every request is recorded in `requests` as (monotonic time, path, user agent), and its
    wall-clock time (time.time()) in `wall[path]`.
    """

    def __init__(self, folder: Path, flaky_failures: int = 2, slow_s: float = 1.5, retry_after=None):
        self.folder = Path(folder)
        self.flaky_failures = flaky_failures
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.requests = []
        self.hits = {}
        self.wall = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = unquote(self.path)
                with server.lock:
                    server.requests.append((time.monotonic(), path, self.headers.get("User-Agent")))
                    server.hits[path] = hits = server.hits.get(path, 0) + 1
                    server.wall.setdefault(path, []).append(time.time())
                if path.startswith("/limit/"):
                    _, _, status, times, rest = path.split("/", 4)
                    if times == "always" or hits <= int(times):
                        value = server.retry_after() if callable(server.retry_after) else server.retry_after
                        return self.reply(int(status), b"slow down", [("Retry-After", value)] if value else [])
                    path = "/" + rest
                if path == "/broken":
                    return self.reply(500, b"server error")
                if path.startswith("/flaky/"):
                    if hits <= server.flaky_failures:
                        return self.reply(503 if hits == 1 else 500, b"try again")
                    path = path[len("/flaky"):]
                if path.startswith("/slow/"):
                    if hits == 1:
                        time.sleep(server.slow_s)
                    path = path[len("/slow"):]
                file = server.folder / path.lstrip("/")
                if path.endswith("/") or not file.is_file():
                    return self.reply(404, b"not found")
                return self.reply(200, file.read_bytes())

            def reply(self, status, body, headers=()):
                try:
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, prefix: str = "/") -> int:
        with self.lock:
            return sum(1 for _, path, _ in self.requests if path.startswith(prefix))


@pytest.fixture
def server():
    with LocalServer(PG_SNAPSHOT) as srv:
        yield srv


def fetcher(tmp_path, **kw):
    opts = dict(delay_s=0.0, retries=3, timeout_s=5.0, backoff_s=0.05, user_agent="persona-llm-test/1.0")
    opts.update(kw)
    return Fetcher(tmp_path / "cache", **opts)


def test_fetches_real_pages_and_second_crawl_makes_zero_requests(server, tmp_path):
    urls = [server.url + name for name in ("articles.html", "13sentences.html", "users.html", "taste.html")]
    missing = server.url + "no-such-essay.html"
    first = fetcher(tmp_path)
    bodies = [first.get(url) for url in urls]
    assert bodies == [(PG_SNAPSHOT / url.rsplit("/", 1)[1]).read_bytes() for url in urls]
    assert first.get(missing) is None
    assert first.stats == {"requests": 5, "fetched": 4, "cached": 0, "skipped_4xx": 1, "failed": 0}
    made = server.count()
    assert made == 5

    second = fetcher(tmp_path)  # a new crawl over the same cache: nothing goes to the network
    assert [second.get(url) for url in urls] == bodies
    assert second.get(missing) is None
    assert server.count() == made
    assert second.stats["requests"] == 0 and second.stats["cached"] == 5
    # cache files are named by the URL's sha256 and no temp file is left behind
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == sorted([f"{url_key(u)}.body" for u in urls] + [f"{url_key(missing)}.status"])


def test_500_twice_then_200_is_retried(server, tmp_path):
    f = fetcher(tmp_path, retries=3)
    body = f.get(server.url + "flaky/nft.html")
    assert body == (PG_SNAPSHOT / "nft.html").read_bytes()
    assert server.hits["/flaky/nft.html"] == 3  # 503, 500, then 200
    assert f.stats["requests"] == 3 and f.stats["fetched"] == 1


def test_5xx_that_never_ends_fails_after_the_retries(server, tmp_path):
    f = fetcher(tmp_path, retries=2)
    with pytest.raises(FetchError) as err:
        f.get(server.url + "broken")
    assert err.value.kind == "http" and err.value.status == 500
    assert "HTTP 500" in str(err.value) and "/broken" in str(err.value)
    assert server.hits["/broken"] == 3
    assert not f.is_cached(server.url + "broken")  # failures are not cached: a rerun tries again


def test_404_is_logged_and_skipped_not_retried(server, tmp_path, caplog):
    f = fetcher(tmp_path, retries=3)
    with caplog.at_level(logging.WARNING, logger="lib.fetch"):
        assert f.get(server.url + "missing.html") is None
    assert server.hits["/missing.html"] == 1
    assert any("missing.html" in r.getMessage() and "404" in r.getMessage() and r.name == "lib.fetch"
               for r in caplog.records)
    assert f.stats["skipped_4xx"] == 1


def test_slow_reply_past_the_timeout_is_retried(server, tmp_path):
    f = fetcher(tmp_path, retries=2, timeout_s=0.5)
    started = time.monotonic()
    body = f.get(server.url + "slow/fix.html")
    assert body == (PG_SNAPSHOT / "fix.html").read_bytes()
    assert server.hits["/slow/fix.html"] == 2
    assert time.monotonic() - started >= 0.5


def test_timeouts_that_never_end_raise_fetch_error(tmp_path):
    with LocalServer(PG_SNAPSHOT, slow_s=1.0) as srv:
        f = fetcher(tmp_path, retries=0, timeout_s=0.3)
        with pytest.raises(FetchError) as err:
            f.get(srv.url + "slow/fix.html")
        assert err.value.kind == "timeout"


def test_delay_between_requests_and_user_agent(server, tmp_path):
    f = fetcher(tmp_path, delay_s=0.3)
    names = ["read.html", "want.html", "alien.html", "heresy.html"]
    started = time.monotonic()
    for name in names:
        f.get(server.url + name)
    assert time.monotonic() - started >= 0.9  # three waits of 0.3 s
    times = [t for t, _, _ in server.requests]  # as the server saw them (arrival can jitter under load)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3 and min(gaps) >= 0.2 and times[-1] - times[0] >= 0.85
    assert {ua for _, _, ua in server.requests} == {"persona-llm-test/1.0"}
    # cached answers cost no delay
    started = time.monotonic()
    for name in names:
        f.get(server.url + name)
    assert time.monotonic() - started < 0.5


def test_unreachable_host_is_a_connection_error(tmp_path):
    f = fetcher(tmp_path, retries=1, timeout_s=2.0)
    with pytest.raises(FetchError) as err:
        f.get("http://127.0.0.1:9/articles.html")
    assert err.value.kind == "connection"
    assert f.stats["requests"] == 2 and f.stats["failed"] == 1


# ------------------------------------------------------------------ 429 / 503 and Retry-After

def test_retry_after_seconds_reads_both_forms():
    """RFC 9110 section 10.2.3: delay-seconds or an HTTP-date (all three date formats)."""
    now = parsedate_to_datetime("Sun, 06 Nov 1994 08:49:37 GMT").timestamp()
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(" 120 ") == 120.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:47 GMT", now=now) == 10.0
    assert retry_after_seconds("Sunday, 06-Nov-94 08:50:37 GMT", now=now) == 60.0  # RFC 850
    assert retry_after_seconds("Sun Nov  6 08:49:40 1994", now=now) == 3.0  # asctime (GMT)
    assert retry_after_seconds("Sun, 06 Nov 1994 08:00:00 GMT", now=now) == 0.0  # already past
    assert retry_after_seconds("-5") is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("") is None and retry_after_seconds(None) is None
    ahead = retry_after_seconds(formatdate(time.time() + 30, usegmt=True))  # now defaults to the clock
    assert 28.5 <= ahead <= 30.0


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_with_retry_after_seconds_wait_then_fetch_and_cache_the_page(tmp_path, status):
    with LocalServer(PG_SNAPSHOT, retry_after="2") as srv:
        f = fetcher(tmp_path, retries=3, backoff_s=0.05)
        path = f"/limit/{status}/1/nft.html"
        body = f.get(srv.url + path.lstrip("/"))
        assert body == (PG_SNAPSHOT / "nft.html").read_bytes()
        first, second = srv.wall[path]
        assert second - first >= 1.95  # Retry-After: 2 honoured, not backoff_s
        assert srv.hits[path] == 2 and f.stats["requests"] == 2 and f.stats["skipped_4xx"] == 0
        assert not f.status_path(srv.url + path.lstrip("/")).exists()  # never remembered as a final answer
        again = fetcher(tmp_path)
        assert again.get(srv.url + path.lstrip("/")) == body and srv.hits[path] == 2  # from the cache


def test_429_with_retry_after_as_an_http_date_waits_until_that_date(tmp_path):
    dates = []

    def three_seconds_ahead():
        dates.append(formatdate(time.time() + 3, usegmt=True))  # whole seconds: 2-3 s ahead
        return dates[-1]

    with LocalServer(PG_SNAPSHOT, retry_after=three_seconds_ahead) as srv:
        f = fetcher(tmp_path, retries=3, backoff_s=0.05)
        assert f.get(srv.url + "limit/429/1/fix.html") == (PG_SNAPSHOT / "fix.html").read_bytes()
        first, second = srv.wall["/limit/429/1/fix.html"]
    assert second >= parsedate_to_datetime(dates[0]).timestamp() - 0.05
    assert second - first >= 1.9


def test_429_that_never_ends_is_a_rate_limit_error_and_not_cached(server, tmp_path):
    f = fetcher(tmp_path, retries=2, backoff_s=0.05)
    url = server.url + "limit/429/always/users.html"
    with pytest.raises(FetchError) as err:
        f.get(url)
    assert err.value.kind == "rate_limited" and err.value.status == 429  # not "connection"/"timeout"
    assert "HTTP 429" in str(err.value)
    assert server.hits["/limit/429/always/users.html"] == 3
    assert not f.is_cached(url)  # a later crawl asks again


def test_retry_after_past_the_cap_fails_at_once_and_says_so(tmp_path):
    with LocalServer(PG_SNAPSHOT, retry_after="3600") as srv:
        f = fetcher(tmp_path, retries=3)  # max_wait_s: 60 s by default
        url = srv.url + "limit/429/1/taste.html"
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            f.get(url)
        assert time.monotonic() - started < 1.0  # no early retry, no hour-long sleep
        assert err.value.kind == "rate_limited" and err.value.status == 429
        assert "3600" in str(err.value) and "max_wait_s" in str(err.value)
        assert err.value.retry_after_s == 3600.0
        assert srv.hits["/limit/429/1/taste.html"] == 1 and not f.is_cached(url)
        # the same crawl does not ask that host again before the time it was given ...
        with pytest.raises(FetchError) as again:
            f.get(srv.url + "users.html")
        assert again.value.kind == "rate_limited" and "users.html" not in srv.hits and "/users.html" not in srv.hits
        # ... and a later crawl asks again: the 429 was not remembered as a final answer
        assert fetcher(tmp_path).get(url) == (PG_SNAPSHOT / "taste.html").read_bytes()


def test_429_remembered_by_an_older_crawl_is_asked_again(server, tmp_path):
    url = server.url + "articles.html"
    f = fetcher(tmp_path)
    f.status_path(url).parent.mkdir(parents=True)
    f.status_path(url).write_text(json.dumps({"url": url, "status": 429}))  # what older versions wrote
    assert not f.is_cached(url)
    assert f.get(url) == (PG_SNAPSHOT / "articles.html").read_bytes()
    assert server.hits["/articles.html"] == 1 and not f.status_path(url).exists()
