"""Blocking core work, run off the GUI thread, reported as Qt signals.

A job is a function that takes an ``emit(text)`` callback (for streamed
pieces) and returns its result. It runs on a ``QThread`` whose run function
only emits: each piece crosses to the GUI thread as a queued ``piece``
signal, and the end as ``done`` or ``failed`` (a one-line message). Slots on
the GUI thread apply the results; no job touches a widget or the window's
state. The GUI thread never waits on the engine or the database; to stop a
reply it calls the session's ``stop``, which only writes a flag.

``LatestJobs`` runs requests of which only the latest counts (a model load,
a context count, the model survey); ``Background`` runs store writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from PySide6.QtCore import QObject, QThread, Signal

from localchat.core.errors import LocalChatError
from localchat.core.latest import Latest

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
        self.ticket = 0
        """The request it answers, for ``LatestJobs``."""
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


class LatestJobs(QObject):
    """Jobs for requests of which only the latest counts (``core.latest``):
    ``request(make)`` takes a ticket, and ``make()`` gives the job when it
    starts (None: nothing to do). A job's answer reaches ``done`` or
    ``failed`` only while its request is the newest; ``ended`` follows each
    job that ran. With ``one_at_a_time``, a newer request waits for the
    running job, and only the newest waiting one starts.

    The slots here belong to this object, which lives on the GUI thread: the
    jobs' signals arrive queued, and every answer is applied there."""

    done = Signal(object)
    failed = Signal(str)
    ended = Signal()

    def __init__(self, parent: QObject | None = None, *, one_at_a_time: bool = False) -> None:
        super().__init__(parent)
        self.latest = Latest(one_at_a_time=one_at_a_time)
        self._threads: dict[int, JobThread] = {}

    def request(self, make: Callable[[], Job | None]) -> int:
        def start(ticket: int) -> bool:
            job = make()
            if job is None:
                return False
            thread = JobThread(job)
            thread.ticket = ticket
            self._threads[ticket] = thread
            thread.done.connect(self._done)
            thread.failed.connect(self._failed)
            thread.finished.connect(self._finished)
            thread.start()
            return True

        return self.latest.request(start)

    @property
    def running(self) -> bool:
        return self.latest.running

    @property
    def waiting(self) -> bool:
        return self.latest.waiting

    def drop(self) -> None:
        """Whatever runs or waits now is stale: its answer is dropped."""
        self.latest.drop()

    def wait(self, msecs: int | None = None) -> None:
        """Block until the jobs running now have ended (closing the window)."""
        for thread in list(self._threads.values()):
            if msecs is None:
                thread.wait()
            else:
                thread.wait(msecs)

    def _ticket(self) -> int:
        sender = self.sender()
        return sender.ticket if isinstance(sender, JobThread) else -1

    def _done(self, result: object) -> None:
        if self.latest.current(self._ticket()):
            self.done.emit(result)

    def _failed(self, message: str) -> None:
        if self.latest.current(self._ticket()):
            self.failed.emit(message)

    def _finished(self) -> None:
        ticket = self._ticket()
        self._threads.pop(ticket, None)
        self.latest.ended(ticket)
        self.ended.emit()


class Background(QObject):
    """Store writes off the GUI thread; ``then`` runs on the GUI thread with the
    result, and a failure comes out of ``failed`` (a one-line message)."""

    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ops: set[JobThread] = set()

    def run(self, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        op = JobThread(lambda _emit: work())
        self._ops.add(op)
        op.done.connect(then)
        op.failed.connect(self.failed)
        op.finished.connect(lambda: self._ops.discard(op))
        op.start()

    def wait(self, msecs: int) -> None:
        for op in list(self._ops):
            op.wait(msecs)
