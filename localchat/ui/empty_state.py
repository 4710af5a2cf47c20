"""What the conversation shows when it has no messages: a welcome, a line
about the model in use and example prompts to start from (a click puts one in
the composer), or a message of the window's (no model yet) with its button."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from localchat.core.models import library

DEMO_PROMPTS = (
    "What does the function os.path.join do?",
    "What does the function shutil.copy do?",
    "What does the function json.dumps do?",
    "What does the module pathlib do?",
)
"""Questions the tiny demo model answers sensibly (checked at temperature 0):
it was trained on Python's documentation as questions of these shapes."""
PROMPTS = (
    "Explain how a hash table works, with a small example",
    "Write a Python function that checks whether a word is a palindrome",
    "Give me three ideas for a relaxing weekend",
    "Summarize the pros and cons of working from home",
)
"""Questions any real chat model answers well."""
WELCOME = "<h2>How can I help?</h2>"
DEMO_LINE = (
    "You are chatting with <b>{name}</b>, a tiny demo: it knows a little Python "
    "and not much else, often gets it wrong, and remembers only the last few "
    "messages. Ask it what a Python module or function does; for real "
    "conversations, get a real model in Models…"
)
MODEL_LINE = "You are chatting with <b>{name}</b>, on this computer: nothing you write leaves it."
NO_MODEL_LINE = "Write a message below, or start from one of these."
WIDTH_EMS = 34
"""The welcome's column is at most this many font heights wide."""


class EmptyState(QWidget):
    """The welcome (title, model line, example chips) or the window's message."""

    example_chosen = Signal(str)
    """An example prompt was clicked: its text, for the composer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        column = QWidget()
        column.setMaximumWidth(WIDTH_EMS * self.fontMetrics().height())
        column.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        outer.addWidget(column, 4)
        outer.addStretch(1)
        layout = QVBoxLayout(column)
        layout.setSpacing(10)
        layout.addStretch(2)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.text.setOpenExternalLinks(True)
        layout.addWidget(self.text)
        self.model_line = QLabel()
        self.model_line.setWordWrap(True)
        self.model_line.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.model_line)
        self.chip_box = QVBoxLayout()
        self.chip_box.setSpacing(6)
        layout.addSpacing(6)
        layout.addLayout(self.chip_box)
        self.chips: list[QPushButton] = []
        self.action = QPushButton()
        self.action.hide()
        layout.addSpacing(4)
        layout.addWidget(self.action, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)

    def show_message(self, html_text: str, action: str | None, prompts: tuple[str, ...]) -> None:
        """The window's own message (and a button under it, ``action``)."""
        self.text.setText(html_text)
        self.model_line.hide()
        self._set_chips(prompts)
        self.action.setText(action or "")
        self.action.setVisible(bool(action))

    def show_welcome(self, model: Path | None) -> None:
        """The welcome for a new chat with ``model`` (None: not known)."""
        self.text.setText(WELCOME)
        demo = model is not None and library.is_demo(model)
        if model is None:
            line = NO_MODEL_LINE
        else:
            line = (DEMO_LINE if demo else MODEL_LINE).format(name=_escape(model.stem))
        self.model_line.setText(line)
        self.model_line.show()
        self._set_chips(DEMO_PROMPTS if demo else PROMPTS)
        self.action.setText("Browse models…")
        self.action.setVisible(demo)

    def _set_chips(self, prompts: tuple[str, ...]) -> None:
        if [c.text() for c in self.chips] == list(prompts):
            return
        for chip in self.chips:  # gone at once, deleted when Qt next can
            self.chip_box.removeWidget(chip)
            chip.hide()
            chip.deleteLater()
        self.chips = []
        for prompt in prompts:
            chip = QPushButton(prompt)
            chip.setObjectName("example")
            chip.setToolTip("Put this in the message box")
            chip.setCursor(Qt.CursorShape.PointingHandCursor)
            chip.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            chip.setMinimumHeight(chip.fontMetrics().height() + 16)
            chip.setMinimumWidth(1)  # a narrow window clips it, never widens the view
            chip.clicked.connect(lambda _=False, text=prompt: self.example_chosen.emit(text))
            self.chip_box.addWidget(chip)
            self.chips.append(chip)


def _escape(text: str) -> str:
    """Text for Qt's rich text (``html.escape`` without loading its 2,000 entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
