"""Fenced code in a reply: its own box, highlighted, with a Copy button.

Qt renders Markdown well but shows code as plain monospace. A message is split
into prose (rendered by Qt) and fenced code blocks (``` or ~~~), each shown in
a :class:`CodeBlock` highlighted by Pygments. The split is redone as a reply
streams in; an unclosed fence is code up to the end, so a block grows in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QResizeEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from localchat.ui import theme
from localchat.ui.icons import icon
from localchat.ui.message_parts import ActionButton

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$")


@dataclass(frozen=True)
class Segment:
    kind: str  # "prose" or "code"
    text: str
    language: str = ""


CHUNK_CHARS = 2000
"""Prose is cut into chunks of about this size at paragraph breaks, so a
streaming reply re-renders only its last chunk, not the whole text."""
_CONTINUES = re.compile(r"^(\s|[-*+>] |\d+[.)] )")
_BREAKABLE = re.compile(r" (?=[^\W\d_])")


def _chunks(prose: str) -> list[str]:
    """Cut prose once a chunk holds CHUNK_CHARS: at a blank line, or in a long
    paragraph at a line end (a soft break, then shown as a paragraph break);
    never where the next line continues a list, a quote or an indented block.
    A cut depends only on the text before it, so chunks already shown never
    change, and a finished reply looks as it did while streaming."""
    lines = [piece for line in prose.split("\n") for piece in _split_long_line(line)]
    chunks: list[str] = []
    start, size = 0, 0
    for i, line in enumerate(lines):
        size += len(line) + 1
        if size < CHUNK_CHARS or i + 1 >= len(lines):
            continue
        following = lines[i + 1]
        if not following.strip() or _CONTINUES.match(following):
            continue
        if line.strip() == "":
            chunks.append("\n".join(lines[start:i]))
        else:
            chunks.append("\n".join(lines[start : i + 1]))
        start, size = i + 1, 0
    chunks.append("\n".join(lines[start:]))
    return chunks


def _split_long_line(line: str) -> list[str]:
    """A line longer than a chunk (a paragraph with no line breaks at all) as
    several lines, each break replacing a space before a word that starts with a
    letter and outside inline code: Markdown renders such a soft break as the
    space it was, and a chunk may then be cut there (shown as a line break), so
    the re-rendered tail stays short however a model writes."""
    if len(line) <= CHUNK_CHARS:
        return [line]
    pieces: list[str] = []
    start = 0
    for m in _BREAKABLE.finditer(line):
        if m.start() - start >= CHUNK_CHARS and line.count("`", start, m.start()) % 2 == 0:
            pieces.append(line[start : m.start()])
            start = m.end()
    pieces.append(line[start:])
    return pieces


def split_markdown(text: str) -> list[Segment]:
    """Prose (in chunks) and fenced code blocks, in order. A fence closes with
    the same character, at least as long; an unclosed fence runs to the end."""
    segments: list[Segment] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        fence, language = m.group(1), m.group(2)
        if prose:
            segments += [Segment("prose", c) for c in _chunks("\n".join(prose))]
            prose = []
        code: list[str] = []
        i += 1
        while i < len(lines):
            if _closes(FENCE.match(lines[i]), fence):
                i += 1
                break
            code.append(lines[i])
            i += 1
        segments.append(Segment("code", "\n".join(code), language.lower()))
    if prose and any(line.strip() for line in prose):
        segments += [Segment("prose", c) for c in _chunks("\n".join(prose))]
    return segments


def _closes(match: re.Match[str] | None, fence: str) -> bool:
    """A bare fence of the same character, at least as long, closes the block."""
    return bool(
        match
        and not match.group(2)
        and match.group(1)[0] == fence[0]
        and len(match.group(1)) >= len(fence)
    )


class PygmentsHighlighter(QSyntaxHighlighter):
    """Colours a code document with a Pygments lexer and style.

    The whole text is lexed at once (so multi-line strings and comments are
    right) and each line's spans are applied when Qt asks for that line."""

    def __init__(self, document: QTextDocument, language: str, dark: bool) -> None:
        super().__init__(document)
        # Imported here: Pygments costs start-up time a chat without code never needs.
        from pygments.lexers import get_lexer_by_name
        from pygments.lexers.special import TextLexer
        from pygments.styles import get_style_by_name
        from pygments.util import ClassNotFound

        try:
            self.lexer = get_lexer_by_name(language) if language else TextLexer()
        except ClassNotFound:
            self.lexer = TextLexer()
        self.dark = dark
        style = get_style_by_name("monokai" if dark else "default")
        self.formats: dict[object, QTextCharFormat] = {}
        for token, spec in style:
            fmt = QTextCharFormat()
            if spec["color"]:
                fmt.setForeground(QColor(f"#{spec['color']}"))
            if spec["bold"]:
                fmt.setFontWeight(QFont.Weight.Bold)
            if spec["italic"]:
                fmt.setFontItalic(True)
            self.formats[token] = fmt
        self.spans: dict[int, list[tuple[int, int, QTextCharFormat]]] = {}

    def relex(self, text: str) -> None:
        from pygments import lex

        spans: dict[int, list[tuple[int, int, QTextCharFormat]]] = {}
        line, col = 0, 0
        for token, value in lex(text, self.lexer):
            fmt = self._format(token)
            for part_index, part in enumerate(value.split("\n")):
                if part_index:
                    line, col = line + 1, 0
                if part and fmt is not None:
                    spans.setdefault(line, []).append((col, len(part), fmt))
                col += len(part)
        self.spans = spans
        self.rehighlight()

    def _format(self, token: object) -> QTextCharFormat | None:
        from pygments.token import Token

        while token is not None:
            fmt = self.formats.get(token)
            if fmt is not None and fmt.foreground().style() != Qt.BrushStyle.NoBrush:
                return fmt
            token = getattr(token, "parent", None)
            if token is Token:
                return None
        return None

    def highlightBlock(self, text: str) -> None:
        for start, length, fmt in self.spans.get(self.currentBlock().blockNumber(), []):
            self.setFormat(start, length, fmt)


