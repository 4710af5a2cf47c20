"""PDF text by page with ``pypdf``, the outline (bookmarks) as heading path.

pypdf is pure Python (BSD), so it installs everywhere the app does, and it
is the maintained successor of PyPDF2. Its ``cryptography`` extra opens
AES-encrypted files: many PDFs are encrypted with an empty password only to
forbid printing or copying, and read like any other once opened with it. A
file that still cannot be opened needs a password: "encrypted PDF".

A PDF has lines, not paragraphs. pypdf gives a page's text a line at a time
(in its plain mode, in the order the page draws it, which keeps most columns
apart) and, through its visitor, where each line sits and in what size. A
paragraph ends at a blank line, a vertical gap clearly wider than the page's
line spacing, a jump up (a new column), a change of font size (a heading), or
a line clearly shorter than the page's full lines. The lines of a paragraph
are joined (after a hyphen, without a space). A page that fails to parse is
left out (and logged); the rest is read. The outline gives each page the
heading path in force on it: an outline entry counts from the page it points to.
"""

from __future__ import annotations

import io
import logging
import math
from typing import TYPE_CHECKING, NamedTuple

from localchat.core.documents.extract_blocks import Blocks, Parsed, Skipped

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

log = logging.getLogger(__name__)

_SHORT_LINE = 0.7
"""A line shorter than this fraction of a full line ends its paragraph."""
_WIDE_GAP = 1.3
"""A step down this many times the page's line spacing is a paragraph break."""
_JUNK_TITLES = ("untitled", "microsoft word - ", "slide 1", "powerpoint presentation")


def read_pdf(data: bytes) -> Parsed:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except DependencyError:
            raise Skipped("encrypted PDF (its cipher needs the cryptography package)") from None
        if not opened:
            raise Skipped("encrypted PDF")
    outline = _outline(reader)
    out = Blocks()
    path: list[str] = []
    for index, page in enumerate(reader.pages):
        while outline and outline[0][0] <= index:
            _, depth, title = outline.pop(0)
            del path[depth:]
            path.append(title)
        try:
            lines = _lines(page)
        except Exception:  # one broken page: the others are still worth reading
            log.warning("page %d of a PDF could not be read", index + 1, exc_info=True)
            continue
        for paragraph in paragraphs(lines):
            out.add(paragraph, page=index + 1, headings=tuple(path))
    return Parsed(_title(reader), out.items)


class Line(NamedTuple):
    text: str
    y: float
    """The baseline's height on the page (PDF units, up is more)."""
    size: float
    """The font size it starts in."""


def _lines(page: PageObject) -> list[Line]:
    """A page's lines in pypdf's reading order (a blank one: text "")."""
    lines: list[Line] = []
    current: list[str] = []
    start: tuple[float, float] = (0.0, 0.0)

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        nonlocal start
        for i, piece in enumerate(text.split("\n")):
            if i:
                lines.append(Line("".join(current), *start))
                current.clear()
            if piece:
                if not current:
                    y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
                    start = (y, size * math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3]))
                current.append(piece)

    page.extract_text(visitor_text=visit)
    if current:
        lines.append(Line("".join(current), *start))
    return lines


def paragraphs(lines: list[Line]) -> list[str]:
    """A page's lines grouped into paragraphs."""
    words = [" ".join(line.text.split()) for line in lines]
    lengths = sorted(len(text) for text in words if text)
    if not lengths:
        return []
    full = lengths[int(0.9 * (len(lengths) - 1))]
    steps = sorted(
        a.y - b.y
        for a, b, ta, tb in zip(lines, lines[1:], words, words[1:], strict=False)
        if ta and tb and a.y > b.y
    )
    spacing = steps[len(steps) // 4] if steps else 0.0  # most steps are within paragraphs
    found: list[str] = []
    current = ""
    previous: Line | None = None
    for line, text in zip(lines, words, strict=True):
        if current and previous is not None and (not text or _breaks(previous, line, spacing)):
            found.append(current)
            current = ""
        if text:
            current += ("" if not current or current.endswith("-") else " ") + text
            if len(text) < _SHORT_LINE * full:  # the last line of its paragraph
                found.append(current)
                current = ""
        previous = line
    if current:
        found.append(current)
    return found


def _breaks(above: Line, line: Line, spacing: float) -> bool:
    """Whether ``line`` starts a new paragraph after ``above``."""
    step = above.y - line.y
    if step < -0.5 * max(line.size, 1.0):  # up the page: a new column
        return True
    if spacing and step > _WIDE_GAP * spacing:
        return True
    return abs(line.size - above.size) > 0.1 * max(above.size, 1.0)


def _outline(reader: PdfReader) -> list[tuple[int, int, str]]:
    """(page index, depth, title) of the outline's entries, by page."""
    entries: list[tuple[int, int, str]] = []

    def walk(items: list[object], depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
                continue
            page = reader.get_destination_page_number(item)  # type: ignore[arg-type]
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if page is not None and page >= 0 and title:
                entries.append((page, depth, title))

    try:
        walk(list(reader.outline), 0)
    except Exception:  # a broken outline costs the headings, not the text
        log.debug("a PDF's outline could not be read", exc_info=True)
    return sorted(entries, key=lambda entry: entry[0])


def _title(reader: PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a broken information dictionary: no title, the text still counts
        log.debug("a PDF's metadata could not be read", exc_info=True)
        return None
    title = " ".join(str(title or "").split())
    if not title or title.lower().startswith(_JUNK_TITLES):
        return None
    return title
