"""Chats in SQLite, written so that nothing the user wrote is ever lost.

- Every change is one transaction. The database runs in WAL mode with
  ``synchronous=NORMAL``: a killed app loses nothing that was committed (only a
  power cut can take the last transactions).
- A reply being generated is one row, appended to in small transactions (every
  few pieces or a few tens of milliseconds, see :class:`ReplyWriter`), so a
  kill at any moment loses at most the last few tokens. A reasoning model's
  thinking streams the same way into its own column, never into the answer
  (the model is sent it apart, and the view and exports show it as such).
  A reply still marked
  "streaming" when the database is opened is marked "interrupted", its text
  kept.
- Messages form a tree: editing a user message or regenerating a reply adds a
  sibling, and the old branch stays. Each chat remembers its current leaf; the
  conversation shown is the path from the root to it.
- The schema is versioned (``PRAGMA user_version``) and migrated on open; a
  database from a newer LocalChat is refused, never altered.
- Each reply records the model and the generation settings that made it, by
  value: chats outlive the models they were made with.
- A reply may also keep its tokens, each with its log-probability and the
  model's most likely candidates (the token X-ray), compactly encoded
  (``token_codec``, ~80 bytes a token with 10 candidates) in its
  ``tokens`` column: written with the reply's outcome, in the same
  transaction, and decoded only when read (:attr:`StoredMessage.tokens`).
- A deleted chat goes to the trash first (``deleted_at``), whole, so that it
  can be restored; the trash is emptied when the store is next opened (or by
  :meth:`ChatStore.purge_deleted`). Each chat keeps the user's unsent draft.

One :class:`ChatStore` may be used from several threads (a lock serialises
them); the window does its writes off the GUI thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from localchat.core import paths, sqlite_db
from localchat.core.chat import chat_export
from localchat.core.chat.chat_writer import ReplyWriter
from localchat.core.chat.migrations import MIGRATIONS
from localchat.core.errors import LocalChatError

if TYPE_CHECKING:
    from localchat.core.engine.protocol import TokenLogprob

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ChatInfo",
    "ChatStore",
    "ReplyWriter",
    "StoreError",
    "StoredMessage",
]

Role = Literal["system", "user", "assistant"]
Status = Literal["done", "streaming", "interrupted", "cancelled", "failed"]

_LIVE = "deleted_at IS NULL"
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(LocalChatError):
    """The chat database cannot be used (unreadable, or from a newer version)."""


@dataclass(frozen=True)
class ChatInfo:
    id: int
    title: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class StoredMessage:
    id: int
    chat_id: int
    parent_id: int | None
    role: Role
    content: str
    status: Status
    model: str | None
    settings: dict[str, Any] | None
    stats: dict[str, Any] | None
    created_at: float
    sibling_ids: tuple[int, ...] = ()
    """This message and its alternatives (same parent, same role), oldest first."""
    reasoning: str = ""
    """A reply's thinking (reasoning models), apart from its answer (``content``);
    "" when the model did not think."""
    sources: tuple[dict[str, Any], ...] | None = None
    """The passages of the user's documents the reply was given (``path``,
    ``location``, ``text``, ``headings``, ``pages``, ``lines``), as they were
    then; () when none matched; None when it was not grounded."""
    token_blob: bytes | None = field(default=None, repr=False)
    """The reply's tokens as stored (``token_codec``); None when none were
    recorded. Read them as :attr:`tokens`."""

    @cached_property
    def tokens(self) -> tuple[TokenLogprob, ...]:
        """Each token the reply's model wrote, with its log-probability and
        candidates (logprobs to 1/1000 nat, see ``token_codec``); () when none
        were recorded. Decoded on first access, then kept: loading a thread
        decodes nothing."""
        if self.token_blob is None:
            return ()
        # Imported here: the window opens (and paints) before the engine's
        # protocol is loaded; a reply's tokens are read only when shown.
        from localchat.core.chat import token_codec

        return token_codec.decode(self.token_blob)

    @property
    def has_tokens(self) -> bool:
        """Whether tokens were recorded (without decoding them)."""
        return self.token_blob is not None

    @property
    def sibling_index(self) -> int:
        return self.sibling_ids.index(self.id) if self.sibling_ids else 0


class ChatStore:
    """The chat database (``chats.sqlite3`` in the user data folder by default)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.chats_db()
        self._lock = threading.RLock()
        try:
            self._db = sqlite_db.connect(self.path)
            self._migrate()
            with self._tx() as db:
                db.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
            self.purge_deleted()  # the last run's undo window is over
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the chat database {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (taken at once, so two writers never deadlock)."""
        return sqlite_db.write(self._db, self._lock)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the chat database {self.path} was written by a newer LocalChat (schema "
                f"{version}, this one knows {SCHEMA_VERSION}); upgrade LocalChat to open it"
            )
        for number in range(version, SCHEMA_VERSION):
            with self._tx() as db:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # -- chats -----------------------------------------------------------------------

    def create_chat(self, title: str = "") -> int:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO chats (title, created_at, updated_at) VALUES (?, ?, ?)",
                (title, now, now),
            )
            return int(cur.lastrowid or 0)

    def chat(self, chat_id: int) -> ChatInfo:
        with self._lock:
            row = self._db.execute(
                f"SELECT id, title, created_at, updated_at FROM chats WHERE id = ? AND {_LIVE}",
                (chat_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"no chat {chat_id}")
        return ChatInfo(**dict(row))

    def list_chats(self) -> list[ChatInfo]:
        """All chats, the most recently active first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, title, created_at, updated_at FROM chats WHERE {_LIVE} "
                "ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [ChatInfo(**dict(r)) for r in rows]

    def rename_chat(self, chat_id: int, title: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE chats SET title = ? WHERE id = ?", (title, chat_id))

    def delete_chat(self, chat_id: int) -> None:
        """Move a chat to the trash: gone from every list, kept whole (messages,
        versions, settings, draft) until :meth:`restore_chat` or a purge."""
        with self._tx() as db:
            db.execute(
                f"UPDATE chats SET deleted_at = ? WHERE id = ? AND {_LIVE}", (time.time(), chat_id)
            )

    def restore_chat(self, chat_id: int) -> None:
        """Take a chat back out of the trash, as it was."""
        with self._tx() as db:
            db.execute("UPDATE chats SET deleted_at = NULL WHERE id = ?", (chat_id,))

    def purge_deleted(self, chat_id: int | None = None) -> None:
        """Delete for good the chats in the trash (only ``chat_id`` when given)."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM chats WHERE deleted_at IS NOT NULL AND (?1 IS NULL OR id = ?1)",
                (chat_id,),
            )

    def discard_if_empty(self, chat_id: int) -> bool:
        """Delete a chat for good if the user put nothing in it (no message, no
        draft, no title); True when it was."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM chats WHERE id = ? AND title = '' AND draft = '' AND NOT EXISTS "
                "(SELECT 1 FROM messages WHERE chat_id = chats.id)",
                (chat_id,),
            )
            return cur.rowcount > 0

    def draft(self, chat_id: int) -> str:
        """The chat's unsent message ("" when none)."""
        with self._lock:
            row = self._db.execute("SELECT draft FROM chats WHERE id = ?", (chat_id,)).fetchone()
        return str(row[0]) if row else ""

    def set_draft(self, chat_id: int, text: str) -> None:
        """Keep the unsent message (the chat's activity time stays)."""
        with self._tx() as db:
            db.execute("UPDATE chats SET draft = ? WHERE id = ?", (text, chat_id))

    def last_model(self, chat_id: int) -> str | None:
        """The model that wrote the chat's newest reply, as recorded (None: no reply)."""
        with self._lock:
            row = self._db.execute(
                "SELECT model FROM messages WHERE chat_id = ? AND role = 'assistant' "
                "AND model IS NOT NULL ORDER BY id DESC LIMIT 1",
                (chat_id,),
            ).fetchone()
        return str(row[0]) if row else None

    def search(self, query: str) -> list[ChatInfo]:
        """Chats whose title or any message contains ``query`` (case-insensitive),
        the most recently active first."""
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, title, created_at, updated_at FROM chats WHERE {_LIVE} AND "
                "(title LIKE ?1 ESCAPE '\\' OR id IN (SELECT chat_id FROM messages WHERE "
                "content LIKE ?1 ESCAPE '\\')) ORDER BY updated_at DESC, id DESC",
                (pattern,),
            ).fetchall()
        return [ChatInfo(**dict(r)) for r in rows]

    def chat_settings(self, chat_id: int) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT settings FROM chats WHERE id = ?", (chat_id,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def set_chat_settings(self, chat_id: int, settings: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE chats SET settings = ? WHERE id = ?", (json.dumps(settings), chat_id)
            )

    # -- messages ----------------------------------------------------------------------

    def add_message(
        self,
        chat_id: int,
        role: Role,
        content: str,
        *,
        parent_id: int | Literal["leaf"] | None = "leaf",
        status: Status = "done",
        model: str | None = None,
        settings: dict[str, Any] | None = None,
        reasoning: str = "",
        sources: list[dict[str, Any]] | None = None,
    ) -> int:
        """Add a message after ``parent_id`` (by default the current leaf) and make
        it the current leaf. Returns its id."""
        now = time.time()
        with self._tx() as db:
            if parent_id == "leaf":
                row = db.execute(
                    "SELECT current_leaf FROM chats WHERE id = ?", (chat_id,)
                ).fetchone()
                if row is None:
                    raise StoreError(f"no chat {chat_id}")
                parent_id = row[0]
            cur = db.execute(
                "INSERT INTO messages (chat_id, parent_id, role, content, reasoning, status, "
                "model, settings, sources, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chat_id,
                    parent_id,
                    role,
                    content,
                    reasoning,
                    status,
                    model,
                    json.dumps(settings) if settings is not None else None,
                    json.dumps(sources, ensure_ascii=False) if sources is not None else None,
                    now,
                ),
            )
            message_id = int(cur.lastrowid or 0)
            db.execute(
                "UPDATE chats SET current_leaf = ?, updated_at = ? WHERE id = ?",
                (message_id, now, chat_id),
            )
            return message_id

    def message(self, message_id: int) -> StoredMessage:
        with self._lock:
            row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise StoreError(f"no message {message_id}")
            return self._stored(row)

    def thread(self, chat_id: int) -> list[StoredMessage]:
        """The conversation as shown: from the first message to the current leaf."""
        with self._lock:
            row = self._db.execute(
                "SELECT current_leaf FROM chats WHERE id = ?", (chat_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no chat {chat_id}")
            return self.path_to(row[0]) if row[0] is not None else []

    def path_to(self, message_id: int) -> list[StoredMessage]:
        """The messages from the first one down to ``message_id``."""
        with self._lock:
            rows = self._db.execute(
                "WITH RECURSIVE path(id, depth) AS (SELECT ?, 0"
                " UNION ALL SELECT m.parent_id, p.depth + 1 FROM messages m"
                " JOIN path p ON m.id = p.id WHERE m.parent_id IS NOT NULL)"
                " SELECT m.* FROM path JOIN messages m ON m.id = path.id ORDER BY depth DESC",
                (message_id,),
            ).fetchall()
            return [self._stored(r) for r in rows]

    def edit_message(self, message_id: int, content: str) -> int:
        """A new version of a user message, as a sibling: the old one and the
        replies after it stay, as another branch. Returns the new message's id."""
        old = self.message(message_id)
        return self.add_message(old.chat_id, old.role, content, parent_id=old.parent_id)

    def select(self, message_id: int) -> None:
        """Show the branch through ``message_id``: the current leaf becomes its
        newest descendant along the newest children."""
        with self._tx() as db:
            leaf = message_id
            while True:
                row = db.execute(
                    "SELECT id FROM messages WHERE parent_id = ? ORDER BY id DESC LIMIT 1", (leaf,)
                ).fetchone()
                if row is None:
                    break
                leaf = row[0]
            db.execute(
                "UPDATE chats SET current_leaf = ? WHERE id = "
                "(SELECT chat_id FROM messages WHERE id = ?)",
                (leaf, message_id),
            )

    def begin_reply(
        self,
        chat_id: int,
        *,
        parent_id: int | Literal["leaf"] | None = "leaf",
        model: str | None = None,
        settings: dict[str, Any] | None = None,
        sources: list[dict[str, Any]] | None = None,
    ) -> ReplyWriter:
        """Start an assistant reply that will stream in; regenerating is a new
        reply with the same parent as the one it replaces. ``sources``: the
        passages of the user's documents it is given."""
        message_id = self.add_message(
            chat_id,
            "assistant",
            "",
            parent_id=parent_id,
            status="streaming",
            model=model,
            settings=settings,
            sources=sources,
        )
        return ReplyWriter(self, message_id)

    def _append(self, message_id: int, text: str, reasoning: str = "") -> None:
        """Add to a streaming reply's answer and thinking, in one transaction."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET content = content || ?, reasoning = reasoning || ? "
                "WHERE id = ?",
                (text, reasoning, message_id),
            )

    def _finish(
        self,
        message_id: int,
        text: str,
        status: Status,
        stats: dict[str, Any] | None,
        reasoning: str = "",
        tokens: bytes | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET content = content || ?, reasoning = reasoning || ?, "
                "status = ?, stats = ?, tokens = ? WHERE id = ?",
                (
                    text,
                    reasoning,
                    status,
                    json.dumps(stats) if stats is not None else None,
                    tokens,
                    message_id,
                ),
            )
            db.execute(
                "UPDATE chats SET updated_at = ? WHERE id = "
                "(SELECT chat_id FROM messages WHERE id = ?)",
                (time.time(), message_id),
            )

    def _stored(self, row: sqlite3.Row) -> StoredMessage:
        siblings = self._db.execute(
            "SELECT id FROM messages WHERE chat_id = ? AND parent_id IS ? AND role = ? ORDER BY id",
            (row["chat_id"], row["parent_id"], row["role"]),
        ).fetchall()
        return StoredMessage(
            id=row["id"],
            chat_id=row["chat_id"],
            parent_id=row["parent_id"],
            role=row["role"],
            content=row["content"],
            status=row["status"],
            model=row["model"],
            settings=json.loads(row["settings"]) if row["settings"] else None,
            stats=json.loads(row["stats"]) if row["stats"] else None,
            created_at=row["created_at"],
            sibling_ids=tuple(s[0] for s in siblings),
            reasoning=row["reasoning"],
            sources=tuple(json.loads(row["sources"])) if row["sources"] is not None else None,
            token_blob=row["tokens"],
        )

    # -- export ------------------------------------------------------------------------

    def export_json(self, chat_id: int) -> dict[str, Any]:
        return chat_export.as_json(self, chat_id)

    def export_markdown(self, chat_id: int) -> str:
        return chat_export.as_markdown(self, chat_id)
