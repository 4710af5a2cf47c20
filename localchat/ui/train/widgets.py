"""Small pieces the Train window's pages share: a bold caption, a grey note,
a file name from what a person typed, what a list of data files holds."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from PySide6.QtWidgets import QLabel, QSizePolicy

from localchat.core.units import human_size, plural


def safe_name(text: str, fallback: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip())
    return name.strip(".") or fallback


def caption(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def note(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(placeholder-text)")
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def files_summary(paths: Sequence[str], suffixes: Collection[str]) -> str:
    """What the data listed holds, for the page's hint: "3 files, 120.0 KB",
    "1 folder (12 files), 2.1 MB" (a folder's files with ``suffixes``)."""
    files = folders = inside = 0
    size = 0
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                folders += 1
                found = [p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file()]
                inside += len(found)
                size += sum(p.stat().st_size for p in found)
            else:
                files += 1
                size += path.stat().st_size
        except OSError:  # gone, or not readable: the run says so
            continue
    listed = [plural(n, what) for n, what in ((files, "file"), (folders, "folder")) if n]
    text = " and ".join(listed)
    if folders:
        text += f" ({plural(files + inside, 'file')})"
    return f"{text}, {human_size(size)}"
