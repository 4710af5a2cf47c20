"""The loss curves: training loss per step (a line) and held-out loss (dots
joined), drawn in the palette's colours, with the legend that names them."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QLabel, QWidget

TRAIN_COLOR = "#2a82da"
HELDOUT_COLOR = "#d4880f"


def legend() -> QLabel:
    """The line under the plot that says which curve is which."""
    return QLabel(
        f"<span style='color:{TRAIN_COLOR}'>━ training loss</span> &nbsp; "
        f"<span style='color:{HELDOUT_COLOR}'>● held-out loss</span>"
    )


class LossPlot(QWidget):
    """Training loss per step (a line) and held-out loss (dots joined, from
    step 0: the loss before any training, where a fine-tune starts)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train: list[tuple[int, float]] = []
        self.heldout: list[tuple[int, float]] = []
        self.steps = 1
        self.setMinimumHeight(200)

    def clear(self, steps: int) -> None:
        self.train, self.heldout, self.steps = [], [], max(steps, 1)
        self.update()

    def add(self, step: int, loss: float | None, heldout: float | None) -> None:
        if loss is not None and math.isfinite(loss):
            self.train.append((step, loss))
        if heldout is not None and math.isfinite(heldout):
            self.heldout.append((step, heldout))
        self.update()

    def paintEvent(self, _event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        left, top, right, bottom = 48, 10, self.width() - 12, self.height() - 24
        p.setPen(pal.color(QPalette.ColorRole.Mid))
        p.drawRect(left, top, right - left, bottom - top)
        values = [v for _, v in self.train + self.heldout]
        p.setPen(pal.color(QPalette.ColorRole.Text))
        if not values:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The loss appears here.")
            p.end()
            return
        low, high = min(values), max(values)
        if high - low < 1e-6:
            low, high = low - 0.5, high + 0.5

        def at(step: int, value: float) -> QPointF:
            x = left + (right - left) * step / self.steps
            y = bottom - (bottom - top) * (value - low) / (high - low)
            return QPointF(x, y)

        for value in (low, (low + high) / 2, high):
            p.drawText(4, int(at(0, value).y()) + 4, f"{value:.2f}")
        p.drawText(left, self.height() - 6, "step 0")
        end = f"step {self.steps:,}"
        p.drawText(right - p.fontMetrics().horizontalAdvance(end), self.height() - 6, end)
        for series, color in ((self.train, TRAIN_COLOR), (self.heldout, HELDOUT_COLOR)):
            if not series:
                continue
            path = QPainterPath(at(*series[0]))
            for point in series[1:]:
                path.lineTo(at(*point))
            p.setPen(QPen(QColor(color), 2))
            p.drawPath(path)
            if series is self.heldout:
                p.setBrush(QColor(color))
                for point in series:
                    p.drawEllipse(at(*point), 3, 3)
                p.setBrush(Qt.BrushStyle.NoBrush)
        p.end()
