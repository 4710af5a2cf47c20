"""Text extraction: every format's blocks come back in reading order with the
right headings, pages and exact line ranges; Turkish, Korean and Romanian
legacy encodings decode right; and every kind of bad file is skipped with a
one-line reason, never an exception of another kind. Every fixture is made
here, in a temporary folder."""

from __future__ import annotations

import io
import itertools
import os
import random
import re
import zipfile
from pathlib import Path

import docx
import pytest
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from localchat.core.documents import extract as extract_module
from localchat.core.documents.extract import (
    FORMATS,
    Block,
    Extracted,
    Skipped,
    extract,
    format_of,
)

TURKISH = (
    "Türkiye'nin başkenti Ankara'dır. İstanbul ise en kalabalık şehridir. Bu şehirde "
    "çok güzel ağaçlar ve ılık bir iklim vardır. Öğretmenler öğrencilere Türkçe dersi veriyor."
)
KOREAN = "대한민국의 수도는 서울입니다. 한국어는 한글로 씁니다. 오늘은 날씨가 아주 좋습니다."
ROMANIAN = (
    "România este o ţară situată în sud-estul Europei. Capitala ţării este „Bucureşti”. "
    "Limba română este o limbă romanică. Pădurile şi munţii sunt frumoşi, iar oamenii "
    "sunt primitori."
)


def check_blocks(doc: Extracted, source: str | None = None) -> None:
    """What every block promises: stripped, non-empty text; and, with the
    file's text, that lines a..b hold the block's words in order."""
    assert doc.blocks
    lines = source.split("\n") if source is not None else []
    for block in doc.blocks:
        assert block.text and block.text == block.text.strip(), block
        assert block.kind in ("text", "heading", "code", "list", "table"), block
        if block.lines is not None and source is not None:
            first, last = block.lines
            assert 1 <= first <= last <= len(lines), block
            assert lines[first - 1].strip() and lines[last - 1].strip(), block
            assert_words_in(block.text, "\n".join(lines[first - 1 : last]))


def assert_words_in(text: str, source: str) -> None:
    at = 0
    for word in text.split():
        if word == "|":  # between the cells of a table row
            continue
        found = source.find(word, at)
        assert found >= 0, f"{word!r} not in {source!r} after {at}"
        at = found + len(word)


def exactly(reason: str) -> str:
    """A ``match=`` for this reason and nothing else."""
    return f"^{re.escape(reason)}$"


def summary(doc: Extracted) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(b.kind, b.text, b.headings) for b in doc.blocks]


# --- text-like formats -----------------------------------------------------------

MARKDOWN = f"""\
# Field Guide

The guide begins with a paragraph
that is wrapped over two lines.

## Setup

```python
def main():

    return 1
```

- first item
- second item

Notes
-----

{TURKISH}

{KOREAN}

# Appendix

| name | value |
|------|-------|
| a    | 1     |
"""


