"""The model bar's live reading while a reply is written: "Writing a reply ·
N tok/s" ("Thinking · N tok/s" while a reasoning model thinks). (The status
bar's figures follow the open chat in the window itself: opening a chat
redraws them, deleting it clears them.)"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer

from localchat.ui.model_bar import ModelBar
from localchat.ui.replies import Replies
from localchat.ui.state import ChatState

if TYPE_CHECKING:
    from localchat.ui.main_window import MainWindow

TICK_MS = 500
"""How often the live speed is redrawn."""


class ReplySpeed(QObject):
    """Counts the pieces of the reply being written (one token each, near
    enough) and shows their rate in the model bar, from the first piece on."""

    def __init__(self, chat: ChatState, replies: Replies, bar: ModelBar) -> None:
        super().__init__(bar)
        self.replies, self.bar = replies, bar
        self.tokens = 0
        self.thinking = 0
        """Of the tokens, those of the model's thinking."""
        self.first = self.last = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.draw)
        chat.reply_changed.connect(self._replying)

    def _replying(self, on: bool) -> None:
        if not on:
            self.timer.stop()
            self.bar.show_ready()
            return
        self.tokens = self.thinking = 0
        self.bar.show_writing(None)
        self.timer.start()
        # The reply's job is made just after the reply starts: follow it then.
        QTimer.singleShot(0, self, self._follow)

    def _follow(self) -> None:
        job = self.replies.job
        if job is not None and self.timer.isActive():
            job.piece.connect(self._piece)
            job.thought.connect(self._thought)

    def _thought(self, piece: str) -> None:
        self.thinking += 1
        self._piece(piece)

    def _piece(self, _piece: str) -> None:
        now = time.monotonic()
        if self.tokens == 0:
            self.first = now
        self.tokens += 1
        self.last = now

    def rate(self) -> float | None:
        """Tokens a second since the first (None before the second)."""
        if self.tokens < 2 or self.last <= self.first:
            return None
        return (self.tokens - 1) / (self.last - self.first)

    def draw(self) -> None:
        if self.timer.isActive():
            self.bar.show_writing(self.rate(), self.tokens, self.thinking)


def follow(window: MainWindow) -> ReplySpeed:
    """Wire the live speed (after the window's parts are made)."""
    return ReplySpeed(window.chat, window.replies, window.model_bar)
