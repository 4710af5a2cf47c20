"""Start the desktop app: the store, the engine, the window."""

from __future__ import annotations

import logging
import sys

from PySide6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from localchat.core import paths
from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.errors import LocalChatError
from localchat.core.settings import AppSettings
from localchat.ui import theme
from localchat.ui.main_window import MainWindow

ICON = paths.ASSETS / "icon.png"


_qt_log = logging.getLogger("localchat.qt")
_QT_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}


def _qt_message(kind: QtMsgType, context: QMessageLogContext, text: str) -> None:
    """Qt's own warnings ("QFont::...", "qt.qpa..."), into our log."""
    _qt_log.log(_QT_LEVELS.get(kind, logging.WARNING), "%s (%s)", text, context.category)


def run() -> int:
    qInstallMessageHandler(_qt_message)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv)
    app.setApplicationName("LocalChat")
    # Desktops match the window to the installed localchat.desktop by this
    # name (Wayland's app id); the icon is for the title bar and task switcher.
    app.setDesktopFileName("localchat")
    app.setWindowIcon(QIcon(str(ICON)))
    theme.follow_system(app)
    try:
        store = ChatStore()
    except LocalChatError as exc:
        QMessageBox.critical(None, "LocalChat", str(exc))
        return 1
    engine = Engine()
    try:
        window = MainWindow(store, engine, AppSettings())
        window.show()
        return app.exec()
    finally:
        engine.close()
        store.close()
