"""A reply streamed into the chat store in small transactions, so that a kill
loses at most the last few pieces.

A reasoning model's thinking and its answer are buffered apart and written to
their own columns, but always together (one transaction per flush): a kill
never leaves one far behind the other, and thinking never leaks into the
answer the model is later sent."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localchat.core.chat.store import ChatStore, Status
    from localchat.core.engine.protocol import TokenLogprob


class ReplyWriter:
    """Streams a reply into the store in small transactions.

    Text is appended to the row every :attr:`FLUSH_PIECES` pieces (thinking
    and answer counted together) or :attr:`FLUSH_SECONDS` seconds, whichever
    comes first, so a kill loses at most that much; :meth:`finish` writes the
    rest and the outcome."""

    FLUSH_PIECES = 8
    FLUSH_SECONDS = 0.05

    def __init__(self, store: ChatStore, message_id: int) -> None:
        self.store = store
        self.message_id = message_id
        self._answer: list[str] = []
        self._thinking: list[str] = []
        self._last_flush = time.monotonic()
        self.finished = False

    def append(self, text: str, reasoning: bool = False) -> None:
        """Add a piece of the answer, or of the thinking when ``reasoning``."""
        (self._thinking if reasoning else self._answer).append(text)
        if (
            len(self._answer) + len(self._thinking) >= self.FLUSH_PIECES
            or time.monotonic() - self._last_flush >= self.FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if self._answer or self._thinking:
            text, thinking = self._take()
            self.store._append(self.message_id, text, thinking)
        self._last_flush = time.monotonic()

    def finish(
        self,
        status: Status = "done",
        stats: dict[str, Any] | None = None,
        tokens: Sequence[TokenLogprob] = (),
    ) -> None:
        """Write the rest, the outcome and, when given, the reply's tokens
        (with their log-probabilities: they come only with the end of a
        reply), all in one transaction."""
        text, thinking = self._take()
        blob = None
        if tokens:
            from localchat.core.chat import token_codec  # with the engine, not at start-up

            blob = token_codec.encode(tokens)
        self.store._finish(self.message_id, text, status, stats, thinking, blob)
        self.finished = True

    def _take(self) -> tuple[str, str]:
        """The buffered answer and thinking, emptying the buffers."""
        text, thinking = "".join(self._answer), "".join(self._thinking)
        self._answer, self._thinking = [], []
        return text, thinking
