"""Bytes to text for the text-like formats, in whatever encoding the file was
written, or a one-line "binary data, not text".

The order matters. A byte-order mark is certain. Valid UTF-8 is almost never
anything else, and most files today are UTF-8. A file that is UTF-8 but for a
few bad bytes (a log with one corrupt line) stays UTF-8 with those bytes
replaced, rather than being guessed wholesale into a legacy code page. Only
then is the encoding an HTML or XML file declares tried, and then
``charset-normalizer`` guesses from the bytes: it tells Turkish cp1254, Korean
cp949 and Romanian cp1250 apart from a paragraph of text
(``tests/test_extract.py`` checks those three), which a fixed fallback such as
cp1252 would turn into mojibake.

A NUL byte in the first 64 KiB means binary, as git and grep decide; so does
a text more than 2% control characters or undecodable bytes, however decoded.
"""

from __future__ import annotations

import codecs
import re

from localchat.core.documents.extract_blocks import BINARY, Skipped

_BOMS = (  # UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
SNIFF_BYTES = 64 * 1024
"""A NUL byte this far into a file makes it binary."""
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\x80-\x9f\ufffd]")
"""Characters a text has almost none of: control characters (but tab, line
and page breaks, and the escape of a coloured log), and undecodable bytes."""
_DECLARED = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)|<\?xml[^>]+encoding\s*=\s*["']([\w.:-]+)""",
    re.IGNORECASE,
)
_WEB_NAMES = {  # the encodings browsers really use for these labels
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-9": "cp1254",
    "euc-kr": "cp949",
}


def decode(data: bytes, *, markup: bool = False) -> str:
    """``data`` as text with ``\\n`` line ends; ``markup``: an HTML or XML
    file, whose declared encoding is believed before a guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data[len(bom) :].decode(encoding, errors="replace")
            break
    else:
        if b"\x00" in data[:SNIFF_BYTES]:
            raise Skipped(BINARY)
        text = _guess(data, _declared(data) if markup else None)
    sample = text[:1_000_000]
    if len(_CONTROL.findall(sample)) > 0.02 * len(sample):
        raise Skipped(BINARY)
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def _declared(data: bytes) -> str | None:
    m = _DECLARED.search(data[:4096])
    if m is None:
        return None
    label = (m[1] or m[2]).decode("ascii").lower()
    return _WEB_NAMES.get(label, label)


def _guess(data: bytes, declared: str | None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    wide = len(text) - len(text.encode("ascii", errors="ignore")) - bad
    if wide >= 10 * bad:  # many good multi-byte characters, a few bad bytes
        return text
    if declared:
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    from charset_normalizer import from_bytes  # 30 ms to import: only when needed

    best = from_bytes(data).best()
    return text if best is None else str(best)  # no guess: UTF-8 with its bad bytes, if text
