"""Training text: read, clean, deduplicate, split.

The steps of preparing a corpus for a small GPT, each one visible in the
:class:`Report`:

1. **Read** the given files and folders (folders recursively: ``.txt``,
   ``.md``, ``.rst``, ``.html``...). A file that is not UTF-8 text, or looks
   binary, is an error naming it: training on the wrong bytes silently is
   worse than stopping.
2. **Clean**: strip markup (HTML/XML tags, comments, scripts and styles;
   entities decoded), normalise Unicode (NFC) and whitespace (runs of spaces
   and tabs become one space; lines are trimmed; blank lines separate
   paragraphs).
3. **Deduplicate** at paragraph level: exact copies (after cleaning, ignoring
   case and spacing), then near-copies, found with MinHash over word 3-grams
   and locality-sensitive hashing, confirmed by their true Jaccard similarity
   (>= ``near``, 0.8 by default). The first occurrence is kept.
4. **Split**: a held-out share of paragraphs, chosen by a hash of each
   paragraph's text (the same paragraph always lands on the same side, however
   the files are ordered), for measuring what the model learned rather than
   what it memorised.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localchat.core.errors import LocalChatError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text", ".html", ".htm", ".xml"}
NUM_PERM = 64
BANDS = 16  # 16 bands of 4 rows: pairs at Jaccard 0.8 meet in a band with p > 0.99
SHINGLE = 3
_MASK = (1 << 61) - 1  # the Mersenne prime 2^61 - 1 for universal hashing


class DataError(LocalChatError):
    """Training data that cannot be used, with what to do about it."""


@dataclass
class Report:
    """What happened to the text on its way to training."""

    files: int = 0
    paragraphs: int = 0
    """Paragraphs after cleaning (before deduplication)."""
    exact_duplicates: int = 0
    near_duplicates: int = 0
    empty_after_cleaning: int = 0
    cleaned_away_chars: int = 0
    train_paragraphs: int = 0
    heldout_paragraphs: int = 0
    train_chars: int = 0
    heldout_chars: int = 0
    examples: list[str] = field(default_factory=list)
    """A few of the removed near-duplicates, as ``kept ≈ removed`` lines."""

    def lines(self) -> list[str]:
        return [
            f"{self.files} files, {self.paragraphs:,} paragraphs after cleaning "
            f"({self.cleaned_away_chars:,} characters of markup and spacing removed)",
            f"removed: {self.exact_duplicates:,} exact and {self.near_duplicates:,} near "
            f"duplicates, {self.empty_after_cleaning:,} empty",
            f"train: {self.train_paragraphs:,} paragraphs ({self.train_chars:,} characters); "
            f"held out: {self.heldout_paragraphs:,} ({self.heldout_chars:,} characters)",
        ]


@dataclass
class Corpus:
    train: list[str]
    heldout: list[str]
    report: Report

    def train_text(self) -> str:
        return "\n\n".join(self.train)

    def heldout_text(self) -> str:
        return "\n\n".join(self.heldout)


# -- reading ---------------------------------------------------------------------------


def find_files(paths: Sequence[str | Path]) -> list[Path]:
    """The text files named, and those inside the folders named, in order."""
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            inside = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
            )
            if not inside:
                raise DataError(f"{path} has no text files ({', '.join(sorted(TEXT_SUFFIXES))})")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"no such file or folder: {path}")
    if not found:
        raise DataError("no training data given")
    return found


def read_text(path: Path) -> str:
    """A file's text; a one-line error if it is binary or not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\0" in raw[:8192]:
        raise DataError(f"{path} looks like a binary file, not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start}); convert it first, e.g. with iconv"
        ) from None


# -- cleaning ------------------------------------------------------------------------------

_HIDDEN = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_BLOCK = re.compile(
    r"</?(p|div|li|ul|ol|h[1-6]|tr|table|section|article|blockquote|pre)\b[^>]*>",
    re.IGNORECASE,
)
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(\s[^<>]*)?/?>")
_LOOKS_HTML = re.compile(r"</(p|div|html|body|span|li|td|h[1-6])>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n")


def strip_markup(text: str) -> str:
    """Text without HTML/XML tags, comments, scripts and styles; block tags
    become paragraph breaks, entities their characters."""
    if "<" not in text and "&" not in text:
        return text
    text = _HIDDEN.sub(" ", text)
    text = _COMMENT.sub(" ", text)
    text = _BLOCK.sub("\n\n", text)
    text = _BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    return html.unescape(text)


