"""Blocking core work, run off the GUI thread, reported as Qt signals.

A job is a function that takes an ``emit(text)`` callback (for streamed
pieces) and returns its result. It runs on a ``QThread``; each piece crosses to
the GUI thread as a queued ``piece`` signal, and the end as ``done`` or
``failed`` (a one-line message). The GUI thread never waits on the engine or
the database; to stop a reply it calls the session's ``stop``, which only
writes a flag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from PySide6.QtCore import QObject, QThread, Signal

from localchat.core.errors import LocalChatError

log = logging.getLogger(__name__)

Emit = Callable[[str], None]
Job = Callable[[Emit], Any]


class JobThread(QThread):
    piece = Signal(str)
    done = Signal(object)
    failed = Signal(str)

    _alive: ClassVar[set[JobThread]] = set()
    """Started jobs, held until their thread has ended: a QThread object freed
    while its thread runs aborts the process (a window dropped mid-load, or a
    job replaced by the next one while it emits ``finished``)."""

    def __init__(self, job: Job, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._job = job
        self.finished.connect(self._release)

    def start(self, priority: QThread.Priority = QThread.Priority.InheritPriority) -> None:
        JobThread._alive.add(self)
        super().start(priority)

    def _release(self) -> None:
        self.wait()  # ``finished`` comes just before the thread ends
        JobThread._alive.discard(self)

    def run(self) -> None:
        try:
            result = self._job(self.piece.emit)
        except LocalChatError as exc:
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # a bug: say so in one line rather than lose it
            log.exception("a background job failed")
            text = " ".join(str(exc).split())
            if len(text) > 200:
                text = text[:199] + "…"
            self.failed.emit(f"internal error: {type(exc).__name__}: {text}")
            return
        self.done.emit(result)
