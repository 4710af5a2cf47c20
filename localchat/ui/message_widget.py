"""One message of the conversation, laid out as in LM Studio or Jan.

The user's message is a right-aligned bubble of limited width, tinted with the
accent colour, edited in place; the model's reply is full width, without a
box, under a small round avatar and the model's name, its statistics in small
grey text under it. The actions (Copy, Edit or Regenerate) are icon buttons
drawn while the pointer is over the message or the keyboard is in it; the
version arrows (‹ 2/3 ›) stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QTimer, Signal
from PySide6.QtGui import QEnterEvent, QGuiApplication, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.store import StoredMessage
from localchat.ui import theme
from localchat.ui.code_block import CodeBlock, split_markdown
from localchat.ui.icons import icon
from localchat.ui.message_edit import EditFrame
from localchat.ui.message_parts import (
    ActionButton,
    Avatar,
    Bubble,
    MessageText,
    Note,
    small,
    stats_text,
)

if TYPE_CHECKING:
    from localchat.ui.sources_view import SourcesView
    from localchat.ui.thinking_block import ThinkingBlock
    from localchat.ui.token_view import TokenView

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
the message's width (beside the title it would be squeezed into a column)."""
BUBBLE_SHARE = 0.8
"""The user's bubble is at most this share of the view's width…"""
BUBBLE_EMS = 42
"""…and at most this many font heights wide (long lines are hard to read)."""


