"""Where the user writes: a rounded box, as in LM Studio, Jan or ChatGPT,
holding the text (two lines to start, growing with what is typed up to
:data:`MAX_LINES`, then scrolling) and a round send button at its bottom
right, which stops the reply while one is being written. Enter sends,
Shift+Enter starts a new line, Esc stops the reply."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QFocusEvent, QIcon, QKeyEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPlainTextEdit, QToolButton, QWidget

from localchat.ui.icons import icon
from localchat.ui.theme import mix

MIN_LINES, MAX_LINES = 2, 10
"""The text shows this many lines at least, and grows to at most this many."""
SEND_SIZE = 32
"""The send button's side (pixels at 100%)."""


class Composer(QPlainTextEdit):
    """The text being written: Enter sends, Shift+Enter starts a new line,
    Esc stops the reply. Its height follows its lines."""

    submitted = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message (Enter to send, Shift+Enter for a new line)")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.viewport().setAutoFillBackground(False)
        self.setAccessibleName("Message")
        self.document().documentLayout().documentSizeChanged.connect(lambda _: self._fit())
        self._fit()

    def lines(self) -> int:
        """How many lines the text takes at this width (wrapped lines count)."""
        return max(int(self.document().documentLayout().documentSize().height()), 1)

    def _fit(self) -> None:
        lines = self.lines()
        shown = min(max(lines, MIN_LINES), MAX_LINES)
        margins = self.contentsMargins()
        height = (
            shown * self.fontMetrics().lineSpacing()
            + 2 * int(self.document().documentMargin())
            + margins.top()
            + margins.bottom()
            + 2  # the last line's descent, rounded
        )
        if self.height() != height:
            self.setFixedHeight(height)
        # A scroll bar only once the text is taller than the box may grow.
        policy = (
            Qt.ScrollBarPolicy.ScrollBarAsNeeded
            if lines > MAX_LINES
            else Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        )
        if self.verticalScrollBarPolicy() != policy:
            self.setVerticalScrollBarPolicy(policy)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()  # a narrower box wraps into more lines

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        self._repaint_box()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self._repaint_box()

    def _repaint_box(self) -> None:
        box = self.parentWidget()
        if box is not None:
            box.update()  # the box's border shows the focus

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            text = self.toPlainText().strip()
            if text:
                self.submitted.emit(text)
            return
        if key == Qt.Key.Key_Escape:
            self.stop_requested.emit()
            return
        super().keyPressEvent(event)


class SendButton(QToolButton):
    """The round button: an arrow that sends, a square that stops the reply
    while one is written. Its text ("Send", "Stop") is what a screen reader
    says and the tooltip shows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setFixedSize(SEND_SIZE, SEND_SIZE)
        self.setIconSize(QSize(16, 16))
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.show_stop(False)

    def show_stop(self, replying: bool) -> None:
        name = "Stop" if replying else "Send"
        self.setText(name)
        self.setAccessibleName(name)
        self.setToolTip("Stop the reply (Esc)" if replying else "Send (Enter)")
        self.setIcon(icon("stop" if replying else "send", on_accent=True))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        fill = palette.color(QPalette.ColorRole.Highlight)
        if not self.isEnabled():
            fill = mix(
                palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Mid), 0.6
            )
        elif self.underMouse() or self.isDown():
            fill = fill.darker(115)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawEllipse(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5))
        if self.hasFocus():
            painter.setPen(palette.color(QPalette.ColorRole.Text))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5))
        side = self.iconSize().width()
        mode = QIcon.Mode.Normal if self.isEnabled() else QIcon.Mode.Disabled
        self.icon().paint(
            painter,
            (self.width() - side) // 2,
            (self.height() - side) // 2,
            side,
            side,
            Qt.AlignmentFlag.AlignCenter,
            mode,
        )


class ComposerBox(QFrame):
    """The rounded box: ``composer`` and ``send_button`` inside it. The send
    button is enabled while there is something to send or a reply to stop."""

    RADIUS = 12

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.composer = Composer()
        self.send_button = SendButton()
        self.replying = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self.composer, 1)
        layout.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        self.composer.textChanged.connect(self._enable)
        self._enable()

    def set_replying(self, replying: bool) -> None:
        self.replying = replying
        self.send_button.show_stop(replying)
        self._enable()

    def _enable(self) -> None:
        self.send_button.setEnabled(self.replying or bool(self.composer.toPlainText().strip()))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        focused = self.composer.hasFocus()
        border = palette.color(QPalette.ColorRole.Highlight if focused else QPalette.ColorRole.Mid)
        painter.setPen(border)
        painter.setBrush(palette.color(QPalette.ColorRole.Base))
        painter.drawRoundedRect(
            QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), self.RADIUS, self.RADIUS
        )
