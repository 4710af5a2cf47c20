"""Keeps the window's readings true to the moment: the model bar says
"Writing a reply · N tok/s" (live) while a reply is written, and the status
bar's speed and context figures go when the open chat is gone or empty."""

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
        self.tokens = 0
        self.bar.show_writing(None)
        self.timer.start()
        # The reply's job is made just after the reply starts: follow it then.
        QTimer.singleShot(0, self, self._follow)

    def _follow(self) -> None:
        job = self.replies.job
        if job is not None and self.timer.isActive():
            job.piece.connect(self._piece)

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
            self.bar.show_writing(self.rate(), self.tokens)


class Readings(QObject):
    """Clears the last reply's speed and the context meter when the open chat
    becomes none (deleted) or an empty one (a new chat)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        chats = window.chats
        # After the window's own slots (connected before these): the chat is set by then.
        chats.deleting.connect(lambda _chat: self.check())
        chats.created.connect(lambda _chat: self.check())
        chats.opened.connect(lambda _chat: self.check())

    def check(self) -> None:
        window = self.window_
        chat_id = window.chat.id
        if window.busy() or (chat_id is not None and window.store.thread(chat_id)):
            return
        window.speed.show_stats([])
        if not window.composer.toPlainText().strip():  # a draft is counted on its own
            window.chat.set_context(None)


def follow(window: MainWindow) -> tuple[ReplySpeed, Readings]:
    """Wire the window's readings (after its parts are made)."""
    return ReplySpeed(window.chat, window.replies, window.model_bar), Readings(window)
