"""The document index as the window drives it: the collections listed, and
indexing (make, add to, update, remove) one task at a time on a background
thread, with Pause, Resume and Stop, the folders watched in between.

The indexer reports each file it starts; the thread passes on at most one
report per ``PROGRESS_S`` (and the last), so a folder of a thousand small
files does not flood the GUI thread with signals. Pause holds the task
under way at its next file (and a task started while paused at its first);
Stop ends it after
the file being read (what was done stays done, the collection is marked
unfinished, and an update finishes it). Everything lands in
``DocumentsState``, which the Documents window, the chat's Documents button
and the status bar draw.

The index (``documents.sqlite``) is opened when first needed (the Documents
window, a grounded chat, or at start-up when the file exists, to watch the
collections' folders): a user who never makes a collection never gets one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from localchat.core import paths
from localchat.core.documents import indexer
from localchat.core.documents.indexer import Control, Progress, UpdateReport
from localchat.core.documents.store import Collection, DocumentStore
from localchat.ui.bridge import Emit, JobThread, LatestJobs
from localchat.ui.folder_watch import DEBOUNCE_MS, FolderWatch, watched_paths
from localchat.ui.state import DocumentsState, IndexTask

PROGRESS_S = 0.1
"""At most ten progress reports a second reach the GUI thread."""

Listing = tuple[list[Collection], dict[str, tuple[list[str], list[str]]]]
"""The collections, and the folders and files of each to watch."""


@dataclass(frozen=True)
class Ended:
    """A task's end: its report (None for a removal) and the index as it is now."""

    task: IndexTask
    report: UpdateReport | None
    listing: Listing


class Throttle:
    """Passes a progress report on to ``send`` when ``interval`` seconds have
    gone by since the last one passed, and the last report (all files done)
    always. Called on the indexing thread."""

    def __init__(self, send: Callable[[Progress], None], interval: float = PROGRESS_S) -> None:
        self.send, self.interval = send, interval
        self._last = float("-inf")

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if progress.files_done == progress.files_total or now - self._last >= self.interval:
            self._last = now
            self.send(progress)


class IndexThread(JobThread):
    progressed = Signal(object)  # Progress


