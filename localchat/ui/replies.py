"""Writing replies: the reply job that streams into the view, from the composer.

One reply at a time. It runs on a ``ReplyThread``, which only emits: the chat
it writes to (made there when none is open), each piece, and its end; slots
on the GUI thread show them. ``ChatState.replying`` is set from the start of a
reply until its end has reached the GUI thread.

While the window's API server runs, a reply takes its turn with the
server's requests (``turn``): it may wait for one to end, so Stop then only
marks it, and it stops once it has the engine (cancelling at once would stop
the request instead).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from localchat.core.chat.session import ChatSession, OnPiece
from localchat.core.chat.store import ChatStore, StoredMessage
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Piece
from localchat.core.params import GenerationSettings
from localchat.ui.bridge import Emit, JobThread
from localchat.ui.chat_view import ChatView
from localchat.ui.composer import ComposerBox
from localchat.ui.context_meter import ContextCounter
from localchat.ui.state import ChatState, ModelState

if TYPE_CHECKING:
    from localchat.core.engine.protocol import LoadedModel
    from localchat.ui.chat_documents import ForReply
    from localchat.ui.local_server import Turn

Talk = Callable[[ChatSession, OnPiece], StoredMessage]

RECORDED_CANDIDATES = 10
"""Every reply in the window keeps its tokens' log-probabilities and this
many candidates each, for the token X-ray (what it costs: benchmarks/xray.py)."""


class ReplyThread(JobThread):
    """``talk`` with a session for ``chat_id`` (a new chat, made here, when it is
    None); the chat is announced by ``chat_opened`` before the first piece."""

    chat_opened = Signal(int)
    thought = Signal(str)
    """A piece of the model's thinking (``piece`` carries the answer's)."""

    def __init__(
        self,
        store: ChatStore,
        engine: Engine,
        chat_id: int | None,
        model: str,
        talk: Talk,
        turn: Turn = contextlib.nullcontext,
        documents: ForReply | None = None,
    ) -> None:
        """``documents``: the index to ground the chat's reply in, given its chat."""
        super().__init__(self._write)
        self._store, self._engine, self._chat_id = store, engine, chat_id
        self._model, self._talk, self._turn = model, talk, turn
        self._documents = documents
        self._lock = threading.Lock()
        self._stopping = False
        self._holding = False

    def stop(self) -> None:
        """Stop the reply: at once when it has the engine, else as soon as it
        gets it (its first piece)."""
        with self._lock:
            self._stopping = True
            if self._holding:
                self._engine.cancel()

    def _write(self, emit: Emit) -> StoredMessage:
        chat = self._chat_id if self._chat_id is not None else self._store.create_chat()
        self.chat_opened.emit(chat)
        documents = self._documents(chat) if self._documents is not None else None
        with self._turn():
            with self._lock:
                self._holding = True
            try:
                model = recorded_name(self._model, getattr(self._engine, "loaded", None))
                session = ChatSession(
                    self._store,
                    self._engine,
                    chat,
                    model=model,
                    top_logprobs=RECORDED_CANDIDATES,
                    documents=documents,
                )
                return self._talk(session, self._piece)
            finally:
                with self._lock:
                    self._holding = False

    def _piece(self, piece: Piece) -> None:
        if self._stopping:  # asked before the engine was this reply's: its cancel came too early
            self._engine.cancel()
        (self.thought if piece.reasoning else self.piece).emit(piece.text)


def recorded_name(chosen: str, loaded: LoadedModel | None) -> str:
    """Who writes the reply, as the chat records it: the model chosen, unless
    the API server loaded another one while the reply waited for its turn."""
    if loaded is None:
        return chosen
    stem = Path(loaded.path).stem
    base, _, adapter = chosen.partition(" + ")
    if stem != base:
        return stem
    return chosen if (adapter != "") == (loaded.lora is not None) else stem