def test_markdown_headings_code_lists_and_exact_lines(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    doc = extract(path)
    check_blocks(doc, MARKDOWN)
    assert doc.format == "markdown" and doc.title == "Field Guide"
    assert [(b.kind, b.lines, b.headings) for b in doc.blocks] == [
        ("heading", (1, 1), ()),
        ("text", (3, 4), ("Field Guide",)),
        ("heading", (6, 6), ("Field Guide",)),
        ("code", (8, 12), ("Field Guide", "Setup")),
        ("list", (14, 15), ("Field Guide", "Setup")),
        ("heading", (17, 18), ("Field Guide",)),  # setext "---": level 2
        ("text", (20, 20), ("Field Guide", "Notes")),
        ("text", (22, 22), ("Field Guide", "Notes")),
        ("heading", (24, 24), ()),
        ("table", (26, 28), ("Appendix",)),
    ]
    texts = [b.text for b in doc.blocks]
    assert texts[1] == "The guide begins with a paragraph that is wrapped over two lines."
    assert texts[3] == "def main():\n\n    return 1"  # one block, the blank line kept
    assert texts[4] == "- first item\n- second item"
    assert texts[6] == TURKISH and texts[7] == KOREAN
    assert texts[9] == "| name | value |\n| a    | 1     |"


def test_markdown_front_matter_gives_the_title_and_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "post.md"
    path.write_text('---\ntitle: "My Post"\ntags: [a]\n---\n\nHello.\n', encoding="utf-8")
    doc = extract(path)
    assert doc.title == "My Post"
    assert [(b.text, b.lines) for b in doc.blocks] == [("Hello.", (6, 6))]


def test_an_unclosed_fence_runs_to_the_end_of_the_file(tmp_path: Path) -> None:
    source = "Intro.\n\n~~~\ncode\n\nmore\n\n"
    path = tmp_path / "open.md"
    path.write_text(source, encoding="utf-8")
    doc = extract(path)
    check_blocks(doc, source)
    assert [(b.kind, b.lines, b.text) for b in doc.blocks] == [
        ("text", (1, 1), "Intro."),
        ("code", (3, 6), "code\n\nmore"),
    ]
    assert doc.title == "open"  # no heading: the file name's stem


RST = """\
=============
 User Manual
=============

The manual starts here,
across two lines.

Installing
==========

Run this::

    pip install thing

    thing --help

Configuring
-----------

.. code-block:: ini
   :linenos:

   [main]
   key = value

.. note:: Mind the gap.

.. image:: picture.png
   :alt: nothing to read

* one
* two

Using
=====

| A line of verse,
| and another.
"""


def test_rst_titles_levels_literal_blocks_and_directives(tmp_path: Path) -> None:
    path = tmp_path / "manual.rst"
    path.write_text(RST, encoding="utf-8")
    doc = extract(path)
    check_blocks(doc, RST)
    assert doc.format == "rst" and doc.title == "User Manual"
    top = ("User Manual",)
    install = (*top, "Installing")
    configure = (*install, "Configuring")
    assert [(b.kind, b.text, b.lines, b.headings) for b in doc.blocks] == [
        ("heading", "User Manual", (1, 3), ()),
        ("text", "The manual starts here, across two lines.", (5, 6), top),
        ("heading", "Installing", (8, 9), top),
        ("text", "Run this:", (11, 11), install),
        ("code", "pip install thing\n\nthing --help", (13, 15), install),
        ("heading", "Configuring", (17, 18), install),
        ("code", "[main]\nkey = value", (23, 24), configure),
        ("text", "Mind the gap.", (26, 26), configure),
        ("list", "* one\n* two", (31, 32), configure),
        ("heading", "Using", (34, 35), top),
        ("text", "A line of verse,\nand another.", (37, 38), ("User Manual", "Using")),
    ]


HTML = """\
<!DOCTYPE html>
<html>
<head>
  <title>The Page Title</title>
  <style>body { color: red }</style>
  <script>var hidden = "not text";</script>
</head>
<body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<h1>Main &amp; Only</h1>
<p>First paragraph
   spans two lines.</p>
<h2>Details</h2>
<h3>Deeper</h3>
<p>Deep text.</p>
<ul><li>alpha</li><li>beta <b>bold</b></li></ul>
<pre>x = 1

y = 2</pre>
<h2>Data</h2>
<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
<script>document.write("also not text")</script>
</body>
</html>
"""


def test_html_skips_script_style_nav_and_nests_headings(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML, encoding="utf-8")
    doc = extract(path)
    check_blocks(doc, HTML.replace("&amp;", "&"))
    assert doc.format == "html" and doc.title == "The Page Title"
    assert summary(doc) == [
        ("heading", "Main & Only", ()),
        ("text", "First paragraph spans two lines.", ("Main & Only",)),
        ("heading", "Details", ("Main & Only",)),
        ("heading", "Deeper", ("Main & Only", "Details")),
        ("text", "Deep text.", ("Main & Only", "Details", "Deeper")),
        ("list", "alpha\nbeta bold", ("Main & Only", "Details", "Deeper")),
        ("code", "x = 1\n\ny = 2", ("Main & Only", "Details", "Deeper")),
        ("heading", "Data", ("Main & Only",)),
        ("table", "k | v\na | 1", ("Main & Only", "Data")),
    ]
    assert [b.lines for b in doc.blocks[:3]] == [(10, 10), (11, 12), (13, 13)]


def test_html_without_a_closing_head_tag_still_has_its_body(tmp_path: Path) -> None:
    path = tmp_path / "lazy.htm"
    path.write_bytes(b"<html><head><title>T</title><body><p>Body text.</p>")
    doc = extract(path)
    assert doc.title == "T" and summary(doc) == [("text", "Body text.", ())]


def test_code_blocks_are_runs_of_lines_with_exact_ranges(tmp_path: Path) -> None:
    source = "import os\n\n\ndef f():\n    return 1\n\n    # still f\n"
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    doc = extract(path)
    check_blocks(doc, source)
    assert doc.format == "code"
    assert [(b.kind, b.lines, b.text) for b in doc.blocks] == [
        ("code", (1, 1), "import os"),
        ("code", (4, 5), "def f():\n    return 1"),
        ("code", (7, 7), "# still f"),
    ]


def test_plain_text_joins_wrapped_prose_and_keeps_short_lines(tmp_path: Path) -> None:
    wrapped = (
        "This line is long enough to be a full line of the file,\nand so is this one, it goes on.\n"
    )
    verse = "Roses are red,\nviolets blue.\n"
    source = f"{wrapped}\n{verse}\n- milk\n- eggs\n"
    path = tmp_path / "notes.txt"
    path.write_text(source, encoding="utf-8")
    doc = extract(path)
    check_blocks(doc, source)
    assert [(b.kind, b.lines, b.text) for b in doc.blocks] == [
        ("text", (1, 2), " ".join(wrapped.split())),
        ("text", (4, 5), verse.strip()),
        ("list", (7, 8), "- milk\n- eggs"),
    ]
    assert doc.title == "notes"


def test_a_long_run_of_lines_is_cut_at_line_boundaries(tmp_path: Path) -> None:
    source = "".join(
        f"2026-01-01 12:00:{i % 60:02d} event number {i} happened\n" for i in range(500)
    )
    path = tmp_path / "app.log"
    path.write_text(source, encoding="utf-8")
    doc = extract(path)
    check_blocks(doc, source)
    assert len(doc.blocks) > 1
    ranges = [b.lines for b in doc.blocks if b.lines is not None]
    assert len(ranges) == len(doc.blocks)
    assert ranges[0][0] == 1 and ranges[-1][1] == 500
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))  # no line lost


