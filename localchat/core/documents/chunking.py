"""A document's blocks (paragraphs, in reading order) cut into the passages
that are indexed and given to the model: each within a token budget, cut
at paragraph boundaries, else sentence boundaries (in any script), never
across a heading (each passage belongs to one section, whose heading path it
keeps), with a little overlap so that a sentence cut from its neighbour is
still found with it.

Tokens are estimated, not counted with a model's tokenizer (the index is
made once for any chat model): a word of up to six letters is a token, a
longer one a token per four letters, a Chinese character, kana or Hangul
syllable a token, each other symbol a token. Close to what Llama's and
Qwen's tokenizers make of English and Korean prose (within ~20%)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

BUDGET = 300
"""A passage's size in (estimated) tokens: big enough to hold an argument,
small enough that five fit a 2,048-token context with room to answer."""
OVERLAP = 40
"""How much of a passage's end the next passage of its section repeats."""

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]", re.UNICODE)
_SENTENCE_END = re.compile(
    r"(?<=[.!?…])[\"'”’)\]]*\s+(?=\S)"  # Latin and most scripts: a stop, then space
    r"|(?<=[。！？])"  # CJK full stops need no space
    r"|\n(?=\S)"  # a line break inside a paragraph (verse, lists)
)


class BlockLike(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def page(self) -> int | None: ...
    @property
    def lines(self) -> tuple[int, int] | None: ...
    @property
    def headings(self) -> tuple[str, ...]: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class Chunk:
    """A passage: its text, the section it is in, where it is."""

    text: str
    headings: tuple[str, ...] = ()
    pages: tuple[int, int] | None = None
    """The first and last page it is on (PDF)."""
    lines: tuple[int, int] | None = None
    """The first and last line of the file it comes from (text files)."""
    tokens: int = 0
    """Its estimated size."""


def estimate_tokens(text: str) -> int:
    n = 0
    for m in _TOKEN.finditer(text):
        word = m.group(0)
        n += 1 if len(word) <= 6 else math.ceil(len(word) / 4)
    return n


def sentences(text: str) -> list[str]:
    """``text`` cut after each sentence (the cuts keep every character:
    joined, the pieces are the text)."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > start:
            out.append(text[start : m.end()])
            start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [s for s in out if s.strip()]


@dataclass
class _Piece:
    text: str
    tokens: int
    page: int | None
    lines: tuple[int, int] | None
    paragraph_end: bool
    """The last piece of its block: the passage may end here cleanly."""


def chunk(
    blocks: Iterable[BlockLike], *, budget: int = BUDGET, overlap: int = OVERLAP
) -> list[Chunk]:
    """The passages of a document, in order."""
    out: list[Chunk] = []
    for headings, section in _sections(blocks):
        out.extend(_pack(headings, list(_pieces(section, budget)), budget, overlap))
    return out


def _sections(blocks: Iterable[BlockLike]) -> Iterator[tuple[tuple[str, ...], list[BlockLike]]]:
    """Runs of blocks under the same heading path (a heading block starts
    the section it names)."""
    current: tuple[str, ...] | None = None
    run: list[BlockLike] = []
    for block in blocks:
        if not block.text.strip():
            continue
        path = block.headings
        if block.kind == "heading":
            path = (*block.headings, block.text.strip())
        if path != current and run:
            yield current or (), run
            run = []
        current = path
        if block.kind != "heading":
            run.append(block)
    if run:
        yield current or (), run


def _pieces(blocks: Sequence[BlockLike], budget: int) -> Iterator[_Piece]:
    """Each block whole if it fits the budget, else its sentences (a
    sentence over the budget cut between words; code at line breaks)."""
    for block in blocks:
        text = block.text.strip()
        size = estimate_tokens(text)
        if size <= budget:
            yield _Piece(text, size, block.page, block.lines, True)
            continue
        parts = text.split("\n") if block.kind == "code" else sentences(text)
        small: list[str] = []
        for part in parts:
            if estimate_tokens(part) <= budget:
                small.append(part)
            else:
                small.extend(_words(part, budget))
        for i, part in enumerate(small):
            yield _Piece(
                part.strip() if block.kind != "code" else part.rstrip(),
                estimate_tokens(part),
                block.page,
                block.lines,
                i == len(small) - 1,
            )


def _words(text: str, budget: int) -> list[str]:
    """A run-on sentence in budget-sized runs of words (or of characters,
    for scripts written without spaces)."""
    words = re.findall(r"\S+\s*", text)
    if len(words) == 1:
        # No spaces (Chinese, Japanese): runs of characters.
        step = max(budget // 2, 1)
        return [text[i : i + step] for i in range(0, len(text), step)]
    out, run, size = [], "", 0
    for word in words:
        n = estimate_tokens(word)
        if run and size + n > budget:
            out.append(run)
            run, size = "", 0
        run += word
        size += n
    if run:
        out.append(run)
    return out


def _pack(
    headings: tuple[str, ...], pieces: list[_Piece], budget: int, overlap: int
) -> Iterator[Chunk]:
    """Pieces gathered into passages up to the budget; a passage ends at a
    paragraph's end when it can, and the next one starts with the last
    sentences of the one before (up to ``overlap`` tokens) when it was cut
    mid-paragraph."""
    i = 0
    while i < len(pieces):
        size, j = 0, i
        while j < len(pieces) and (j == i or size + pieces[j].tokens <= budget):
            size += pieces[j].tokens
            j += 1
        # Prefer to end after a paragraph, if that keeps at least half.
        end = j
        if j < len(pieces) and not pieces[j - 1].paragraph_end:
            for k in range(j, i, -1):
                if pieces[k - 1].paragraph_end and sum(p.tokens for p in pieces[i:k]) * 2 >= size:
                    end = k
                    break
        taken = pieces[i:end]
        yield _chunk(headings, taken)
        if end >= len(pieces):
            break
        # Overlap: the next passage repeats this one's last sentences when it
        # cut a paragraph.
        back, kept = end, 0
        if not pieces[end - 1].paragraph_end:
            while back - 1 > i and kept + pieces[back - 1].tokens <= overlap:
                back -= 1
                kept += pieces[back].tokens
        i = back


def _chunk(headings: tuple[str, ...], pieces: list[_Piece]) -> Chunk:
    texts: list[str] = []
    for k, p in enumerate(pieces):
        if k and pieces[k - 1].paragraph_end:
            texts.append("\n\n")
        elif k:
            texts.append(" " if not texts[-1].endswith("\n") else "")
        texts.append(p.text)
    pages = [p.page for p in pieces if p.page is not None]
    lines = [p.lines for p in pieces if p.lines is not None]
    return Chunk(
        text="".join(texts),
        headings=headings,
        pages=(min(pages), max(pages)) if pages else None,
        lines=(min(a for a, _ in lines), max(b for _, b in lines)) if lines else None,
        tokens=sum(p.tokens for p in pieces),
    )
