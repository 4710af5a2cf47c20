"""Under a reply grounded in the user's documents: its sources, numbered as
the model was given them (so "[2]" in the answer is the second), each a
line with the file's name, where in it (page or lines) and its section
(the whole heading path on hover and in the passage). A click opens the
passage in place: its text as the model read it, "Open file" (the system's
application for it) and, for a file cited by lines, "Show in file", the
passage among its neighbours (``passage_viewer``). A reply given nothing
says "Not found in your documents". Sources are the reply's own, stored
with it as they were when it was written: an old reply keeps its own,
whatever the files became."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from localchat.ui import theme
from localchat.ui.message_parts import breakable, small

NOT_FOUND = "Not found in your documents"
NOT_FOUND_HELP = (
    "No passage of the chat's collections held enough of the question's words, "
    "so the model was told the documents do not cover it."
)


def file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def describe(source: dict[str, Any], *, whole: bool = True) -> str:
    """A source in words: "notes.md · lines 10-24 · Setup › Linux" (not
    ``whole``: only the innermost heading, the section, which is what tells
    one passage of a file from the next)."""
    headings = list(source.get("headings") or ())
    heading = " › ".join(headings if whole else headings[-1:])
    parts = (file_name(source.get("path", "")), source.get("location", ""), heading)
    return " · ".join(p for p in parts if p)


def open_file(path: str) -> bool:
    """Open ``path`` with the system's application for it."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


class SourceRow(QWidget):
    """One source: its line (a link that opens or closes the passage), and
    the passage with its actions while open."""

    def __init__(self, number: int, source: dict[str, Any], parent: QWidget | None = None):
        super().__init__(parent)
        self.number, self.source = number, source
        self.path = str(source.get("path", ""))
        self.line = QLabel()
        self.line.setObjectName("source")
        self.line.setTextFormat(Qt.TextFormat.RichText)
        self.line.setWordWrap(True)  # a long name wraps: the conversation never scrolls sideways
        self.line.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        headings = " › ".join(source.get("headings") or ())
        tip = [self.path, headings, "Click to read the passage the model was given"]
        self.line.setToolTip("\n".join(t for t in tip if t))
        self.line.setAccessibleName(f"Source {number}: {describe(source)}")
        self.line.linkActivated.connect(lambda _link: self.toggle())
        self.passage = Passage(source)
        self.passage.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.line)
        layout.addWidget(self.passage)
        self._draw()

    def is_open(self) -> bool:
        return not self.passage.isHidden()

    def toggle(self) -> None:
        self.passage.setVisible(not self.is_open())
        self._draw()

    def _draw(self) -> None:
        arrow = "▾" if self.is_open() else "▸"
        name = escape(breakable(file_name(self.path)))
        rest = describe(self.source, whole=False)[len(file_name(self.path)) :]
        self.line.setText(
            f"{arrow} [{self.number}] <a href='#{self.number}'>{name}</a>{escape(rest)}"
        )


class Passage(QFrame):
    """A source's passage, behind a thin rule: its text and what can be done
    with its file."""

    INDENT = 12

    def __init__(self, source: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("passage")
        self.source = source
        self.path = str(source.get("path", ""))
        self.headings = small(theme.secondary(QLabel(" › ".join(source.get("headings") or ()))))
        self.headings.setTextFormat(Qt.TextFormat.PlainText)
        self.headings.setWordWrap(True)
        self.headings.setVisible(bool(source.get("headings")))
        self.text = QLabel(str(source.get("text", "")).strip())
        self.text.setObjectName("passage-text")
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setAccessibleName("Passage")
        self.open_button = _link_button("Open file", f"Open {self.path}")
        self.open_button.clicked.connect(self._open)
        self.context_button = _link_button(
            "Show in file", "The passage among the lines around it, as the file is now"
        )
        self.context_button.clicked.connect(self.show_in_file)
        self.context_button.setVisible(bool(source.get("lines")))
        self.problem = small(theme.secondary(QLabel()))
        self.problem.hide()
        actions = QHBoxLayout()
        actions.setContentsMargins(0, 0, 0, 0)
        actions.setSpacing(4)
        actions.addWidget(self.open_button)
        actions.addWidget(self.context_button)
        actions.addWidget(self.problem)
        actions.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(self.INDENT, 2, 0, 4)
        layout.setSpacing(2)
        layout.addWidget(self.headings)
        layout.addWidget(self.text)
        layout.addLayout(actions)
        self.viewer: QWidget | None = None

    def _open(self) -> None:
        if not Path(self.path).exists():
            self._say("The file is no longer there")
        elif not open_file(self.path):
            self._say("No application opened it")

    def _say(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.setVisible(bool(text))

    def show_in_file(self) -> None:
        """The passage among its neighbouring lines, in a small window."""
        from localchat.ui.passage_viewer import PassageViewer  # when first asked

        self.viewer = PassageViewer(self.source, self.window())
        self.viewer.show()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        painter = QPainter(self)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self.palette().color(QPalette.ColorRole.Mid))
        top = (self.headings if self.headings.isVisible() else self.text).geometry().top()
        height = self.text.geometry().bottom() - top
        painter.drawRect(self.INDENT // 2 - 1, top, 2, height)


def _link_button(text: str, tip: str) -> QToolButton:
    button = small(QToolButton())
    button.setText(text)
    button.setToolTip(tip)
    button.setAccessibleName(text)
    button.setAutoRaise(True)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    return button


class SourcesView(QWidget):
    """``set_sources(sources)``: a reply's stored sources (None: it was not
    grounded, and nothing shows; (): nothing matched)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sources")
        self.sources: tuple[dict[str, Any], ...] | None = None
        self.header = small(theme.secondary(QLabel("Sources")))
        bold = self.header.font()
        bold.setBold(True)
        self.header.setFont(bold)
        self.not_found = small(theme.secondary(QLabel(NOT_FOUND), italic=True))
        self.not_found.setObjectName("not-found")
        self.not_found.setToolTip(NOT_FOUND_HELP)
        self.rows: list[SourceRow] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 2, 0, 0)
        self._layout.setSpacing(1)
        self._layout.addWidget(self.header)
        self._layout.addWidget(self.not_found)
        self.hide()

    def set_sources(self, sources: tuple[dict[str, Any], ...] | None) -> None:
        if sources == self.sources:
            return
        self.sources = sources
        for row in self.rows:
            row.hide()
            row.deleteLater()
        self.rows = [SourceRow(i, s) for i, s in enumerate(sources or (), 1)]
        for row in self.rows:
            self._layout.addWidget(row)
        self.header.setVisible(bool(sources))
        self.not_found.setVisible(sources == ())
        self.setVisible(sources is not None)

    def texts(self) -> list[str]:
        """The sources as listed, in words (for tests and screen readers)."""
        return [describe(row.source, whole=False) for row in self.rows]
