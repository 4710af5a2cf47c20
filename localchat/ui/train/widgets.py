"""Small pieces the Train window's pages share: a bold caption, a grey note,
a file name from what a person typed."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QSizePolicy


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
