"""reStructuredText by its block structure, line by line, with exact line
ranges (docutils would give a tree without reliable line numbers for every
paragraph, and is a large dependency for this).

Section titles are a line underlined (and perhaps overlined) with one
punctuation character; as in docutils, a title's level is the order in which
its style first appears, and the first title is the document's. A paragraph
ending in ``::`` and the ``code``, ``code-block`` and ``sourcecode``
directives introduce a "code" block (the indented lines after them); comments,
targets and directives that hold no prose (``image``, ``toctree``...) are left
out; other directives' bodies (``note``, ``warning``) read as paragraphs.
"""

from __future__ import annotations

import re

from localchat.core.documents.extract_blocks import Blocks, Parsed
from localchat.core.documents.extract_plain import MAX_BLOCK_CHARS, block_of, prose

_ADORNMENT = re.compile(r"""^([!-/:-@\[-`{-~])\1+\s*$""")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:+-]+)::(.*)$")
_COMMENT = re.compile(r"^(\s*)\.\.(?:\s+(?!\[)|$)")
"""A comment, a target (``.. _name:``) or a substitution, but not a footnote."""
_OPTION = re.compile(r"^\s+:[\w -]+:")
_LIST = re.compile(r"^\s*(?:[-*+•]|\d{1,9}[.)]|#\.|\(\w{1,3}\)|[a-zA-Z][.)])\s+\S")
_TABLE = re.compile(r"^\s*(?:\+[-=]|=+(?:\s+=+)+\s*$)")
_CODE_DIRECTIVES = {"code", "code-block", "sourcecode"}
_SILENT_DIRECTIVES = {
    "image", "figure", "toctree", "include", "literalinclude", "raw", "meta", "contents",
    "index", "highlight", "sectnum", "target-notes", "role", "default-role", "only",
}  # fmt: skip


def read_rst(text: str) -> Parsed:
    lines = text.split("\n")
    out = Blocks()
    styles: list[tuple[str, bool]] = []  # title styles, outermost first
    para: list[int] = []
    size = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            literal = _flush(out, lines, para)
            if literal is not None:  # the indented lines after "Paragraph::"
                i = _indented(out, lines, i, literal, "code")
            else:
                i += 1
            continue
        if not para:
            title = _title(lines, i)
            if title is not None:
                text, style, height = title
                if style not in styles:
                    styles.append(style)
                out.heading(text, styles.index(style) + 1, lines=(i + 1, i + height))
                i += height
                continue
            if _ADORNMENT.match(line):  # a transition
                i += 1
                continue
            if (directive := _DIRECTIVE.match(line)) or _COMMENT.match(line):
                i = _explicit(out, lines, i, directive)
                continue
        if para and size + len(line) > MAX_BLOCK_CHARS:
            _flush(out, lines, para)
        if not para:
            size = 0
        para.append(i)
        size += len(line) + 1
        i += 1
    _flush(out, lines, para)
    return Parsed(out.first_heading(1), out.items)


def _title(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int] | None:
    """A section title starting at ``i``: its text, style and height in lines."""
    line = lines[i]
    below = lines[i + 1] if i + 1 < len(lines) else ""
    if _ADORNMENT.match(line):  # overlined, or not a title
        under = lines[i + 2] if i + 2 < len(lines) else ""
        if below.strip() and not _ADORNMENT.match(below) and under.strip() == line.strip():
            return below.strip(), (line.strip()[0], True), 3
        return None
    text = line.strip()
    if line[0].isspace() or not _ADORNMENT.match(below):
        return None
    mark = below.strip()
    if len(mark) >= len(text) or len(mark) >= 4:
        return text, (mark[0], False), 2
    return None


def _explicit(out: Blocks, lines: list[str], i: int, directive: re.Match[str] | None) -> int:
    """Handle the explicit markup at ``i``; returns the index after what it consumed."""
    indent = len(lines[i]) - len(lines[i].lstrip())
    if directive is None:  # a comment or a target: left out, with its body
        return _indented(None, lines, i, indent, "")
    name, argument = directive[2].lower(), directive[3].strip()
    j = i + 1
    while j < len(lines) and _OPTION.match(lines[j]):
        j += 1
    if name in _CODE_DIRECTIVES:
        return _indented(out, lines, j - 1, indent, "code")
    if name in _SILENT_DIRECTIVES or name.startswith("auto"):  # Sphinx's autodoc too
        return _indented(None, lines, j - 1, indent, "")
    out.add(argument, lines=(i + 1, i + 1))  # "note:: Text", "topic:: Title"
    return j  # the body: read on as paragraphs


def _indented(out: Blocks | None, lines: list[str], i: int, indent: int, kind: str) -> int:
    """The lines after ``i`` indented deeper than ``indent`` (blank ones among
    them), as one block of ``kind`` (``out`` None: dropped); returns the index after them."""
    last = i
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
        if lines[j].strip():
            last = j
        j += 1
    if out is not None and last > i:
        first = next(k for k in range(i + 1, last + 1) if lines[k].strip())
        out.add(block_of(lines[first : last + 1]), kind, lines=(first + 1, last + 1))
    return last + 1


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _flush(out: Blocks, lines: list[str], para: list[int]) -> int | None:
    """Add the open paragraph; when it ends in ``::`` (a literal block
    follows), returns its indentation, else None."""
    if not para:
        return None
    run = [lines[k] for k in para]
    span = (para[0] + 1, para[-1] + 1)
    para.clear()
    literal = _indent(run[0]) if run[-1].rstrip().endswith("::") else None
    if literal is not None:
        last = run[-1].rstrip()[:-2]
        run[-1] = last.rstrip() if last.endswith((" ", "\t")) or not last else last + ":"
    first = run[0].lstrip()
    if _TABLE.match(run[0]) or (first.startswith("|") and run[0].rstrip().endswith("|")):
        out.add("\n".join(line.strip() for line in run), "table", lines=span)
    elif all(line.lstrip().startswith("|") for line in run):  # a line block: verse
        out.add("\n".join(line.lstrip()[1:].strip() for line in run), lines=span)
    elif _LIST.match(run[0]):
        out.add(block_of(run), "list", lines=span)
    else:
        out.add(prose(run), lines=span)
    return literal
