"""The small pieces a message is made of: its Markdown text, its note, its
hover actions, the model's avatar, the reply's statistics line and the colours.

Everything draws from the palette (no style sheets: a chat shows hundreds of
these, and each style sheet is parsed and polished on its own), so both themes
and any scaling look right.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QEvent, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QIcon,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
)
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QTextBrowser, QToolButton, QWidget

from localchat.ui import theme
from localchat.ui.theme import mix

LONG_TOKEN = 24
_LONG_TOKEN = re.compile(rf"\S{{{LONG_TOKEN},}}")
_AFTER_SEPARATOR = re.compile(r"(?<=[/\\._:;,=&?+-])")
ZERO_WIDTH_SPACE = "\u200b"
W = TypeVar("W", bound=QWidget)
ACTION_SIZE = 28
"""An action button's side in pixels at 100% (Qt scales it): easy to hit."""


def breakable(text: str) -> str:
    """``text`` with a zero-width space wherever a long unbroken token (a path,
    a hash) may wrap: after each separator in it, and every 16 characters
    where it has none. Qt wraps a label only where a line may break."""

    def cut(match: re.Match[str]) -> str:
        pieces = [
            piece[i : i + 16]
            for piece in _AFTER_SEPARATOR.split(match.group())
            for i in range(0, len(piece), 16)
        ]
        return ZERO_WIDTH_SPACE.join(pieces)

    return _LONG_TOKEN.sub(cut, text)


def stats_text(stats: dict[str, Any] | None) -> str:
    """A reply's statistics as one short line: "42 tokens · 18.3 tok/s ·
    first token 0.40 s", "120 tokens (80 thinking) · ..." for a reasoning
    model ("" when the reply kept none)."""
    if not stats or "completion_tokens" not in stats:
        return ""
    parts = [f"{stats['completion_tokens']:,} tokens"]
    if stats.get("reasoning_tokens"):
        parts[0] += f" ({stats['reasoning_tokens']:,} thinking)"
    if stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats.get("ttft_ms") is not None:
        parts.append(f"first token {stats['ttft_ms'] / 1000:.2f} s")
    return " · ".join(parts)


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


def bubble_colour(palette: QPalette) -> QColor:
    """The user's bubble: the background tinted with the accent colour."""
    base = palette.color(QPalette.ColorRole.Base)
    accent = palette.color(QPalette.ColorRole.Highlight)
    return mix(base, accent, 0.26 if is_dark(palette) else 0.13)


def small(widget: W) -> W:
    """A widget's font a step smaller (secondary lines: statistics, position)."""
    font = widget.font()
    if font.pointSizeF() > 0:
        font.setPointSizeF(font.pointSizeF() * 0.88)
    widget.setFont(font)
    return widget


