"""Collect a persona's essays, online from paulgraham.com or from the snapshot (collect_essays);
the pages are parsed by lib.essays.

    collect_essays(base_url=..., ...)            -> (documents, info)

    python -m lib.scrape parse data/snapshot/pg/13sentences.html ...   # one JSON line per page
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urljoin


from lib.essays import NON_ESSAY_SLUGS, decode_page, essay_document, parse_articles_index, parse_essay_html
from lib.fetch import DEFAULT_USER_AGENT, Fetcher, FetchError
from lib.records import Document
from lib.runfiles import display_path

SNAPSHOT_INDEX = "articles.html"


def _snapshot_entries(snapshot_dir: Path, base_url: str) -> list[dict]:
    """Essays of the snapshot: articles.html order first, then any other page, by name."""
    index_path = snapshot_dir / SNAPSHOT_INDEX
    entries = parse_articles_index(index_path.read_bytes(), base_url) if index_path.is_file() else []
    listed = {e["slug"] for e in entries}
    base = base_url if base_url.endswith("/") else base_url + "/"
    entries = [e for e in entries if (snapshot_dir / f"{e['slug']}.html").is_file()]
    for path in sorted(snapshot_dir.glob("*.html")):
        if path.stem not in listed and path.stem not in NON_ESSAY_SLUGS:
            entries.append({"slug": path.stem, "title": path.stem, "url": urljoin(base, path.name)})
    return entries


def collect_essays(*, base_url: str, index_page: str = "articles.html", cache_dir, snapshot_dir,
                   offline: bool = False, delay_s: float = 1.0, user_agent: str = DEFAULT_USER_AGENT,
                   retries: int = 3, timeout_s: float = 20.0, max_documents: int = 0,
                   backoff_s: float = 1.0, log=print) -> tuple[list[Document], dict]:
    """Collect the essays: online through lib.fetch (cached in cache_dir), else from the snapshot.

    Online: fetch index_page, then every essay it lists (in its order; the first
    max_documents, 0 = all). If the network is unreachable (the index request fails with a
    connection error or timeout), the index answers 4xx, or offline=True, the committed
    snapshot in snapshot_dir is read instead, and ``log`` says so. Pages that fail to fetch
    or parse are logged and skipped.

    Returns (documents, info). Each document: {"id": slug, "kind": "essay", "title", "date",
    "year", "month", "source": url, "text", "notes"}. info: {"mode": "online" | "snapshot",
    "reason", "index_url", "listed", "documents", "fetched", "cached", "skipped_404",
    "failed", "parse_failed", "pages_repaired", "errors": [...]}; pages_repaired counts the
    pages whose text needed an encoding repair (mojibake, stray Windows-1252 bytes in UTF-8).
    """
    snapshot_dir = Path(snapshot_dir)
    base = base_url if base_url.endswith("/") else base_url + "/"
    index_url = urljoin(base, index_page)
    info = {"mode": "online", "reason": "", "index_url": index_url, "snapshot_dir": str(snapshot_dir),
            "listed": 0, "documents": 0, "fetched": 0, "cached": 0, "skipped_404": 0, "failed": 0,
            "parse_failed": 0, "pages_repaired": 0, "errors": []}
    entries = None
    fetcher = None
    if offline:
        info["reason"] = "offline=True"
    else:
        fetcher = Fetcher(cache_dir, delay_s=delay_s, user_agent=user_agent, retries=retries,
                          timeout_s=timeout_s, backoff_s=backoff_s)
        try:
            index_bytes = fetcher.get(index_url)
        except FetchError as err:
            unreachable = err.kind in ("connection", "timeout")
            info["reason"] = f"{'network unreachable' if unreachable else 'index fetch failed'}: {err}"
        else:
            if index_bytes is None:
                info["reason"] = f"{index_url} answered 4xx"
            else:
                entries = parse_articles_index(index_bytes, base)
                if not entries:
                    info["reason"] = f"{index_url} lists no essays"
                    entries = None

    if entries is None:
        info["mode"] = "snapshot"
        entries = _snapshot_entries(snapshot_dir, base)
        if max_documents:
            entries = entries[:max_documents]
        log(f"OFFLINE: using the committed snapshot in {display_path(snapshot_dir)} ({len(entries)} pages)"
            + (f" [{info['reason']}]" if info["reason"] and not offline else ""))
    elif max_documents:
        entries = entries[:max_documents]
    info["listed"] = len(entries)

    documents = []
    for entry in entries:
        slug, url = entry["slug"], entry["url"]
        if info["mode"] == "snapshot":
            where = snapshot_dir / f"{slug}.html"
            raw = where.read_bytes()
            info["cached"] += 1
        else:
            where = url
            was_cached = fetcher.is_cached(url)
            try:
                raw = fetcher.get(url)
            except FetchError as err:
                info["failed"] += 1
                info["errors"].append(f"fetch {url}: {err}")
                log(f"FAILED {url}: {err}")
                continue
            if raw is None:
                info["skipped_404"] += 1
                log(f"skipped {url}: HTTP 4xx")
                continue
            info["cached" if was_cached else "fetched"] += 1
        try:
            decoded = decode_page(raw, str(where))
            page = parse_essay_html(decoded.text, str(where))
        except ValueError as err:
            info["parse_failed"] += 1
            info["errors"].append(f"parse {err}")
            log(f"skipped (parse error) {err}")
            continue
        if decoded.repaired:
            info["pages_repaired"] += 1
            log(f"repaired the encoding of {where} (read as {decoded.encoding}; mojibake fixed)")
        documents.append(essay_document(page, slug, url))
    info["documents"] = len(documents)
    return documents, info


def main(argv=None) -> int:
    """python -m lib.scrape parse FILE.html... : one JSON object per page on stdout."""
    parser = argparse.ArgumentParser(prog="python -m lib.scrape", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_parse = sub.add_parser("parse", help="parse saved essay pages, print one JSON line each")
    p_parse.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    failed = 0
    for file in args.files:
        try:
            decoded = decode_page(Path(file).read_bytes(), file)
            page = parse_essay_html(decoded.text, file)
        except (OSError, ValueError) as err:
            failed += 1
            message = str(err) if str(file) in str(err) else f"{file}: {err}"
            print(f"error: {message}", file=sys.stderr)
            continue
        if decoded.repaired:
            print(f"warning: {file}: encoding repaired (read as {decoded.encoding}; mojibake fixed)",
                  file=sys.stderr)
        print(json.dumps(page, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