# --- encodings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "text"),
    [("cp1254", TURKISH), ("cp949", KOREAN), ("cp1250", ROMANIAN), ("utf-16", KOREAN)],
)
def test_legacy_and_utf16_encodings_decode_right(tmp_path: Path, encoding: str, text: str) -> None:
    path = tmp_path / f"{encoding}.txt"
    path.write_bytes(f"{text}\n\n{text}\n".encode(encoding))
    doc = extract(path)
    assert [(b.text, b.lines) for b in doc.blocks] == [(text, (1, 1)), (text, (3, 3))]


def test_utf8_with_a_bom_or_windows_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf# Ba\xc5\x9fl\xc4\xb1k\r\n\r\nMetin.\r\n")
    doc = extract(path)
    assert [(b.text, b.lines) for b in doc.blocks] == [("Başlık", (1, 1)), ("Metin.", (3, 3))]


def test_utf8_with_one_bad_byte_stays_utf8(tmp_path: Path) -> None:
    path = tmp_path / "mostly.txt"
    path.write_bytes(TURKISH.encode() + b"\n\nbad \xff byte\n")
    doc = extract(path)
    assert doc.blocks[0].text == TURKISH
    assert doc.blocks[1].text == "bad \ufffd byte"


def test_an_html_pages_declared_charset_is_believed(tmp_path: Path) -> None:
    page = '<html><head><meta charset="windows-1254"></head><body><p>Ağaç</p></body></html>'
    path = tmp_path / "tr.html"
    path.write_bytes(page.encode("cp1254"))
    assert extract(path).blocks[0].text == "Ağaç"


# --- PDF ---------------------------------------------------------------------------


