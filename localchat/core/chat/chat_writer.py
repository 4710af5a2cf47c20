"""A reply streamed into the chat store in small transactions, so that a kill
loses at most the last few pieces."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localchat.core.chat.store import ChatStore, Status


class ReplyWriter:
    """Streams a reply into the store in small transactions.

    Text is appended to the row every :attr:`FLUSH_PIECES` pieces or
    :attr:`FLUSH_SECONDS` seconds, whichever comes first, so a kill loses at
    most that much; :meth:`finish` writes the rest and the outcome."""

    FLUSH_PIECES = 8
    FLUSH_SECONDS = 0.05

    def __init__(self, store: ChatStore, message_id: int) -> None:
        self.store = store
        self.message_id = message_id
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()
        self.finished = False

    def append(self, text: str) -> None:
        self._buffer.append(text)
        if (
            len(self._buffer) >= self.FLUSH_PIECES
            or time.monotonic() - self._last_flush >= self.FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            text, self._buffer = "".join(self._buffer), []
            self.store._append(self.message_id, text)
        self._last_flush = time.monotonic()

    def finish(self, status: Status = "done", stats: dict[str, Any] | None = None) -> None:
        text, self._buffer = "".join(self._buffer), []
        self.store._finish(self.message_id, text, status, stats)
        self.finished = True
