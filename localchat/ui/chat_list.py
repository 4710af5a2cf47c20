"""The chats, left of the conversation: search, New chat, the list (grouped
by date, see ``chat_rows``), and each chat's menu (rename, export, fine-tune
on it, delete, with an Undo for some seconds). Store writes run in the
background; the list follows when they are done."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLineEdit,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.chat_titles import plain_title
from localchat.core.chat.store import ChatStore
from localchat.core.errors import LocalChatError
from localchat.ui.bridge import Background
from localchat.ui.chat_rows import CHAT_ROLE, ChatRows
from localchat.ui.state import ChatState

UNDO_MS = 10_000
"""How long a deleted chat can be brought back (then it is deleted for good)."""


class ChatList(QWidget):
    """``search``, ``new_button`` and ``list`` (one row per chat, the open one
    current), and ``undo_button`` (for the status bar: shown while a deleted
    chat can come back). It opens nothing itself: it asks, by signal."""

    opened = Signal(int)
    """A chat clicked in the list."""
    created = Signal(int)
    """New chat made (in the store), or the open chat, when it is still empty."""
    deleting = Signal(int)
    """A chat is about to be deleted (close it if it is open)."""
    restored = Signal(int)
    """A deleted chat is back (Undo)."""
    fine_tune = Signal(int)
    """"Fine-tune on this chat…" from its menu."""
    message = Signal(str, int)
    """A line for the status bar, and how long it stays (ms)."""

    def __init__(
        self,
        store: ChatStore,
        chat: ChatState,
        background: Background,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.store, self.chat, self._background = store, chat, background
        self.search = QLineEdit(placeholderText="Search chats")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.refresh)
        self.new_button = QPushButton("New chat")
        self.new_button.clicked.connect(self.new_chat)
        self.list = ChatRows()
        self.list.currentItemChanged.connect(self._selected)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Bring the deleted chat back")
        self.undo_button.hide()
        self.undo_button.clicked.connect(self.undo_delete)
        self._trashed: int | None = None
        """The chat deleted last, while it can come back."""
        self._undo_timer = QTimer(self, singleShot=True, interval=UNDO_MS)
        self._undo_timer.timeout.connect(self._purge)
        self.list.customContextMenuRequested.connect(self._menu)
        self.setMinimumWidth(200)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.new_button)
        layout.addWidget(self.list)

    def refresh(self) -> None:
        query = self.search.text().strip()
        chats = self.store.search(query) if query else self.store.list_chats()
        self.list.blockSignals(True)
        self.list.show_chats(chats, self.chat.id)
        self.list.blockSignals(False)

    def _refreshed(self, _result: object = None) -> None:
        self.refresh()

    def _selected(self, item: QListWidgetItem | None) -> None:
        if item is not None:
            self.opened.emit(int(item.data(CHAT_ROLE)))

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        chat_id = int(item.data(CHAT_ROLE))
        menu = QMenu(self.window())
        menu.addAction("Rename…", lambda: self._rename(chat_id))
        menu.addAction("Export as Markdown…", lambda: self._export(chat_id, "md"))
        menu.addAction("Export as JSON…", lambda: self._export(chat_id, "json"))
        menu.addAction("Fine-tune on this chat…", lambda: self.fine_tune.emit(chat_id))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self._delete(chat_id))
        menu.exec(self.list.mapToGlobal(pos))

    # -- the actions --------------------------------------------------------------------

    def new_chat(self) -> None:
        """A new chat; the open one when nothing is in it yet (no pile of empty chats)."""
        if self.chat.id is not None and not self.store.thread(self.chat.id):
            self.created.emit(self.chat.id)
            return
        self._background.run(self.store.create_chat, self._created)

    def _created(self, chat_id: int) -> None:
        self.created.emit(chat_id)

    def _rename(self, chat_id: int) -> None:
        title, ok = QInputDialog.getText(
            self.window(), "Rename chat", "Title:", text=self.store.chat(chat_id).title
        )
        if ok:
            self.rename_chat(chat_id, title.strip())

    def rename_chat(self, chat_id: int, title: str) -> None:
        self._background.run(lambda: self.store.rename_chat(chat_id, title), self._refreshed)

    def _delete(self, chat_id: int) -> None:
        self.delete_chat(chat_id)

    def delete_chat(self, chat_id: int) -> None:
        """Delete at once, no question: the status bar names the chat and offers
        Undo for ``UNDO_MS``; then the chat is deleted for good."""
        try:
            title = plain_title(self.store.chat(chat_id).title, limit=40) or "New chat"
        except LocalChatError:
            return
        self.deleting.emit(chat_id)

        def deleted(_result: object) -> None:
            self._purge()  # the previous deletion's undo is over
            self._trashed = chat_id
            self.refresh()
            self.message.emit(f"Deleted “{title}”", UNDO_MS)
            self.undo_button.show()
            self._undo_timer.start()

        self._background.run(lambda: self.store.delete_chat(chat_id), deleted)

    def undo_delete(self) -> None:
        """Bring the chat deleted last back, whole."""
        chat_id, self._trashed = self._trashed, None
        self._undo_timer.stop()
        self.undo_button.hide()
        if chat_id is None:
            return

        def restored(_result: object) -> None:
            self.message.emit("The chat is back", 3000)
            self.restored.emit(chat_id)
            if self.chat.id is None:  # Undo right after deleting the open chat: it opens again
                self.opened.emit(chat_id)
            self.refresh()

        self._background.run(lambda: self.store.restore_chat(chat_id), restored)

    def _purge(self) -> None:
        chat_id, self._trashed = self._trashed, None
        self._undo_timer.stop()
        self.undo_button.hide()
        if chat_id is not None:
            self._background.run(lambda: self.store.purge_deleted(chat_id), self._refreshed)

    def _export(self, chat_id: int, kind: str) -> None:
        title = self.store.chat(chat_id).title or "chat"
        path, _ = QFileDialog.getSaveFileName(
            self.window(),
            "Export chat",
            f"{title}.{kind}",
            "Markdown (*.md)" if kind == "md" else "JSON (*.json)",
        )
        if path:
            self.export_chat(chat_id, Path(path))

    def export_chat(self, chat_id: int, path: Path) -> None:
        store = self.store

        def write() -> Path:
            if path.suffix == ".json":
                data = store.export_json(chat_id)
                text = json.dumps(data, indent=2, ensure_ascii=False)
            else:
                text = store.export_markdown(chat_id)
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise LocalChatError(f"cannot write {path}: {exc.strerror or exc}") from None
            return path

        self._background.run(write, lambda p: self.message.emit(f"Exported to {p}", 5000))
