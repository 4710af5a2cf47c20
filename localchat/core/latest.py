"""Only the latest request counts: each request takes a ticket, and an answer
whose ticket is no longer the newest is dropped (an older request may finish
after a newer one).

With ``one_at_a_time``, a request made while another runs waits; a newer one
replaces it while it waits, and it starts when the running one has ended.
The engine takes one load or count at a time, and a stale load or count
need not be cut short: its answer is simply dropped.
"""

from __future__ import annotations

from collections.abc import Callable

Start = Callable[[int], bool]
"""Begins a request's work under its ticket; False when there was nothing to start."""


class Latest:
    def __init__(self, *, one_at_a_time: bool = False) -> None:
        self.one_at_a_time = one_at_a_time
        self._newest = 0
        self._running: set[int] = set()
        self._waiting: tuple[int, Start] | None = None

    def request(self, start: Start) -> int:
        """A new request, which makes every earlier one stale: ``start(ticket)``
        runs now, or (one at a time) once the running request has ended."""
        self._newest += 1
        ticket = self._newest
        if self.one_at_a_time and self._running:
            self._waiting = (ticket, start)
        else:
            self._begin(ticket, start)
        return ticket

    def current(self, ticket: int) -> bool:
        """Whether ``ticket``'s answer still counts (no request came after it)."""
        return ticket == self._newest

    def ended(self, ticket: int) -> None:
        """``ticket``'s work is over, answered or not: a waiting request starts."""
        self._running.discard(ticket)
        if self._waiting is not None and not self._running:
            waiting, start = self._waiting
            self._waiting = None
            self._begin(waiting, start)

    def drop(self) -> None:
        """Make every request so far stale, and forget one still waiting."""
        self._newest += 1
        self._waiting = None

    @property
    def running(self) -> bool:
        """Whether some request's work has started and not ended yet."""
        return bool(self._running)

    @property
    def waiting(self) -> bool:
        return self._waiting is not None

    def _begin(self, ticket: int, start: Start) -> None:
        self._running.add(ticket)
        if not start(ticket):
            self._running.discard(ticket)
