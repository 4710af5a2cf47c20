"""The X-ray's window, beside the chat (not modal), with two tabs:

- **This token**: one position of a reply (``token_panel``), opened by a
  click on a token; "Continue with this instead" goes to the window's replies
  and the window closes so the new version can be read.
- **The prompt**: the exact prompt the model read for that reply, rendered by
  its template and shown token by token (ids on hover), the system prompt in
  and the messages out of view absent, with the counts. The engine renders it
  (on a job), with the loaded model and the reply's settings."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.session import as_messages, sent_to_model
from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import PromptShown
from localchat.core.params import GenerationSettings
from localchat.ui import theme
from localchat.ui.bridge import Emit, LatestJobs
from localchat.ui.state import ChatState, ModelState
from localchat.ui.token_panel import TokenPanel
from localchat.ui.token_view import TokenView


def _scrolled(widget: QWidget) -> QScrollArea:
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(widget)
    return scroll


class PromptPanel(QWidget):
    """The prompt of a reply, token by token, and what it counts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = theme.secondary(QLabel())
        self.summary.setWordWrap(True)
        self.tokens = TokenView()
        self.tokens.setObjectName("prompt-tokens")
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.tokens)
        layout.addStretch(1)

    def waiting(self, text: str) -> None:
        self.summary.setText(text)
        self.tokens.set_plain(())

    def show_prompt(self, shown: PromptShown, model: str, wrote: str | None) -> None:
        lines = [
            f"{len(shown.tokens):,} tokens of the {shown.n_ctx:,}-token context "
            f"({shown.reserve:,} kept for the reply), as {model}'s chat template writes them."
        ]
        if shown.dropped:
            lines.append(
                f"{len(shown.dropped)} earlier messages were out of the model's view: they "
                "are not in it."
            )
        if wrote and wrote != model:
            lines.append(f"Rendered with {model}, which is loaded; {wrote} wrote this reply.")
        self.summary.setText(" ".join(lines))
        self.tokens.set_plain(shown.tokens)


class XrayDialog(QDialog):
    def __init__(
        self,
        store: ChatStore,
        engine: Engine,
        chat: ChatState,
        model: ModelState,
        continue_with: Callable[[int, int, int], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("xray")
        self.setWindowTitle("X-ray")
        self.store, self.engine, self.chat, self.model = store, engine, chat, model
        self.message_id: int | None = None
        self._continue_with = continue_with
        self.panel = TokenPanel()
        self.panel.continue_requested.connect(self._continue)
        self.prompt = PromptPanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(_scrolled(self.panel), "This token")
        self.tabs.addTab(_scrolled(self.prompt), "The prompt")
        self.tabs.currentChanged.connect(lambda _: self._load_prompt())
        self.jobs = LatestJobs(self)
        self.jobs.done.connect(self._prompt_shown)
        self.jobs.failed.connect(self.prompt.waiting)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.resize(580, 660)
        self._prompt_for: int | None = None

    def show_token(self, message_id: int, index: int) -> None:
        message = self.store.message(message_id)
        self.message_id = message_id
        self.tabs.setTabEnabled(0, True)
        self.panel.show_position(message.tokens, index, message.settings)
        self.tabs.setCurrentIndex(0)
        self._open()

    def show_prompt(self, message_id: int) -> None:
        """Open on the prompt of reply ``message_id`` (one without tokens too)."""
        self.message_id = message_id
        self.tabs.setTabEnabled(0, self.store.message(message_id).has_tokens)
        self.tabs.setCurrentIndex(1)
        self._load_prompt()
        self._open()

    def _open(self) -> None:
        self.show()
        self.raise_()

    def _load_prompt(self) -> None:
        """Ask the engine for the prompt of the reply shown (once per reply)."""
        if self.tabs.currentIndex() != 1 or self.message_id is None:
            return
        if self._prompt_for == self.message_id:
            return
        if self.chat.replying or self.model.loaded is None:
            self.prompt.waiting("The prompt can be shown once the model is ready and not writing.")
            return
        message = self.store.message(self.message_id)
        if message.parent_id is None:
            return
        messages = as_messages(sent_to_model(self.store.path_to(message.parent_id)))
        stored = message.settings
        settings = (
            GenerationSettings.from_dict(stored, strict=False) if stored else GenerationSettings()
        )
        engine, wanted = self.engine, self.message_id
        self._prompt_for = wanted
        self.prompt.waiting("Rendering the prompt…")

        def job(_emit: Emit) -> tuple[int, PromptShown]:
            return wanted, engine.prompt(messages, settings)

        self.jobs.request(lambda: job)

    def _prompt_shown(self, answer: tuple[int, PromptShown]) -> None:
        message_id, shown = answer
        if message_id != self.message_id:
            return
        wrote = self.store.message(message_id).model
        self.prompt.show_prompt(shown, self.model.name(), wrote)

    def _continue(self, index: int, token_id: int) -> None:
        if self.message_id is not None:
            self._continue_with(self.message_id, index, token_id)
            self.hide()
