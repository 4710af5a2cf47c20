"""What every format's reader produces: blocks in reading order, each knowing
where it came from (page or lines) and the headings above it.

The readers (``extract_*.py``) share one collector, :class:`Blocks`, so that
the promises made to the index hold for every format alike: a block's text is
stripped and never empty, and a heading block carries the path of the headings
*above* it, not itself.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from localchat.core.errors import LocalChatError
from localchat.core.units import human_size


@dataclass(frozen=True)
class Block:
    """One paragraph-like unit of a document, in reading order."""

    text: str
    """Stripped, never empty; line breaks kept only where they matter (code,
    lists, table rows, verse)."""
    page: int | None = None
    """1-based page (PDF only)."""
    lines: tuple[int, int] | None = None
    """1-based first and last line in the file (text-like formats and HTML)."""
    headings: tuple[str, ...] = ()
    """The heading path above the block, outermost first."""
    kind: str = "text"
    """"text", "heading" (the heading itself), "code", "list" or "table"."""


@dataclass(frozen=True)
class Extracted:
    path: Path
    format: str
    """"text", "markdown", "rst", "html", "pdf", "docx", "epub", "odt" or "code"."""
    title: str
    """The document's own title (metadata, its first heading), else the file name's stem."""
    blocks: tuple[Block, ...]


class Skipped(LocalChatError):
    """A file the index leaves out; ``str(err)`` is the one-line reason shown
    beside it ("encrypted PDF", "binary data, not text", "permission denied"...)."""


BINARY = "binary data, not text"


class Parsed(NamedTuple):
    """A reader's answer: the document's own title (None: it has none) and its blocks."""

    title: str | None
    blocks: list[Block]


class HeadingPath:
    """The headings open at a point of a document, by level (1 outermost)."""

    def __init__(self) -> None:
        self._open: list[tuple[int, str]] = []

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self._open)

    def enter(self, level: int, text: str) -> tuple[str, ...]:
        """Open a heading at ``level`` (closing those at it and below); returns
        the path of its parents."""
        while self._open and self._open[-1][0] >= level:
            self._open.pop()
        parents = self.path
        self._open.append((level, text))
        return parents


class Blocks:
    """The blocks of one document as a reader finds them."""

    def __init__(self) -> None:
        self.items: list[Block] = []
        self.headings = HeadingPath()
        self._first: dict[int, str] = {}

    def add(
        self,
        text: str,
        kind: str = "text",
        *,
        page: int | None = None,
        lines: tuple[int, int] | None = None,
        headings: tuple[str, ...] | None = None,
    ) -> None:
        """Add a block under the current headings (or ``headings``); blank text adds nothing."""
        text = text.strip()
        if text:
            path = self.headings.path if headings is None else headings
            self.items.append(Block(text, page, lines, path, kind))

    def heading(
        self,
        text: str,
        level: int,
        *,
        page: int | None = None,
        lines: tuple[int, int] | None = None,
    ) -> None:
        """Add a heading block and open it for the blocks that follow."""
        text = " ".join(text.split())
        if text:
            parents = self.headings.enter(level, text)
            self.items.append(Block(text, page, lines, parents, "heading"))
            self._first.setdefault(level, text)

    def first_heading(self, level: int = 1) -> str | None:
        """The first heading at ``level`` (a document's title when it has no other)."""
        return self._first.get(level)


def open_zip(data: bytes, limit: int, what: str) -> zipfile.ZipFile:
    """A zip container (DOCX, EPUB, ODT) whose members unpack to at most
    ``limit`` bytes in all: a small file must not unpack into gigabytes."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        if data.startswith(b"\xd0\xcf\x11\xe0"):  # an OLE file: Office's encryption wrapper
            raise Skipped(f"encrypted {what} (or an old binary format renamed)") from None
        raise Skipped(f"not a valid {what}: not a zip archive") from None
    unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > limit:
        archive.close()
        raise Skipped(f"unpacks to {human_size(unpacked)}, over {human_size(limit)}")
    return archive
