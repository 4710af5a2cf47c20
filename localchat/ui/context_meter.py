"""The status bar's readings of the open chat: the context meter (what the
next prompt costs, counted by the engine in the background, the latest count
winning, shown in words beside a thin bar) and the speed of the chat's last
reply."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from localchat.core.chat.session import as_messages, sent_to_model
from localchat.core.chat.store import ChatStore, StoredMessage
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import ContextReport, Message
from localchat.core.params import GenerationSettings
from localchat.ui.bridge import Emit, Job, LatestJobs
from localchat.ui.state import ChatState, ModelState

Counted = tuple[ContextReport, int | None, list[int]]
"""A count, the chat it was made for, and the ids of the messages it counted."""


class ContextCounter(QObject):
    """Recounts what the next prompt costs (the chat so far and the draft) on a
    job; one count at a time, the latest wins. The count lands in
    ``ChatState.context``; a new model clears it, a loaded one recounts."""

    def __init__(
        self,
        engine: Engine,
        store: ChatStore,
        chat: ChatState,
        model: ModelState,
        draft: Callable[[], str],
        values: Callable[[], GenerationSettings],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine, self.store, self.chat, self.model = engine, store, chat, model
        self._draft, self._values = draft, values
        self.closing = False
        # The draft is recounted once it has not changed for a moment.
        self.draft_timer = QTimer(self)
        self.draft_timer.setSingleShot(True)
        self.draft_timer.setInterval(400)
        self.draft_timer.timeout.connect(self.update)
        self.jobs = LatestJobs(self, one_at_a_time=True)
        self.jobs.done.connect(self._counted)
        model.chosen.connect(lambda _: chat.set_context(None))
        model.ready.connect(lambda _: self.update())

    def close(self) -> None:
        """The window closes: no more counting (the store and engine go next)."""
        self.closing = True
        self.draft_timer.stop()

    def _idle(self) -> bool:
        return self.model.loaded is not None and not self.chat.replying and not self.closing

    def update(self) -> None:
        """Recount (now, or after the count in flight)."""
        if self._idle():
            self.jobs.request(self._job)

    def _job(self) -> Job | None:
        """The count, made when it starts: from the chat and draft as they are then."""
        if not self._idle():
            return None
        chat_id = self.chat.id
        sent = sent_to_model(self.store.thread(chat_id)) if chat_id is not None else []
        messages: list[Message] = as_messages(sent)
        draft = self._draft()
        if draft:
            messages.append({"role": "user", "content": draft})
        if not messages:
            self.chat.set_context(None)
            return None
        settings, ids, engine = self._values(), [m.id for m in sent], self.engine

        def count(_emit: Emit) -> Counted:
            return engine.plan(messages, settings), chat_id, ids

        return count

    def wait(self) -> None:
        """Let a count in flight finish: one reaching the engine during a reply
        would end it (a request stops the stream in progress). Milliseconds;
        none starts while replying."""
        self.jobs.wait()

    def _counted(self, counted: Counted) -> None:
        report, chat_id, ids = counted
        if chat_id != self.chat.id:
            return
        self.chat.set_context(report, {ids[i] for i in report.dropped if i < len(ids)})


class ContextMeter(QWidget):
    """What the next prompt costs, from the engine (exact tokens, the chat's
    overflow policy applied), in words beside a thin bar: "263 of 4,096 tokens
    used · 1,024 kept for the reply"; its tooltip says what is out of the
    model's view. Drawn from ``ChatState.context``, hidden while there is none.

    In a chat grounded in documents, the passages for the next message are
    not known before it is sent (they depend on its words), so they are not
    in the figure: the meter adds "up to 1,500 for passages" (the
    grounding's budget, estimated tokens), and its tooltip whether that
    still fits."""

    def __init__(self, chat: ChatState, counter: ContextCounter) -> None:
        super().__init__()
        self.setObjectName("context-meter")
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)  # the words are beside it, never on the fill
        self.bar.setFixedSize(90, 8)
        self.label = QLabel()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.label)
        self.hide()
        self.grounded: list[str] = []
        """The collections the open chat draws on (``set_grounding``)."""
        self._report: ContextReport | None = None
        chat.counted.connect(self.show_report)
        counter.jobs.failed.connect(lambda _message: self.hide())

    def text(self) -> str:
        return self.label.text()

    def maximum(self) -> int:
        return self.bar.maximum()

    def value(self) -> int:
        return self.bar.value()

    def set_grounding(self, collections: list[str]) -> None:
        """The open chat draws on these collections (none: it is not grounded)."""
        self.grounded = list(collections)
        self.show_report(self._report)

    def show_report(self, report: ContextReport | None) -> None:
        self._report = report
        if report is None:
            self.hide()
            return
        used = report.prompt_tokens + report.reserve
        self.bar.setRange(0, report.n_ctx)
        self.bar.setValue(min(used, report.n_ctx))
        if report.excess:
            text = f"{report.excess:,} tokens over the {report.n_ctx:,}-token context"
        else:
            thinking = f" ({report.thinking_tokens:,} thinking)" if report.thinking_tokens else ""
            text = (
                f"{report.prompt_tokens:,} of {report.n_ctx:,} tokens used{thinking} · "
                f"{report.reserve:,} kept for the reply"
            )
        passages = self._passages(report)
        if passages and not report.excess:
            text += f" · up to {passages[0]:,} for passages"
        self.label.setText(text)
        lines = [
            f"Next prompt: {report.prompt_tokens:,} tokens (what the model will read, "
            "its chat template included)",
            f"Kept for the reply: {report.reserve:,} tokens (max tokens, at most a quarter "
            "of the context)",
            f"Free: {max(report.free, 0):,} of {report.n_ctx:,}",
        ]
        if report.thinking_tokens:
            lines.insert(
                1,
                f"Of these, {report.thinking_tokens:,} tokens are the model's earlier "
                "thinking, which its chat template keeps in view",
            )
        if report.dropped:
            lines.append(
                f"Out of the model's view: {len(report.dropped)} older messages. They stay "
                "in the chat (dimmed), but the model no longer sees them; the setting "
                "'When the chat is too long' chooses which go."
            )
        else:
            lines.append("The whole chat is in the model's view.")
        if passages:
            lines.append(passages[1])
        if report.excess:
            lines.append(
                f"{report.excess:,} tokens too many: with 'Stop and say so' the chat cannot "
                "be sent as it is"
            )
        self.setToolTip("\n".join(lines))
        self.setProperty("over", bool(report.excess))
        # Red where it is over: a red that reads on the light and the dark theme.
        dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
        red = "#ff7b6b" if dark else "#c0392b"
        self.label.setStyleSheet(f"color: {red}" if report.excess else "")
        self.bar.setStyleSheet(
            f"QProgressBar::chunk {{ background: {red}; }}" if report.excess else ""
        )
        self.show()

    def _passages(self, report: ContextReport) -> tuple[int, str] | None:
        """The grounding's budget and what it means for this count (None: not grounded)."""
        if not self.grounded:
            return None
        from localchat.core.documents.grounding import BUDGET  # with the first grounded chat

        line = (
            f"Drawing on {', '.join(self.grounded)}: the next message goes with the passages "
            f"that answer it, up to about {BUDGET:,} tokens (estimated), not counted above"
        )
        if report.prompt_tokens + report.reserve + BUDGET > report.n_ctx:
            line += (
                "; with that many, the chat may not fit: older messages would drop out of "
                "the model's view (with 'Stop and say so', the message is refused)"
            )
        return BUDGET, line


class SpeedLabel(QLabel):
    """The speed of the chat's last reply (the context meter beside it counts
    the next prompt)."""

    def show_stats(self, thread: list[StoredMessage]) -> None:
        replies = [m for m in thread if m.role == "assistant" and m.stats]
        stats = replies[-1].stats if replies else None
        if not stats or "tokens_per_s" not in stats:
            self.clear()  # no reply yet (a new or emptied chat): no figures
            self.setToolTip("")
            return
        self.setText(
            f"{stats['tokens_per_s']:.1f} tok/s · first token {stats['ttft_ms'] / 1000:.2f} s"
        )
        tip = f"The last reply: {stats.get('completion_tokens', 0):,} tokens"
        if stats.get("reasoning_tokens"):
            tip += f", {stats['reasoning_tokens']:,} of them thinking"
        if "context_used" in stats and "context_size" in stats:  # older replies lack them
            tip += (
                f"; the context held {stats['context_used']:,} of "
                f"{stats['context_size']:,} tokens at its end"
            )
        self.setToolTip(tip)
