"""The main window's menu bar: File (New chat, Export chat…, Quit), View
(Settings, Models…, Train…, Documents…) and Help (Keyboard shortcuts, About
LocalChat). It shows the window's own actions (``window_actions.py``; and
Documents…, made here, on the toolbar too), so a shortcut works the same
from a menu, the toolbar or the keyboard."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QToolBar

if TYPE_CHECKING:
    from localchat.ui.main_window import MainWindow

EXPORT_FILTERS = "Markdown (*.md);;JSON (*.json)"


def _named(window: MainWindow, name: str) -> QAction:
    for action in window.actions():
        if action.objectName() == name:
            return action
    raise LookupError(f"the window has no action {name!r}")


def all_actions(window: MainWindow) -> list[QAction]:
    """The window's actions and those of its menus, each once."""
    found = list(window.actions())
    for menu in window.menuBar().findChildren(QMenu):
        found += [a for a in menu.actions() if a not in found and not a.isSeparator()]
    return found


def export_open_chat(window: MainWindow) -> None:
    """Ask where to write the open chat (Markdown or JSON, by the name's end)."""
    chat_id = window.chat.id
    if chat_id is None:
        return
    title = window.store.chat(chat_id).title or "chat"
    path, chosen = QFileDialog.getSaveFileName(window, "Export chat", f"{title}.md", EXPORT_FILTERS)
    if not path:
        return
    target = Path(path)
    if target.suffix not in (".md", ".json"):
        target = target.with_suffix(".json" if "JSON" in chosen else ".md")
    window.export_chat(chat_id, target)


def show_shortcuts(window: MainWindow) -> None:
    from localchat.ui.about import shortcuts_dialog  # when asked: start-up stays short

    shortcuts_dialog(window, all_actions(window)).open()


def show_about(window: MainWindow) -> None:
    loaded = window.model.loaded
    from localchat.ui.about import about_dialog

    about_dialog(window, loaded.backend if loaded is not None else None).open()


def _documents_action(window: MainWindow) -> QAction:
    """Documents… (Ctrl+Shift+D): the Documents window, from the View menu, the
    toolbar (before Settings) and the keyboard."""
    documents = QAction("Documents…", window)
    documents.setObjectName("documents")
    documents.setShortcut(QKeySequence("Ctrl+Shift+D"))
    documents.setToolTip(
        "Collections of your folders and files for chats to draw on (Ctrl+Shift+D)"
    )
    documents.triggered.connect(lambda _checked=False: window.open_documents())
    window.addAction(documents)
    toolbar = window.findChild(QToolBar, "main-toolbar")
    if toolbar is not None:
        toolbar.insertAction(_named(window, "settings"), documents)
    return documents


def install(window: MainWindow) -> dict[str, QMenu]:
    """Build the menu bar from the window's actions (after ``add_actions``);
    returns the menus by name ("file", "view", "help")."""
    bar = window.menuBar()
    file = bar.addMenu("&File")
    file.setObjectName("file-menu")
    file.addAction(_named(window, "new-chat"))
    export = file.addAction("Export chat…")
    export.setObjectName("export-chat")
    export.setToolTip("Save the open chat as Markdown or JSON")
    export.triggered.connect(lambda _checked=False: export_open_chat(window))
    file.aboutToShow.connect(
        lambda: export.setEnabled(window.chat.id is not None and not window.busy())
    )
    file.addSeparator()
    # In the menu only (not the window's actions): the same path as closing the window.
    quit_action = file.addAction("Quit")
    quit_action.setObjectName("quit")
    quit_action.setShortcut(QKeySequence("Ctrl+Q"))
    quit_action.setMenuRole(QAction.MenuRole.QuitRole)
    quit_action.triggered.connect(lambda _checked=False: window.close())

    view = bar.addMenu("&View")
    view.setObjectName("view-menu")
    for name in ("settings", "models", "train"):
        view.addAction(_named(window, name))
    view.addAction(_documents_action(window))

    help_menu = bar.addMenu("&Help")
    help_menu.setObjectName("help-menu")
    keys = help_menu.addAction("Keyboard shortcuts")
    keys.setObjectName("keyboard-shortcuts")
    keys.triggered.connect(lambda _checked=False: show_shortcuts(window))
    about = help_menu.addAction("About LocalChat")
    about.setObjectName("about")
    about.setMenuRole(QAction.MenuRole.AboutRole)
    about.triggered.connect(lambda _checked=False: show_about(window))
    return {"file": file, "view": view, "help": help_menu}
