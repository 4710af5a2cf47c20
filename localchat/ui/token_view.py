"""A reply as the tokens the model wrote (the token X-ray): each token on a
background by how likely the model found it, neighbours told apart by
alternating tones, the probability on hover; a click picks a token (its
candidates open in the token panel).

The scale: a likely token (p near 1) is barely tinted; the less likely, the
stronger an orange, so surprising picks stand out in either theme. The tint
stays light enough for the text's contrast (see :func:`tint`)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QPoint, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QHelpEvent, QMouseEvent, QPalette, QResizeEvent
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser, QToolTip, QWidget

from localchat.core.engine.protocol import TokenLogprob
from localchat.ui.theme import mix

SURPRISE = QColor(232, 89, 12)
"""The tint of an unlikely token (an orange that reads on white and on dark grey)."""
STRONGEST = 0.5
"""The most a background takes of :data:`SURPRISE` (p = 0)."""


def tint(base: QColor, p: float, odd: bool) -> QColor:
    """The background of a token of probability ``p`` on ``base``; ``odd``
    tokens a shade apart, so that neighbours' boundaries show."""
    amount = 0.06 + (STRONGEST - 0.06) * (1 - max(0.0, min(1.0, p))) ** 0.8
    colour = mix(base, SURPRISE, amount)
    dark = base.lightness() < 128
    shade = QColor(255, 255, 255) if dark else QColor(0, 0, 0)
    return mix(colour, shade, 0.07) if odd else colour


def percent(p: float) -> str:
    """A probability in words: "93%", "0.4%", "< 0.01%"."""
    if p >= 0.995:
        return f"{p * 100:.1f}%" if p < 0.9995 else "100%"
    if p >= 0.1:
        return f"{p * 100:.0f}%"
    if p >= 0.0001:
        return f"{p * 100:.2g}%"
    return "< 0.01%"


def shown(text: str) -> str:
    """A token's text made visible: a newline as ↵, a tab as →, nothing as ∅."""
    if text == "":
        return "∅"
    return text.replace("\n", "↵").replace("\t", "→")


class TokenView(QTextBrowser):
    """``set_tokens`` shows them; :attr:`picked` says which one was clicked."""

    picked = Signal(int)
    """The index of the token clicked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("token-view")
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.anchorClicked.connect(self._clicked)
        self.document().documentLayout().documentSizeChanged.connect(lambda _: self._fit())
        self.tokens: tuple[TokenLogprob, ...] = ()
        self.plain = False
        """Showing a prompt's tokens (no probabilities)."""

    def set_tokens(self, tokens: Sequence[TokenLogprob]) -> None:
        self.tokens = tuple(tokens)
        self.plain = False
        base = self.palette().color(QPalette.ColorRole.Base)
        ink = self.palette().color(QPalette.ColorRole.Text).name()
        parts = []
        for i, t in enumerate(self.tokens):
            if t.forced:
                colour = mix(base, self.palette().color(QPalette.ColorRole.Mid), 0.35)
            else:
                colour = tint(base, math.exp(t.logprob), i % 2 == 1)
            text = html.escape(t.text if t.text else "\u200b").replace("\n", "↵<br>")
            style = f"background-color:{colour.name()}; color:{ink}; text-decoration:none"
            parts.append(f'<a href="t:{i}" style="{style}">{text}</a>')
        self.setHtml(f'<div style="white-space:pre-wrap">{"".join(parts)}</div>')

    def set_plain(self, tokens: Sequence[tuple[int, str]]) -> None:
        """Tokens without probabilities (a prompt's): neighbours in two
        neutral tones, the id on hover."""
        self.tokens = tuple(TokenLogprob(i, text, 0.0, forced=True) for i, text in tokens)
        base = self.palette().color(QPalette.ColorRole.Base)
        mid = self.palette().color(QPalette.ColorRole.Mid)
        ink = self.palette().color(QPalette.ColorRole.Text).name()
        tones = (mix(base, mid, 0.18).name(), mix(base, mid, 0.40).name())
        parts = []
        for i, t in enumerate(self.tokens):
            text = html.escape(t.text if t.text else "\u200b").replace("\n", "↵<br>")
            style = f"background-color:{tones[i % 2]}; color:{ink}; text-decoration:none"
            parts.append(f'<a href="t:{i}" style="{style}">{text}</a>')
        self.plain = True
        self.setHtml(f'<div style="white-space:pre-wrap">{"".join(parts)}</div>')

    def token_at(self, point: QPoint) -> int | None:
        anchor = self.anchorAt(point)
        if anchor.startswith("t:"):
            return int(anchor[2:])
        return None

    def tip(self, index: int) -> str:
        t = self.tokens[index]
        if self.plain:
            return f"{shown(t.text)!r}  ·  token {t.id}  ·  #{index + 1}"
        if t.forced:
            return f"{shown(t.text)!r}: written by LocalChat, not sampled"
        return f"{shown(t.text)!r}  ·  {percent(math.exp(t.logprob))}  ·  token {t.id}"

    def event(self, event: QEvent) -> bool:
        if isinstance(event, QHelpEvent):
            index = self.token_at(self.viewport().mapFrom(self, event.pos()))
            if index is not None:
                QToolTip.showText(event.globalPos(), self.tip(index), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        over = self.token_at(event.position().toPoint()) is not None
        self.viewport().setCursor(
            Qt.CursorShape.PointingHandCursor if over else Qt.CursorShape.IBeamCursor
        )

    def _clicked(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("t:"):
            self.picked.emit(int(text[2:]))

    def _fit(self) -> None:
        height = int(self.document().size().height()) + 4
        if self.height() != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.document().setTextWidth(self.viewport().width())
        self._fit()
