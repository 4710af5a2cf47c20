"""A reasoning model's thinking, above its answer: a dimmed block, collapsed
by default, whose header says "Thinking…" while the model thinks and
"Thought for 12 s" once it answers; a click opens it (the text as Markdown,
in the secondary tone, behind a thin rule) and its Copy button copies it.
It streams live: the text is laid out only while the block is open."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QGuiApplication, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QToolButton, QVBoxLayout, QWidget

from localchat.ui import theme
from localchat.ui.icons import icon
from localchat.ui.message_parts import ActionButton, MessageText, small


def thought_for(seconds: float | None) -> str:
    """The header once the thinking is over: "Thought for 12 s"."""
    if seconds is None:
        return "Thoughts"
    if seconds < 1:
        return "Thought for a moment"
    if seconds < 90:
        return f"Thought for {seconds:.0f} s"
    return f"Thought for {seconds / 60:.0f} min"


class ThinkingBlock(QFrame):
    """``set_thinking(text, running=..., seconds=...)`` shows it; ``toggle``
    (the header's click) opens or closes it."""

    toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("thinking")
        self._text = ""
        self.running = False
        self.header = QToolButton()
        self.header.setObjectName("thinking-header")
        self.header.setCheckable(True)
        self.header.setAutoRaise(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setArrowType(Qt.ArrowType.RightArrow)
        self.header.setCursor(Qt.CursorShape.PointingHandCursor)
        self.header.setToolTip("Show or hide how the model thought before answering")
        theme.secondary(small(self.header))
        self.header.toggled.connect(self._toggled)
        self.copy = ActionButton(icon("copy"), "Copy thinking", "Copy the model's thinking")
        self.copy.clicked.connect(self._copy)
        self.text = MessageText()
        self.text.setObjectName("thinking-text")
        self.text.hide()
        self._tint()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        row.addWidget(self.header)
        row.addWidget(self.copy)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 2)
        layout.setSpacing(2)
        layout.addLayout(row)
        self._indent = 12
        body = QHBoxLayout()
        body.setContentsMargins(self._indent, 0, 0, 0)
        body.addWidget(self.text)
        layout.addLayout(body)

    def set_thinking(self, text: str, *, running: bool, seconds: float | None = None) -> None:
        self._text = text
        self.running = running
        label = "Thinking…" if running else thought_for(seconds)
        if self.header.text() != label:
            self.header.setText(label)
            self.header.setAccessibleName(label)
        self.copy.setEnabled(bool(text))
        if self.is_open():
            self.text.set_source(text)

    def thinking(self) -> str:
        return self._text

    def is_open(self) -> bool:
        return self.header.isChecked()

    def toggle(self) -> None:
        self.header.toggle()

    def _toggled(self, opened: bool) -> None:
        self.header.setArrowType(Qt.ArrowType.DownArrow if opened else Qt.ArrowType.RightArrow)
        if opened:
            self.text.set_source(self._text)
        self.text.setVisible(opened)
        self.toggled.emit(opened)

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self._text)

    def _tint(self) -> None:
        """The thinking's text in the secondary tone (dimmed beside the answer)."""
        palette = QPalette()
        tone = palette.color(QPalette.ColorRole.PlaceholderText)
        if self.text.palette().color(QPalette.ColorRole.Text) != tone:
            palette.setColor(QPalette.ColorRole.Text, tone)
            self.text.setPalette(palette)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._tint()  # the theme switched

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self.text.isVisible():
            return
        painter = QPainter(self)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self.palette().color(QPalette.ColorRole.Mid))
        top = self.text.geometry().top()
        painter.drawRect(self._indent // 2 - 1, top, 2, self.text.geometry().height())
