"""The "Local server" form at the foot of the settings: the switch, the
address and port, the optional API key, and a line saying what the server is
doing (or why it could not start). It draws ``ServerState`` and saves its
fields with ``AppSettings.set_server``; turning the switch reaches the
window's ``LocalServer`` through :attr:`ServerPanel.switched`. The address
and key are fixed while the server runs: turn it off to change them."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from localchat.core.errors import SettingError
from localchat.core.settings import AppSettings
from localchat.ui import theme
from localchat.ui.state import ServerState

SWITCH_TIP = (
    "Serve your installed models to other programs on this computer: OpenAI's API under /v1, "
    "Ollama's under /api (as 'localchat serve' does). It uses the model loaded here; a request "
    "for another installed model loads that one."
)


class ServerPanel(QGroupBox):
    """``switch`` (on/off), ``host``, ``port``, ``key`` and ``note``."""

    switched = Signal(bool)
    log_requested = Signal()

    def __init__(
        self, settings: AppSettings, state: ServerState, parent: QWidget | None = None
    ) -> None:
        super().__init__("Local server", parent)
        self.setObjectName("local-server")
        self.settings, self.state = settings, state
        choice = settings.server()
        self.switch = QCheckBox("Serve an OpenAI/Ollama API")
        self.switch.setObjectName("server-switch")
        self.switch.setToolTip(SWITCH_TIP)
        self.switch.setChecked(choice.on)
        self.host = QLineEdit(choice.host)
        self.host.setObjectName("server-host")
        self.host.setToolTip(
            "127.0.0.1: this computer only. Another address (0.0.0.0: every network) lets other "
            "computers reach the server, and needs an API key."
        )
        self.port = QSpinBox()
        self.port.setObjectName("server-port")
        self.port.setRange(1, 65535)
        self.port.setValue(choice.port or 1)
        self.port.setToolTip("4891 is GPT4All's: scripts written for it work unchanged")
        self.key = QLineEdit(choice.api_key)
        self.key.setObjectName("server-key")
        self.key.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.key.setPlaceholderText("none")
        self.key.setToolTip("If set, every request needs 'Authorization: Bearer KEY'")
        self.note = QLabel()
        self.note.setObjectName("server-note")
        self.note.setWordWrap(True)
        self.log_button = QPushButton("Show requests")
        self.log_button.setObjectName("server-log-button")
        self.log_button.setToolTip("The requests the server answered: time, client, model, speed")
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow(self.switch)
        form.addRow("Address", self.host)
        form.addRow("Port", self.port)
        form.addRow("API key", self.key)
        form.addRow(self.note)
        form.addRow(self.log_button)
        self.switch.toggled.connect(self.switched)
        self.host.editingFinished.connect(self._save)
        self.port.editingFinished.connect(self._save)
        self.key.editingFinished.connect(self._save)
        self.log_button.clicked.connect(self.log_requested)
        state.changed.connect(lambda _: self.draw())
        self.draw()

    def _save(self) -> None:
        try:
            self.settings.set_server(
                host=self.host.text().strip(), port=self.port.value(), api_key=self.key.text()
            )
        except SettingError as exc:
            self._say(str(exc), error=True)
            return
        self.draw()

    def draw(self) -> None:
        """The switch, the fields and the note as the server is now."""
        state = self.state
        idle = state.phase in ("off", "failed")
        for field in (self.host, self.port, self.key):
            field.setEnabled(idle)
        self.switch.blockSignals(True)
        self.switch.setChecked(self.settings.server().on)
        self.switch.blockSignals(False)
        if state.phase == "on":
            url = f"http://{state.address}"
            self._say(
                f"Serving {url}/v1 (OpenAI) and {url}/api (Ollama). Turn it off to change "
                "the address, port or key."
            )
        elif state.phase == "failed":
            self._say(state.error, error=True)
        elif state.phase == "off":
            self._say("Off: no other program can use your models.")
        else:
            self._say(state.summary())

    def _say(self, text: str, *, error: bool = False) -> None:
        self.note.setText(text)
        if error:  # the theme's error tone, full strength
            self.note.setStyleSheet(f"color: {theme.error_colour(self.palette()).name()}")
            self.note.setForegroundRole(QPalette.ColorRole.WindowText)
        else:
            self.note.setStyleSheet("")
            theme.secondary(self.note)
