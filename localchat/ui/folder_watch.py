"""The folders and files of the document collections, watched while the app
runs: a change starts an update of the collection it belongs to, once the
folder has been quiet for ``debounce_ms`` (a copy of a hundred files, or an
editor's save in three steps, makes one update, not a hundred).

A folder's watch sees files come, go and be renamed (how most editors
save); a file rewritten in place is seen only by a watch on the file
itself (inotify tells a folder nothing of its files' contents). So the
folders are watched, then the indexed files, up to ``LIMIT`` paths in all
(each is a kernel watch, and their number is limited per user): past that,
a file changed in place is found by the next Update. What to watch is
worked out off the GUI thread (:func:`watched_paths`, a walk of the folders
with the indexer's rules), and applied here, on it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from localchat.core.documents.indexer import SKIPPED_FOLDERS
from localchat.core.documents.store import Collection, DocumentStore

log = logging.getLogger("localchat.documents")

DEBOUNCE_MS = 3000
"""How long a collection's folders must stay quiet before it is updated."""
LIMIT = 4000
"""The most paths watched, folders first (see the module's docstring)."""


def watched_paths(store: DocumentStore, collection: Collection) -> tuple[list[str], list[str]]:
    """The folders (the roots and the subfolders the indexer walks) and the
    files (those indexed, and roots that are files) of ``collection``."""
    folders: list[str] = []
    files: list[str] = []
    for root in collection.roots:
        path = Path(root)
        if path.is_file():
            files.append(root)
            continue
        for folder, dirs, _names in os.walk(path, onerror=lambda _e: None):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS and not d.startswith("."))
            folders.append(folder)
    files += sorted(p for p, f in store.files(collection.id).items() if not f.skipped)
    return folders, list(dict.fromkeys(files))


class FolderWatch(QObject):
    """``watch({name: (folders, files)})`` sets what is watched; ``changed``
    names a collection whose folders or files changed, after the quiet time."""

    changed = Signal(str)

    def __init__(self, parent: QObject | None = None, *, debounce_ms: int = DEBOUNCE_MS) -> None:
        super().__init__(parent)
        self.debounce_ms = debounce_ms
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self._touched)
        self.watcher.fileChanged.connect(self._touched)
        self._owners: dict[str, set[str]] = {}
        """A watched path -> the collections it belongs to."""
        self._timers: dict[str, QTimer] = {}

    def watch(self, paths: Mapping[str, tuple[list[str], list[str]]]) -> None:
        """Watch these collections' folders and files (and no others)."""
        owners: dict[str, set[str]] = {}
        for kind in (0, 1):  # every folder first, then the files
            for name, both in paths.items():
                for p in both[kind]:
                    if p in owners or len(owners) < LIMIT:
                        owners.setdefault(p, set()).add(name)
        if sum(len(f) + len(d) for d, f in paths.values()) > len(owners):
            log.info("watching %d paths of the collections (the limit): not every file", LIMIT)
        current = set(self.watcher.files()) | set(self.watcher.directories())
        self._remove([p for p in current if p not in owners])
        self._add([p for p in owners if p not in current])
        self._owners = owners
        for name in [n for n in self._timers if not any(n in o for o in owners.values())]:
            self._timers.pop(name).deleteLater()

    def watched(self) -> set[str]:
        return set(self.watcher.files()) | set(self.watcher.directories())

    def pending(self) -> list[str]:
        """The collections whose update waits for their folders to be quiet."""
        return [name for name, timer in self._timers.items() if timer.isActive()]

    def _add(self, paths: Iterable[str]) -> None:
        paths = [p for p in paths if os.path.exists(p)]
        if paths:
            failed = self.watcher.addPaths(paths)
            if failed:
                log.info("could not watch %d paths, e.g. %s", len(failed), failed[0])

    def _remove(self, paths: list[str]) -> None:
        if paths:
            self.watcher.removePaths(paths)

    def _touched(self, path: str) -> None:
        for name in self._owners.get(path, ()):
            timer = self._timers.get(name)
            if timer is None:
                timer = self._timers[name] = QTimer(self)
                timer.setSingleShot(True)
                timer.timeout.connect(lambda name=name: self.changed.emit(name))
            timer.start(self.debounce_ms)  # again from the start: quiet for that long
