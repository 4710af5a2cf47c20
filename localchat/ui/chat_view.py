"""The conversation: one widget per message, Markdown rendered by Qt.

While a reply streams, pieces are only collected; a timer repaints the reply a
few tens of times a second, however fast the model is, so the event loop is
never starved. The view follows the reply down only if the user was already at
the bottom: scrolling up to read stays put. Messages that dropped out of the
model's context are dimmed and labelled.
"""

from __future__ import annotations

import re
import time

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.store import StoredMessage
from localchat.ui import theme
from localchat.ui.code_block import CodeBlock, split_markdown

REPAINT_MS = 50
OUTSIDE_HELP = (
    "The chat outgrew the model's context, so the model no longer sees this message. "
    "It stays in the chat; the chat's overflow policy (Settings) decides what drops out."
)
STATUS_NOTES = {
    "cancelled": "stopped",
    "interrupted": "interrupted (the app closed while writing)",
    "failed": "failed",
}

NOTE_BESIDE_TITLE = 16
"""A note up to this many characters ("stopped", "writing…") sits beside the
title; a longer one (a failed reply's error) gets a line of its own under it,
the card's width (beside the title it would be squeezed into a column)."""
LONG_TOKEN = 24
_LONG_TOKEN = re.compile(rf"\S{{{LONG_TOKEN},}}")
_AFTER_SEPARATOR = re.compile(r"(?<=[/\\._:;,=&?+-])")
ZERO_WIDTH_SPACE = "\u200b"

NO_MODEL = (
    "<h3>No model yet</h3>"
    "<p>Download one from the catalog in the model manager (a 7B model at Q4 "
    "needs about 5 GB of disk and 6 GB of memory), or copy a .gguf file into "
    "<b>{folder}</b> (<a href='{url}'>open the folder</a>).</p>"
)
"""What the view says while no model is installed (``folder``: the models folder)."""
DEMO_ONLY = (
    "<h3>Chatting with the tiny demo model</h3>"
    "<p>LocalChat comes with a tiny model it trained itself on Python's "
    "documentation, so it works offline from the start. It knows a little Python "
    "and not much else. For real conversations, download a model from the catalog "
    "(a 7B model at Q4 needs about 5 GB of disk and 6 GB of memory).</p>"
)
"""What the view says while the bundled demo model is the only one."""


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


