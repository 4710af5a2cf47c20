"""OpenDocument text (ODT) with the standard library: the zip's
``content.xml``, walked in document order.

The format is an open standard and its text is plain XML, so no library is
needed (odfpy would add a dependency for what is forty lines here).
``text:h`` is a heading at its ``text:outline-level``; ``text:p`` a
paragraph; a ``text:list`` one "list" block, an item a line; a
``table:table`` one "table" block, a row a line. Sections, frames and text
boxes are read through; tables of contents and indexes (which repeat the
headings), notes and annotations are left out. The title is ``meta.xml``'s
``dc:title``, else the first level-1 heading. A password-protected file is
skipped: its manifest says so.
"""

from __future__ import annotations

import re
import zipfile
from xml.etree import ElementTree

from localchat.core.documents.extract_blocks import Blocks, Parsed, Skipped, open_zip

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_LEFT_OUT = {
    f"{_TEXT}table-of-content", f"{_TEXT}alphabetical-index", f"{_TEXT}illustration-index",
    f"{_TEXT}table-index", f"{_TEXT}object-index", f"{_TEXT}user-index",
    f"{_TEXT}bibliography", f"{_TEXT}sequence-decls", f"{_TEXT}tracked-changes",
    f"{_TEXT}note", f"{_OFFICE}annotation", f"{_OFFICE}forms",
}  # fmt: skip
_SPACES = re.compile(r"[ \t\n\r]+")


def read_odt(data: bytes, unpacked_limit: int) -> Parsed:
    with open_zip(data, unpacked_limit, "ODT") as archive:
        if _encrypted(archive):
            raise Skipped("encrypted document (password-protected)")
        try:
            content = ElementTree.fromstring(archive.read("content.xml"))
        except KeyError:
            raise Skipped("not a valid ODT: no content.xml") from None
        title = _meta_title(archive)
    out = Blocks()
    for body in content.iter(f"{_OFFICE}text"):
        _walk(out, body)
    return Parsed(title or out.first_heading(1), out.items)


def _walk(out: Blocks, element: ElementTree.Element) -> None:
    for child in element:
        tag = child.tag
        if tag == f"{_TEXT}h":
            level = child.get(f"{_TEXT}outline-level", "1")
            out.heading(_inline(child), int(level) if level.isdigit() else 1)
        elif tag == f"{_TEXT}p":
            out.add(_inline(child))
        elif tag == f"{_TEXT}list":
            out.add("\n".join(_list_items(child)), "list")
        elif tag == f"{_TABLE}table":
            out.add(_table(child), "table")
        elif tag not in _LEFT_OUT:
            _walk(out, child)  # sections, frames, text boxes


def _inline(element: ElementTree.Element) -> str:
    """A paragraph's text: spans and links read through, ``text:s`` spaces,
    tabs and line breaks kept, notes and annotations left out."""
    parts = [_SPACES.sub(" ", element.text or "")]
    for child in element:
        tag = child.tag
        if tag == f"{_TEXT}s":
            count = child.get(f"{_TEXT}c", "1")
            parts.append(" " * (int(count) if count.isdigit() else 1))
        elif tag == f"{_TEXT}tab":
            parts.append("\t")
        elif tag == f"{_TEXT}line-break":
            parts.append("\n")
        elif tag not in _LEFT_OUT:
            parts.append(_inline(child))
        parts.append(_SPACES.sub(" ", child.tail or ""))
    return "\n".join(line.strip() for line in "".join(parts).split("\n"))


def _list_items(element: ElementTree.Element) -> list[str]:
    """Each paragraph of a (nested) list, a line each."""
    items = []
    for item in element:  # text:list-item, text:list-header
        for child in item:
            if child.tag in (f"{_TEXT}p", f"{_TEXT}h"):
                items.append(" ".join(_inline(child).split()))
            elif child.tag == f"{_TEXT}list":
                items += _list_items(child)
    return [item for item in items if item]


def _table(element: ElementTree.Element) -> str:
    rows = []
    for row in element.iter(f"{_TABLE}table-row"):
        cells = []
        for cell in row:
            if cell.tag == f"{_TABLE}table-cell":
                text = " ".join(" ".join(_inline(p).split()) for p in cell.iter(f"{_TEXT}p"))
                if text.strip():
                    cells.append(text.strip())
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _encrypted(archive: zipfile.ZipFile) -> bool:
    try:
        return b"encryption-data" in archive.read("META-INF/manifest.xml")
    except KeyError:
        return False


def _meta_title(archive: zipfile.ZipFile) -> str | None:
    try:
        meta = ElementTree.fromstring(archive.read("meta.xml"))
    except (KeyError, ElementTree.ParseError):
        return None
    element = meta.find(f".//{_DC_TITLE}")
    return " ".join((element.text or "").split()) or None if element is not None else None
