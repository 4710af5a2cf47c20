"""EPUB books with the standard library: the zip, the package file (OPF) its
container names, and the chapters in the order of its spine, each read as
HTML (``extract_html``).

No EPUB library is needed for reading text, and the maintained one
(ebooklib) is AGPL. Each chapter starts a fresh heading path; a chapter with
no heading of its own (titles set as styled paragraphs, as converters often
do) takes its label in the book's table of contents (EPUB 3's nav document or
EPUB 2's NCX). A book whose chapters are encrypted (DRM) is skipped; fonts
obfuscated by the same mechanism are no obstacle.
"""

from __future__ import annotations

import logging
import posixpath
import zipfile
import zlib
from dataclasses import replace
from urllib.parse import unquote
from xml.etree import ElementTree

from localchat.core.documents.extract_blocks import Block, Parsed, Skipped, open_zip
from localchat.core.documents.extract_html import read_html
from localchat.core.documents.extract_text import decode

log = logging.getLogger(__name__)


def read_epub(data: bytes, unpacked_limit: int) -> Parsed:
    with open_zip(data, unpacked_limit, "EPUB") as archive:
        opf_path = _rootfile(archive)
        opf = _xml(archive, opf_path)
        base = posixpath.dirname(opf_path)
        manifest: dict[str, tuple[str, str]] = {}  # id -> (path, properties)
        for item in _all(opf, "item"):
            if item.get("id") and item.get("href"):
                manifest[item.get("id", "")] = (
                    _join(base, item.get("href", "")),
                    item.get("properties", ""),
                )
        spine_element = next(iter(_all(opf, "spine")), None)
        spine = [
            manifest[ref.get("idref", "")][0]
            for ref in (_all(spine_element, "itemref") if spine_element is not None else [])
            if ref.get("idref") in manifest
        ]
        if not spine:
            raise Skipped("not a valid EPUB: its spine lists no chapters")
        if _encrypted(archive) & set(spine):
            raise Skipped("DRM-protected EPUB")
        titles = [" ".join((e.text or "").split()) for e in _all(opf, "title")]
        toc = spine_element.get("toc", "") if spine_element is not None else ""
        labels = _labels(archive, manifest, toc)
        blocks: list[Block] = []
        for name in dict.fromkeys(spine):
            blocks += _chapter(archive, name, labels.get(name))
    return Parsed(next((t for t in titles if t), None), blocks)


def _chapter(archive: zipfile.ZipFile, name: str, label: str | None) -> list[Block]:
    try:
        chapter = read_html(decode(archive.read(name), markup=True), with_lines=False)
    except (KeyError, zipfile.BadZipFile, zlib.error, Skipped):  # the others still count
        log.warning("EPUB chapter %s could not be read", name, exc_info=True)
        return []
    if label and not any(block.kind == "heading" for block in chapter.blocks):
        return [replace(block, headings=(label,)) for block in chapter.blocks]
    return chapter.blocks


def _rootfile(archive: zipfile.ZipFile) -> str:
    try:
        container = _xml(archive, "META-INF/container.xml")
    except KeyError:
        raise Skipped("not a valid EPUB: no META-INF/container.xml") from None
    for rootfile in _all(container, "rootfile"):
        if rootfile.get("full-path"):
            return rootfile.get("full-path", "")
    raise Skipped("not a valid EPUB: its container names no package file")


def _encrypted(archive: zipfile.ZipFile) -> set[str]:
    """The members that META-INF/encryption.xml says are encrypted."""
    try:
        encryption = _xml(archive, "META-INF/encryption.xml")
    except KeyError:
        return set()
    return {_join("", ref.get("URI", "")) for ref in _all(encryption, "CipherReference")}


def _labels(
    archive: zipfile.ZipFile, manifest: dict[str, tuple[str, str]], ncx_id: str
) -> dict[str, str]:
    """Each chapter file's first label in the table of contents."""
    labels: dict[str, str] = {}
    try:
        nav = next((path for path, props in manifest.values() if "nav" in props.split()), None)
        if nav is not None:
            for link in _all(_xml(archive, nav), "a"):
                _label(labels, nav, link.get("href", ""), "".join(link.itertext()))
        elif ncx_id in manifest:
            ncx = manifest[ncx_id][0]
            for point in _all(_xml(archive, ncx), "navPoint"):
                text = next(iter(_all(point, "text")), None)
                content = next(iter(_all(point, "content")), None)
                if text is not None and content is not None:
                    _label(labels, ncx, content.get("src", ""), text.text or "")
    except (KeyError, ElementTree.ParseError):  # no usable contents: headings only
        log.debug("an EPUB's table of contents could not be read", exc_info=True)
    return labels


def _label(labels: dict[str, str], toc: str, href: str, text: str) -> None:
    text = " ".join(text.split())
    if href and text:
        labels.setdefault(_join(posixpath.dirname(toc), href), text)


def _xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    return ElementTree.fromstring(archive.read(name))


def _all(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    """The elements named ``name`` in any namespace, in document order."""
    return [
        e for e in element.iter() if isinstance(e.tag, str) and e.tag.rsplit("}", 1)[-1] == name
    ]


def _join(base: str, href: str) -> str:
    """A link's target as a member name: relative to ``base``, unquoted, without its fragment."""
    return posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))