def write_pdf(path: Path) -> bytes:
    """Three pages, each a heading and two paragraphs, with an outline and a title."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4)
    c.setTitle("Three Pages")
    for number in (1, 2, 3):
        c.bookmarkPage(f"p{number}")
        c.addOutlineEntry(f"Part {number}", f"p{number}", level=0)
        if number == 2:
            c.bookmarkPage("p2-detail")
            c.addOutlineEntry("Part 2 detail", "p2-detail", level=1)
        c.setFont("Helvetica-Bold", 16)
        c.drawString(72, 780, f"Heading {number}")
        c.setFont("Helvetica", 11)
        y = 750
        for line in (
            f"The first paragraph of page {number} runs long enough that it",
            "wraps onto a second line, and it ends on this one here.",
            "",
            f"Second paragraph of page {number}.",
        ):
            c.drawString(72, y, line)
            y -= 14
        c.showPage()
    c.save()
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_pdf_pages_paragraphs_outline_and_title(tmp_path: Path) -> None:
    path = tmp_path / "three.pdf"
    write_pdf(path)
    doc = extract(path)
    check_blocks(doc)
    assert doc.format == "pdf" and doc.title == "Three Pages"
    assert [b.page for b in doc.blocks] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(b.lines is None for b in doc.blocks)
    page2 = [b for b in doc.blocks if b.page == 2]
    assert [b.text for b in page2] == [
        "Heading 2",
        "The first paragraph of page 2 runs long enough that it wraps onto a second line, "
        "and it ends on this one here.",
        "Second paragraph of page 2.",
    ]
    assert [b.headings for b in doc.blocks[::3]] == [
        ("Part 1",),
        ("Part 2", "Part 2 detail"),
        ("Part 3",),
    ]


def encrypted(source: bytes, user: str, owner: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(source))
    writer.encrypt(user, owner, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_an_encrypted_pdf_is_skipped(tmp_path: Path) -> None:
    source = write_pdf(tmp_path / "plain.pdf")
    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypted(source, "secret", "owner"))
    assert PdfReader(path).is_encrypted
    with pytest.raises(Skipped, match=exactly("encrypted PDF")):
        extract(path)


def test_a_pdf_encrypted_with_an_empty_password_is_read(tmp_path: Path) -> None:
    source = write_pdf(tmp_path / "plain.pdf")
    path = tmp_path / "restricted.pdf"
    path.write_bytes(encrypted(source, "", "owner"))
    assert [b.page for b in extract(path).blocks] == [1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-pdf"])
def test_a_broken_pdf_is_skipped_with_a_reason(tmp_path: Path, damage: str) -> None:
    source = write_pdf(tmp_path / "whole.pdf")
    data = {
        "truncated": source[: len(source) // 3],
        "garbage": b"%PDF-1.7\n" + bytes(random.Random(1).randrange(256) for _ in range(3000)),
        "not-pdf": b"Just some words in a file named .pdf\n",
    }[damage]
    path = tmp_path / f"{damage}.pdf"
    path.write_bytes(data)
    with pytest.raises(Skipped) as caught:
        extract(path)
    assert str(caught.value).startswith(("not a valid PDF: ", "no text layer"))
    assert "\n" not in str(caught.value)


# --- DOCX, EPUB, ODT -------------------------------------------------------------------


def test_docx_headings_lists_and_tables(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "Quarterly Report"
    document.add_heading("Overview", level=1)
    document.add_paragraph(TURKISH)
    document.add_heading("Numbers", level=2)
    document.add_paragraph("Milk", style="List Bullet")
    document.add_paragraph("Eggs", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("City", "People"), ("Seoul", "9.4M")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Summary", level=1)
    document.add_paragraph(KOREAN)
    path = tmp_path / "report.docx"
    document.save(str(path))
    doc = extract(path)
    check_blocks(doc)
    assert doc.format == "docx" and doc.title == "Quarterly Report"
    assert all(b.page is None and b.lines is None for b in doc.blocks)
    assert summary(doc) == [
        ("heading", "Overview", ()),
        ("text", TURKISH, ("Overview",)),
        ("heading", "Numbers", ("Overview",)),
        ("list", "Milk\nEggs", ("Overview", "Numbers")),
        ("table", "City | People\nSeoul | 9.4M", ("Overview", "Numbers")),
        ("heading", "Summary", ()),
        ("text", KOREAN, ("Summary",)),
    ]


def test_docx_without_a_title_property_uses_its_first_heading(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Başlık", level=1)
    document.add_paragraph("Metin.")
    path = tmp_path / "untitled.docx"
    document.save(str(path))
    assert extract(path).title == "Başlık"


def test_docx_title_style_and_a_heading_known_by_its_outline_level(tmp_path: Path) -> None:
    """A heading style named in another language counts by its outline level."""
    document = docx.Document()
    style = document.styles.add_style("Başlık Bir", WD_STYLE_TYPE.PARAGRAPH)
    level = OxmlElement("w:outlineLvl")
    level.set(qn("w:val"), "0")
    style.element.get_or_add_pPr().append(level)
    document.add_paragraph("Yıllık Rapor", style="Title")
    document.add_paragraph("Giriş", style=style)
    document.add_paragraph("Metin.")
    path = tmp_path / "rapor.docx"
    document.save(str(path))
    doc = extract(path)
    assert doc.title == "Yıllık Rapor"
    assert summary(doc) == [
        ("heading", "Yıllık Rapor", ()),
        ("heading", "Giriş", ()),
        ("text", "Metin.", ("Giriş",)),
    ]


def write_zip(path: Path, members: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            method = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            archive.writestr(name, text, compress_type=method)


def chapter(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head>'
        f"<body>{body}</body></html>"
    )


NAV = chapter(
    '<nav xmlns:epub="http://www.idpf.org/2007/ops" epub:type="toc"><ol>'
    '<li><a href="text/one.xhtml">The Beginning</a></li>'
    '<li><a href="text/chapter%202.xhtml#start">The Storm</a></li></ol></nav>'
)
NCX = """<?xml version="1.0"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/"><navMap>
<navPoint id="a"><navLabel><text>The Beginning</text></navLabel><content src="text/one.xhtml"/>
</navPoint><navPoint id="b"><navLabel><text>The Storm</text></navLabel>
<content src="text/chapter%202.xhtml#start"/></navPoint></navMap></ncx>"""


def write_epub(path: Path, toc: str) -> None:
    """Two chapters, stored in the zip (and listed in the manifest) in the
    wrong order, the spine right; the table of contents as EPUB 3's nav
    document or EPUB 2's NCX."""
    toc_item = (
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        if toc == "nav"
        else '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
    )
    opf = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>A Small Book</dc:title></metadata>
  <manifest>
    <item id="c2" href="text/chapter%202.xhtml" media-type="application/xhtml+xml"/>
    {toc_item}
    <item id="c1" href="text/one.xhtml" media-type="application/xhtml+xml"/>
  </manifest>
  <spine toc="ncx"><itemref idref="c1"/><itemref idref="c2"/></spine>
