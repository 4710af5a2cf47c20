"""The app's SQLite databases (chats, documents) opened and written one way:
WAL mode with ``synchronous=NORMAL`` (a kill loses nothing committed),
foreign keys on, rows by name, a writer waiting up to ten seconds for
another process's, and write transactions taken at once (``BEGIN
IMMEDIATE``), so two writers never deadlock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 10


def connect(path: Path) -> sqlite3.Connection:
    """The database at ``path``, shared by threads (their callers serialise
    them with a lock); raises ``sqlite3.DatabaseError`` for one that is not."""
    db = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
    )
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


@contextmanager
def write(db: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """One write transaction, rolled back if the block raises."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
