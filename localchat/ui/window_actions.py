"""The main window's actions: each with its shortcut (they work anywhere in
the window) and a name the menus find it by (``ACTION_NAMES``), and the
toolbar that shows Models, Train and Settings."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QPushButton

ACTION_NAMES = ("new-chat", "search", "stop", "models", "settings", "train")
"""The object names of the actions made here, for the menu bar (``menus.py``)."""


def add_actions(
    window: QMainWindow,
    *,
    new_chat: Callable[[], object],
    search: Callable[[], object],
    stop: Callable[[], object],
    open_models: Callable[[], object],
    open_trainer: Callable[[], object],
    settings_dock: QDockWidget,
    new_button: QPushButton,
) -> None:
    def action(
        name: str,
        text: str,
        keys: QKeySequence | QKeySequence.StandardKey | str,
        slot: Callable[[], object],
    ) -> QAction:
        a = QAction(text, window)
        a.setObjectName(name)
        a.setShortcut(QKeySequence(keys))

        # ``triggered`` carries ``checked``, and PySide passes it to a slot
        # that takes an optional argument: open_trainer(chats=False) then
        # failed. The slot is called with no arguments at all.
        def fire(_checked: bool = False) -> None:
            slot()

        a.triggered.connect(fire)
        window.addAction(a)
        return a

    action("new-chat", "New chat", QKeySequence.StandardKey.New, new_chat)
    action("search", "Search", QKeySequence.StandardKey.Find, search)
    action("stop", "Stop", "Esc", stop)
    models = action("models", "Models…", "Ctrl+Shift+M", open_models)
    models.setToolTip("Installed models, the catalog, Hub search and downloads (Ctrl+Shift+M)")
    settings = settings_dock.toggleViewAction()
    settings.setObjectName("settings")
    settings.setShortcut(QKeySequence("Ctrl+,"))
    window.addAction(settings)
    toolbar = window.addToolBar("Main")
    toolbar.setObjectName("main-toolbar")
    train = action("train", "Train…", "Ctrl+Shift+T", open_trainer)
    train.setToolTip(
        "Fine-tune a model on your text or your chats, or train a small GPT from scratch "
        "(Ctrl+Shift+T)"
    )
    toolbar.addAction(models)
    toolbar.addAction(train)
    toolbar.addAction(settings)
    new_button.setToolTip("New chat (Ctrl+N)")
