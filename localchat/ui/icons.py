"""Small line icons for the message actions, drawn in code in the text colour.

The icon theme's own icon is used where the platform has one (Linux desktops);
elsewhere a glyph is drawn here at paint time, so it is sharp at any scaling
and follows the palette when the theme switches between light and dark.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import (
    QGuiApplication,
    QIcon,
    QIconEngine,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPixmap,
)

THEME_NAMES = {
    "copy": "edit-copy",
    "edit": "document-edit",
    "regenerate": "view-refresh",
    "previous": "go-previous",
    "next": "go-next",
    "check": "dialog-ok",
    "xray": "",
}
"""Each glyph's name in the freedesktop icon theme (the send button's
glyphs, drawn on the accent colour, are always ours)."""


def _path(name: str) -> QPainterPath:
    """The glyph ``name`` as a path in a 16 x 16 box."""
    p = QPainterPath()
    if name == "copy":
        p.addRoundedRect(QRectF(5.5, 5.5, 8, 8.5), 1.5, 1.5)
        p.moveTo(10.5, 3.5)
        p.lineTo(10.5, 3)
        p.arcTo(QRectF(8.5, 1.5, 2, 2), 0, 90)  # the sheet behind, its corner
        p.moveTo(9.5, 1.5)
        p.lineTo(3.5, 1.5)
        p.arcTo(QRectF(2, 1.5, 3, 3), 90, 90)
        p.lineTo(2, 10)
        p.arcTo(QRectF(2, 8.5, 3, 3), 180, 90)
        p.lineTo(3.5, 11.5)
    elif name == "edit":
        p.moveTo(10.5, 2.5)
        p.lineTo(13.5, 5.5)
        p.lineTo(5.5, 13.5)
        p.lineTo(2, 14)
        p.lineTo(2.5, 10.5)
        p.closeSubpath()
        p.moveTo(9, 4)
        p.lineTo(12, 7)
    elif name == "regenerate":
        p.arcMoveTo(QRectF(2.5, 2.5, 11, 11), 60)
        p.arcTo(QRectF(2.5, 2.5, 11, 11), 60, 290)
        p.moveTo(11.3, 1.2)
        p.lineTo(11.3, 4.2)
        p.lineTo(8.3, 4.2)
    elif name == "previous":
        p.moveTo(10, 3)
        p.lineTo(5, 8)
        p.lineTo(10, 13)
    elif name == "next":
        p.moveTo(6, 3)
        p.lineTo(11, 8)
        p.lineTo(6, 13)
    elif name == "send":  # an arrow up
        p.moveTo(8, 13.5)
        p.lineTo(8, 2.5)
        p.moveTo(3.5, 7)
        p.lineTo(8, 2.5)
        p.lineTo(12.5, 7)
    elif name == "stop":
        p.addRoundedRect(QRectF(4, 4, 8, 8), 1.5, 1.5)
    elif name == "xray":  # three bars: the candidates' probabilities
        p.moveTo(3, 13.5)
        p.lineTo(3, 9)
        p.moveTo(8, 13.5)
        p.lineTo(8, 3)
        p.moveTo(13, 13.5)
        p.lineTo(13, 6.5)
        p.moveTo(1.5, 14)
        p.lineTo(14.5, 14)
    elif name == "check":
        p.moveTo(2.5, 8.5)
        p.lineTo(6, 12)
        p.lineTo(13.5, 4)
    return p


class DrawnIcon(QIconEngine):
    """A glyph of :func:`_path`, stroked in the application's text colour
    (``on_accent``: the colour of text on the accent colour)."""

    def __init__(self, name: str, on_accent: bool = False) -> None:
        super().__init__()
        self.name = name
        self.on_accent = on_accent

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        palette = QGuiApplication.palette()
        group = (
            QPalette.ColorGroup.Disabled
            if mode == QIcon.Mode.Disabled
            else QPalette.ColorGroup.Normal
        )
        role = (
            QPalette.ColorRole.HighlightedText if self.on_accent else QPalette.ColorRole.ButtonText
        )
        colour = palette.color(group, role)
        if mode == QIcon.Mode.Disabled:
            colour.setAlphaF(0.45)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        side = min(rect.width(), rect.height())
        painter.translate(
            QPointF(rect.x() + (rect.width() - side) / 2, rect.y() + (rect.height() - side) / 2)
        )
        painter.scale(side / 16, side / 16)
        pen = QPen(colour, 1.8 if self.on_accent else 1.4)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(_path(self.name))
        painter.restore()

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        pixmap = QPixmap(size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        self.paint(painter, QRect(0, 0, size.width(), size.height()), mode, state)
        painter.end()
        return pixmap

    def clone(self) -> QIconEngine:
        return DrawnIcon(self.name, self.on_accent)


def icon(name: str, *, on_accent: bool = False) -> QIcon:
    """The icon ``name`` (a key of :data:`THEME_NAMES`): the theme's, or drawn
    (always drawn ``on_accent``, in the colour of text on the accent colour)."""
    drawn = QIcon(DrawnIcon(name, on_accent))
    theme_name = THEME_NAMES.get(name)
    if theme_name and not on_accent and QIcon.hasThemeIcon(theme_name):
        return QIcon.fromTheme(theme_name, drawn)
    return drawn
