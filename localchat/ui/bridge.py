"""Engine replies, delivered to the GUI thread as Qt signals.

The engine's stream blocks while it waits for tokens, so it is read on a
``QThread``; each piece crosses to the GUI thread as a queued ``piece`` signal.
The window never touches the engine from its own thread except to cancel,
which only writes a flag.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, QThread, Signal

from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message
from localchat.core.errors import LocalChatError
from localchat.core.params import GenerationSettings


class ReplyThread(QThread):
    """Runs one reply; emits its pieces, then ``finished_reply`` or ``failed``."""

    piece = Signal(str)
    finished_reply = Signal(object)  # ChatResult
    failed = Signal(str)

    def __init__(
        self,
        engine: Engine,
        messages: Sequence[Message],
        settings: GenerationSettings,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._engine = engine
        self._messages = list(messages)
        self._settings = settings

    def run(self) -> None:
        try:
            stream = self._engine.chat(self._messages, self._settings)
            for text in stream:
                self.piece.emit(text)
        except LocalChatError as exc:
            self.failed.emit(str(exc))
            return
        self.finished_reply.emit(stream.result)

    def cancel(self) -> None:
        self._engine.cancel()
