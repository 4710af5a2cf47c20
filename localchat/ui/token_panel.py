"""One position of a reply, opened from the token X-ray: the candidates the
model gave there as bars (their probability under the model, and after the
sampler chain), which stage cut which candidate, the entropy; a sampling
playground (temperature, top-k, top-p, min-p) that redraws the position
live from the stored candidates, without the model (``core/engine/sampling``);
and "Continue with this instead" for another candidate: the reply is
written again from there, as a new version."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from localchat.core import params
from localchat.core.engine.protocol import TokenLogprob
from localchat.core.engine.sampling import Sampled, apply_chain
from localchat.ui import theme
from localchat.ui.theme import mix
from localchat.ui.token_view import percent, shown

STAGE_WORDS = {
    "top_k": "cut by top-k",
    "top_p": "cut by top-p",
    "min_p": "cut by min-p",
    "greedy": "not the best (greedy)",
}
PLAYGROUND = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty")
"""The settings the playground moves (declared in ``params``)."""


@dataclass(frozen=True)
class Position:
    """A reply's token ``index``, with what the chain needs: its candidates'
    raw logits, the tokens before it (for the penalty) and the mass of the
    tokens not stored."""

    tokens: tuple[TokenLogprob, ...]
    index: int

    @property
    def token(self) -> TokenLogprob:
        return self.tokens[self.index]

    def run(self, settings: Mapping[str, Any]) -> Sampled:
        t = self.token
        ids = [c[0] for c in t.top]
        logits = [c[2] + t.lse for c in t.top]
        stored = sum(math.exp(c[2]) for c in t.top)
        recent = [x.id for x in self.tokens[: self.index] if not x.forced]
        return apply_chain(
            ids,
            logits,
            recent,
            temperature=float(settings["temperature"]),
            top_k=int(settings["top_k"]),
            top_p=float(settings["top_p"]),
            min_p=float(settings["min_p"]),
            repeat_penalty=float(settings["repeat_penalty"]),
            rest=max(0.0, 1.0 - stored),
        )


class CandidateChart(QWidget):
    """The candidates as rows: text, two bars (under the model; after the
    sampler chain, in the accent colour), the figures, and the stage that
    cut it. A click selects a row."""

    selected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("candidate-chart")
        self.rows: list[tuple[str, float, float, str, bool]] = []
        """(text, raw, final, stage, chosen) per candidate."""
        self.current = -1
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_rows(self, rows: Sequence[tuple[str, float, float, str, bool]]) -> None:
        self.rows = list(rows)
        self.setFixedHeight(self._row_height() * max(len(self.rows), 1) + 4)
        self.update()

    def _row_height(self) -> int:
        return self.fontMetrics().height() + 10

    def sizeHint(self) -> QSize:
        return QSize(420, self.height())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        row = int(event.position().y()) // self._row_height()
        if 0 <= row < len(self.rows):
            self.current = row
            self.selected.emit(row)
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_colour = palette.color(QPalette.ColorRole.Text)
        quiet = palette.color(QPalette.ColorRole.PlaceholderText)
        accent = palette.color(QPalette.ColorRole.Highlight)
        base = palette.color(QPalette.ColorRole.Base)
        h = self._row_height()
        metrics = self.fontMetrics()
        text_w = min(150, self.width() // 4)
        figures_w = metrics.horizontalAdvance("100% → 100%") + 12
        stage_w = metrics.horizontalAdvance("cut by top-p") + 8
        bar_w = max(self.width() - text_w - figures_w - stage_w - 16, 40)
        for i, (text, raw, final, stage, chosen) in enumerate(self.rows):
            top = i * h + 2
            if i == self.current:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(mix(base, accent, 0.15))
                painter.drawRoundedRect(QRectF(0, top, self.width(), h - 2), 4, 4)
            painter.setPen(text_colour if not stage else quiet)
            font = self.font()
            font.setBold(chosen)
            painter.setFont(font)
            label = metrics.elidedText(repr(shown(text))[1:-1], Qt.TextElideMode.ElideRight, text_w)
            painter.drawText(QRectF(4, top, text_w, h - 2), Qt.AlignmentFlag.AlignVCenter, label)
            x = text_w + 8
            mid = top + (h - 2) / 2
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(mix(base, text_colour, 0.12))
            painter.drawRoundedRect(QRectF(x, mid - 5, bar_w, 4), 2, 2)
            painter.setBrush(mix(base, text_colour, 0.45))
            painter.drawRoundedRect(QRectF(x, mid - 5, max(bar_w * raw, 1), 4), 2, 2)
            painter.setBrush(accent if not stage else mix(base, accent, 0.3))
            painter.drawRoundedRect(QRectF(x, mid + 1, max(bar_w * final, 0), 4), 2, 2)
            painter.setPen(text_colour if not stage else quiet)
            figures = f"{percent(raw)} → {percent(final)}" if not stage else percent(raw)
            painter.drawText(
                QRectF(x + bar_w + 6, top, figures_w, h - 2),
                Qt.AlignmentFlag.AlignVCenter,
                figures,
            )
            painter.setPen(quiet)
            painter.drawText(
                QRectF(x + bar_w + 6 + figures_w, top, stage_w, h - 2),
                Qt.AlignmentFlag.AlignVCenter,
                STAGE_WORDS.get(stage, ""),
            )


class TokenPanel(QWidget):
    """``show_position(tokens, index, settings)``; ``continue_requested``
    (index, token id) asks for the reply again from there with that token."""

    continue_requested = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("token-panel")
        self.position: Position | None = None
        self.settings: dict[str, Any] = {}
        self.sampled: Sampled | None = None
        self.heading = QLabel()
        self.heading.setWordWrap(True)
        bold = self.heading.font()
        bold.setBold(True)
        self.heading.setFont(bold)
        self.summary = theme.secondary(QLabel())
        self.summary.setWordWrap(True)
        self.legend = theme.secondary(
            QLabel("Grey bar: the model's probability. Coloured bar: after the sampler chain.")
        )
        self.legend.setWordWrap(True)
        self.chart = CandidateChart()
        self.chart.selected.connect(self._selected)
        self.note = theme.secondary(QLabel())
        self.note.setWordWrap(True)
        self.continue_button = QPushButton("Continue with this instead")
        self.continue_button.setEnabled(False)
        self.continue_button.setToolTip(
            "Write the reply again from here with the chosen token: everything before it "
            "stays, the rest is sampled anew with the reply's settings. It becomes another "
            "version of the reply."
        )
        self.continue_button.clicked.connect(self._continue)
        form = QFormLayout()
        self.knobs: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name in PLAYGROUND:
            spec = params.spec(name)
            box: QSpinBox | QDoubleSpinBox
            if isinstance(params.default(name), int):
                box = QSpinBox()
                box.setRange(int(spec.minimum or 0), min(int(spec.maximum or 1000), 200))
            else:
                box = QDoubleSpinBox()
                box.setDecimals(2)
                box.setSingleStep(spec.step or 0.05)
                box.setRange(spec.minimum or 0.0, spec.maximum or 2.0)
            box.setObjectName(f"play-{name}")
            box.setToolTip(spec.help)
            box.valueChanged.connect(self._redraw)
            form.addRow(spec.label + ":", box)
            self.knobs[name] = box
        self.reset_button = QPushButton("Back to the reply's settings")
        self.reset_button.clicked.connect(self._reset)
        playground = QVBoxLayout()
        playground.addWidget(
            theme.secondary(
                QLabel(
                    "Sampling playground: move a setting to see what it does here (no model call)."
                )
            )
        )
        playground.addLayout(form)
        playground.addWidget(self.reset_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.summary)
        layout.addWidget(self.legend)
        layout.addWidget(self.chart)
        layout.addWidget(self.note)
        row = QHBoxLayout()
        row.addWidget(self.continue_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addLayout(playground)
        layout.addStretch(1)

    def show_position(
        self, tokens: Sequence[TokenLogprob], index: int, settings: Mapping[str, Any] | None
    ) -> None:
        self.position = Position(tuple(tokens), index)
        known = {**params.GenerationSettings().to_dict(), **(settings or {})}
        self.settings = {name: known[name] for name in PLAYGROUND}
        self._reset()

    def _reset(self) -> None:
        for name, box in self.knobs.items():
            box.blockSignals(True)
            box.setValue(self.settings.get(name, params.default(name)))
            box.blockSignals(False)
        self._redraw()

    def values(self) -> dict[str, Any]:
        return {name: box.value() for name, box in self.knobs.items()}

    def _redraw(self) -> None:
        position = self.position
        if position is None:
            return
        t = position.token
        count = len(position.tokens)
        self.heading.setText(
            f"Token {position.index + 1} of {count}: {shown(t.text)!r} (id {t.id})"
        )
        if t.forced or not t.top:
            self.sampled = None
            self.summary.setText(
                "Written by LocalChat, not sampled: no candidates."
                if t.forced
                else "No candidates were kept for this token."
            )
            self.chart.set_rows([])
            self.note.clear()
            self.continue_button.setEnabled(False)
            return
        sampled = position.run(self.values())
        self.sampled = sampled
        stored = sum(math.exp(c[2]) for c in t.top)
        bound = "≥ " if stored < 0.999 else ""
        self.summary.setText(
            f"The model gave it {percent(math.exp(t.logprob))}. Entropy {bound}"
            f"{sampled.entropy_raw:.2f} bits under the model, "
            f"{sampled.entropy_final:.2f} bits after sampling."
        )
        finals = [float(p) for p in sampled.final]
        stages = [str(x) for x in sampled.removed_by]
        notes = []
        own = t.sampled and self._own_settings()
        if own:
            # The reply's own settings: the distribution recorded as the
            # token was drawn (the whole chain, not just these candidates).
            drawn = dict(t.sampled)
            finals = [drawn.get(c[0], 0.0) for c in t.top]
            stages = [
                "" if drawn.get(c[0], 0.0) > 0 else (stages[i] or "top_k")
                for i, c in enumerate(t.top)
            ]
            shown_ids = {c[0] for c in t.top}
            others = [p for i, p in t.sampled if i not in shown_ids]
            if others:
                notes.append(
                    f"{len(others)} more tokens could have been drawn "
                    f"({percent(sum(others))} together)."
                )
        self.chart.set_rows(
            [(c[1], float(sampled.raw[i]), finals[i], stages[i], c[0] == t.id)
             for i, c in enumerate(t.top)]
        )  # fmt: skip
        if sampled.penalty_hit.any():
            notes.append("The repeat penalty lowered the candidates used just before.")
        if not own and not sampled.complete:
            notes.append(
                f"Tokens beyond the {len(t.top)} kept ({percent(1 - stored)} together) may "
                "also be drawn with these settings."
            )
        self.note.setText(" ".join(notes))
        self.note.setVisible(bool(notes))
        self._selected(self.chart.current)

    def _own_settings(self) -> bool:
        """Whether the playground is at the reply's own settings."""
        values = self.values()
        return all(
            abs(float(values[name]) - float(self.settings.get(name, values[name]))) < 1e-6
            for name in values
        )

    def _selected(self, row: int) -> None:
        position = self.position
        ok = (
            position is not None
            and 0 <= row < len(position.token.top)
            and position.token.top[row][0] != position.token.id
        )
        self.continue_button.setEnabled(bool(ok))

    def _continue(self) -> None:
        position, row = self.position, self.chart.current
        if position is not None and 0 <= row < len(position.token.top):
            self.continue_requested.emit(position.index, position.token.top[row][0])
