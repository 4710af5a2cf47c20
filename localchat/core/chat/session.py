"""One conversation: send, stream, stop, edit, regenerate.

The session joins the store and the engine. Every step is written to the store
before the next one starts: the user's message (one transaction), then the
reply as it streams (see ``ReplyWriter``), then how it ended: done, cancelled
(the text so far kept) or failed (the text so far kept, the error recorded).
Nothing the user wrote depends on the engine staying alive.

A reasoning model's thinking is stored apart from its answer and sent back to
the model apart too (the ``reasoning`` field of a message, which the chat
template places where the model expects it, or drops).

The methods block while the reply streams; the window calls them on a worker
thread and :meth:`ChatSession.stop` from the GUI thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from localchat.core.chat.chat_titles import plain_title
from localchat.core.chat.store import ChatStore, StoredMessage
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message, Piece
from localchat.core.errors import LocalChatError
from localchat.core.params import GenerationSettings

OnPiece = Callable[[Piece], None]
"""Called with each piece as it streams, thinking (``piece.reasoning``) and
answer alike: the caller decides how to show each."""


class ChatSession:
    def __init__(self, store: ChatStore, engine: Engine, chat_id: int, *, model: str) -> None:
        self.store = store
        self.engine = engine
        self.chat_id = chat_id
        self.model = model
        """The model's name as recorded with each reply."""

    def send(
        self, text: str, settings: GenerationSettings, on_piece: OnPiece | None = None
    ) -> StoredMessage:
        """Add the user's message and generate the reply; returns the reply."""
        message_id = self.store.add_message(self.chat_id, "user", text)
        if not self.store.chat(self.chat_id).title:
            self.store.rename_chat(self.chat_id, plain_title(text))
        return self._reply(message_id, settings, on_piece)

    def regenerate(
        self, reply_id: int, settings: GenerationSettings, on_piece: OnPiece | None = None
    ) -> StoredMessage:
        """Another reply to the same message; the old one stays as an alternative."""
        parent = self.store.message(reply_id).parent_id
        if parent is None:
            raise LocalChatError("only a reply can be regenerated")
        return self._reply(parent, settings, on_piece)

    def edit(
        self,
        message_id: int,
        text: str,
        settings: GenerationSettings,
        on_piece: OnPiece | None = None,
    ) -> StoredMessage:
        """Send a new version of a user message; the old version and everything
        after it stay as another branch."""
        if self.store.message(message_id).role != "user":
            raise LocalChatError("only your own messages can be edited")
        return self._reply(self.store.edit_message(message_id, text), settings, on_piece)

    def stop(self) -> None:
        """Stop the reply being generated (from any thread); its text is kept."""
        self.engine.cancel()

    def _reply(
        self, parent_id: int, settings: GenerationSettings, on_piece: OnPiece | None
    ) -> StoredMessage:
        history = as_messages(sent_to_model(self.store.path_to(parent_id)))
        writer = self.store.begin_reply(
            self.chat_id, parent_id=parent_id, model=self.model, settings=settings.to_dict()
        )
        try:
            stream = self.engine.chat(history, settings)
            for piece in stream.pieces():
                writer.append(piece.text, piece.reasoning)
                if on_piece is not None:
                    on_piece(piece)
        except LocalChatError as exc:
            writer.finish("failed", {"error": str(exc)})
            raise
        except BaseException:
            writer.finish("failed", {"error": "stopped by an internal error"})
            raise
        result = stream.result
        assert result is not None
        stats = dataclasses.asdict(result)
        # The texts have their own columns; the tokens' probabilities, when
        # asked for, are the caller's (``result.tokens``).
        del stats["reply"], stats["reasoning"], stats["tokens"]
        writer.finish("cancelled" if result.finish_reason == "cancelled" else "done", stats)
        return self.store.message(writer.message_id)


def sent_to_model(path: Sequence[StoredMessage]) -> list[StoredMessage]:
    """The messages of a thread the model is sent (a reply that failed before
    writing anything, neither answer nor thinking, is not)."""
    return [m for m in path if m.status != "failed" or m.content or m.reasoning]


def as_messages(stored: Sequence[StoredMessage]) -> list[Message]:
    """The messages as the engine takes them: a reply's thinking, if any, in
    its own field (never in the content), for the template to place."""
    messages: list[Message] = []
    for m in stored:
        message: Message = {"role": m.role, "content": m.content}
        if m.role == "assistant" and m.reasoning:
            message["reasoning"] = m.reasoning
        messages.append(message)
    return messages