def paragraphs(text: str) -> list[str]:
    """Cleaned paragraphs: NFC, control characters gone, spaces collapsed,
    lines trimmed, blank lines as separators."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    out = []
    for block in _BLANKS.split(text):
        lines = [_SPACES.sub(" ", line).strip() for line in block.split("\n")]
        para = "\n".join(line for line in lines if line)
        if para:
            out.append(para)
    return out


# -- deduplication --------------------------------------------------------------------------


def _key(paragraph: str) -> str:
    return " ".join(paragraph.lower().split())


def _shingles(paragraph: str) -> set[int]:
    words = re.findall(r"\w+", paragraph.lower())
    if len(words) < SHINGLE:
        return {_hash64(" ".join(words))} if words else set()
    return {_hash64(" ".join(words[i : i + SHINGLE])) for i in range(len(words) - SHINGLE + 1)}


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


_PERMS = [
    (
        _hash64(f"a{i}") % (_MASK - 1) + 1,
        _hash64(f"b{i}") % _MASK,
    )
    for i in range(NUM_PERM)
]


def _minhash(shingles: set[int]) -> tuple[int, ...]:
    return tuple(min((a * s + b) & _MASK for s in shingles) for a, b in _PERMS)


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def deduplicate(
    items: Iterable[str], *, near: float = 0.8, report: Report | None = None
) -> list[str]:
    """``items`` without exact copies and near-copies (word 3-gram Jaccard
    similarity >= ``near``), first occurrences kept, order kept."""
    report = report if report is not None else Report()
    seen: set[str] = set()
    kept: list[str] = []
    kept_shingles: list[set[int]] = []
    buckets: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    rows = NUM_PERM // BANDS
    for para in items:
        key = _key(para)
        if key in seen:
            report.exact_duplicates += 1
            continue
        seen.add(key)
        shingles = _shingles(para)
        if len(shingles) >= 2 and near < 1.0:
            signature = _minhash(shingles)
            bands = [(b, signature[b * rows : (b + 1) * rows]) for b in range(BANDS)]
            candidates = {i for band in bands for i in buckets.get(band, ())}
            match = next(
                (i for i in sorted(candidates) if jaccard(shingles, kept_shingles[i]) >= near),
                None,
            )
            if match is not None:
                report.near_duplicates += 1
                if len(report.examples) < 5:
                    report.examples.append(f"{kept[match][:60]!r} ≈ {para[:60]!r}")
                continue
            for band in bands:
                buckets.setdefault(band, []).append(len(kept))
        kept.append(para)
        kept_shingles.append(shingles)
    return kept


# -- the whole preparation ---------------------------------------------------------------------


def heldout_side(paragraph: str, share: float) -> bool:
    """Whether a paragraph is held out: by a hash of its text, so stable."""
    digest = hashlib.sha256(_key(paragraph).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < share


def read_paragraphs(paths: Sequence[str | Path]) -> list[str]:
    """The cleaned paragraphs of the files (no deduplication, no split): text
    to evaluate a model on."""
    return [p for _path, _text, paras in _cleaned(find_files(paths)) for p in paras]


def _cleaned(found: Sequence[Path]) -> Iterator[tuple[Path, str, list[str]]]:
    for path in found:
        text = read_text(path)
        markup = path.suffix.lower() in {".html", ".htm", ".xml"} or _LOOKS_HTML.search(text)
        stripped = strip_markup(text) if markup else text
        yield path, text, paragraphs(stripped)


def prepare(
    paths: Sequence[str | Path],
    *,
    heldout: float = 0.1,
    near: float = 0.8,
    min_chars: int = 1,
) -> Corpus:
    """Read, clean, deduplicate and split the text in ``paths``."""
    if not 0.0 < heldout < 1.0:
        raise DataError("the held-out share must be between 0 and 1")
    report = Report()
    found = find_files(paths)
    cleaned: list[str] = []
    for _path, text, paras in _cleaned(found):
        report.cleaned_away_chars += max(len(text) - sum(len(p) + 2 for p in paras), 0)
        if not paras:
            report.empty_after_cleaning += 1
        cleaned += [p for p in paras if len(p) >= min_chars]
        report.files += 1
    report.paragraphs = len(cleaned)
    unique = deduplicate(cleaned, near=near, report=report)
    if not unique:
        raise DataError("the training data is empty once cleaned")
    train = [p for p in unique if not heldout_side(p, heldout)]
    held = [p for p in unique if heldout_side(p, heldout)]
    if len(unique) < 2:
        raise DataError(
            "the training data is a single paragraph once cleaned; a model needs more text "
            "than that (and some of it held out to measure it)"
        )
    if not held:  # a tiny corpus: hold out its last paragraph
        held = [train.pop()]
    if not train:
        train = [held.pop(0)]
    report.train_paragraphs, report.heldout_paragraphs = len(train), len(held)
    report.train_chars = sum(len(p) for p in train)
    report.heldout_chars = sum(len(p) for p in held)
    return Corpus(train, held, report)