</package>"""
    write_zip(
        path,
        {
            "mimetype": "application/epub+zip",
            "META-INF/container.xml": (
                '<?xml version="1.0"?><container version="1.0" '
                'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                '<rootfile full-path="OEBPS/content.opf" '
                'media-type="application/oebps-package+xml"/></rootfiles></container>'
            ),
            "OEBPS/text/chapter 2.xhtml": chapter(
                f"<p class='title'>Chapter Two</p><p>{KOREAN}</p>"
            ),
            "OEBPS/content.opf": opf,
            "OEBPS/nav.xhtml" if toc == "nav" else "OEBPS/toc.ncx": NAV if toc == "nav" else NCX,
            "OEBPS/text/one.xhtml": chapter(
                "<h1>Chapter One</h1><h2>Morning</h2><p>It began.</p><p>Ended.</p>"
            ),
        },
    )


@pytest.mark.parametrize("toc", ["nav", "ncx"])
def test_epub_chapters_follow_the_spine_not_the_zip(tmp_path: Path, toc: str) -> None:
    path = tmp_path / "book.epub"
    write_epub(path, toc)
    doc = extract(path)
    check_blocks(doc)
    assert doc.format == "epub" and doc.title == "A Small Book"
    assert all(b.page is None and b.lines is None for b in doc.blocks)
    assert summary(doc) == [
        ("heading", "Chapter One", ()),
        ("heading", "Morning", ("Chapter One",)),
        ("text", "It began.", ("Chapter One", "Morning")),
        ("text", "Ended.", ("Chapter One", "Morning")),
        # No heading of its own: the table of contents names it.
        ("text", "Chapter Two", ("The Storm",)),
        ("text", KOREAN, ("The Storm",)),
    ]


def test_an_epub_with_encrypted_chapters_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "drm.epub"
    write_epub(path, "nav")
    encryption = (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
        '<enc:CipherReference URI="OEBPS/text/one.xhtml"/></enc:CipherData>'
        "</enc:EncryptedData></encryption>"
    )
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("META-INF/encryption.xml", encryption)
    with pytest.raises(Skipped, match=exactly("DRM-protected EPUB")):
        extract(path)


def test_an_epub_without_a_container_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.epub"
    write_zip(path, {"mimetype": "application/epub+zip", "x.xhtml": chapter("<p>x</p>")})
    with pytest.raises(Skipped, match=exactly("not a valid EPUB: no META-INF/container.xml")):
        extract(path)


ODT_CONTENT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content
  xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
  xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
  xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" office:version="1.3">
 <office:body><office:text>
  <text:sequence-decls><text:sequence-decl text:name="Table"/></text:sequence-decls>
  <text:h text:outline-level="1">Capitolul 1</text:h>
  <text:p>{ROMANIAN}</text:p>
  <text:h text:outline-level="2">Detalii</text:h>
  <text:p>Two<text:s text:c="2"/>spaces<text:tab/>tab<text:line-break/>next line
    <text:note><text:note-citation>1</text:note-citation>
    <text:note-body><text:p>a footnote</text:p></text:note-body></text:note></text:p>
  <text:list><text:list-item><text:p>unu</text:p></text:list-item>
   <text:list-item><text:p>doi</text:p>
    <text:list><text:list-item><text:p>trei</text:p></text:list-item></text:list>
   </text:list-item></text:list>
  <table:table><table:table-row><table:table-cell><text:p>k</text:p></table:table-cell>
   <table:table-cell><text:p>v</text:p></table:table-cell></table:table-row>
   <table:table-row><table:table-cell><text:p>a</text:p></table:table-cell>
   <table:table-cell><text:p>1</text:p></table:table-cell></table:table-row></table:table>
  <text:section><text:p>Inside a section.</text:p></text:section>
 </office:text></office:body>
</office:document-content>"""


