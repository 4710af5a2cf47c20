"""Word documents (DOCX) with ``python-docx``: the body's paragraphs and
tables in document order.

python-docx (MIT) is the long-maintained reader of the format and parses it
with lxml, external entities off. A paragraph is a heading when its style is
"Heading N" or when it (or its style, or the style that one is based on)
carries an outline level: that is how Word marks headings in every language,
so "Başlık 1" and "제목 1" count too. Consecutive list paragraphs are one
"list" block, a table one "table" block with a line per row and its cells
between ``|`` (a merged cell once). Headers, footers, footnotes and comments
are left out. The title is the document's own (its properties), else the
paragraph styled "Title", else the first level-1 heading.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

from localchat.core.documents.extract_blocks import Blocks, Parsed, open_zip

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

_HEADING_STYLE = re.compile(r"^heading\s+([1-9])$", re.IGNORECASE)


def read_docx(data: bytes, unpacked_limit: int) -> Parsed:
    import docx
    from docx.table import Table

    open_zip(data, unpacked_limit, "DOCX").close()
    document = docx.Document(io.BytesIO(data))
    out = Blocks()
    title = " ".join((document.core_properties.title or "").split()) or None
    items: list[str] = []  # the open list's paragraphs
    for part in document.iter_inner_content():
        if isinstance(part, Table):
            _end_list(out, items)
            out.add(_table_text(part), "table")
            continue
        text = part.text.strip()
        style = _style_name(part)
        if style.lower() == "title":  # the document's title, not a section's
            _end_list(out, items)
            title = title or " ".join(text.split()) or None
            out.add(text, "heading")
            continue
        level = _heading_level(part, style)
        if level is None and _is_list(part):
            items.append(" ".join(text.split()))
            continue
        _end_list(out, items)
        if level is not None:
            out.heading(text, level)
        else:
            out.add(text)
    _end_list(out, items)
    return Parsed(title or out.first_heading(1), out.items)


def _end_list(out: Blocks, items: list[str]) -> None:
    out.add("\n".join(item for item in items if item), "list")
    items.clear()


def _style_name(paragraph: Paragraph) -> str:
    style = paragraph.style
    return (style.name or "") if style is not None else ""


def _heading_level(paragraph: Paragraph, style_name: str) -> int | None:
    m = _HEADING_STYLE.match(style_name)
    if m:
        return int(m[1])
    level = _property(paragraph, "w:outlineLvl")
    if level is not None:
        value = level.get(_qn("w:val"))
        if value is not None and value.isdigit() and int(value) < 9:  # 9: body text
            return int(value) + 1
    return None


def _is_list(paragraph: Paragraph) -> bool:
    return _property(paragraph, "w:numPr") is not None or _style_name(paragraph).lower().startswith(
        "list"
    )


def _property(paragraph: Paragraph, tag: str) -> Any:
    """A paragraph property, set on the paragraph or on its style's chain."""
    ppr = paragraph._p.pPr
    found = ppr.find(_qn(tag)) if ppr is not None else None
    style: Any = paragraph.style
    seen = 0
    while found is None and style is not None and seen < 10:  # based-on chains can loop
        style_ppr = style.element.find(_qn("w:pPr"))
        found = style_ppr.find(_qn(tag)) if style_ppr is not None else None
        style = style.base_style
        seen += 1
    return found


def _table_text(table: Table) -> str:
    """A row a line, its cells between "|"; a merged cell's text once, nested tables inline."""
    from docx.text.paragraph import Paragraph

    rows = []
    for tr in table._tbl.tr_lst:
        cells = []
        for tc in tr.tc_lst:
            words = " ".join(Paragraph(p, table).text for p in tc.iter(_qn("w:p")))
            if words.strip():
                cells.append(" ".join(words.split()))
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _qn(tag: str) -> str:
    from docx.oxml.ns import qn

    return qn(tag)