class Indexing(QObject):
    """``add``, ``update``, ``remove``; ``pause``, ``resume``, ``stop``; the
    store (``store()``) for the chats that draw on it."""

    message = Signal(str, int)
    """A line for the status bar, and how long it stays (ms)."""
    ended = Signal(object)
    """A task is over (``Ended``), and the state says so."""
    failed = Signal(str)
    """A task failed: the one-line reason (said by ``message`` too)."""

    def __init__(
        self,
        state: DocumentsState,
        path: Path | None = None,
        parent: QObject | None = None,
        *,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.path = path if path is not None else paths.home() / "documents.sqlite"
        self._store: DocumentStore | None = None
        self._opening = threading.Lock()
        self._queue: list[IndexTask] = []
        self._paths: dict[str, tuple[Path, ...]] = {}
        """The folders and files an "add" task adds, by collection."""
        self._job: IndexThread | None = None
        self._control: Control | None = None
        self._closing = False
        self.listings = LatestJobs(self)
        self.listings.done.connect(self._listed)
        self.listings.failed.connect(lambda message: self._say(f"Documents: {message}"))
        self.embedding_for: Callable[[str], Any] | None = None
        """The embedding model a collection names, loaded in the window's
        engine (its calls take their turn with replies and requests)."""
        self.watch = FolderWatch(self, debounce_ms=debounce_ms)
        self.watch.changed.connect(lambda name: self.update(name, quiet=True))

    # -- the store --------------------------------------------------------------------

    def exists(self) -> bool:
        return self._store is not None or self.path.exists()

    def store(self) -> DocumentStore:
        """The index, opened on first use (from any thread)."""
        with self._opening:
            if self._store is None:
                self._store = DocumentStore(self.path)
            return self._store

    def start(self) -> None:
        """At start-up: list the collections and watch their folders (only
        when there is an index already)."""
        if self.exists():
            self.refresh()

    def refresh(self) -> None:
        """List the collections again (off the GUI thread; the latest wins)."""
        if not self._closing:
            self.listings.request(lambda: lambda _emit: self._list())

    def _list(self) -> Listing:
        store = self.store()
        collections = store.collections()
        return collections, {c.name: watched_paths(store, c) for c in collections}

    def _listed(self, listing: Listing) -> None:
        collections, watched = listing
        self.state.set_collections(collections)
        self.watch.watch(watched)

    # -- tasks --------------------------------------------------------------------------

    def add(self, name: str, roots: list[Path]) -> None:
        """Make collection ``name`` of these folders and files (or add them to
        it) and index them."""
        self._paths[name] = (*self._paths.get(name, ()), *roots)
        self._enqueue(IndexTask("add", name))

    def update(self, name: str, *, quiet: bool = False) -> None:
        """Bring ``name`` up to date (an unfinished one: finish it). ``quiet``:
        the folder watch's, said in the status bar only if it changed something."""
        found = self.state.find(name)
        if quiet and found is not None and found.embedder and self.embedding_for is None:
            return  # no engine to embed with: Update says so
        waiting = [t for t in self._queue if t.name == name]
        if any(t.action in ("update", "add") for t in waiting):
            return  # the one waiting will see this change too
        self._enqueue(IndexTask("update", name, quiet=quiet))

    def remove(self, name: str) -> None:
        """Remove ``name`` from the index (its files stay): after the task
        under way for it, which is stopped."""
        self._queue = [t for t in self._queue if t.name != name]
        self._paths.pop(name, None)
        if self.state.task is not None and self.state.task.name == name:
            self.stop()
        self._enqueue(IndexTask("remove", name))

    def pause(self) -> None:
        if self._control is not None:
            self._control.pause()
        self._publish(paused=True)

    def resume(self) -> None:
        if self._control is not None:
            self._control.resume()
        self._publish(paused=False)
        self._next()

    def stop(self) -> None:
        """Stop the task under way after its file (and drop the updates
        waiting: the watch or Update asks again)."""
        self._queue = [t for t in self._queue if t.action == "remove"]
        if self._control is not None and self.state.task is not None:
            self._control.stop()
            self.state.set_work(replace(self.state.task, stopping=True), self._waiting())
        self._publish(paused=False)
        self._next()

    def busy(self) -> bool:
        return self._job is not None

    def _enqueue(self, task: IndexTask) -> None:
        if self._closing:
            return
        self._queue.append(task)
        self._publish()
        self._next()

    def _waiting(self) -> list[str]:
        return list(dict.fromkeys(t.name for t in self._queue))

    def _publish(self, *, paused: bool | None = None) -> None:
        self.state.set_work(self.state.task, self._waiting(), paused=paused)

    def _next(self) -> None:
        if self._job is not None or not self._queue or self._closing:
            return
        task = self._queue.pop(0)
        control = Control()
        if self.state.paused:  # it looks for its files, then waits at the first
            control.pause()
        roots = list(self._paths.pop(task.name, ())) if task.action == "add" else []
        job = IndexThread(lambda emit: self._run(task, roots, control, job, emit), self)
        self._job, self._control = job, control
        job.progressed.connect(self._progressed)
        job.done.connect(self._done)
        job.failed.connect(lambda message: self._failed(task, message))
        job.finished.connect(lambda: self._finished(job))
        self.state.set_work(task, self._waiting())
        job.start()

    def _run(
        self, task: IndexTask, roots: list[Path], control: Control, job: IndexThread, _emit: Emit
    ) -> Ended:
        """The task, on its thread."""
        store = self.store()
        report: UpdateReport | None = None
        throttle = Throttle(job.progressed.emit)
        if task.action == "remove":
            store.remove(store.collection(task.name).id)
        elif task.action == "add":
            report = indexer.add(store, task.name, roots, progress=throttle, control=control)
        else:
            embedder = store.collection(task.name).embedder
            embedding = None
            if embedder and self.embedding_for is not None:
                embedding = self.embedding_for(embedder)
            report = indexer.update(
                store, task.name, progress=throttle, control=control, embedding=embedding
            )
        return Ended(task, report, self._list())

    def _progressed(self, progress: Progress) -> None:
        task = self.state.task
        if task is not None:
            self.state.set_work(replace(task, progress=progress))

    def _done(self, ended: Ended) -> None:
        self.state.set_work(None, self._waiting())  # over (its thread is returning)
        self._listed(ended.listing)
        self._say(said(ended))
        self.ended.emit(ended)

    def _failed(self, task: IndexTask, message: str) -> None:
        self.state.set_work(None, self._waiting())
        what = {"add": "Indexing", "update": "Updating", "remove": "Removing"}[task.action]
        self._say(f"{what} {task.name} failed: {message}", 15000)
        self.failed.emit(message)
        self.refresh()

    def _finished(self, job: IndexThread) -> None:
        if job is not self._job:
            return
        self._job, self._control = None, None
        self.state.set_work(None, self._waiting())
        self._next()

    def _say(self, text: str, msecs: int = 10000) -> None:
        if text:
            self.message.emit(text, msecs)

    def close(self, msecs: int = 5000) -> None:
        """The app closes: the task under way stops after its file (an
        unfinished collection is finished by its next update)."""
        self._closing = True
        self._queue.clear()
        if self._control is not None:
            self._control.stop()
        if self._job is not None:
            self._job.wait(msecs)
        self.listings.wait(msecs)
        with self._opening:
            if self._store is not None and (self._job is None or self._job.isFinished()):
                self._store.close()
                self._store = None


def said(ended: Ended) -> str:
    """A task's end in a line ("" for an update that found nothing to do)."""
    task, report = ended.task, ended.report
    if report is None:
        return f"{task.name} removed from the index (its files stay where they are)"
    if report.stopped:
        return f"Stopped: {task.name} is unfinished (Resume goes on from there)"
    if task.action == "update" and not report.indexed and not report.removed:
        return "" if task.quiet else f"{task.name} is up to date"
    parts = [f"{len(report.indexed):,} indexed"]
    if report.removed:
        parts.append(f"{len(report.removed):,} removed")
    if report.skipped:
        parts.append(f"{len(report.skipped):,} skipped")
    return f"{task.name}: " + ", ".join(parts)