def test_odt_headings_paragraphs_lists_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "doc.odt"
    write_zip(
        path,
        {
            "mimetype": "application/vnd.oasis.opendocument.text",
            "content.xml": ODT_CONTENT.format(ROMANIAN=ROMANIAN),
            "meta.xml": (
                '<office:document-meta xmlns:office="urn:oasis:names:tc:opendocument:xmlns:'
                'office:1.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><office:meta>'
                "<dc:title>Raport</dc:title></office:meta></office:document-meta>"
            ),
        },
    )
    doc = extract(path)
    check_blocks(doc)
    assert doc.format == "odt" and doc.title == "Raport"
    assert summary(doc) == [
        ("heading", "Capitolul 1", ()),
        ("text", ROMANIAN, ("Capitolul 1",)),
        ("heading", "Detalii", ("Capitolul 1",)),
        ("text", "Two  spaces\ttab\nnext line", ("Capitolul 1", "Detalii")),
        ("list", "unu\ndoi\ntrei", ("Capitolul 1", "Detalii")),
        ("table", "k | v\na | 1", ("Capitolul 1", "Detalii")),
        ("text", "Inside a section.", ("Capitolul 1", "Detalii")),
    ]


def test_a_password_protected_odt_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "locked.odt"
    manifest = (
        '<manifest:manifest xmlns:manifest="x"><manifest:encryption-data/></manifest:manifest>'
    )
    write_zip(path, {"content.xml": "\x00garbled", "META-INF/manifest.xml": manifest})
    with pytest.raises(Skipped, match=r"^encrypted document"):
        extract(path)


# --- bad input -------------------------------------------------------------------------


def test_an_empty_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.touch()
    with pytest.raises(Skipped, match=exactly("empty file")):
        extract(path)


def test_a_file_of_blank_lines_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("\n \n\t\n")
    with pytest.raises(Skipped, match=exactly("no text")):
        extract(path)


