"""A document's text as blocks in reading order, for the index to split into
passages it can cite (file, page or lines, heading path).

One entry point, :func:`extract`, for every format we index; the readers
(``extract_*.py``, one a format) do the rest. Bad input never escapes as
anything but :class:`Skipped` with a one-line reason, because the index
must go on past an encrypted PDF, a zero-byte file, a binary file named
``.txt``, a 2 GB log, a file that vanishes or one it may not read: it lists
the reason and indexes the rest. The size is checked before a byte is read,
and no more than ``max_bytes`` is ever read, even from a file that grows in
the meantime. ``docs/documents.md`` says which library reads which format,
and why.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from localchat.core.documents.extract_blocks import Block, Extracted, Parsed, Skipped
from localchat.core.documents.extract_docx import read_docx
from localchat.core.documents.extract_epub import read_epub
from localchat.core.documents.extract_html import read_html
from localchat.core.documents.extract_markdown import read_markdown
from localchat.core.documents.extract_odt import read_odt
from localchat.core.documents.extract_pdf import read_pdf
from localchat.core.documents.extract_plain import read_code, read_text
from localchat.core.documents.extract_rst import read_rst
from localchat.core.documents.extract_text import decode
from localchat.core.units import human_size

__all__ = ["FORMATS", "MAX_BYTES", "Block", "Extracted", "Skipped", "extract", "format_of"]

log = logging.getLogger(__name__)

MAX_BYTES = 100 * 1000**2
"""A bigger file is skipped (by size, unread); :func:`extract` takes another limit."""
UNPACKED_RATIO = 2
"""A DOCX, EPUB or ODT may unpack to this many times ``max_bytes``, no more."""

_CODE = """
.py .pyi .pyw .ipynb .js .mjs .cjs .jsx .ts .tsx .vue .svelte .c .h .cc .cpp .cxx .hh .hpp .hxx
.m .mm .rs .go .java .kt .kts .scala .groovy .gradle .swift .rb .php .cs .fs .vb .dart .lua .r
.jl .pl .pm .hs .ml .mli .ex .exs .erl .clj .cljs .elm .zig .nim .d .sh .bash .zsh .fish .ps1
.bat .cmd .sql .toml .yaml .yml .json .jsonc .ini .cfg .conf .xml .proto .graphql .css .scss
.sass .less .cmake .mk .tf .nix .dockerfile
"""
FORMATS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".log": "text",
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown",
    ".rst": "rst", ".rest": "rst",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf", ".docx": "docx", ".epub": "epub", ".odt": "odt",
    **{suffix: "code" for suffix in _CODE.split()},
}  # fmt: skip
"""A file's suffix (lower case) -> the format it is read as."""

_NAMES = {"pdf": "PDF", "docx": "DOCX", "epub": "EPUB", "odt": "ODT", "html": "HTML"}


def format_of(path: Path) -> str | None:
    """By suffix (case-insensitive); None: not a document we index."""
    return FORMATS.get(path.suffix.lower())


def extract(path: Path, *, max_bytes: int = MAX_BYTES) -> Extracted:
    """Raises Skipped for anything it cannot read as a document; never anything else."""
    path = Path(path)
    fmt = format_of(path)
    if fmt is None:
        raise Skipped(f"not a format we index ({path.suffix or 'no suffix'})")
    data = _read(path, max_bytes)
    try:
        title, blocks = _parse(fmt, data, max_bytes)
    except Skipped:
        raise
    except Exception as exc:  # a broken file in any library: skipped, the traceback logged
        log.warning("could not extract %s", path, exc_info=True)
        name = _NAMES.get(fmt)
        reason = " ".join((str(exc) or type(exc).__name__).split())[:120]
        raise Skipped(
            f"not a valid {name}: {reason}" if name else f"unreadable: {reason}"
        ) from None
    if not blocks:
        raise Skipped("no text layer (scanned pages?)" if fmt == "pdf" else "no text")
    return Extracted(path, fmt, title or path.stem, tuple(blocks))


def _parse(fmt: str, data: bytes, max_bytes: int) -> Parsed:
    unpacked = UNPACKED_RATIO * max_bytes
    if fmt == "pdf":
        return read_pdf(data)
    if fmt == "docx":
        return read_docx(data, unpacked)
    if fmt == "epub":
        return read_epub(data, unpacked)
    if fmt == "odt":
        return read_odt(data, unpacked)
    text = decode(data, markup=fmt == "html")
    if fmt == "html":
        return read_html(text)
    readers = {"markdown": read_markdown, "rst": read_rst, "code": read_code}
    return readers.get(fmt, read_text)(text)


def _read(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, after checking it is a regular file within the limit."""
    try:
        _check(os.stat(path), max_bytes)  # a FIFO would block open(); a huge file is not read
        with open(path, "rb") as f:
            _check(os.fstat(f.fileno()), max_bytes)  # what was opened may not be what was seen
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise Skipped("vanished while being read") from None
    except PermissionError:
        raise Skipped("permission denied") from None
    except OSError as exc:
        raise Skipped(f"cannot read it: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # it grew since
        raise Skipped(f"over {human_size(max_bytes)}")
    if not data:
        raise Skipped("empty file")
    return data


def _check(info: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise Skipped("a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise Skipped("not a regular file")
    if info.st_size == 0:
        raise Skipped("empty file")
    if info.st_size > max_bytes:
        raise Skipped(f"over {human_size(max_bytes)} ({human_size(info.st_size)})")
