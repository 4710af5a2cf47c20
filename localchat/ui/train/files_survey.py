"""What a list of data files and folders holds ("3 files and 1 folder (12
files), 2.1 MB"), for the Train pages' hints. A folder may hold a whole
disk's worth of files, so the walk runs on a job, never on the GUI thread:
until it answers, the hint says the files are being counted."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from localchat.core.units import human_size, plural
from localchat.ui.bridge import LatestJobs


def files_summary(paths: Sequence[str], suffixes: Collection[str]) -> str:
    """What the data listed holds: "3 files, 120.0 KB", "1 folder (12 files),
    2.1 MB" (a folder's files with ``suffixes``). Walks the folders: slow."""
    files = folders = inside = 0
    size = 0
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                folders += 1
                found = [p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file()]
                inside += len(found)
                size += sum(p.stat().st_size for p in found)
            else:
                files += 1
                size += path.stat().st_size
        except OSError:  # gone, or not readable: the run says so
            continue
    listed = [plural(n, what) for n, what in ((files, "file"), (folders, "folder")) if n]
    text = " and ".join(listed)
    if folders:
        text += f" ({plural(files + inside, 'file')})"
    return f"{text}, {human_size(size)}"


class FilesSurvey(QObject):
    """``summary(paths)`` answers at once: the summary when this list was
    counted, else "counting…" while a job counts it (``ready`` follows;
    only the latest list's answer counts)."""

    ready = Signal()

    def __init__(self, suffixes: Collection[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.suffixes = frozenset(suffixes)
        self._counted: tuple[tuple[str, ...], str] | None = None
        self._asked: tuple[str, ...] | None = None
        self._jobs = LatestJobs(self)
        self._jobs.done.connect(self._done)

    def summary(self, paths: Sequence[str]) -> str:
        key = tuple(paths)
        if self._counted is not None and self._counted[0] == key:
            return self._counted[1]
        if key != self._asked:
            self._asked = key
            suffixes = self.suffixes
            self._jobs.request(lambda: lambda _emit: (key, files_summary(key, suffixes)))
        return f"{plural(len(key), 'file or folder', 'files or folders')} (counting…)"

    def _done(self, answer: tuple[tuple[str, ...], str]) -> None:
        self._counted = answer
        self.ready.emit()