class CodeBlock(QFrame):
    """A block of code: language, Copy, and the highlighted text."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("code-block")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        head = QHBoxLayout()
        self.language = QLabel()
        theme.secondary(self.language)
        self.copy = ActionButton(icon("copy"), "Copy code", "Copy the code")
        self.copy.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.copy.setFixedWidth(self.copy.sizeHint().width() + 8)
        self.copy.clicked.connect(self._copy)
        head.addWidget(self.language)
        head.addStretch(1)
        head.addWidget(self.copy)
        layout.addLayout(head)
        self.editor = QPlainTextEdit()
        self.editor.setReadOnly(True)
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.editor.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.addWidget(self.editor)
        self.highlighter: PygmentsHighlighter | None = None
        self._language: str | None = None

    def set_code(self, code: str, language: str) -> None:
        if language != self._language or self.highlighter is None:
            self._language = language
            self.language.setText(language or "code")
            dark = self.palette().window().color().lightness() < 128
            self.highlighter = PygmentsHighlighter(self.editor.document(), language, dark)
        if code != self.editor.toPlainText():
            self.editor.setPlainText(code)
            self.highlighter.relex(code)
            self._fit()

    def _fit(self) -> None:
        """As tall as the code; room for a scroll bar only when a line is too wide."""
        doc = self.editor.document()
        lines = max(1, doc.blockCount())
        height = self.editor.fontMetrics().lineSpacing() * lines
        height += int(2 * doc.documentMargin()) + 2 * self.editor.frameWidth() + 2
        if doc.idealWidth() > self.editor.viewport().width():
            height += self.editor.horizontalScrollBar().sizeHint().height()
        self.editor.setFixedHeight(height)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def code(self) -> str:
        return self.editor.toPlainText()

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code())
