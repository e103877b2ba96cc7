"""lib.fetch against a real local HTTP server (threaded, 127.0.0.1, port 0) serving real pages."""
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from lib.fetch import Fetcher, FetchError, url_key

ROOT = Path(__file__).resolve().parent.parent
PG_SNAPSHOT = ROOT / "data/snapshot/pg"


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 serving files from a folder, plus test routes.

    /<file>          the file from `folder` (404 when absent)
    /flaky/<file>    500 on the first `flaky_failures` requests for that path, then the file
    /broken          always 500
    /slow/<file>     the first request waits `slow_s` seconds before answering, later ones don't
    Every request is recorded in `requests` as (monotonic time, path, user agent).
    """

    def __init__(self, folder: Path, flaky_failures: int = 2, slow_s: float = 1.5):
        self.folder = Path(folder)
        self.flaky_failures = flaky_failures
        self.slow_s = slow_s
        self.requests = []
        self.hits = {}
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

            def reply(self, status, body):
                try:
                    self.send_response(status)
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
