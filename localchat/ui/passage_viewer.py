"""A source's passage among the lines around it, in a small window: the file
as it is now, ``AROUND`` lines either side of the passage, its own lines
highlighted and scrolled to, each line numbered as the citation counts.

The file is read off the GUI thread (and only the part shown is kept). It
may have changed since the reply was written: the window shows the lines
the reply cited as they are now, and says so; the passage the model was
given is in the reply's sources, unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontDatabase, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from localchat.core.errors import LocalChatError
from localchat.ui import theme
from localchat.ui.bridge import JobThread
from localchat.ui.sources_view import describe, open_file
from localchat.ui.theme import mix

AROUND = 20
"""Lines shown before and after the passage."""
MAX_BYTES = 20_000_000
"""A bigger file is not read for its neighbours (the passage alone shows)."""

Excerpt = tuple[int, list[str]]
"""The first line's number, and the lines from it."""


def read_excerpt(path: str, first: int, last: int, around: int = AROUND) -> Excerpt:
    """Lines ``first - around`` to ``last + around`` of the text file (1-based),
    decoded as the index decodes it."""
    from localchat.core.documents.extract_blocks import Skipped
    from localchat.core.documents.extract_text import decode

    file = Path(path)
    try:
        if file.stat().st_size > MAX_BYTES:
            raise LocalChatError("the file is too big to show here: Open file shows it whole")
        text = decode(file.read_bytes(), markup=file.suffix.lower() in (".html", ".htm", ".xhtml"))
    except FileNotFoundError:
        raise LocalChatError("the file is no longer there") from None
    except OSError as exc:
        raise LocalChatError(f"the file could not be read ({exc.strerror or exc})") from None
    except Skipped as exc:
        raise LocalChatError(f"the file could not be read ({exc})") from None
    lines = text.split("\n")
    start = max(first - around, 1)
    return start, lines[start - 1 : last + around]


class PassageViewer(QDialog):
    """The passage of ``source`` (a reply's stored source, cited by lines) in
    its file. ``loaded`` is set once the file has been read (or failed)."""

    def __init__(self, source: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.path = str(source.get("path", ""))
        first, last = source.get("lines") or (1, 1)
        self.first, self.last = int(first), int(last)
        self.setWindowTitle(f"{describe(source)} — LocalChat")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        where = QLabel(self.path)
        where.setWordWrap(True)
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = theme.secondary(QLabel("Reading the file…"))
        self.note.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setAccessibleName("The passage in its file")
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        open_button = QPushButton("Open file")
        open_button.clicked.connect(lambda: open_file(self.path))
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.note, 1)
        buttons.addWidget(open_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(where)
        layout.addWidget(self.text, 1)
        layout.addLayout(buttons)
        self.resize(720, 480)
        self.loaded = False
        self.job = JobThread(lambda _emit: read_excerpt(self.path, self.first, self.last))
        self.job.done.connect(self._show)
        self.job.failed.connect(self._failed)
        self.job.start()

    def _show(self, excerpt: Excerpt) -> None:
        start, lines = excerpt
        width = len(str(start + len(lines)))
        self.text.setPlainText(
            "\n".join(f"{n:>{width}}  {line}" for n, line in enumerate(lines, start))
        )
        self.highlight(start)
        self.note.setText(
            f"Lines {self.first}-{self.last} as the file is now (the reply's source keeps "
            "the passage as it was when the reply was written)"
        )
        self.loaded = True

    def highlight(self, start: int) -> None:
        """Tint the passage's lines and scroll to them."""
        doc = self.text.document()
        first = doc.findBlockByNumber(self.first - start)
        last = doc.findBlockByNumber(self.last - start)
        if not first.isValid():
            return
        cursor = QTextCursor(first)
        end = last if last.isValid() else doc.lastBlock()
        cursor.setPosition(end.position() + end.length() - 1, QTextCursor.MoveMode.KeepAnchor)
        selection = QTextEdit.ExtraSelection()
        palette = self.text.palette()
        tint: QColor = mix(
            palette.color(palette.ColorRole.Base), palette.color(palette.ColorRole.Highlight), 0.3
        )
        fmt = QTextCharFormat()
        fmt.setBackground(tint)
        fmt.setProperty(QTextFormat.Property.FullWidthSelection, True)
        selection.format = fmt
        selection.cursor = cursor
        self.text.setExtraSelections([selection])
        # From the end up to two lines above the passage: the view scrolls up
        # just far enough, which puts that line at its top.
        above = doc.findBlockByNumber(max(first.blockNumber() - 2, 0))
        for block in (doc.lastBlock(), above):
            self.text.setTextCursor(QTextCursor(block))
            self.text.ensureCursorVisible()

    def highlighted(self) -> str:
        """The text of the tinted lines (what a test checks)."""
        selections = self.text.extraSelections()
        return selections[0].cursor.selectedText().replace("\u2029", "\n") if selections else ""

    def _failed(self, message: str) -> None:
        self.note.setText(f"Not shown: {message}")
        self.text.setPlainText(str(self.source.get("text", "")))
        self.loaded = True

    def done(self, result: int) -> None:
        self.job.wait()  # a dialog closed before its file was read
        super().done(result)
