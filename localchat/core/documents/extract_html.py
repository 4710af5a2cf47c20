"""HTML (and the XHTML chapters of an EPUB) to blocks with the standard
library's ``html.parser``.

The parser is forgiving of broken markup, never fetches anything, and reports
the source line of what it reads, so the blocks of an ``.html`` file keep their
line ranges at no cost. What a page shows but a reader would not cite is left
out: ``script``, ``style``, ``nav``, ``head`` (but its ``title``),
``noscript``, ``template``, ``svg``. Headings ``h1``-``h6`` build the heading
path; ``p``, ``blockquote``, ``div`` and the like are paragraphs; ``pre`` is a
"code" block; a list (however nested) is one "list" block, an item a line; a
table is one "table" block, a row a line with its cells between ``|``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from localchat.core.documents.extract_blocks import Blocks, Parsed

_SKIP = {"script", "style", "nav", "head", "noscript", "template", "svg", "iframe", "object"}
_IN_HEAD = {"title", "meta", "link", "style", "script", "base", "noscript", "template"}
"""What a ``head`` holds; anything else ends one whose end tag was left out."""
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote",
    "address", "figure", "figcaption", "dl", "dt", "dd", "details", "summary", "form",
    "fieldset", "hr", "body", "html", "center", "caption", "legend",
}  # fmt: skip
_LISTS = {"ul", "ol", "menu"}
_SPACES = re.compile(r"\s+")


def read_html(text: str, *, with_lines: bool = True) -> Parsed:
    """``with_lines``: give blocks the source lines they came from (an
    ``.html`` file's; an EPUB chapter's lines would mean nothing to a reader)."""
    parser = _Parser(with_lines)
    parser.feed(text)
    parser.close()
    parser.flush()
    return Parsed(parser.title or parser.out.first_heading(1), parser.out.items)


class _Parser(HTMLParser):
    def __init__(self, with_lines: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Blocks()
        self.title: str | None = None
        self._with_lines = with_lines
        self._skipping: list[str] = []  # the open elements whose content is left out
        self._in_title = False
        self._title: list[str] = []
        self._text: list[str] = []  # the open block's text; "\n" marks a line break
        self._lines: tuple[int, int] | None = None
        self._pre = 0
        self._list = 0
        self._table = 0
        self._heading = 0
        self._row_cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping == ["head"] and tag not in _IN_HEAD:
            self._skipping.clear()  # "<head>" whose end tag was left out
        if tag == "title":  # the page's: not an SVG's, not a second one
            self._in_title = self.title is None and self._skipping in ([], ["head"])
        if tag in _SKIP:
            self._skipping.append(tag)
        if self._skipping or (self._heading and tag not in _HEADINGS):
            return
        container = self._list or self._table
        if tag in _HEADINGS:
            self.flush()
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            if not container:
                self.flush()
            self._pre += 1
        elif tag in _LISTS:
            if not self._list and not self._table:
                self.flush()
            self._list += 1
        elif tag == "table":
            if not self._list and not self._table:
                self.flush()
            self._table += 1
        elif tag in ("li", "tr"):
            self._text.append("\n")
            self._row_cells = 0
        elif tag in _BLOCKS and container:
            self._text.append("\n" if self._list and not self._table else " ")
        elif tag in ("td", "th"):
            if self._row_cells:
                self._text.append(" | ")
            self._row_cells += 1
        elif tag == "br":
            self._text.append("\n")
        elif tag in _BLOCKS:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            self.title = self.title or " ".join("".join(self._title).split()) or None
        if tag in self._skipping:
            del self._skipping[self._skipping.index(tag) :]  # the innermost of that name
            return
        if self._skipping:
            return
        if tag in _HEADINGS and self._heading:
            text = "".join(self._text)
            self._text.clear()
            self.out.heading(text, self._heading, lines=self._take_lines())
            self._heading = 0
        elif tag == "pre" and self._pre:
            self._pre -= 1
            if not self._pre and not (self._list or self._table):
                self.flush("code")
        elif tag in _LISTS and self._list:
            self._list -= 1
            if not self._list and not self._table:
                self.flush("list")
        elif tag == "table" and self._table:
            self._table -= 1
            if not self._table and not self._list:
                self.flush("table")
        elif tag in _BLOCKS and not (self._list or self._table or self._pre):
            self.flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
        if self._skipping or not data:
            return
        if data.strip() and self._with_lines:
            line = self.getpos()[0]  # where this data starts
            first = line + data[: len(data) - len(data.lstrip())].count("\n")
            last = line + data.rstrip().count("\n")
            self._lines = (self._lines[0] if self._lines else first, last)
        self._text.append(data if self._pre else _SPACES.sub(" ", data))

    def flush(self, kind: str | None = None) -> None:
        """End the open block (``kind``: that of the element that ends it)."""
        raw = "".join(self._text)
        self._text.clear()
        if kind is None:
            kind = "list" if self._list else "table" if self._table else "text"
        if kind == "code":
            text = raw.strip("\n")
        else:
            text = "\n".join(" ".join(line.split()) for line in raw.split("\n") if line.strip())
        self.out.add(text, kind, lines=self._take_lines())

    def _take_lines(self) -> tuple[int, int] | None:
        lines, self._lines = self._lines, None
        return lines
