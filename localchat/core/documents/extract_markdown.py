"""Markdown by its block structure, line by line, so every block keeps its
exact line range.

Not a full CommonMark parser (the index needs blocks, not HTML): ATX (``#``)
and setext (underlined) headings build the heading path; a fenced code block is
one "code" block however long and whatever blank lines it holds, fences
included in its range; lists, pipe tables (less their ``|---|`` rule) and
indented code keep their line breaks; other paragraphs are joined into one
line (a hard break, two spaces or a backslash at a line's end, is kept).
Inline markup stays as written: models read Markdown well. YAML front matter
is skipped, its ``title:`` kept as the title; else the first level-1 heading is.
"""

from __future__ import annotations

import re

from localchat.core.documents.extract_blocks import Blocks, Parsed
from localchat.core.documents.extract_plain import MAX_BLOCK_CHARS, block_of, prose

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+\S")
_INTERRUPTING_LIST = re.compile(r"^ {0,3}(?:[-*+]|1[.)])[ \t]+\S")
"""A list that starts inside a paragraph (CommonMark: bullets, or "1.")."""
_TABLE_RULE = re.compile(r"^ *\|? *:?-+:? *(?:\| *:?-+:? *)*\|? *$")
_QUOTE = re.compile(r"^ {0,3}> ?")
_TITLE = re.compile(r"^title\s*:\s*(.+?)\s*$")


def read_markdown(text: str) -> Parsed:
    lines = text.split("\n")
    out = Blocks()
    title, i = _front_matter(lines)
    para: list[int] = []  # the open paragraph's line indices
    size = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence and not (fence[1][0] == "`" and "`" in fence[2]):
            _flush(out, lines, para)
            i = _code(out, lines, i, fence[1])
            continue
        if not line.strip():
            _flush(out, lines, para)
        elif atx := _ATX.match(line):
            _flush(out, lines, para)
            out.heading(atx[2] or "", len(atx[1]), lines=(i + 1, i + 1))
        elif para and _SETEXT.match(line) and _kind([lines[k] for k in para]) == "text":
            level = 1 if line.strip()[0] == "=" else 2
            out.heading(prose([lines[k] for k in para]), level, lines=(para[0] + 1, i + 1))
            para.clear()
        elif _BREAK.match(line):
            _flush(out, lines, para)
        else:
            if para and (
                size + len(line) > MAX_BLOCK_CHARS
                or (_INTERRUPTING_LIST.match(line) and not _LIST.match(lines[para[0]]))
            ):
                _flush(out, lines, para)
            if not para:
                size = 0
            para.append(i)
            size += len(line) + 1
        i += 1
    _flush(out, lines, para)
    return Parsed(title or out.first_heading(1), out.items)


def _front_matter(lines: list[str]) -> tuple[str | None, int]:
    """The title a YAML front matter gives, and the index of the first line after it."""
    if not lines or lines[0].strip() != "---":
        return None, 0
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            titles = [m[1] for line in lines[1:end] if (m := _TITLE.match(line))]
            return (titles[0].strip("\"'") or None) if titles else None, end + 1
    return None, 0


def _code(out: Blocks, lines: list[str], start: int, fence: str) -> int:
    """Add the fenced block opened at ``start``; returns the index after it."""
    closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    end = next((j for j in range(start + 1, len(lines)) if closing.match(lines[j])), None)
    if end is not None:
        out.add(block_of(lines[start + 1 : end]), "code", lines=(start + 1, end + 1))
        return end + 1
    last = len(lines) - 1  # never closed: to the end of the file
    while last > start and not lines[last].strip():
        last -= 1
    out.add(block_of(lines[start + 1 : last + 1]), "code", lines=(start + 1, last + 1))
    return len(lines)


def _kind(run: list[str]) -> str:
    if len(run) > 1 and "|" in run[0] and _TABLE_RULE.match(run[1]):
        return "table"
    if _LIST.match(run[0]):
        return "list"
    if all(line.startswith(("    ", "\t")) for line in run):
        return "code"
    if _QUOTE.match(run[0]):
        return "quote"
    return "text"


def _flush(out: Blocks, lines: list[str], para: list[int]) -> None:
    if not para:
        return
    run = [lines[k] for k in para]
    kind = _kind(run)
    span = (para[0] + 1, para[-1] + 1)
    para.clear()
    if kind == "table":
        rows = [line.strip() for line in run if not _TABLE_RULE.match(line)]
        out.add("\n".join(rows), "table", lines=span)
    elif kind in ("list", "code"):
        out.add(block_of(run), kind, lines=span)
    elif kind == "quote":
        out.add(prose([_QUOTE.sub("", line) for line in run]), lines=span)
    else:
        out.add(_join(run), lines=span)


def _join(run: list[str]) -> str:
    """A paragraph's lines as one, but for its hard line breaks."""
    text = ""
    for line in run:
        hard = line.endswith(("  ", "\\"))
        text += " ".join(line.rstrip("\\").split()) + ("\n" if hard else " ")
    return text
