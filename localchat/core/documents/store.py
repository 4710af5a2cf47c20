"""The document index in SQLite (``documents.sqlite`` in the data folder):
collections, the folders and files they were made from, each file's state,
its passages, and two full-text indexes of the passages (FTS5): words
(``unicode61``, accents folded: BM25 over whole words) and trigrams (every
three characters: finds words inside longer ones, which is how Korean,
Turkish or Finnish attach their endings, and text without spaces).

Each file is replaced in one transaction (its passages, the full-text rows
through triggers, its state): a killed indexer leaves every file either as
it was or fully redone, never half, and the next update goes on from there.
WAL mode, ``synchronous=NORMAL``, as the chat store."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localchat.core import paths, sqlite_db
from localchat.core.documents.chunking import Chunk
from localchat.core.errors import LocalChatError

SCHEMA = """
CREATE TABLE collections (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    updated_at REAL,
    updating INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE roots (
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    PRIMARY KEY (collection_id, path)
);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    skipped TEXT,
    indexed_at REAL NOT NULL,
    UNIQUE (collection_id, path)
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    headings TEXT NOT NULL,
    page_first INTEGER,
    page_last INTEGER,
    line_first INTEGER,
    line_last INTEGER,
    tokens INTEGER NOT NULL
);
CREATE INDEX chunks_by_file ON chunks(file_id, ord);
CREATE VIRTUAL TABLE chunk_words USING fts5(
    text, headings, content='chunks', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE chunk_trigrams USING fts5(
    text, content='chunks', content_rowid='id', tokenize='trigram'
);
CREATE VIRTUAL TABLE chunk_vocabulary USING fts5vocab(chunk_words, 'row');
CREATE TRIGGER chunks_added AFTER INSERT ON chunks BEGIN
    INSERT INTO chunk_words(rowid, text, headings) VALUES (new.id, new.text, new.headings);
    INSERT INTO chunk_trigrams(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER chunks_removed AFTER DELETE ON chunks BEGIN
    INSERT INTO chunk_words(chunk_words, rowid, text, headings)
        VALUES ('delete', old.id, old.text, old.headings);
    INSERT INTO chunk_trigrams(chunk_trigrams, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""

VECTORS = """
ALTER TABLE collections ADD COLUMN embedder TEXT;
CREATE TABLE vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
"""
"""2: a collection's embedding model (its file's name) and each passage's
vector (float16, length 1)."""

TRIGRAM_COUNTS = """
CREATE VIRTUAL TABLE chunk_trigram_vocabulary USING fts5vocab(chunk_trigrams, 'row');
"""
"""3: how many passages hold each trigram (a question's rarest are searched)."""

MIGRATIONS = (SCHEMA, VECTORS, TRIGRAM_COUNTS)
SCHEMA_VERSION = len(MIGRATIONS)


class DocumentsError(LocalChatError):
    pass


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    roots: tuple[str, ...]
    files: int
    skipped: int
    chunks: int
    bytes: int
    updated_at: float | None
    updating: bool
    """An update began and did not finish (killed, or under way)."""
    embedder: str | None = None
    """The file name of its embedding model (None: keyword search only)."""


@dataclass(frozen=True)
class FileState:
    id: int
    path: str
    size: int
    mtime: float
    sha256: str
    skipped: str | None


@dataclass(frozen=True)
class Passage:
    """A passage found, with where it is."""

    chunk_id: int
    path: str
    title: str
    text: str
    headings: tuple[str, ...]
    pages: tuple[int, int] | None
    lines: tuple[int, int] | None
    score: float = 0.0

    @property
    def location(self) -> str:
        """Where it is, in words: "p. 3", "pp. 3-4", "lines 10-24" or ""."""
        if self.pages:
            a, b = self.pages
            return f"p. {a}" if a == b else f"pp. {a}-{b}"
        if self.lines:
            a, b = self.lines
            return f"line {a}" if a == b else f"lines {a}-{b}"
        return ""


class DocumentStore:
    """The index's database; one may be used from several threads (a lock
    serialises them)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.home() / "documents.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._changes = 0  # counts this store's writes: cached vectors are kept until one
        self._vector_cache: dict[tuple[int, ...], tuple[int, Any, Any]] = {}
        try:
            self._db = sqlite_db.connect(self.path)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise DocumentsError(f"cannot open the document index {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DocumentsError(
                f"{self.path} was written by a newer LocalChat (schema {version}); "
                "it is left as it is"
            )
        for step in range(version, SCHEMA_VERSION):
            with self._lock:  # one script, one transaction
                self._db.executescript(
                    f"BEGIN; {MIGRATIONS[step]} PRAGMA user_version={step + 1}; COMMIT;"
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with sqlite_db.write(self._db, self._lock) as db:
            yield db
            self._changes += 1

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- collections -----------------------------------------------------------

    def create(self, name: str, roots: Sequence[Path]) -> int:
        with self.transaction() as db:
            try:
                cur = db.execute(
                    "INSERT INTO collections(name, created_at) VALUES (?, ?)", (name, time.time())
                )
            except sqlite3.IntegrityError:
                raise DocumentsError(f"there is already a collection named {name!r}") from None
            cid = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT OR IGNORE INTO roots(collection_id, path) VALUES (?, ?)",
                [(cid, str(r)) for r in roots],
            )
            return cid

    def add_roots(self, cid: int, roots: Sequence[Path]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO roots(collection_id, path) VALUES (?, ?)",
                [(cid, str(r)) for r in roots],
            )

    def collection(self, name: str) -> Collection:
        found = [c for c in self.collections() if c.name == name]
        if not found:
            names = ", ".join(c.name for c in self.collections()) or "none"
            raise DocumentsError(f"no collection named {name!r} (collections: {names})")
        return found[0]

    def collections(self) -> list[Collection]:
        rows = self._rows(
            """
            SELECT c.*,
                (SELECT count(*) FROM files f WHERE f.collection_id = c.id AND f.skipped IS NULL)
                    AS n_files,
                (SELECT count(*) FROM files f WHERE f.collection_id = c.id
                    AND f.skipped IS NOT NULL) AS n_skipped,
                (SELECT coalesce(sum(f.size), 0) FROM files f WHERE f.collection_id = c.id
                    AND f.skipped IS NULL) AS n_bytes,
                (SELECT count(*) FROM chunks k JOIN files f ON k.file_id = f.id
                    WHERE f.collection_id = c.id) AS n_chunks
            FROM collections c ORDER BY c.name
            """
        )
        out = []
        for r in rows:
            roots = tuple(
                x["path"]
                for x in self._rows(
                    "SELECT path FROM roots WHERE collection_id = ? ORDER BY path", (r["id"],)
                )
            )
            out.append(
                Collection(
                    id=r["id"],
                    name=r["name"],
                    roots=roots,
                    files=r["n_files"],
                    skipped=r["n_skipped"],
                    chunks=r["n_chunks"],
                    bytes=r["n_bytes"],
                    updated_at=r["updated_at"],
                    updating=bool(r["updating"]),
                    embedder=r["embedder"],
                )
            )
        return out

    def remove(self, cid: int) -> None:
        with self.transaction() as db:
            db.execute(
                "DELETE FROM chunks WHERE file_id IN "
                "(SELECT id FROM files WHERE collection_id = ?)",
                (cid,),
            )
            db.execute("DELETE FROM collections WHERE id = ?", (cid,))

    def set_embedder(self, cid: int, name: str | None) -> None:
        """Change the collection's embedding model: its vectors go (they are
        made again, with the new model, by the next update)."""
        with self.transaction() as db:
            db.execute("UPDATE collections SET embedder = ? WHERE id = ?", (name, cid))
            db.execute(
                "DELETE FROM vectors WHERE chunk_id IN (SELECT k.id FROM chunks k "
                "JOIN files f ON f.id = k.file_id WHERE f.collection_id = ?)",
                (cid,),
            )

    def mark_updating(self, cid: int, updating: bool) -> None:
        with self.transaction() as db:
            if updating:
                db.execute("UPDATE collections SET updating = 1 WHERE id = ?", (cid,))
            else:
                db.execute(
                    "UPDATE collections SET updating = 0, updated_at = ? WHERE id = ?",
                    (time.time(), cid),
                )

    # -- files -------------------------------------------------------------------

    def files(self, cid: int) -> dict[str, FileState]:
        return {
            r["path"]: FileState(
                r["id"], r["path"], r["size"], r["mtime"], r["sha256"], r["skipped"]
            )
            for r in self._rows("SELECT * FROM files WHERE collection_id = ?", (cid,))
        }

    def skipped(self, cid: int) -> list[tuple[str, str]]:
        return [
            (r["path"], r["skipped"])
            for r in self._rows(
                "SELECT path, skipped FROM files WHERE collection_id = ? AND skipped IS NOT NULL "
                "ORDER BY path",
                (cid,),
            )
        ]

    def put_file(
        self,
        cid: int,
        path: str,
        *,
        size: int,
        mtime: float,
        sha256: str,
        fmt: str = "",
        title: str = "",
        chunks: Sequence[Chunk] = (),
        skipped: str | None = None,
        vectors: Any = None,
    ) -> None:
        """The file as it now is: its passages replaced (or none, with the
        reason it was skipped), with their ``vectors`` if given (a row
        each), in one transaction."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM files WHERE collection_id = ? AND path = ?", (cid, path)
            ).fetchone()
            if row is not None:
                db.execute("DELETE FROM chunks WHERE file_id = ?", (row["id"],))
                db.execute(
                    "UPDATE files SET size=?, mtime=?, sha256=?, format=?, title=?, skipped=?, "
                    "indexed_at=? WHERE id=?",
                    (size, mtime, sha256, fmt, title, skipped, time.time(), row["id"]),
                )
                fid = row["id"]
            else:
                cur = db.execute(
                    "INSERT INTO files(collection_id, path, size, mtime, sha256, format, title, "
                    "skipped, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cid, path, size, mtime, sha256, fmt, title, skipped, time.time()),
                )
                fid = cur.lastrowid
            for i, c in enumerate(chunks):
                cur = db.execute(
                    "INSERT INTO chunks(file_id, ord, text, headings, page_first, page_last, "
                    "line_first, line_last, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        fid,
                        i,
                        c.text,
                        json.dumps(c.headings, ensure_ascii=False),
                        c.pages[0] if c.pages else None,
                        c.pages[1] if c.pages else None,
                        c.lines[0] if c.lines else None,
                        c.lines[1] if c.lines else None,
                        c.tokens,
                    ),
                )
                if vectors is not None:
                    db.execute(
                        "INSERT INTO vectors(chunk_id, vector) VALUES (?, ?)",
                        (cur.lastrowid, _blob(vectors[i])),
                    )

    def touch_file(self, file_id: int, mtime: float) -> None:
        """The file's time changed but not its bytes."""
        with self.transaction() as db:
            db.execute("UPDATE files SET mtime = ? WHERE id = ?", (mtime, file_id))

    def drop_files(self, ids: Sequence[int]) -> None:
        with self.transaction() as db:
            for fid in ids:
                db.execute("DELETE FROM chunks WHERE file_id = ?", (fid,))
                db.execute("DELETE FROM files WHERE id = ?", (fid,))

    # -- search --------------------------------------------------------------------

    def match(self, table: str, cids: Sequence[int], query: str, limit: int) -> list[int]:
        """Chunk ids whose text matches the FTS5 ``query`` in ``table``, best
        (BM25) first."""
        every = {int(r["id"]) for r in self._rows("SELECT id FROM collections")}
        if set(cids) >= every:  # all of them (the usual one): no join needed
            rows = self._rows(
                f"SELECT rowid AS id FROM {table} WHERE {table} MATCH ? "
                f"ORDER BY bm25({table}) LIMIT ?",
                (query, limit),
            )
            return [int(r["id"]) for r in rows]
        marks = ",".join("?" * len(cids))
        rows = self._rows(
            f"""
            SELECT m.rowid AS id FROM {table} m
            JOIN chunks k ON k.id = m.rowid JOIN files f ON f.id = k.file_id
            WHERE {table} MATCH ? AND f.collection_id IN ({marks})
            ORDER BY bm25({table}) LIMIT ?
            """,
            (query, *cids, limit),
        )
        return [int(r["id"]) for r in rows]

    def file_passages(self, path: str, names: Sequence[str]) -> list[Passage]:
        """Every passage of the file at ``path`` (in the first of the
        collections ``names`` that has it), in order."""
        for name in names:
            rows = self._rows(
                "SELECT k.id FROM chunks k JOIN files f ON f.id = k.file_id "
                "JOIN collections c ON c.id = f.collection_id "
                "WHERE c.name = ? AND f.path = ? ORDER BY k.ord",
                (name, path),
            )
            if rows:
                ids = [int(r["id"]) for r in rows]
                found = self.passages(ids)
                return [found[i] for i in ids]
        return []

    def document_frequency(self, prefix: str) -> int:
        """How many passages (of all collections) hold a word starting with
        ``prefix`` (folded as the word index folds: lower case, no accents)."""
        rows = self._rows(
            "SELECT coalesce(sum(doc), 0) AS n FROM chunk_vocabulary WHERE term >= ? AND term < ?",
            (prefix, prefix + "\U0010ffff"),
        )
        return int(rows[0]["n"])

    def trigram_counts(self, grams: Sequence[str]) -> dict[str, int]:
        """How many passages hold each of ``grams`` (those in none left out)."""
        if not grams:
            return {}
        marks = ",".join("?" * len(grams))
        rows = self._rows(
            f"SELECT term, doc FROM chunk_trigram_vocabulary WHERE term IN ({marks})",
            list(grams),
        )
        return {r["term"]: int(r["doc"]) for r in rows}

    def passage_count(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM chunks")[0]["n"])

    def unembedded(self, cid: int) -> list[tuple[int, str]]:
        """The collection's passages without a vector (id, text)."""
        return [
            (int(r["id"]), r["text"])
            for r in self._rows(
                "SELECT k.id, k.text FROM chunks k JOIN files f ON f.id = k.file_id "
                "LEFT JOIN vectors v ON v.chunk_id = k.id "
                "WHERE f.collection_id = ? AND v.chunk_id IS NULL ORDER BY k.id",
                (cid,),
            )
        ]

    def put_vectors(self, ids: Sequence[int], vectors: Any) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors(chunk_id, vector) VALUES (?, ?)",
                [(i, _blob(v)) for i, v in zip(ids, vectors, strict=True)],
            )

    def vectors(self, cids: Sequence[int]) -> tuple[Any, Any]:
        """The collections' passage ids and their vectors (a float32 matrix),
        kept in memory until the index changes (here, or by another process:
        SQLite's ``data_version``)."""
        key = tuple(sorted(cids))
        with self._lock:
            version = self._changes * 2**32 + int(
                self._db.execute("PRAGMA data_version").fetchone()[0]
            )
            cached = self._vector_cache.get(key)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            ids, matrix = self._read_vectors(cids)
            self._vector_cache = {key: (version, ids, matrix)}  # the last one asked only
            return ids, matrix

    def _read_vectors(self, cids: Sequence[int]) -> tuple[Any, Any]:
        marks = ",".join("?" * len(cids))
        rows = self._rows(
            f"SELECT v.chunk_id, v.vector FROM vectors v JOIN chunks k ON k.id = v.chunk_id "
            f"JOIN files f ON f.id = k.file_id WHERE f.collection_id IN ({marks})",
            list(cids),
        )
        ids = np.array([r["chunk_id"] for r in rows], dtype=np.int64)
        if not rows:
            return ids, np.zeros((0, 0), np.float32)
        matrix = np.vstack([np.frombuffer(r["vector"], dtype=np.float16) for r in rows])
        return ids, matrix.astype(np.float32)

    def passages(self, ids: Sequence[int]) -> dict[int, Passage]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._rows(
            f"SELECT k.*, f.path, f.title FROM chunks k JOIN files f ON f.id = k.file_id "
            f"WHERE k.id IN ({marks})",
            list(ids),
        )
        return {
            r["id"]: Passage(
                chunk_id=r["id"],
                path=r["path"],
                title=r["title"],
                text=r["text"],
                headings=tuple(json.loads(r["headings"])),
                pages=(r["page_first"], r["page_last"]) if r["page_first"] is not None else None,
                lines=(r["line_first"], r["line_last"]) if r["line_first"] is not None else None,
            )
            for r in rows
        }


def _blob(vector: Any) -> bytes:
    return np.asarray(vector, dtype=np.float16).tobytes()
