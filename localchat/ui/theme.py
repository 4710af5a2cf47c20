"""Light or dark, as the system says, and following it when it changes.

Qt reports the system's colour scheme (Windows, macOS, GNOME and KDE). For a
dark scheme the app uses the Fusion style with a dark palette, which every
widget and the code highlighter (which reads the palette) follow; for a light
one, the platform's own style and palette.
"""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory, QWidget

_LIGHT_STYLE: dict[int, str] = {}


# Secondary text (notes, statistics, placeholders) readable on the theme's
# background: at least 4.5:1, the usual minimum for text (Qt's own mid tones
# measure about 2:1 on white).
SECONDARY_LIGHT = QColor(96, 96, 96)
SECONDARY_DARK = QColor(170, 170, 170)
# An error (a failed reply's note): red, as readable as the secondary tone.
ERROR_LIGHT = QColor(179, 38, 30)
ERROR_DARK = QColor(242, 184, 181)


def error_colour(palette: QPalette) -> QColor:
    """The error tone for the theme ``palette`` belongs to."""
    dark = palette.color(QPalette.ColorRole.Base).lightness() < 128
    return ERROR_DARK if dark else ERROR_LIGHT


def contrast(a: QColor, b: QColor) -> float:
    """WCAG's contrast ratio of two colours (1 to 21)."""

    def luminance(c: QColor) -> float:
        def channel(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return (
            0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())
        )

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def mix(a: QColor, b: QColor, amount: float) -> QColor:
    """``a`` with ``amount`` (0..1) of ``b`` blended in."""
    return QColor(
        round(a.red() + (b.red() - a.red()) * amount),
        round(a.green() + (b.green() - a.green()) * amount),
        round(a.blue() + (b.blue() - a.blue()) * amount),
    )


def dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 45), QColor(230, 230, 230)
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, window)
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, window)
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.ToolTipBase, base)
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, SECONDARY_DARK)
    p.setColor(QPalette.ColorRole.Mid, QColor(120, 120, 120))
    p.setColor(QPalette.ColorRole.Highlight, QColor(42, 130, 218))
    p.setColor(QPalette.ColorRole.HighlightedText, Qt.GlobalColor.white)
    p.setColor(QPalette.ColorRole.Link, QColor(90, 170, 255))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    return p


def apply(app: QApplication, scheme: Qt.ColorScheme | None = None) -> bool:
    """Apply the system's scheme (or ``scheme``); returns whether it is dark."""
    if id(app) not in _LIGHT_STYLE:
        _LIGHT_STYLE[id(app)] = app.style().name()
    scheme = scheme if scheme is not None else QGuiApplication.styleHints().colorScheme()
    dark = scheme == Qt.ColorScheme.Dark
    if dark:
        app.setStyle(QStyleFactory.create("Fusion"))
        app.setPalette(dark_palette())
    else:
        app.setStyle(QStyleFactory.create(_LIGHT_STYLE[id(app)]))
        palette = app.style().standardPalette()
        palette.setColor(QPalette.ColorRole.PlaceholderText, SECONDARY_LIGHT)
        app.setPalette(palette)
    return dark


def follow_system(app: QApplication) -> None:
    apply(app)
    QGuiApplication.styleHints().colorSchemeChanged.connect(lambda s: apply(app, s))


W = TypeVar("W", bound=QWidget)


def secondary(widget: W, *, italic: bool = False) -> W:
    """Secondary text (a note, a code block's language): drawn in the palette's
    placeholder tone (readable on either theme, see ``SECONDARY_*``), which
    follows the theme. Set in code rather than with a style
    sheet: a chat shows hundreds of these, and each style sheet is parsed and
    polished on its own."""
    widget.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    if italic:
        font = widget.font()
        font.setItalic(True)
        widget.setFont(font)
    return widget
