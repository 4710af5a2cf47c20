"""Bringing a collection's index up to date with its folders and files.

Only what changed is redone: a file whose size and time are those indexed
is left alone; one whose time changed but whose bytes (sha256) did not only
has its time noted; a changed or new file is extracted, cut into passages
and replaced whole, in one transaction; a file gone is removed. A file that
cannot be read is recorded as skipped, with its reason, and the rest goes
on. An update can be paused and resumed, stopped, or killed: what was done
stays done (each file is all or nothing), and the next update goes on from
there (the collection is marked as updating until one finishes).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localchat.core.documents import extract
from localchat.core.documents.chunking import chunk
from localchat.core.documents.embedding import Embedding
from localchat.core.documents.store import DocumentsError, DocumentStore, FileState

log = logging.getLogger("localchat.documents")

SKIPPED_FOLDERS = frozenset(
    {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".cache"}
)
"""Folders never walked into: tools' own files, not the user's documents."""


@dataclass(frozen=True)
class Progress:
    """Where an update is: files and bytes done of those to read, and an
    estimate of the time left (None until there is a rate to go by)."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    eta_s: float | None
    current: str = ""


@dataclass
class UpdateReport:
    indexed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    stopped: bool = False
    """Stopped before the end (the next update goes on)."""


class Control:
    """Pause, resume and stop an update from another thread."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self.stopped = False

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self.stopped = True
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait(self) -> bool:
        """Wait while paused; False when stopped."""
        self._running.wait()
        return not self.stopped


def candidates(roots: Sequence[str]) -> Iterator[tuple[Path, str | None]]:
    """The files under the roots that may be documents, each with why it
    is not one when it was named itself (a file given that is no known
    format is listed as skipped; one met in a folder is simply not)."""
    for root in roots:
        path = Path(root)
        if path.is_file():
            yield path, None if extract.format_of(path) else "not a format LocalChat reads"
            continue
        if not path.is_dir():
            yield path, "not found"
            continue
        for folder, dirs, files in os.walk(path, onerror=lambda e: None):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS and not d.startswith("."))
            for name in sorted(files):
                file = Path(folder) / name
                if not name.startswith(".") and extract.format_of(file):
                    yield file, None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def update(
    store: DocumentStore,
    name: str,
    *,
    progress: Callable[[Progress], None] | None = None,
    control: Control | None = None,
    embedding: Embedding | None = None,
) -> UpdateReport:
    """Bring collection ``name`` up to date (see the module's docstring).
    ``embedding``: the collection's embedding model, loaded: new passages
    get their vectors with them, and those without one get theirs (made
    with another model, or before it was chosen)."""
    collection = store.collection(name)
    if collection.embedder and embedding is None:
        raise DocumentsError(
            f"collection {name!r} is searched with the embedding model {collection.embedder}: "
            "it must be loaded to update it"
        )
    if embedding is not None and embedding.name != collection.embedder:
        embedding = None  # another collection's: this one has none
    cid = collection.id
    control = control or Control()
    report = UpdateReport()
    known = store.files(cid)
    seen: set[str] = set()
    todo: list[tuple[Path, int, float]] = []
    for path, problem in candidates(collection.roots):
        key = str(path)
        seen.add(key)
        if problem is not None:
            report.skipped.append((key, problem))
            if key not in known or known[key].skipped != problem:
                store.put_file(cid, key, size=0, mtime=0.0, sha256="", skipped=problem)
            continue
        try:
            st = path.stat()
        except OSError:
            continue  # gone since the walk: as if never seen
        state = known.get(key)
        if state is not None and state.size == st.st_size and state.mtime == st.st_mtime:
            report.unchanged += 1
            if state.skipped:
                report.skipped.append((key, state.skipped))
            continue
        todo.append((path, st.st_size, st.st_mtime))
    gone = [f for p, f in known.items() if p not in seen]
    if gone:
        store.drop_files([f.id for f in gone])
        report.removed = sorted(f.path for f in gone)

    store.mark_updating(cid, True)
    total = sum(size for _, size, _ in todo)
    done_bytes = 0
    t0 = time.monotonic()
    for i, (path, size, mtime) in enumerate(todo):
        if progress is not None:
            rate = done_bytes / (time.monotonic() - t0) if done_bytes else 0.0
            eta = (total - done_bytes) / rate if rate > 0 else None
            progress(Progress(i, len(todo), done_bytes, total, eta, str(path)))
        if not control.wait():
            report.stopped = True
            return report  # still marked as updating: the next update goes on
        _one(store, cid, path, size, mtime, known.get(str(path)), report, embedding)
        done_bytes += size
    if embedding is not None:
        missing = store.unembedded(cid)
        for i in range(0, len(missing), 256):
            if not control.wait():
                report.stopped = True
                return report
            part = missing[i : i + 256]
            store.put_vectors([k for k, _ in part], embedding.documents([t for _, t in part]))
    store.mark_updating(cid, False)
    if progress is not None:
        progress(Progress(len(todo), len(todo), total, total, 0.0))
    return report


def _one(
    store: DocumentStore,
    cid: int,
    path: Path,
    size: int,
    mtime: float,
    state: FileState | None,
    report: UpdateReport,
    embedding: Embedding | None = None,
) -> None:
    key = str(path)
    try:
        digest = sha256_of(path)
    except OSError as exc:
        gone = not isinstance(exc, PermissionError)
        reason = "vanished while being read" if gone else "permission denied"
        if isinstance(exc, FileNotFoundError) and state is None:
            return  # gone before it was ever indexed
        store.put_file(cid, key, size=size, mtime=mtime, sha256="", skipped=reason)
        report.skipped.append((key, reason))
        return
    if state is not None and state.sha256 == digest and not state.skipped:
        store.touch_file(state.id, mtime)
        report.unchanged += 1
        return
    try:
        doc = extract.extract(path)
    except extract.Skipped as exc:
        store.put_file(cid, key, size=size, mtime=mtime, sha256=digest, skipped=str(exc))
        report.skipped.append((key, str(exc)))
        return
    except Exception as exc:  # a bug in a reader: this file only
        log.exception("reading %s failed", path)
        reason = f"could not be read ({type(exc).__name__})"
        store.put_file(cid, key, size=size, mtime=mtime, sha256=digest, skipped=reason)
        report.skipped.append((key, reason))
        return
    passages = chunk(doc.blocks)
    if not passages:
        store.put_file(cid, key, size=size, mtime=mtime, sha256=digest, skipped="no text")
        report.skipped.append((key, "no text"))
        return
    vectors = embedding.documents([c.text for c in passages]) if embedding else None
    store.put_file(
        cid,
        key,
        size=size,
        mtime=mtime,
        sha256=digest,
        fmt=doc.format,
        title=doc.title,
        chunks=passages,
        vectors=vectors,
    )
    report.indexed.append(key)


def add(
    store: DocumentStore,
    name: str,
    roots: Sequence[Path],
    *,
    progress: Callable[[Progress], None] | None = None,
    control: Control | None = None,
    embedding: Embedding | None = None,
) -> UpdateReport:
    """Make collection ``name`` (or add folders and files to it) and index
    it; with ``embedding``, a new collection is searched by meaning too."""
    absolute = [Path(r).expanduser().resolve() for r in roots]
    missing = [str(r) for r in absolute if not r.exists()]
    if missing:
        raise DocumentsError(f"not found: {', '.join(missing)}")
    try:
        cid = store.collection(name).id
        store.add_roots(cid, absolute)
    except DocumentsError:
        cid = store.create(name, absolute)
        if embedding is not None:
            store.set_embedder(cid, embedding.name)
    return update(store, name, progress=progress, control=control, embedding=embedding)