class Replies(QObject):
    """Send, regenerate, edit and stop: each starts (or stops) the reply job."""

    regenerating = Signal()
    """Before a regenerated reply streams: the chat is shown afresh."""
    ended = Signal(str)
    """The reply is over and the view shows it: "" or why it failed."""
    message = Signal(str, int)
    """A line for the status bar, and how long it stays (ms)."""

    def __init__(
        self,
        store: ChatStore,
        engine: Engine,
        chat: ChatState,
        model: ModelState,
        view: ChatView,
        box: ComposerBox,
        counter: ContextCounter,
        values: Callable[[], GenerationSettings],
        parent: QObject | None = None,
        turn: Turn | None = None,
        serving: Callable[[], bool] = lambda: False,
    ) -> None:
        """``turn``: how a reply holds the engine (see the module's docstring);
        ``serving``: whether the API server takes turns with it now."""
        super().__init__(parent)
        self.store, self.engine, self.chat, self.model = store, engine, chat, model
        self._turn, self._serving = turn or contextlib.nullcontext, serving
        composer = box.composer
        self.view, self.composer, self.counter, self._values = view, composer, counter, values
        self.job: ReplyThread | None = None
        self.reply_chat: int | None = None
        """The chat the running (or last) reply writes to, once its job has said."""
        self.documents: Callable[[], ForReply | None] = lambda: None
        """As a reply starts: where its chat's documents are (``ChatDocuments.for_reply``)."""
        composer.submitted.connect(self.send)
        composer.stop_requested.connect(self.stop)
        box.send_button.clicked.connect(self.send_or_stop)
        chat.reply_changed.connect(box.set_replying)

    def busy(self) -> bool:
        return self.chat.replying

    def send(self, text: str) -> None:
        if self.busy():
            return
        if self.model.loaded is None:
            self.message.emit("Choose a model first (and wait until it is ready).", 5000)
            return
        self.composer.clear()
        settings = self._values()
        self._run(lambda session, emit: session.send(text, settings, emit), text)

    def regenerate(self, reply_id: int) -> None:
        if self.busy() or self.chat.id is None or self.model.loaded is None:
            return
        settings = self._values()
        self._run(lambda session, emit: session.regenerate(reply_id, settings, emit), "")

    def edit_message(self, message_id: int, text: str) -> None:
        """A message edited in place in the view: sent again as a new version."""
        if self.busy() or self.chat.id is None or self.model.loaded is None:
            return
        text = text.strip()
        if text and text != self.store.message(message_id).content:
            self.resend_edited(message_id, text)

    def resend_edited(self, message_id: int, text: str) -> None:
        settings = self._values()
        self._run(lambda session, emit: session.edit(message_id, text, settings, emit), text)

    def continue_with(self, reply_id: int, position: int, token_id: int) -> None:
        """The token X-ray's "Continue with this instead": the reply again
        from ``position`` with ``token_id`` there, with the settings it was
        written with; a new version of it."""
        if self.busy() or self.chat.id is None or self.model.loaded is None:
            return
        stored = self.store.message(reply_id).settings
        settings = GenerationSettings.from_dict(stored, strict=False) if stored else self._values()
        self._run(
            lambda session, say: session.continue_with(reply_id, position, token_id, settings, say),
            "",
        )

    def stop(self) -> None:
        if self.busy() and self.job is not None:
            self.job.stop()

    def send_or_stop(self) -> None:
        if self.busy():
            self.stop()
        else:
            text = self.composer.toPlainText().strip()
            if text:
                self.send(text)

    def _run(self, talk: Talk, user_text: str) -> None:
        """Run ``talk`` on a ReplyThread with a session for the current chat (a
        new one, created there, when none is open)."""
        name = self.model.name()
        self.reply_chat = None
        if user_text == "":
            self.regenerating.emit()  # the reply replaces the shown one
            if self.view.widgets:
                self.view.widgets[-1].hide()
        self.view.begin_stream(user_text, name)
        if not self._serving():  # else the count takes its turn too, and may wait for one
            self.counter.wait()
        self.chat.set_replying(True)
        self.job = ReplyThread(
            self.store, self.engine, self.chat.id, name, talk, self._turn, self.documents()
        )
        self.job.chat_opened.connect(self._chat_opened)
        self.job.piece.connect(self.view.append)
        self.job.thought.connect(self.view.append_thinking)
        self.job.done.connect(self._done)
        self.job.failed.connect(self._end)
        self.job.start()

    def _chat_opened(self, chat_id: int) -> None:
        self.reply_chat = chat_id

    def _done(self, _reply: StoredMessage) -> None:
        self._end("")

    def _end(self, failure: str) -> None:
        self.chat.set_replying(False)
        self.view.stop_stream()
        self.ended.emit(failure)

    def wait(self, msecs: int) -> None:
        if self.job is not None:
            self.job.wait(msecs)