class MessageWidget(QFrame):
    """One message: who, the text, and what can be done with it."""

    edit_requested = Signal(int)
    """Kept for callers that still connect it; Edit now edits in place (``edited``)."""
    edited = Signal(int, str)
    """The user saved an edit of message ``id``: ``text`` is the new message."""
    regenerate_requested = Signal(int)
    show_sibling = Signal(int)
    token_picked = Signal(int, int)
    """In the token X-ray: message ``id``'s token ``index`` was clicked."""
    prompt_picked = Signal(int)
    """The X-ray of a reply without recorded tokens: its prompt, then."""

    def __init__(self, role: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.message: StoredMessage | None = None
        self.setObjectName(f"message-{role}")
        self._hover = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 2)
        layout.setSpacing(4)
        head = QHBoxLayout()
        head.setSpacing(8)
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
        user = role == "user"
        indent = 0
        self.avatar = Avatar(title, person=user)
        if not user:
            head.addWidget(self.avatar)
            indent = self.avatar.width() + head.spacing()
            head.addWidget(self.title, 1)  # takes the free width, shrinks first
            head.addWidget(self.outside)
            head.addWidget(self.note)
        else:  # mirrored: the notes, then the name and the avatar at the right edge
            self.title.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
            self.title.setMinimumWidth(0)
            head.addStretch(1)
            head.addWidget(self.outside)
            head.addWidget(self.note)
            head.addWidget(self.title)
            head.addWidget(self.avatar)
        layout.addLayout(head)
        self._layout, self._head = layout, head

        self.body = QVBoxLayout()
        self.body.setSpacing(6)
        self.bubble: Bubble | None = None
        if user:
            self.bubble = Bubble()
            self.body.setContentsMargins(12, 7, 12, 7)
            self.bubble.setLayout(self.body)
            self._bubble_row = QHBoxLayout()
            self._bubble_row.addStretch(1)
            self._bubble_row.addWidget(self.bubble)
            layout.addLayout(self._bubble_row)
        else:
            self.body.setContentsMargins(indent, 0, 0, 0)
            layout.addLayout(self.body)
        self.editor: QFrame | None = None
        self._natural = 0

        foot = QHBoxLayout()
        foot.setSpacing(2)
        foot.setContentsMargins(indent, 0, 0, 0)
        if user:
            foot.addStretch(1)
        self.older = ActionButton(icon("previous"), "Previous version", "Previous version")
        self.older.clicked.connect(lambda: self._flip(-1))
        self.position = small(QLabel())
        theme.secondary(self.position)
        self.newer = ActionButton(icon("next"), "Next version", "Next version")
        self.newer.clicked.connect(lambda: self._flip(1))
        for w in (self.older, self.position, self.newer):
            foot.addWidget(w)
            w.hide()
        self.stats = small(QLabel())
        theme.secondary(self.stats)
        self.stats.hide()
        if not user:
            foot.addWidget(self.stats)
            foot.addSpacing(6)
        shown = self.actions_shown
        self.copy = ActionButton(icon("copy"), "Copy", "Copy this message", shown)
        self.copy.clicked.connect(self._copy)
        action, name = ("edit", "Edit") if user else ("regenerate", "Regenerate")
        self.action = ActionButton(icon(action), name, f"{name} this message", shown)
        self.action.clicked.connect(self._act)
        self.action.setVisible(role in ("user", "assistant"))
        self.xray = ActionButton(
            icon("xray"),
            "X-ray",
            "Show how the model chose each token (click one for more)",
            lambda: self.actions_shown() or self.xray.isChecked(),  # drawn while on
        )
        self.xray.setCheckable(True)
        self.xray.toggled.connect(self._xray_clicked)
        self.xray.hide()  # for a finished reply
        for button in (self.copy, self.action, self.xray):
            button.on_focus = self._refresh_actions
            foot.addWidget(button)
        if not user:
            foot.addStretch(1)
        layout.addLayout(foot)
        self._foot = foot
        self.segments: list[MessageText | CodeBlock] = []
        self._markdown = ""
        self.thinking: ThinkingBlock | None = None
        """A reasoning model's thinking, above the answer (made when there is some)."""
        self.tokens_view: TokenView | None = None
        """The token X-ray, in place of the text while it is on."""
        self.sources: SourcesView | None = None
        """Under a reply grounded in documents: its sources (made with the first)."""

    # -- the text -----------------------------------------------------------------------

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
        if self.bubble is not None:
            self._natural = self._natural_width()
            self._fit_bubble()

    def markdown(self) -> str:
        return self._markdown

    def _natural_width(self) -> int:
        """The bubble's width for its text unwrapped (0: as wide as allowed)."""
        if any(isinstance(s, CodeBlock) for s in self.segments):
            return 0
        widest = max(
            (s.natural_width() for s in self.segments if isinstance(s, MessageText)), default=0
        )
        margins = self.body.contentsMargins()
        return int(widest) + margins.left() + margins.right() + 8

    def _fit_bubble(self) -> None:
        if self.bubble is None:
            return
        margins = self._layout.contentsMargins()
        room = self.width() - margins.left() - margins.right()
        widest = min(int(room * BUBBLE_SHARE), BUBBLE_EMS * self.fontMetrics().height())
        width = widest if self._natural == 0 else min(widest, self._natural)
        width = max(width, 2 * self.fontMetrics().height())
        if self.bubble.width() != width or self.bubble.minimumWidth() != width:
            self.bubble.setFixedWidth(width)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_bubble()

    # -- notes and state ----------------------------------------------------------------

    def set_note(self, text: str) -> None:
        """Show ``text`` as the note: beside the title when short, else on a
        line of its own under it (wrapped to the message's width, which the
        note never widens: the conversation does not scroll sideways)."""
        self.note.setText(text)
        self.note.setVisible(bool(text))
        below = len(text) > NOTE_BESIDE_TITLE
        if below == (self._head.indexOf(self.note) < 0):
            return
        if below:
            self._head.removeWidget(self.note)
            self._layout.insertWidget(1, self.note)
            self.note.setContentsMargins(self.body.contentsMargins().left(), 0, 0, 0)
        else:
            self._layout.removeWidget(self.note)
            self._head.insertWidget(self._head.indexOf(self.outside) + 1, self.note)
            self.note.setContentsMargins(0, 0, 0, 0)

    def set_thinking(self, text: str, *, running: bool, seconds: float | None = None) -> None:
        """Show the model's thinking above its answer (see ``thinking_block``)."""
        if self.thinking is None:
            if not text and not running:
                return
            from localchat.ui.thinking_block import ThinkingBlock

            self.thinking = ThinkingBlock()
            index = self.body.indexOf(self.segments[0]) if self.segments else self.body.count()
            self.body.insertWidget(max(index, 0), self.thinking)
        self.thinking.set_thinking(text, running=running, seconds=seconds)

    def set_xray(self, on: bool) -> None:
        """Show the reply as its tokens, each coloured by its probability
        (``token_view``), or as text again."""
        message = self.message
        on = on and message is not None and message.has_tokens
        if on and message is not None:
            if self.tokens_view is None:
                from localchat.ui.token_view import TokenView

                self.tokens_view = TokenView()
                self.tokens_view.picked.connect(self._picked)
                self.body.addWidget(self.tokens_view)
            self.tokens_view.set_tokens(message.tokens)
        if self.tokens_view is not None:
            self.tokens_view.setVisible(on)
        for segment in self.segments:
            segment.setVisible(not on)
        if self.xray.isChecked() != on:
            self.xray.blockSignals(True)
            self.xray.setChecked(on)
            self.xray.blockSignals(False)

    def _xray_clicked(self, on: bool) -> None:
        message = self.message
        if message is not None and not message.has_tokens:
            self.xray.setChecked(False)  # no tokens to show: the prompt, in the X-ray window
            if on:
                self.prompt_picked.emit(message.id)
            return
        self.set_xray(on)

    def _picked(self, index: int) -> None:
        if self.message is not None:
            self.token_picked.emit(self.message.id, index)

    def set_message(self, message: StoredMessage) -> None:
        self.message = message
        self.xray.setVisible(message.role == "assistant" and message.status != "streaming")
        self.xray.setToolTip(
            "Show how the model chose each token (click one for more)"
            if message.has_tokens
            else "Show the prompt the model read for this reply"
        )
        if message.reasoning or self.thinking is not None:
            ms = (message.stats or {}).get("thinking_ms")
            self.set_thinking(message.reasoning, running=False, seconds=ms / 1000 if ms else None)
        self.set_markdown(message.content)
        if message.sources is not None and self.sources is None:
            from localchat.ui.sources_view import SourcesView

            self.sources = SourcesView()
            self.sources.setContentsMargins(self.body.contentsMargins().left(), 0, 0, 0)
            self._layout.insertWidget(self._layout.count() - 1, self.sources)  # above the foot
        if self.sources is not None:
            self.sources.set_sources(message.sources)
        if self.xray.isChecked():
            self.set_xray(True)  # this version's tokens (or the text, if it has none)
        note = STATUS_NOTES.get(message.status, "")
        if message.status == "failed" and message.stats and message.stats.get("error"):
            note = f"failed: {message.stats['error']}"
        self.set_note(note)
        self.note.set_error(message.status == "failed")
        line = stats_text(message.stats) if message.role == "assistant" else ""
        self.stats.setText(line)
        self.stats.setVisible(bool(line))
        if line and message.stats:
            used, size = message.stats.get("context_used"), message.stats.get("context_size")
            if used is not None and size:
                self.stats.setToolTip(f"The context held {used:,} of {size:,} tokens at its end")
        many = len(message.sibling_ids) > 1
        for w in (self.older, self.position, self.newer):
            w.setVisible(many)
        if many:
            i = message.sibling_index
            self.position.setText(f"{i + 1}/{len(message.sibling_ids)}")
            self.position.setAccessibleName(f"version {i + 1} of {len(message.sibling_ids)}")
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

    # -- hover actions ------------------------------------------------------------------

    def actions_shown(self) -> bool:
        """Whether Copy and Edit/Regenerate are drawn: the pointer is over the
        message or the keyboard focus is in it."""
        focus = QApplication.focusWidget()
        return self._hover or (focus is not None and self.isAncestorOf(focus))

    def _refresh_actions(self) -> None:
        for button in (self.copy, self.action, self.xray):
            button.update()

    def enterEvent(self, event: QEnterEvent) -> None:
        super().enterEvent(event)
        self._hover = True
        self._refresh_actions()

    def leaveEvent(self, event: QEvent) -> None:
        super().leaveEvent(event)
        self._hover = False
        self._refresh_actions()

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self._markdown)
        self.copy.setIcon(icon("check"))
        self.copy.setToolTip("Copied")
        QTimer.singleShot(1500, self.copy, self._copied)

    def _copied(self) -> None:
        self.copy.setIcon(icon("copy"))
        self.copy.setToolTip("Copy this message")

    def _act(self) -> None:
        if self.message is None:
            return
        if self.role == "user":
            self.start_edit()
        else:
            self.regenerate_requested.emit(self.message.id)

    def _flip(self, step: int) -> None:
        if self.message is not None:
            ids = self.message.sibling_ids
            self.show_sibling.emit(ids[self.message.sibling_index + step])

    # -- editing in place ---------------------------------------------------------------

    def start_edit(self) -> None:
        """Turn the bubble into an editor with Save & send and Cancel."""
        if self.bubble is None or self.editor is not None:
            return
        frame = EditFrame(self.message.content if self.message else self._markdown)
        self.edit_box = frame.edit_box
        self.cancel_button, self.save_button = frame.cancel_button, frame.save_button
        self.cancel_button.clicked.connect(self.cancel_edit)
        self.save_button.clicked.connect(self.save_edit)
        self.edit_box.cancel.connect(self.cancel_edit)
        self.edit_box.save.connect(self.save_edit)
        self.editor = frame
        self.bubble.hide()
        for w in self._foot_widgets():
            w.setProperty("was_visible", w.isVisibleTo(self))
            w.hide()
        self._layout.insertWidget(self._layout.count() - 1, frame)
        frame.show()
        self.edit_box.setFocus()
        cursor = self.edit_box.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.edit_box.setTextCursor(cursor)

    def _foot_widgets(self) -> list[QWidget]:
        items = (self._foot.itemAt(i) for i in range(self._foot.count()))
        return [w for item in items if item is not None and (w := item.widget()) is not None]

    def cancel_edit(self) -> None:
        """Back to the bubble, the message unchanged."""
        if self.editor is None or self.bubble is None:
            return
        self.editor.hide()
        self.editor.deleteLater()
        self.editor = None
        self.bubble.show()
        for w in self._foot_widgets():
            if w.property("was_visible"):
                w.show()

    def save_edit(self) -> None:
        """Send the edited text (``edited``) when it says something new."""
        if self.editor is None or self.message is None:
            return
        text = self.edit_box.toPlainText().strip()
        old = self.message.content
        self.cancel_edit()
        if text and text != old:
            self.edited.emit(self.message.id, text)
