"""The desktop window.

A placeholder until the chat window lands (issue 3): it opens, says what the
app can do today, and lists the installed models.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QVBoxLayout, QWidget

from localchat import __version__
from localchat.core import paths
from localchat.core.models import library


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("LocalChat")
        self.resize(720, 480)
        models = library.installed()
        listing = (
            "<br>".join(f"• {p.stem}" for p in models)
            if models
            else f"No models yet. Copy a .gguf file into<br><code>{paths.models_dir()}</code>"
        )
        text = (
            f"<h2>LocalChat {__version__}</h2>"
            "<p>The chat window is on its way. Meanwhile, chat in a terminal:</p>"
            "<p><code>localchat chat -m MODEL</code></p>"
            f"<h3>Installed models</h3><p>{listing}</p>"
        )
        label = QLabel(text)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(label)
        self.setCentralWidget(body)


def run() -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("LocalChat")
    window = MainWindow()
    window.show()
    return app.exec()
