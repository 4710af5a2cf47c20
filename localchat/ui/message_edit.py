"""Editing a message in place: the user's bubble becomes an editor with
Cancel and Save & send (Esc and Ctrl+Enter); saving sends the new text as
another version of the message (the old one stays)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout

from localchat.ui.message_parts import Bubble


class MessageEditor(QPlainTextEdit):
    """The text of a message being edited: Esc cancels, Ctrl+Enter saves."""

    save = Signal()
    cancel = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if event.key() == Qt.Key.Key_Escape:
            self.cancel.emit()
        elif enter and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.save.emit()
        else:
            super().keyPressEvent(event)


class EditFrame(Bubble):
    """The editor in the bubble's place: ``edit_box`` (holding ``text``, as
    tall as it, 3 to 12 lines), ``cancel_button`` and ``save_button``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.setObjectName("message-editor")
        box = QVBoxLayout(self)
        box.setContentsMargins(10, 10, 10, 10)
        self.edit_box = MessageEditor()
        self.edit_box.setPlainText(text)
        self.edit_box.setAccessibleName("Edit message")
        self.edit_box.setToolTip("Ctrl+Enter saves and sends again; Esc cancels")
        lines = max(3, min(12, text.count("\n") + 2))
        self.edit_box.setFixedHeight(self.edit_box.fontMetrics().lineSpacing() * lines + 16)
        box.addWidget(self.edit_box)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save && send")
        self.save_button.setDefault(True)
        self.save_button.setToolTip(
            "Send the edited message (Ctrl+Enter); the old one stays as a version"
        )
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        box.addLayout(buttons)
