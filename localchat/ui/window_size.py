"""The main window's sizes: a minimum at which nothing is cut, and the
settings dock's width (about 320 px when first shown, then as the user drags
it), so opening the settings leaves the chat its room."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter

from localchat.ui.settings_panel import WIDTH

if TYPE_CHECKING:
    from localchat.ui.main_window import MainWindow

MINIMUM = (900, 600)
"""The smallest window at which the chats, the model bar, the conversation
and the status bar all show whole."""
CHATS_MINIMUM, MIDDLE_MINIMUM, DOCK_MINIMUM = 170, 470, 240
"""The narrowest the chat list, the conversation (with the model bar) and the
settings may get: with the settings open, the chats and the settings give
way, never the conversation below this."""


def fit(window: MainWindow) -> None:
    window.setMinimumSize(*MINIMUM)
    splitter = window.centralWidget()
    assert isinstance(splitter, QSplitter)
    splitter.setChildrenCollapsible(False)
    for index, width in ((0, CHATS_MINIMUM), (1, MIDDLE_MINIMUM)):
        part = splitter.widget(index)
        if part is not None:
            part.setMinimumWidth(width)
    dock = window.settings_dock
    dock.setMinimumWidth(DOCK_MINIMUM)
    shown_once = False

    def shown(visible: bool) -> None:
        nonlocal shown_once
        if visible and not shown_once:
            shown_once = True
            window.resizeDocks([dock], [WIDTH], Qt.Orientation.Horizontal)

    dock.visibilityChanged.connect(shown)
