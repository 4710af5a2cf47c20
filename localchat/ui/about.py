"""The Help menu's two windows: the keyboard shortcuts (listed from the
window's actions, so a new action's shortcut shows by itself) and About
LocalChat (version, licence, llama.cpp backend, data folder and log file)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from importlib import metadata

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

import localchat
from localchat.core import logs, paths

KEYS_IN_THE_MESSAGE_BOX = (
    ("Send the message", "Enter"),
    ("A new line in the message", "Shift+Enter"),
)


def shortcut_rows(actions: Iterable[QAction]) -> list[tuple[str, str]]:
    """Each action with a shortcut, once, in the order given: (what it does,
    its keys as this platform writes them)."""
    rows: list[tuple[str, str]] = []
    seen: set[int] = set()
    for action in actions:
        keys = action.shortcut()
        if keys.isEmpty() or id(action) in seen:
            continue
        seen.add(id(action))
        text = action.text().replace("&", "").rstrip("…").strip()
        rows.append((text, keys.toString(QKeySequence.SequenceFormat.NativeText)))
    return rows


def _dialog(parent: QWidget, title: str, body: str) -> QDialog:
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    layout = QVBoxLayout(dialog)
    label = QLabel(body)
    label.setObjectName("body")
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
    label.setOpenExternalLinks(True)
    label.setWordWrap(True)
    layout.addWidget(label)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout.addWidget(buttons)
    return dialog


def shortcuts_dialog(parent: QWidget, actions: Iterable[QAction]) -> QDialog:
    rows = shortcut_rows(actions) + list(KEYS_IN_THE_MESSAGE_BOX)
    table = "".join(
        f"<tr><td>{html.escape(text)}</td><td>&nbsp;&nbsp;<b>{html.escape(keys)}</b></td></tr>"
        for text, keys in rows
    )
    return _dialog(parent, "Keyboard shortcuts", f"<table>{table}</table>")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def licence() -> str:
    try:
        data = metadata.metadata("localchat")
    except metadata.PackageNotFoundError:
        return "MIT"
    return data["License-Expression"] or data["License"] or "MIT"


def about_lines(backend: str | None) -> list[tuple[str, str]]:
    """What About says: (what, value) pairs. ``backend``: what the loaded
    model runs on (None: no model is loaded)."""
    binding = _version("llama_cpp_python")
    engine = f"llama.cpp (llama-cpp-python {binding})" if binding else "llama.cpp"
    return [
        ("Version", localchat.__version__),
        ("Licence", licence()),
        ("Engine", engine),
        ("Running on", backend or "no model loaded yet"),
        ("Data folder", str(paths.home())),
        ("Log file", str(logs.log_file())),
    ]


def about_dialog(parent: QWidget, backend: str | None) -> QDialog:
    rows = "".join(
        f"<tr><td>{html.escape(what)}</td><td>&nbsp;&nbsp;{html.escape(value)}</td></tr>"
        for what, value in about_lines(backend)
    )
    body = (
        "<h3>LocalChat</h3><p>Chat with language models on this computer: nothing you "
        f"write leaves it.</p><table>{rows}</table>"
    )
    return _dialog(parent, "About LocalChat", body)
