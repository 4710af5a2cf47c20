"""The window's API server as the window shows it: the "Local server" form
in the settings, the status bar's "API on 127.0.0.1:4891", the request log in
a pane at the bottom (made when first opened: from the status bar, or the
form's "Show requests"), and the model bar following a model the server
loads. The work is ``LocalServer``'s (``local_server.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget

from localchat.ui.server_log import ServerButton, ServerLog
from localchat.ui.server_panel import ServerPanel

if TYPE_CHECKING:
    from localchat.ui.main_window import MainWindow


class ServerView:
    """``button`` (the status bar's) and ``dock`` (the request log's). Made
    after the window's loader."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        server = self.server = window.server
        server.model_loaded.connect(window.loader.adopt)

        self.button = ServerButton(server.state)
        self.button.clicked.connect(self.open_log)
        window.statusBar().addPermanentWidget(self.button)

        self.dock = QDockWidget("API server log")
        self.dock.setObjectName("server-log-dock")
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        self.dock.visibilityChanged.connect(lambda shown: shown and self.pane())

    def pane(self) -> ServerLog:
        """The request log in its dock, made on first use."""
        pane = self.dock.widget()
        if not isinstance(pane, ServerLog):
            pane = ServerLog(self.server.state)
            self.dock.setWidget(pane)
        return pane

    def open_log(self) -> None:
        self.pane()
        self.dock.show()
        self.dock.raise_()

    def form(self) -> ServerPanel:
        """The "Local server" form, for the settings panel."""
        panel = ServerPanel(self.window.settings, self.server.state)
        panel.switched.connect(self.server.switch)
        panel.log_requested.connect(self.open_log)
        return panel
