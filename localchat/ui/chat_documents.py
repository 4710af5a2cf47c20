"""The collections the open chat draws on: a "Documents" button under the
message box, whose menu ticks them (and opens the Documents window). The
choice is the chat's own, kept in its settings (``session.DOCUMENTS``), so
switching chats switches it; a new chat starts with none. The button shows
once there is a collection to choose (or the chat still names one).

A chat made by its first message takes the choice made before it existed:
the reply's thread writes it into the new chat before the reply is
grounded (:meth:`ChatDocuments.for_reply`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QMenu, QPushButton, QWidget

from localchat.core.chat.session import DOCUMENTS
from localchat.core.chat.store import ChatStore
from localchat.ui.bridge import Background
from localchat.ui.message_parts import small
from localchat.ui.state import ChatState, DocumentsState

if TYPE_CHECKING:
    from localchat.core.documents.store import DocumentStore

ForReply = Callable[[int], "DocumentStore | None"]
"""What a reply's thread calls with its chat: the index to ground it in (None: not grounded)."""


class ChatDocuments(QWidget):
    """``chosen``: the collections the open chat names; ``grounded()``: those
    of them that exist. ``changed`` carries ``grounded()`` when it changes."""

    changed = Signal(list)
    manage = Signal()
    """"Manage collections…": open the Documents window."""

    def __init__(
        self,
        store: ChatStore,
        chat: ChatState,
        state: DocumentsState,
        background: Background,
        index: Callable[[], Callable[[], DocumentStore]],
        parent: QWidget | None = None,
    ) -> None:
        """``index()``: the function that opens the document index (from any thread)."""
        super().__init__(parent)
        self.store, self.chat, self.state = store, chat, state
        self._background, self._index = background, index
        self.chosen: list[str] = []
        self.button = small(QPushButton())
        self.button.setObjectName("chat-documents")
        self.button.setFlat(True)
        self.menu = QMenu(self.button)
        self.menu.aboutToShow.connect(self._fill)
        self.button.setMenu(self.menu)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(self.button)
        layout.addStretch(1)
        self._shown: list[str] | None = None
        chat.opened.connect(self._opened)
        state.listed.connect(lambda _: self._show())
        self._show()

    def grounded(self) -> list[str]:
        known = set(self.state.names())
        return [n for n in self.chosen if n in known]

    def choose(self, names: list[str]) -> None:
        """Draw on these collections in the open chat (saved with it)."""
        self.chosen = list(dict.fromkeys(names))
        chat_id, chats, chosen = self.chat.id, self.store, list(self.chosen)
        if chat_id is not None:

            def write() -> None:
                chats.set_chat_settings(
                    chat_id, {**chats.chat_settings(chat_id), DOCUMENTS: chosen}
                )

            self._background.run(write, lambda _result: None)
        self._show()

    def for_reply(self) -> ForReply | None:
        """As a reply starts (on the GUI thread): None when the chat draws on
        no collection; else what its thread calls with its chat (made there
        when none was open) to have the index, the new chat given the choice
        first."""
        if not self.chosen:
            return None
        names, chats, new = list(self.chosen), self.store, self.chat.id is None
        open_index = self._index()

        def documents(chat_id: int) -> DocumentStore:
            if new:
                chats.set_chat_settings(chat_id, {**chats.chat_settings(chat_id), DOCUMENTS: names})
            return open_index()

        return documents

    def _opened(self, chat_id: int | None) -> None:
        stored = self.store.chat_settings(chat_id).get(DOCUMENTS) if chat_id is not None else None
        self.chosen = [str(n) for n in stored or ()]
        self._show()

    def _fill(self) -> None:
        self.menu.clear()
        for collection in self.state.collections:
            action = self.menu.addAction(collection.name)
            action.setCheckable(True)
            action.setChecked(collection.name in self.chosen)
            action.setToolTip(f"{collection.files:,} files · {collection.chunks:,} passages")
            action.toggled.connect(lambda on, name=collection.name: self._toggle(name, on))
        if not self.state.collections:
            self.menu.addAction("No collections yet").setEnabled(False)
        self.menu.addSeparator()
        self.menu.addAction("Manage collections…").triggered.connect(lambda: self.manage.emit())

    def _toggle(self, name: str, on: bool) -> None:
        names = [n for n in self.chosen if n != name]
        self.choose([*names, name] if on else names)

    def _show(self) -> None:
        grounded = self.grounded()
        if not grounded:
            text = "Documents"
            tip = "Choose the collections of your documents this chat draws on"
        else:
            more = f" +{len(grounded) - 1}" if len(grounded) > 1 else ""
            text = f"Documents: {grounded[0]}{more}"
            from localchat.core.documents.grounding import BUDGET  # once a chat draws on some

            tip = (
                f"This chat draws on {', '.join(grounded)}: each message goes with the "
                f"passages that answer it (up to about {BUDGET:,} tokens), and the reply "
                "lists them as its sources"
            )
        self.button.setText(text)
        self.button.setToolTip(tip)
        self.button.setAccessibleName(text)
        self.button.setAccessibleDescription(tip)
        self.setVisible(bool(self.state.collections) or bool(self.chosen))
        if grounded != self._shown:
            self._shown = grounded
            self.changed.emit(grounded)
