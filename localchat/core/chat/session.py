"""One conversation: send, stream, stop, edit, regenerate.

The session joins the store and the engine. Every step is written to the store
before the next one starts: the user's message (one transaction), then the
reply as it streams (see ``ReplyWriter``), then how it ended: done, cancelled
(the text so far kept) or failed (the text so far kept, the error recorded).
Nothing the user wrote depends on the engine staying alive.

A reasoning model's thinking is stored apart from its answer and sent back to
the model apart too (the ``reasoning`` field of a message, which the chat
template places where the model expects it, or drops).

With ``top_logprobs``, each reply keeps its tokens, each with its
log-probability and that many of the model's candidates (the token X-ray);
:meth:`ChatSession.continue_with` then makes another version of a reply that
follows it up to one of its tokens and goes on from a candidate the user
chose there.

A chat may be grounded in document collections (its settings'
``documents``: their names): each reply is then given the passages that
answer the user's message (``documents/grounding.py``), in that turn's
message only, and they are stored with the reply (``StoredMessage.sources``)
as they were.

The methods block while the reply streams; the window calls them on a worker
thread and :meth:`ChatSession.stop` from the GUI thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from localchat.core.chat.chat_titles import plain_title
from localchat.core.chat.store import ChatStore, StoredMessage
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import MAX_TOP_LOGPROBS, Message, Piece, TokenLogprob
from localchat.core.errors import LocalChatError, SettingError
from localchat.core.params import GenerationSettings

if TYPE_CHECKING:
    from localchat.core.documents.store import DocumentStore, Passage

DOCUMENTS = "documents"
"""The chat setting naming the collections a chat is grounded in."""

OnPiece = Callable[[Piece], None]
"""Called with each piece as it streams, thinking (``piece.reasoning``) and
answer alike: the caller decides how to show each."""
Tokens = tuple[TokenLogprob, ...]


class ChatSession:
    def __init__(
        self,
        store: ChatStore,
        engine: Engine,
        chat_id: int,
        *,
        model: str,
        top_logprobs: int = 0,
        documents: DocumentStore | None = None,
    ) -> None:
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise SettingError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
        self.store = store
        self.engine = engine
        self.chat_id = chat_id
        self.model = model
        """The model's name as recorded with each reply."""
        self.top_logprobs = top_logprobs
        """Keep each reply's tokens with this many candidates at each
        (``StoredMessage.tokens``); 0: keep no tokens."""
        self.documents = documents
        """The document index, for a chat grounded in collections."""

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

    def continue_with(
        self,
        reply_id: int,
        position: int,
        token_id: int,
        settings: GenerationSettings,
        on_piece: OnPiece | None = None,
    ) -> StoredMessage:
        """Another version of a reply ("continue with this instead", from the
        token X-ray): it starts with the reply's tokens before ``position``,
        then ``token_id`` in place of the one the model chose there (placed,
        not sampled), and the model goes on from there. The new version is a
        sibling of the old one, which stays.

        Its stored tokens keep the old reply's entries before ``position``
        (sampled then: their logprobs and candidates are real), and at
        ``position`` the chosen token with the old position's candidates and
        its logprob among them; a token that was not among them is marked
        ``forced`` (logprob 0, unknown). Each token's text (and whether it
        was thinking) is the new reply's, as the engine wrote it, so the
        joined texts are its text. Its stats say where it came from
        (``"continued": {"from", "position", "token"}``)."""
        old = self.store.message(reply_id)
        if old.chat_id != self.chat_id:
            raise LocalChatError(f"reply {reply_id} is not in this chat")
        if old.role != "assistant" or old.parent_id is None:
            raise LocalChatError("only a reply can be continued from one of its tokens")
        tokens = old.tokens
        if not tokens:
            raise LocalChatError(
                "this reply's tokens were not recorded, so it cannot be continued from one"
            )
        if not 0 <= position < len(tokens):
            raise LocalChatError(
                f"this reply has no token {position} (it has {len(tokens)}, from 0)"
            )
        if tokens[position].forced:
            raise LocalChatError(
                f"token {position} was placed, not chosen by the model: it has no alternatives"
            )
        if position + 1 >= settings.max_tokens:
            raise SettingError(
                f"continuing from token {position} needs a max tokens setting over "
                f"{position + 1} (it is {settings.max_tokens})"
            )
        at = tokens[position]
        chosen = next((c for c in at.top if c[0] == token_id), None)

        def recorded(new: Tokens) -> Tokens:
            """The new reply's tokens, its start taken from the old one's."""
            kept = [
                dataclasses.replace(o, text=n.text, reasoning=n.reasoning)
                for o, n in zip(tokens[:position], new[:position], strict=False)
            ]
            if len(new) > position:
                placed = new[position]
                kept.append(
                    TokenLogprob(
                        token_id,
                        placed.text,
                        chosen[2] if chosen is not None else 0.0,
                        at.top,
                        placed.reasoning,
                        forced=chosen is None,
                        lse=at.lse,
                    )
                )
            return (*kept, *new[position + 1 :])

        top = self.top_logprobs or max(len(t.top) for t in tokens)
        return self._reply(
            old.parent_id,
            settings,
            on_piece,
            top_logprobs=top,
            prefix=[*(t.id for t in tokens[:position]), token_id],
            recorded=recorded,
            stats={"continued": {"from": reply_id, "position": position, "token": token_id}},
        )

    def stop(self) -> None:
        """Stop the reply being generated (from any thread); its text is kept."""
        self.engine.cancel()

    def _reply(
        self,
        parent_id: int,
        settings: GenerationSettings,
        on_piece: OnPiece | None,
        *,
        top_logprobs: int | None = None,
        prefix: Sequence[int] = (),
        recorded: Callable[[Tokens], Tokens] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Generate a reply to ``parent_id`` into the store. ``top_logprobs``
        (None: the session's): record its tokens with that many candidates;
        ``prefix``: the tokens it starts with; ``recorded``: the tokens to
        store, given the engine's; ``stats``: added to the recorded stats."""
        top = self.top_logprobs if top_logprobs is None else top_logprobs
        keep = top > 0 or top_logprobs is not None
        history = as_messages(sent_to_model(self.store.path_to(parent_id)))
        sources = None
        passages = self._ground(history)
        if passages is not None:
            sources = [source_record(p) for p in passages]
        writer = self.store.begin_reply(
            self.chat_id,
            parent_id=parent_id,
            model=self.model,
            settings=settings.to_dict(),
            sources=sources,
        )
        try:
            # Only what is asked for goes to the engine (a plain reply: nothing).
            asked: dict[str, Any] = {"logprobs": True, "top_logprobs": top} if keep else {}
            if prefix:
                asked["prefix"] = tuple(prefix)
            stream = self.engine.chat(history, settings, **asked)
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
        # (Without its tokens: asdict would copy each of them, deeply.)
        recorded_stats = dataclasses.asdict(dataclasses.replace(result, tokens=())) | (stats or {})
        # The texts and the tokens have their own columns.
        del recorded_stats["reply"], recorded_stats["reasoning"], recorded_stats["tokens"]
        tokens = result.tokens if recorded is None else recorded(result.tokens)
        writer.finish(
            "cancelled" if result.finish_reason == "cancelled" else "done",
            recorded_stats,
            tokens if keep else (),
        )
        return self.store.message(writer.message_id)

    def collections(self) -> list[str]:
        """The collections this chat is grounded in (those that still exist)."""
        names = self.store.chat_settings(self.chat_id).get(DOCUMENTS) or []
        if not names or self.documents is None:
            return []
        known = {c.name for c in self.documents.collections()}
        return [n for n in names if n in known]

    def _ground(self, history: list[Message]) -> tuple[Passage, ...] | None:
        """The passages for the last user message, which is given them in
        ``history`` (in place); None when the chat is not grounded."""
        names = self.collections()
        if not names or not history or history[-1]["role"] != "user":
            return None
        from localchat.core.documents.grounding import ground

        assert self.documents is not None
        grounded = ground(self.documents, names, history[-1]["content"])
        history[-1] = {**history[-1], "content": grounded.message}
        return grounded.passages


def source_record(p: Passage) -> dict[str, Any]:
    """A passage as a reply's sources keep it."""
    return {
        "path": p.path,
        "location": p.location,
        "headings": list(p.headings),
        "pages": list(p.pages) if p.pages else None,
        "lines": list(p.lines) if p.lines else None,
        "text": p.text,
    }


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
