"""Each chat's unsent message: saved as the user types (a moment after the
last key), when another chat opens and when the window closes; put back in
the composer when the chat opens again, after a restart too. Sending clears
it (the composer empties). With no chat open, the draft waits in the app's
settings until the first message makes the chat.

A chat left with nothing in it (no message, no draft, no title) is deleted:
New chat never piles up empty chats."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QPlainTextEdit

from localchat.core.chat.store import ChatStore
from localchat.core.settings import AppSettings
from localchat.ui.bridge import Background

SAVE_DELAY_MS = 600
NEW_CHAT_KEY = "new_chat_draft"
"""The ``AppSettings.ui`` key of the draft typed while no chat is open."""


class Drafts(QObject):
    """Follows ``composer``: ``show`` the chat opening (the one left keeps its
    draft), ``adopt`` a chat a reply made, ``close`` with the window."""

    discarded = Signal(int)
    """A chat left empty was deleted."""

    def __init__(
        self,
        store: ChatStore,
        settings: AppSettings,
        composer: QPlainTextEdit,
        background: Background,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store, self.settings, self.composer = store, settings, composer
        self._background = background
        self.chat_id: int | None = None
        """The chat the composer's text belongs to."""
        self._latest: dict[int, str] = {}
        """Chat -> its draft as last typed (what a pending write writes, so
        writes that finish out of order still leave the last text)."""
        self._showing = False
        self.timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS)
        self.timer.timeout.connect(self.save)
        composer.textChanged.connect(self._typed)
        self._put(settings.ui(NEW_CHAT_KEY) or "")  # typed last time with no chat open

    def _typed(self) -> None:
        if not self._showing:
            self.timer.start()

    def save(self, *, leaving: bool = False) -> None:
        """Write the composer's text as its chat's draft (off the GUI thread);
        ``leaving``: the chat is left, and deleted if nothing is in it."""
        self.timer.stop()
        text, chat_id = self.composer.toPlainText(), self.chat_id
        if chat_id is None:
            if text.strip() or self.settings.ui(NEW_CHAT_KEY):
                self.settings.set_ui(NEW_CHAT_KEY, text if text.strip() else None)
            return
        self._latest[chat_id] = text
        store, latest = self.store, self._latest

        def write() -> bool:
            store.set_draft(chat_id, latest.get(chat_id, ""))
            return leaving and store.discard_if_empty(chat_id)

        self._background.run(write, lambda gone: self._written(chat_id, gone))

    def _written(self, chat_id: int, gone: bool) -> None:
        if gone:
            self._latest.pop(chat_id, None)
            self.discarded.emit(chat_id)

    def show(self, chat_id: int | None) -> None:
        """``chat_id`` opens (None: no chat): the chat shown so far keeps the
        composer's text; the composer shows the draft of ``chat_id``."""
        if chat_id == self.chat_id:
            return
        self.save(leaving=True)
        self.chat_id = chat_id
        if chat_id is None:
            text = self.settings.ui(NEW_CHAT_KEY) or ""
        else:
            text = self._latest.get(chat_id)
            if text is None:
                text = self.store.draft(chat_id)
        self._put(str(text))

    def _put(self, text: str) -> None:
        self._showing = True
        self.composer.setPlainText(text)
        self._showing = False
        cursor = self.composer.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.composer.setTextCursor(cursor)

    def adopt(self, chat_id: int) -> None:
        """A reply made ``chat_id`` for what was typed with no chat open: what
        the composer holds now is that chat's draft."""
        if self.chat_id is None:
            if self.settings.ui(NEW_CHAT_KEY):
                self.settings.set_ui(NEW_CHAT_KEY, None)
            self.chat_id = chat_id
            self.save()

    def close(self) -> None:
        """The window closes: save (an empty open chat is deleted)."""
        self.save(leaving=True)
