"""The conversation: one widget per message, Markdown rendered by Qt.

While a reply streams, pieces are only collected; a timer repaints the reply a
few tens of times a second, however fast the model is, so the event loop is
never starved. The view follows the reply down only if the user was already at
the bottom: scrolling up to read stays put. Messages that dropped out of the
model's context are dimmed and labelled. With no messages, it welcomes the
user (see ``empty_state``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QScrollArea, QVBoxLayout, QWidget

from localchat.core.chat.store import StoredMessage
from localchat.core.models import library
from localchat.ui.empty_state import DEMO_PROMPTS, EmptyState

if TYPE_CHECKING:
    from localchat.ui.message_widget import MessageWidget

# The message widgets (and Pygments with them) load with the first message, not
# before the window's first paint; their names stay importable from here.
_FROM_PARTS = {"ZERO_WIDTH_SPACE", "MessageText", "Note", "breakable"}
_FROM_WIDGET = {"NOTE_BESIDE_TITLE", "OUTSIDE_HELP", "STATUS_NOTES", "MessageWidget"}


def __getattr__(name: str) -> Any:
    if name in _FROM_PARTS:
        from localchat.ui import message_parts

        return getattr(message_parts, name)
    if name in _FROM_WIDGET:
        from localchat.ui import message_widget

        return getattr(message_widget, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEMO_ONLY", "NO_MODEL", "ChatView"]

REPAINT_MS = 50

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


class ChatView(QScrollArea):
    """The messages of the chat shown, and the reply streaming into it."""

    edit_requested = Signal(int)
    """Kept for callers that still connect it: Edit now edits in place and
    the edited text comes by ``edited``."""
    edited = Signal(int, str)
    """An edited user message was saved: its id and the new text to send."""
    regenerate_requested = Signal(int)
    show_sibling = Signal(int)
    token_picked = Signal(int, int)
    """The token X-ray: message ``id``'s token ``index`` was clicked."""
    prompt_picked = Signal(int)
    """The X-ray of a reply's prompt was asked for."""
    example_chosen = Signal(str)
    """An example prompt of the welcome was clicked: the text for the composer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._body = QWidget()
        # The chat on the text background (white or near black), as in other chat apps.
        self._body.setBackgroundRole(QPalette.ColorRole.Base)
        self._body.setAutoFillBackground(True)
        self.column = QVBoxLayout(self._body)
        self.column.setContentsMargins(8, 10, 8, 10)
        self.column.setSpacing(8)
        self.column.addStretch(1)
        self.setWidget(self._body)
        self.welcome = EmptyState()
        self.welcome.example_chosen.connect(self.example_chosen)
        self.empty = self.welcome.text
        self.empty_action = self.welcome.action
        self.column.insertWidget(0, self.welcome, 100)  # all the height, not the stretch
        self._message: tuple[str, str | None] | None = None
        """The window's own message (and its button) shown instead of the welcome."""
        self.model: Path | None = None
        self.widgets: list[MessageWidget] = []
        self.streaming: MessageWidget | None = None
        self._stream_text = ""
        self._stream_thinking = ""
        self._thinking_since = 0.0
        self._thought_for: float | None = None
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
        self._refresh_empty()

    def set_model(self, path: Path | str | None) -> None:
        """The model in use, which the welcome names (and picks examples for)."""
        self.model = Path(path) if path is not None else None
        self._refresh_empty()

    def show_empty(self, html: str, *, action: str | None = None) -> None:
        """A message instead of a chat, and a button under it (``action``)."""
        self.clear()
        self._message = (html, action)
        self._refresh_empty()

    def hide_empty(self) -> None:
        """No window message: the welcome while the chat is empty."""
        self._message = None
        self._refresh_empty()

    def _refresh_empty(self) -> None:
        if self._message is not None:
            demo = self.model is not None and library.is_demo(self.model)
            html, action = self._message
            self.welcome.show_message(html, action, DEMO_PROMPTS if demo else ())
            self.welcome.show()
        elif any(not w.isHidden() for w in self.widgets):
            self.welcome.hide()
        else:
            self.welcome.show_welcome(self.model)
            self.welcome.show()

    def clear(self) -> None:
        self.stop_stream()
        for w in self.widgets:
            w.hide()  # gone at once, deleted when the event loop comes round
            w.deleteLater()
        self.widgets = []
        self._refresh_empty()

    def show_thread(self, messages: list[StoredMessage]) -> None:
        # Filled while hidden, the new messages are polished and laid out
        # together when the column is shown (~15% less work for a long chat).
        self._body.hide()
        self.clear()
        self.hide_empty()
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
        self._message = None
        from localchat.ui.message_widget import MessageWidget

        w = MessageWidget(role, title)
        w.edit_requested.connect(self.edit_requested)
        w.edited.connect(self.edited)
        w.regenerate_requested.connect(self.regenerate_requested)
        w.token_picked.connect(self.token_picked)
        w.prompt_picked.connect(self.prompt_picked)
        w.show_sibling.connect(self.show_sibling)
        self.column.insertWidget(self.column.count() - 1, w)
        self.widgets.append(w)
        self.welcome.hide()
        return w

    def begin_stream(self, user_text: str, model: str) -> None:
        """Show the user's message at once and an empty reply to stream into."""
        for w in self.widgets:
            w.set_busy(True)
        if user_text:
            self.add("user", "You").set_markdown(user_text)
        self.streaming = self.add("assistant", _title("assistant", model))
        self.streaming.set_note("writing…")
        self._stream_text = ""
        self._stream_thinking = ""
        self._thinking_since = 0.0
        self._thought_for = None
        self._timer.start(REPAINT_MS)
        self.scroll_to_end()

    def append(self, piece: str) -> None:
        """A piece of the answer."""
        if self._thinking_since and self._thought_for is None:
            self._thought_for = time.monotonic() - self._thinking_since
        self._stream_text += piece

    def append_thinking(self, piece: str) -> None:
        """A piece of the model's thinking (shown above the answer, collapsed)."""
        if not self._thinking_since:
            self._thinking_since = time.monotonic()
        self._stream_thinking += piece

    def stop_stream(self) -> None:
        self._timer.stop()
        if self.streaming is not None:
            self._repaint_stream()
            self.streaming = None

    def _repaint_stream(self) -> None:
        streaming = self.streaming
        if streaming is None:
            return
        thinking = streaming.thinking
        shown = thinking.thinking() if thinking is not None else ""
        running = self._thought_for is None and self._timer.isActive()
        if self._stream_thinking != shown or (thinking is not None and thinking.running != running):
            seconds = self._thought_for
            if seconds is None and not running and self._thinking_since:
                seconds = time.monotonic() - self._thinking_since  # it ended thinking
            streaming.set_thinking(self._stream_thinking, running=running, seconds=seconds)
        if streaming.markdown() == self._stream_text:
            return
        started = time.perf_counter()
        streaming.set_markdown(self._stream_text)
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
    """Who wrote a message: "You", or the model's name."""
    if role == "user":
        return "You"
    return model or "Assistant"