def test_a_binary_file_named_txt_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    with pytest.raises(Skipped, match=exactly("binary data, not text")):
        extract(path)


def test_control_characters_without_nul_are_binary_too(tmp_path: Path) -> None:
    path = tmp_path / "noise.log"
    path.write_bytes(bytes(random.Random(2).choice(range(1, 32)) for _ in range(2000)))
    with pytest.raises(Skipped, match=exactly("binary data, not text")):
        extract(path)


def test_a_file_over_the_size_limit_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 400)
    with pytest.raises(Skipped, match=exactly("over 1.0 KB (2.0 KB)")):
        extract(path, max_bytes=1000)
    assert extract(path, max_bytes=5000).blocks


def test_a_sparse_2gb_file_is_skipped_by_size_without_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.log"
    with open(path, "wb") as f:
        f.truncate(2**31)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("opened a file over the limit")

    monkeypatch.setattr(extract_module, "open", never, raising=False)
    with pytest.raises(Skipped, match=exactly("over 100.0 MB (2.1 GB)")):
        extract(path)


def test_a_file_that_vanished_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "gone.md"
    path.write_text("# Here\n")
    assert format_of(path) == "markdown"
    path.unlink()
    with pytest.raises(Skipped, match=exactly("vanished while being read")):
        extract(path)


def test_a_file_that_vanishes_between_stat_and_open_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "racy.txt"
    path.write_text("text\n")

    def vanish(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(extract_module, "open", vanish, raising=False)
    with pytest.raises(Skipped, match=exactly("vanished while being read")):
        extract(path)


def test_a_file_without_read_permission_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("private\n")
    path.chmod(0)
    try:
        try:
            path.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("this user reads files without permission (root)")
        with pytest.raises(Skipped, match=exactly("permission denied")):
            extract(path)
    finally:
        path.chmod(0o600)


def test_a_permission_error_on_open_is_skipped_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.txt"
    path.write_text("text\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(extract_module, "open", refuse, raising=False)
    with pytest.raises(Skipped, match=exactly("permission denied")):
        extract(path)


def test_a_folder_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(Skipped, match=exactly("a folder, not a file")):
        extract(folder)
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(Skipped, match=exactly("not a regular file")):
        extract(fifo)  # opening it would block forever


def test_an_unknown_suffix_is_not_a_format(tmp_path: Path) -> None:
    assert format_of(Path("a.XLSX")) is None and format_of(Path("Makefile")) is None
    assert format_of(Path("A.MD")) == "markdown" and format_of(Path("x.Rs")) == "code"
    with pytest.raises(Skipped, match=exactly("not a format we index (.xlsx)")):
        extract(tmp_path / "sheet.xlsx")


@pytest.mark.parametrize("suffix", [".pdf", ".docx", ".epub", ".odt"])
def test_a_container_that_is_not_a_zip_or_pdf_is_skipped(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"fake{suffix}"
    path.write_text("plain words, not the format the name says\n")
    with pytest.raises(Skipped, match=r"^not a valid (PDF|DOCX|EPUB|ODT): "):
        extract(path)


def test_a_zip_that_would_unpack_too_far_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    write_zip(path, {"word/document.xml": " " * 200_000})
    assert path.stat().st_size < 10_000
    with pytest.raises(Skipped, match=exactly("unpacks to 200.0 KB, over 20.0 KB")):
        extract(path, max_bytes=10_000)


def test_random_bytes_in_any_format_are_skipped_never_raised(tmp_path: Path) -> None:
    rng = random.Random(3)
    made = {".pdf": write_pdf(tmp_path / "src.pdf")}
    for suffix in sorted({*FORMATS} & {".txt", ".md", ".rst", ".html", ".py", *made, ".docx"}):
        for n in range(3):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
            if suffix in made and n == 0:
                data = made[suffix][: rng.randrange(10, len(made[suffix]))]
            path = tmp_path / f"r{n}{suffix}"
            path.write_bytes(data)
            try:
                doc = extract(path)
            except Skipped as exc:
                assert str(exc) and "\n" not in str(exc)
            else:
                assert all(isinstance(b, Block) and b.text.strip() == b.text for b in doc.blocks)
