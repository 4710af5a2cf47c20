"""The token X-ray's window: one position of a reply (``token_panel``),
opened by a click on a token; it stays open beside the chat (not modal) and
follows the next token clicked. "Continue with this instead" goes to the
window's replies, and the dialog closes so the new version can be read."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QDialog, QScrollArea, QVBoxLayout, QWidget

from localchat.core.chat.store import ChatStore
from localchat.ui.token_panel import TokenPanel


class XrayDialog(QDialog):
    def __init__(
        self,
        store: ChatStore,
        continue_with: Callable[[int, int, int], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("xray")
        self.setWindowTitle("Token X-ray")
        self.store = store
        self.message_id: int | None = None
        self.panel = TokenPanel()
        self.panel.continue_requested.connect(self._continue)
        self._continue_with = continue_with
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.resize(560, 640)

    def show_token(self, message_id: int, index: int) -> None:
        message = self.store.message(message_id)
        self.message_id = message_id
        self.panel.show_position(message.tokens, index, message.settings)
        self.show()
        self.raise_()

    def _continue(self, index: int, token_id: int) -> None:
        if self.message_id is not None:
            self._continue_with(self.message_id, index, token_id)
            self.hide()