class Note(QLabel):
    """A message's note ("stopped", a failed reply's error) in the secondary
    colour, as plain text that wraps, also inside a long path or hash (see
    :func:`breakable`). :meth:`text` is the text as set, without the breaks."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self.setTextFormat(Qt.TextFormat.PlainText)  # an error may hold "<...>"
        self.setWordWrap(True)
        theme.secondary(self)

    def setText(self, text: str) -> None:
        self._text = text
        super().setText(breakable(text))

    def text(self) -> str:
        return self._text


class MessageText(QTextBrowser):
    """Read-only Markdown that is as tall as its text (the view scrolls, not it)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenExternalLinks(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._source = ""

    def set_source(self, markdown: str) -> None:
        if markdown != self._source:
            self._source = markdown
            self.setMarkdown(markdown)

    def _fit(self) -> None:
        margins = self.contentsMargins()
        height = int(self.document().size().height()) + margins.top() + margins.bottom() + 2
        if self.height() != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.document().setTextWidth(self.viewport().width())
        self._fit()

    def sizeHint(self) -> QSize:
        return QSize(400, self.height())


class MessageWidget(QFrame):
    """One message: who, the text, and what can be done with it."""

    edit_requested = Signal(int)
    regenerate_requested = Signal(int)
    show_sibling = Signal(int)

    def __init__(self, role: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.message: StoredMessage | None = None
        self.setObjectName(f"message-{role}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        head = QHBoxLayout()
        self.title = QLabel(title)
        bold = self.title.font()
        bold.setBold(True)
        self.title.setFont(bold)
        self.title.setToolTip(title)
        # A long model name may shrink: the conversation never scrolls sideways.
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.title.setMinimumWidth(80)
        self.note = Note()
        self.outside = QLabel("out of the model's view")
        self.outside.setObjectName("outside")
        self.outside.setToolTip(OUTSIDE_HELP)
        theme.secondary(self.outside, italic=True)
        self.outside.hide()
        self.is_outside = False
        head.addWidget(self.title, 1)  # takes the free width, shrinks first
        head.addWidget(self.outside)
        head.addWidget(self.note)
        self.older = self._button("‹", "Previous version", lambda: self._flip(-1))
        self.position = QLabel()
        self.newer = self._button("›", "Next version", lambda: self._flip(1))
        for w in (self.older, self.position, self.newer):
            head.addWidget(w)
            w.hide()
        self.copy = self._button("Copy", "Copy this message", self._copy)
        head.addWidget(self.copy)
        action = "Edit" if role == "user" else "Regenerate"
        self.action = self._button(action, f"{action} this message", self._act)
        head.addWidget(self.action)
        self.action.setVisible(role in ("user", "assistant"))
        layout.addLayout(head)
        self._layout, self._head = layout, head
        self.body = QVBoxLayout()
        layout.addLayout(self.body)
        self.segments: list[MessageText | CodeBlock] = []
        self._markdown = ""

    def _button(self, text: str, tip: str, slot) -> QPushButton:
        b = QPushButton(text)
        b.setToolTip(tip)
        b.setFlat(True)
        b.clicked.connect(slot)
        return b

    def set_markdown(self, text: str) -> None:
        """Show ``text``: prose as Markdown, fenced code as code blocks. Widgets
        are updated in place, so a streaming reply does not flicker."""
        if text == self._markdown:
            return
        self._markdown = text
        parts = split_markdown(text)
        for i, part in enumerate(parts):
            kind = MessageText if part.kind == "prose" else CodeBlock
            if i < len(self.segments) and type(self.segments[i]) is not kind:
                for extra in self.segments[i:]:
                    extra.deleteLater()
                del self.segments[i:]
            if i == len(self.segments):
                widget = kind()
                self.body.addWidget(widget)
                self.segments.append(widget)
            segment = self.segments[i]
            if isinstance(segment, CodeBlock):
                segment.set_code(part.text, part.language)
            else:
                segment.set_source(part.text)
        for extra in self.segments[len(parts) :]:
            extra.deleteLater()
        del self.segments[len(parts) :]

    def markdown(self) -> str:
        return self._markdown

    def set_note(self, text: str) -> None:
        """Show ``text`` as the note: beside the title when short, else on a
        line of its own under it (wrapped to the card's width, which the note
        never widens: the conversation does not scroll sideways)."""
        self.note.setText(text)
        below = len(text) > NOTE_BESIDE_TITLE
        if below == (self._head.indexOf(self.note) < 0):
            return
        if below:
            self._head.removeWidget(self.note)
            self._layout.insertWidget(1, self.note)
        else:
            self._layout.removeWidget(self.note)
            self._head.insertWidget(self._head.indexOf(self.outside) + 1, self.note)

    def set_message(self, message: StoredMessage) -> None:
        self.message = message
        self.set_markdown(message.content)
        note = STATUS_NOTES.get(message.status, "")
        if message.status == "failed" and message.stats and message.stats.get("error"):
            note = f"failed: {message.stats['error']}"
        self.set_note(note)
        many = len(message.sibling_ids) > 1
        for w in (self.older, self.position, self.newer):
            w.setVisible(many)
        if many:
            i = message.sibling_index
            self.position.setText(f"{i + 1}/{len(message.sibling_ids)}")
            self.older.setEnabled(i > 0)
            self.newer.setEnabled(i < len(message.sibling_ids) - 1)

    def set_outside(self, outside: bool) -> None:
        """Mark the message as one the model no longer sees: dimmed, labelled."""
        if outside == self.is_outside:
            return
        self.is_outside = outside
        self.outside.setVisible(outside)
        self.setProperty("outside", outside)
        palette = self.palette()
        if outside:
            dim = palette.color(QPalette.ColorRole.PlaceholderText)
            for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText):
                palette.setColor(role, dim)
            self.setPalette(palette)
        else:
            self.setPalette(QPalette())
        self.setToolTip(OUTSIDE_HELP if outside else "")

    def set_busy(self, busy: bool) -> None:
        self.action.setEnabled(not busy)
        self.older.setEnabled(not busy and self.older.isEnabled())
        self.newer.setEnabled(not busy and self.newer.isEnabled())

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self._markdown)

    def _act(self) -> None:
        if self.message is None:
            return
        if self.role == "user":
            self.edit_requested.emit(self.message.id)
        else:
            self.regenerate_requested.emit(self.message.id)

    def _flip(self, step: int) -> None:
        if self.message is not None:
            ids = self.message.sibling_ids
            self.show_sibling.emit(ids[self.message.sibling_index + step])


class ChatView(QScrollArea):
    """The messages of the chat shown, and the reply streaming into it."""

    edit_requested = Signal(int)
    regenerate_requested = Signal(int)
    show_sibling = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._body = QWidget()
        self.column = QVBoxLayout(self._body)
        self.column.addStretch(1)
        self.setWidget(self._body)
        self.empty = QLabel()
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.empty.setOpenExternalLinks(True)
        self.column.insertWidget(0, self.empty)
        self.empty_action = QPushButton()
        self.empty_action.hide()
        self.column.insertWidget(1, self.empty_action, 0, Qt.AlignmentFlag.AlignHCenter)
        self.widgets: list[MessageWidget] = []
        self.streaming: MessageWidget | None = None
        self._stream_text = ""
        self._timer = QTimer(self)
        self._timer.setInterval(REPAINT_MS)
        self._timer.timeout.connect(self._repaint_stream)
        self.repaints = 0
        # Pinned to the bottom, the view follows the text as it grows (the range
        # changes after each layout); scrolled up, it stays where the user is.
        self._follow = True
        bar = self.verticalScrollBar()
        bar.rangeChanged.connect(self._range_changed)
        bar.valueChanged.connect(self._value_changed)

    def show_empty(self, html: str, *, action: str | None = None) -> None:
        """A message instead of a chat, and a button under it (``action``)."""
        self.clear()
        self.empty.setText(html)
        self.empty.show()
        self.empty_action.setText(action or "")
        self.empty_action.setVisible(bool(action))

    def hide_empty(self) -> None:
        self.empty.hide()
        self.empty_action.hide()

    def clear(self) -> None:
        self.stop_stream()
        for w in self.widgets:
            w.deleteLater()
        self.widgets = []

    def show_thread(self, messages: list[StoredMessage]) -> None:
        self.clear()
        self.hide_empty()
        # Filled while hidden, the new messages are polished and laid out
        # together when the column is shown (~15% less work for a long chat).
        self._body.hide()
        for m in messages:
            if m.role == "system":
                continue
            self.add(m.role, _title(m.role, m.model)).set_message(m)
        self._body.show()
        self.scroll_to_end()

    def update_thread(self, messages: list[StoredMessage]) -> None:
        """Bring the shown messages up to date with the store: in place when the
        same messages are shown (after a reply), else from scratch."""
        shown = [w for w in self.widgets if not w.isHidden()]
        wanted = [m for m in messages if m.role != "system"]
        if [w.role for w in shown] != [m.role for m in wanted]:
            self.show_thread(messages)
            return
        for widget, message in zip(shown, wanted, strict=True):
            widget.set_message(message)
            widget.set_busy(False)

    def mark_outside(self, message_ids: set[int]) -> None:
        """Mark the shown messages the model no longer sees (and unmark the rest)."""
        for w in self.widgets:
            w.set_outside(w.message is not None and w.message.id in message_ids)

    def outside_ids(self) -> set[int]:
        return {w.message.id for w in self.widgets if w.message is not None and w.is_outside}

    def add(self, role: str, title: str) -> MessageWidget:
        self.hide_empty()
        w = MessageWidget(role, title)
        w.edit_requested.connect(self.edit_requested)
        w.regenerate_requested.connect(self.regenerate_requested)
        w.show_sibling.connect(self.show_sibling)
        self.column.insertWidget(self.column.count() - 1, w)
        self.widgets.append(w)
        return w

    def begin_stream(self, user_text: str, model: str) -> None:
        """Show the user's message at once and an empty reply to stream into."""
        for w in self.widgets:
            w.set_busy(True)
        if user_text:
            self.add("user", "You").set_markdown(user_text)
        self.streaming = self.add("assistant", f"Assistant · {model}")
        self.streaming.set_note("writing…")
        self._stream_text = ""
        self._timer.start(REPAINT_MS)
        self.scroll_to_end()

    def append(self, piece: str) -> None:
        self._stream_text += piece

    def stop_stream(self) -> None:
        self._timer.stop()
        if self.streaming is not None:
            self._repaint_stream()
            self.streaming = None

    def _repaint_stream(self) -> None:
        if self.streaming is None or self.streaming.markdown() == self._stream_text:
            return
        started = time.perf_counter()
        self.streaming.set_markdown(self._stream_text)
        self.repaints += 1
        # Keep the GUI thread mostly free: if a repaint got expensive, repaint
        # less often (at most a quarter of the time goes to it).
        cost_ms = (time.perf_counter() - started) * 1000
        self._timer.setInterval(max(REPAINT_MS, int(4 * cost_ms)))

    def scroll_to_end(self) -> None:
        self._follow = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def _value_changed(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 4


def _title(role: str, model: str | None) -> str:
    if role == "user":
        return "You"
    return f"Assistant · {model}" if model else "Assistant"
