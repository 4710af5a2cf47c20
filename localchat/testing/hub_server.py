"""A local HTTP server that speaks the part of the Hugging Face Hub's protocol
LocalChat uses, for tests and benchmarks (select it with ``HF_ENDPOINT``).

Endpoints, as the Hub answers them:

* ``GET /api/models?search=&filter=gguf&sort=&limit=``: repository search;
* ``GET /api/models/{repo}`` and ``.../revision/{rev}``: repository info (its commit);
* ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=&expand=``: files, with
  size, git blob id and the LFS sha256;
* ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}``, with ``Range`` (206 and
  ``Content-Range``), ``ETag``, ``X-Repo-Commit``; errors carry ``X-Error-Code``
  (``RepoNotFound``, ``EntryNotFound``, ``GatedRepo``) like the Hub's.

Faults to order: close the connection after N bytes of a file
(:attr:`FakeHub.drop_after`), serve wrong bytes (``corrupt``), serve slowly
(:attr:`FakeHub.bytes_per_s`), answer the API late (:attr:`FakeHub.api_delay`),
gate a repository behind a token. Every ranged
or full GET of a file is logged in :attr:`FakeHub.served` as (path, first byte,
bytes sent), so a test can check that a resume fetched only what was missing.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2026-01-01T00:00:00.000Z"
    corrupt: set[str] = field(default_factory=set)
    """Paths served with one byte changed (their listed sha256 is the true one)."""
    lfs: bool = True
    sha: str = ""

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha1(self.repo_id.encode()).hexdigest()


class FakeHub:
    """Start with :meth:`start` (or as a context manager); ``url`` is the endpoint."""

    TOKEN = "hf_good_token"

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.drop_after: dict[str, int] = {}
        """Close the connection after this many bytes of a file (each request)."""
        self.bytes_per_s: float = 0.0
        """Throttle file bodies (0: as fast as possible)."""
        self.api_delay: float = 0.0
        """Seconds to wait before answering a search, info or file-list request."""
        self.served: list[tuple[str, int, int]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, repo_id: str, files: dict[str, bytes], **kwargs: Any) -> FakeRepo:
        repo = FakeRepo(repo_id, files, **kwargs)
        self.repos[repo_id] = repo
        return repo

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def blob(n: int, seed: int = 0) -> bytes:
    """``n`` incompressible-looking bytes (a stand-in for a model file)."""
    import random

    rng, step = random.Random(seed), 64 << 20  # randbytes takes at most 256 MiB at once
    return b"".join(rng.randbytes(min(step, n - i)) for i in range(0, n, step))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_hashes: dict[int, tuple[bytes, str]] = {}


def _sha256(data: bytes) -> str:
    """sha256, remembered per file: computed once, not on every request."""
    known = _hashes.get(id(data))
    if known is None or known[0] is not data:
        known = _hashes[id(data)] = (data, sha256(data))
    return known[1]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- dispatch -----------------------------------------------------------------

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _route(self, *, head: bool) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        try:
            if segments[:2] == ["api", "models"]:
                if self.hub.api_delay:
                    time.sleep(self.hub.api_delay)
                if len(segments) == 2:
                    return self._search(query)
                repo_id = "/".join(segments[2:4])
                rest = segments[4:]
                if not rest or rest[0] == "revision":
                    return self._info(repo_id)
                if rest[0] == "tree":
                    return self._tree(repo_id, "/".join(rest[2:]), query)
            elif len(segments) >= 5 and segments[2] == "resolve":
                return self._resolve("/".join(segments[:2]), "/".join(segments[4:]), head=head)
            self._error(404, "EntryNotFound", "no such endpoint")
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- API ----------------------------------------------------------------------

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _repo(self, repo_id: str) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
        return repo

    def _summary(self, repo: FakeRepo) -> dict[str, Any]:
        return {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "lastModified": repo.last_modified,
            "gated": "manual" if repo.gated else False,
            "private": False,
            "tags": ["gguf"],
            "library_name": "gguf",
        }

    def _search(self, query: dict[str, list[str]]) -> None:
        words = query.get("search", [""])[0].lower()
        found = [r for r in self.hub.repos.values() if words in r.repo_id.lower()]
        key = query.get("sort", ["downloads"])[0]
        field_of = {"downloads": "downloads", "likes": "likes", "lastModified": "last_modified"}
        if key in field_of:
            found.sort(key=lambda r: getattr(r, field_of[key]), reverse=True)
        limit = int(query.get("limit", ["1000"])[0])
        self._json([self._summary(r) for r in found[:limit]])

    def _info(self, repo_id: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        body = self._summary(repo)
        body["sha"] = repo.sha
        body["siblings"] = [{"rfilename": p} for p in repo.files]
        self._json(body)

    def _tree(self, repo_id: str, under: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, data in repo.files.items():
            if under and not path.startswith(under.rstrip("/") + "/"):
                continue
            parents = path.split("/")[:-1]
            for i in range(1, len(parents) + 1):
                folders.add("/".join(parents[:i]))
            entry: dict[str, Any] = {
                "type": "file",
                "oid": git_blob_id(data),
                "size": len(data),
                "path": path,
            }
            if repo.lfs:
                entry["lfs"] = {"oid": _sha256(data), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders]
        self._json(entries)

    # -- files ----------------------------------------------------------------------

    def _resolve(self, repo_id: str, path: str, *, head: bool) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if repo.gated and self.headers.get("Authorization") != f"Bearer {FakeHub.TOKEN}":
            self._error(401, "GatedRepo", "Access to this model is restricted")
            return
        data = repo.files.get(path)
        if data is None:
            self._error(404, "EntryNotFound", "Entry not found")
            return
        start, status = 0, 200
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first = ranged.removeprefix("bytes=").split("-")[0]
            start, status = int(first or 0), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = memoryview(data)[start:]
        if path in repo.corrupt and body:
            body = memoryview(bytes([body[0] ^ 0xFF]) + body[1:])
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{_sha256(data) if repo.lfs else git_blob_id(data)}"')
        self.send_header("X-Repo-Commit", repo.sha)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        limit = self.hub.drop_after.get(path)
        sent = 0
        try:
            if limit is None and not self.hub.bytes_per_s:  # in one go: little server CPU
                self.wfile.write(body)
                sent = len(body)
                return
            step = 64 * 1024
            while sent < len(body):
                chunk = body[sent : sent + step]
                if limit is not None and start + sent + len(chunk) > limit:
                    chunk = chunk[: max(limit - start - sent, 0)]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    return  # hang up mid-body
                self.wfile.write(chunk)
                sent += len(chunk)
                if self.hub.bytes_per_s:
                    time.sleep(len(chunk) / self.hub.bytes_per_s)
        finally:
            self.hub.served.append((path, start, sent))
