"""Plain text and source code: paragraphs are runs of lines between blank
lines, each with its exact line range, so that a source can be shown as
"notes.txt, lines 12-18".

A run longer than :data:`MAX_BLOCK_CHARS` (a log, a JSON file without a
blank line) is cut at line boundaries, so a citation never spans a whole
file. Hard-wrapped prose (most lines of a run as long as the file's usual
line) is joined into one line; anything else (a list, verse, an address, a
log) keeps its line breaks.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

from localchat.core.documents.extract_blocks import Blocks, Parsed

MAX_BLOCK_CHARS = 4000
"""A run of lines longer than this is cut into several blocks."""
LIST_ITEM = re.compile(r"^\s*(?:[-*+•‣◦]|\d{1,9}[.)]|[a-zA-Z][.)])\s+\S")


def read_text(text: str) -> Parsed:
    lines = text.split("\n")
    wrap = _wrap_width(lines)
    out = Blocks()
    for first, end in pieces(lines):
        run = lines[first:end]
        kind = "list" if LIST_ITEM.match(run[0]) else "text"
        wrapped = (
            kind == "text" and wrap <= 120 and all(len(s.strip()) >= 0.75 * wrap for s in run[:-1])
        )
        out.add(prose(run) if wrapped else block_of(run), kind, lines=(first + 1, end))
    return Parsed(None, out.items)


def read_code(text: str) -> Parsed:
    lines = text.split("\n")
    out = Blocks()
    for first, end in pieces(lines):
        out.add(block_of(lines[first:end]), "code", lines=(first + 1, end))
    return Parsed(None, out.items)


def pieces(lines: list[str], start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int]]:
    """(first, end) index ranges (end exclusive) of the runs of non-blank
    lines in ``lines[start:stop]``, each cut to at most :data:`MAX_BLOCK_CHARS`
    (a longer single line is a piece of its own)."""
    stop = len(lines) if stop is None else stop
    first: int | None = None
    size = 0
    for i in range(start, stop):
        line = lines[i]
        if not line.strip():
            if first is not None:
                yield first, i
                first = None
            continue
        if first is not None and size + len(line) > MAX_BLOCK_CHARS:
            yield first, i
            first = None
        if first is None:
            first, size = i, 0
        size += len(line) + 1
    if first is not None:
        yield first, stop


def prose(lines: list[str]) -> str:
    """Soft-wrapped lines as one line."""
    return " ".join(" ".join(line.split()) for line in lines)


def block_of(lines: list[str]) -> str:
    """Lines kept as lines, their common indentation removed."""
    return textwrap.dedent("\n".join(line.rstrip() for line in lines)).strip()


def _wrap_width(lines: list[str]) -> int:
    """The length of a full line in this file (a hard-wrapped one's margin)."""
    lengths = sorted(len(line.strip()) for line in lines[:10_000] if line.strip())
    return lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0
