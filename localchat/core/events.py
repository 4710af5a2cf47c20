"""Change notices without Qt: a state object owns an ``Event`` per kind of
change, views ``connect`` to it, and the state ``emit``s when it changes.

The state stays plain Python (testable without a display); the view decides
how to draw it. Callbacks run at once, in the order they were connected, on
the thread that emits (the GUI thread, for the window's state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Event(Generic[T]):
    """One kind of change; ``emit(value)`` calls every connected callback with it."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[T], object]] = []

    def connect(self, callback: Callable[[T], object]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[[T], object]) -> None:
        self._callbacks.remove(callback)

    def emit(self, value: T) -> None:
        for callback in list(self._callbacks):
            callback(value)
