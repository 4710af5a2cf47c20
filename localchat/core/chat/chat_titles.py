"""How a chat is named and filed in the chat list: a plain-text title made
from Markdown, and the date heading (Today, Yesterday, …) it goes under."""

from __future__ import annotations

import re
from datetime import date, datetime

TITLE_CHARS = 60
"""A title made from a message is cut (at a word) to about this many characters."""

GROUPS = ("Today", "Yesterday", "Previous 7 days", "Previous 30 days", "Older")

_FENCE = re.compile(r"^\s*(```|~~~)[\w+-]*\s*$", re.MULTILINE)
"""A code fence on its own line (with its language)."""
_INLINE_FENCE = re.compile(r"(```|~~~)(?:[A-Za-z][\w+-]*(?=\s))?")
"""A fence within a line (``` ```python import x``` ```): the marks and the language go."""
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARKS = re.compile(
    r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+(\[[ xX]\]\s+)?|\d+[.)]\s+)", re.MULTILINE
)
_INLINE_MARKS = re.compile(r"(\*\*|__|~~|`+|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w))")
_RULE = re.compile(r"^\s*([-*_]\s*){3,}$", re.MULTILINE)
_HTML = re.compile(r"</?[A-Za-z][^>]*>")


def plain_text(markdown: str) -> str:
    """``markdown`` as plain text on one line: no code fences, emphasis,
    heading or list marks, links as their text, whitespace collapsed."""
    text = _FENCE.sub(" ", markdown)
    text = _INLINE_FENCE.sub(" ", text)
    text = _RULE.sub(" ", text)
    text = _IMAGE_OR_LINK.sub(r"\1", text)
    text = _HTML.sub(" ", text)
    text = _LINE_MARKS.sub("", text)
    text = _INLINE_MARKS.sub("", text)
    return " ".join(text.split())


def plain_title(markdown: str, limit: int = TITLE_CHARS) -> str:
    """A chat title from a message (or a stored title): plain text, cut at a
    word with an ellipsis when longer than ``limit`` characters."""
    text = plain_text(markdown)
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,.;:-") + "…"


def date_group(when: float, today: date | None = None) -> str:
    """The heading a chat last active at ``when`` (a timestamp) goes under."""
    today = today or date.today()
    days = (today - datetime.fromtimestamp(when).date()).days
    if days <= 0:
        return GROUPS[0]
    if days == 1:
        return GROUPS[1]
    if days <= 7:
        return GROUPS[2]
    if days <= 30:
        return GROUPS[3]
    return GROUPS[4]