class Note(QLabel):
    """A message's note ("stopped", a failed reply's error) in the secondary
    colour, as plain text that wraps, also inside a long path or hash (see
    :func:`breakable`). :meth:`text` is the text as set, without the breaks."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self.error = False
        self.setTextFormat(Qt.TextFormat.PlainText)  # an error may hold "<...>"
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        theme.secondary(self)

    def setText(self, text: str) -> None:
        self._text = text
        super().setText(breakable(text))

    def set_error(self, error: bool) -> None:
        """Draw the note in the error tone (a failed reply) or the secondary one."""
        if error == self.error:
            return
        self.error = error
        if error:
            self._tint()
        else:
            self.setPalette(QPalette())  # inherit again
            theme.secondary(self)

    def _tint(self) -> None:
        palette = QPalette()  # the application's, with the error tone for the text
        tone = theme.error_colour(palette)
        if self.palette().color(QPalette.ColorRole.WindowText) == tone:
            return  # already (and no PaletteChange to answer again)
        palette.setColor(QPalette.ColorRole.WindowText, tone)
        self.setPalette(palette)
        self.setForegroundRole(QPalette.ColorRole.WindowText)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if self.error and event.type() == QEvent.Type.PaletteChange:
            self._tint()  # the theme switched: the error tone of the new one

    def text(self) -> str:
        return self._text


class MessageText(QTextBrowser):
    """Read-only Markdown that is as tall as its text (the view scrolls, not
    it), on a transparent background (the bubble's or the chat's shows)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenExternalLinks(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._source = ""

    def set_source(self, markdown: str) -> None:
        if markdown != self._source:
            self._source = markdown
            self.setMarkdown(markdown)

    def natural_width(self) -> float:
        """How wide the text is unwrapped (a short message's bubble fits it)."""
        doc = self.document().clone()
        doc.setTextWidth(-1)
        return doc.idealWidth()

    def _fit(self) -> None:
        margins = self.contentsMargins()
        height = int(self.document().size().height()) + margins.top() + margins.bottom() + 1
        if self.height() != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.document().setTextWidth(self.viewport().width())
        self._fit()

    def sizeHint(self) -> QSize:
        return QSize(400, self.height())


class ActionButton(QToolButton):
    """An icon button of a message (Copy, Edit, Regenerate, the version
    arrows). With ``shown``, it is drawn only while that says so (the pointer
    is over the message, or the keyboard is in it): it keeps its place, so
    nothing moves on hover, and stays in the tab order and accessible."""

    def __init__(
        self,
        icon: QIcon,
        name: str,
        tip: str,
        shown: Callable[[], bool] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setIcon(icon)
        self.setText(name)
        self.setToolTip(tip)
        self.setAccessibleName(name)
        self.setAccessibleDescription(tip)
        self.setAutoRaise(True)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setFixedSize(ACTION_SIZE, ACTION_SIZE)
        self.setIconSize(QSize(16, 16))
        self.shown = shown
        self.on_focus: Callable[[], None] | None = None

    def drawn(self) -> bool:
        """Whether the button is drawn now (it is clickable while visible)."""
        return self.shown is None or self.shown()

    def paintEvent(self, event: QPaintEvent) -> None:
        if self.drawn():
            super().paintEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        if self.on_focus is not None:
            self.on_focus()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        if self.on_focus is not None:
            self.on_focus()


class Avatar(QWidget):
    """A message's small round badge: the model's initial on the accent
    colour, or, for the user (``person``), a person's outline on the bubble's
    tint, so the two sides are told apart at a glance."""

    def __init__(self, name: str, person: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.person = person
        self.letter = "" if person else (name.strip()[:1] or "A").upper()
        side = self.fontMetrics().height() + 8
        self.setFixedSize(side, side)
        self.setAccessibleName("you" if person else "model")

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        painter.setPen(Qt.PenStyle.NoPen)
        circle = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        if self.person:
            painter.setBrush(bubble_colour(palette))
            painter.drawEllipse(circle)
            path = QPainterPath()
            path.addEllipse(circle)
            painter.setClipPath(path)
            painter.setBrush(
                mix(palette.color(QPalette.ColorRole.Text), bubble_colour(palette), 0.35)
            )
            side = circle.width()
            head = side * 0.34
            painter.drawEllipse(
                QRectF(circle.center().x() - head / 2, circle.top() + side * 0.2, head, head)
            )
            body = side * 0.72
            painter.drawEllipse(
                QRectF(circle.center().x() - body / 2, circle.top() + side * 0.6, body, body * 0.8)
            )
            return
        painter.setBrush(palette.color(QPalette.ColorRole.Highlight))
        painter.drawEllipse(circle)
        painter.setPen(palette.color(QPalette.ColorRole.HighlightedText))
        font = self.font()
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.letter)


class Bubble(QFrame):
    """The user's message: a rounded box tinted with the accent colour."""

    RADIUS = 14

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(bubble_colour(self.palette()))
        painter.drawRoundedRect(QRectF(self.rect()), self.RADIUS, self.RADIUS)
