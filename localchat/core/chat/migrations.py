"""The chat database's schema, as the steps that build it: migration ``i``
takes a database from ``PRAGMA user_version`` ``i`` to ``i + 1`` (see
``ChatStore._migrate``). Only ever append: a step, once released, is how
users' databases were built."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: chats, and messages as a tree
    """
    CREATE TABLE chats (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        current_leaf INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'done'
            CHECK (status IN ('done', 'streaming', 'interrupted', 'cancelled', 'failed')),
        model TEXT,
        settings TEXT,
        stats TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_chat ON messages(chat_id, id);
    CREATE INDEX messages_by_parent ON messages(parent_id, id);
    CREATE INDEX chats_by_update ON chats(updated_at DESC);
    """,
    # 2: the trash (deleted, restorable until purged), and each chat's unsent draft
    """
    ALTER TABLE chats ADD COLUMN deleted_at REAL;
    ALTER TABLE chats ADD COLUMN draft TEXT NOT NULL DEFAULT '';
    """,
    # 3: a reply's thinking (reasoning models), kept apart from its answer
    """
    ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT '';
    """,
    # 4: a reply's tokens with their log-probabilities and candidates (the
    # token X-ray), encoded by ``token_codec``; NULL: none recorded
    """
    ALTER TABLE messages ADD COLUMN tokens BLOB;
    """,
    # 5: the passages of the user's documents a reply was given (JSON list;
    # [] when none matched; NULL: the reply was not grounded in documents)
    """
    ALTER TABLE messages ADD COLUMN sources TEXT;
    """,
)
