"""Training text: read, clean, cut into passages, deduplicate, split.

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
3. **Cut into passages**, the unit of the next two steps: paragraphs where
   they exist. Text with too few blank lines (one sentence per line, poems
   without stanzas, subtitles, chat exports, code) has paragraphs that are too
   long to be one: a paragraph over ``LONG_PARAGRAPH`` characters, or over
   ``PASSAGE_MAX`` and holding most of its file, is cut at line ends into runs
   of a few lines (``PASSAGE_MIN`` to ``PASSAGE_MAX`` characters, ended where a
   line's hash says so: an edit seldom moves a boundary beyond its own
   passage, and a copied passage is cut as its original was), and a line
   longer than ``PASSAGE_MAX`` (minified text) into windows cut at a space.
   Runs of lines rather than
   single lines: a line on its own is often no unit of meaning (a ``}``, a
   refrain, "Yes."), and removing repeats of it, or holding out every copy of
   it, would break the text around it.
4. **Deduplicate** passages: exact copies (after cleaning, ignoring case and
   spacing), then near-copies, found with MinHash over word 3-grams and
   locality-sensitive hashing, confirmed by their true Jaccard similarity
   (>= ``near``, 0.8 by default). The first occurrence is kept.
5. **Split**: a held-out share of passages, chosen by a hash of each passage's
   text (the same passage always lands on the same side, however the files are
   ordered), for measuring what the model learned rather than what it
   memorised. Where that holds out less than half the share of the text (a
   small corpus), more passages are held out, in the order of their hashes.
   Neighbouring passages of one paragraph that land on the same side
   are joined again, so the text keeps its shape (lines stay lines).
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from localchat.core.errors import LocalChatError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text", ".html", ".htm", ".xml"}
NUM_PERM = 64
BANDS = 16  # 16 bands of 4 rows: pairs at Jaccard 0.8 meet in a band with p > 0.99
SHINGLE = 3
_MASK = (1 << 61) - 1  # the Mersenne prime 2^61 - 1 for universal hashing
PASSAGE_MIN = 200  # characters: a run of lines ends at a cut line once this long...
PASSAGE_MAX = 1000  # ...and before it grows past this; longer lines become windows
CUT_EVERY = 4  # a line is a cut line when its hash is 0 modulo this
LONG_PARAGRAPH = 2000  # characters: a paragraph longer than this is cut in any file


class DataError(LocalChatError):
    """Training data that cannot be used, with what to do about it."""


@dataclass
class Report:
    """What happened to the text on its way to training."""

    files: int = 0
    paragraphs: int = 0
    """Passages after cleaning (before deduplication): whole paragraphs, and
    the runs of lines and windows cut from paragraphs too long to be one."""
    line_runs: int = 0
    """Of those, the runs of lines cut from a long paragraph."""
    windows: int = 0
    """Of those, the windows cut from a line too long to be a passage."""
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

    @property
    def unit(self) -> str:
        """What the counts count, in words."""
        return "passages" if self.line_runs or self.windows else "paragraphs"

    def lines(self) -> list[str]:
        files = f"{self.files} file{'' if self.files == 1 else 's'}"
        how = ""
        if self.unit == "passages":
            whole = self.paragraphs - self.line_runs - self.windows
            pieces = [f"{self.line_runs:,} runs of lines"] if self.line_runs else []
            if self.windows:
                pieces.append(f"{self.windows:,} windows of over-long lines")
            how = "text with too few blank lines cut into " + " and ".join(pieces)
            how = f"{whole:,} paragraphs, and {how}; " if whole else f"{how}; "
        return [
            f"{files}, {self.paragraphs:,} {self.unit} after cleaning ({how}"
            f"{self.cleaned_away_chars:,} characters of markup and spacing removed)",
            f"removed: {self.exact_duplicates:,} exact and {self.near_duplicates:,} near "
            f"duplicates, {self.empty_after_cleaning:,} empty",
            f"train: {self.train_paragraphs:,} {self.unit} ({self.train_chars:,} characters); "
            f"held out: {self.heldout_paragraphs:,} ({self.heldout_chars:,} characters)",
        ]


@dataclass
class Corpus:
    """The prepared text: each side a list of blocks, to be joined with blank
    lines. A block is a paragraph, or neighbouring passages of one paragraph
    that landed on the same side, joined again as they were."""

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


# -- passages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """A unit of deduplication and of the held-out split."""

    text: str
    kind: Literal["paragraph", "lines", "window"]
    """``paragraph`` (a whole one), ``lines`` (a run of lines cut from one) or
    ``window`` (a piece of a line too long to be a passage)."""
    joint: str | None = None
    """What stood between it and the passage before it in its paragraph
    (a line break, a space, nothing), or None when it starts a paragraph."""


def _windows(line: str) -> Iterator[tuple[str, str]]:
    """Pieces of ``line`` of at most ``PASSAGE_MAX`` characters, cut at a space
    where there is one in the second half (else anywhere), each with what stood
    before it."""
    start, joint = 0, ""
    while len(line) - start > PASSAGE_MAX:
        cut = line.rfind(" ", start + PASSAGE_MAX // 2, start + PASSAGE_MAX + 1)
        end, skip = (cut, 1) if cut > 0 else (start + PASSAGE_MAX, 0)
        yield line[start:end], joint
        start, joint = end + skip, " " if skip else ""
    yield line[start:], joint


def _cut(paragraph: str) -> list[Passage]:
    """A long paragraph as runs of lines and windows of over-long lines."""
    out: list[Passage] = []
    run: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if run:
            out.append(Passage("\n".join(run), "lines", "\n" if out else None))
            run.clear()
            size = 0

    for line in paragraph.split("\n"):
        if len(line) > PASSAGE_MAX:
            flush()
            for i, (piece, joint) in enumerate(_windows(line)):
                out.append(Passage(piece, "window", joint if i else "\n" if out else None))
            continue
        if run and size + 1 + len(line) > PASSAGE_MAX:
            flush()
        run.append(line)
        size += len(line) + (len(run) > 1)
        if size >= PASSAGE_MIN and _hash64(line) % CUT_EVERY == 0:
            flush()
    flush()
    return out


def passages(paras: Sequence[str]) -> list[Passage]:
    """One file's paragraphs as passages: each paragraph whole, but one that is
    too long to be a unit (over ``LONG_PARAGRAPH`` characters, or over
    ``PASSAGE_MAX`` and more than half of the file) cut into runs of lines."""
    total = sum(len(p) for p in paras)
    out: list[Passage] = []
    for para in paras:
        if len(para) > LONG_PARAGRAPH or (len(para) > PASSAGE_MAX and 2 * len(para) > total):
            out += _cut(para)
        else:
            out.append(Passage(para, "paragraph"))
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
    items = list(items)
    return [items[i] for i in _unique(items, near, report if report is not None else Report())]


def _unique(items: Sequence[str], near: float, report: Report) -> list[int]:
    """The indices of the items :func:`deduplicate` keeps."""
    seen: set[str] = set()
    kept: list[int] = []
    kept_shingles: list[set[int]] = []
    buckets: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    rows = NUM_PERM // BANDS
    for index, para in enumerate(items):
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
                    report.examples.append(f"{items[kept[match]][:60]!r} ≈ {para[:60]!r}")
                continue
            for band in bands:
                buckets.setdefault(band, []).append(len(kept))
        kept.append(index)
        kept_shingles.append(shingles)
    return kept


# -- the whole preparation ---------------------------------------------------------------------


def heldout_side(paragraph: str, share: float) -> bool:
    """Whether a passage is held out: by a hash of its text, so stable."""
    return _draw(paragraph) < share


def _draw(text: str) -> float:
    """A number in [0, 1) fixed by the text (ignoring case and spacing)."""
    digest = hashlib.sha256(_key(text).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def _split(texts: dict[int, str], share: float) -> dict[int, bool]:
    """Which passages are held out (index -> bool): those :func:`heldout_side`
    holds out; where that is under half the share of the text (a small corpus,
    or bad luck), more, lowest draw first, none that overshoots twice the share;
    at least one, never all."""
    draws = {i: _draw(t) for i, t in texts.items()}
    sides = {i: d < share for i, d in draws.items()}
    target = share * sum(len(t) for t in texts.values())
    held = sum(len(texts[i]) for i, out in sides.items() if out)
    rest = sorted((i for i, out in sides.items() if not out), key=draws.__getitem__)[:-1]
    for i in rest:
        if held >= target / 2:
            break
        if held + len(texts[i]) <= 2 * target:
            sides[i], held = True, held + len(texts[i])
    if not held and rest:
        sides[rest[0]] = True
    if all(sides.values()):
        sides[min(sides, key=draws.__getitem__)] = False
    return sides


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


def _blocks(units: Sequence[Passage], sides: dict[int, bool]) -> tuple[list[str], list[str]]:
    """The kept passages (``sides``: index -> held out?) as the blocks of each
    side: a passage joins the one before it where both are of one paragraph,
    kept and on the same side."""
    train: list[str] = []
    held: list[str] = []
    for i in sorted(sides):
        out = held if sides[i] else train
        unit = units[i]
        if unit.joint is not None and sides.get(i - 1) == sides[i]:
            out[-1] += unit.joint + unit.text
        else:
            out.append(unit.text)
    return train, held


def prepare(
    paths: Sequence[str | Path],
    *,
    heldout: float = 0.1,
    near: float = 0.8,
    min_chars: int = 1,
) -> Corpus:
    """Read, clean, cut into passages, deduplicate and split the text in ``paths``."""
    if not 0.0 < heldout < 1.0:
        raise DataError("the held-out share must be between 0 and 1")
    report = Report()
    found = find_files(paths)
    units: list[Passage] = []
    for _path, text, paras in _cleaned(found):
        report.cleaned_away_chars += max(len(text) - sum(len(p) + 2 for p in paras), 0)
        if not paras:
            report.empty_after_cleaning += 1
        after = False  # whether the passage before was kept: else nothing to join to
        for unit in passages(paras):
            if len(unit.text) >= min_chars:
                units.append(unit if after or unit.joint is None else replace(unit, joint=None))
            after = len(unit.text) >= min_chars
        report.files += 1
    report.paragraphs = len(units)
    report.line_runs = sum(u.kind == "lines" for u in units)
    report.windows = sum(u.kind == "window" for u in units)
    unique = _unique([u.text for u in units], near, report)
    if not unique:
        raise DataError("the training data is empty once cleaned")
    if len(unique) < 2:
        raise DataError(
            f"the training data is a single passage of {len(units[unique[0]].text):,} "
            "characters once cleaned and deduplicated: a model needs more text than that, "
            "and some of it held out to measure it"
        )
    sides = _split({i: units[i].text for i in unique}, heldout)
    train, held = _blocks(units, sides)
    for i, held_out in sides.items():
        if held_out:
            report.heldout_paragraphs += 1
            report.heldout_chars += len(units[i].text)
        else:
            report.train_paragraphs += 1
            report.train_chars += len(units[i].text)
    return Corpus(train, held, report)
