"""The main window: chats on the left, the conversation in the middle, the
generation settings on the right.

The window holds no state of its own that matters: chats are in the store,
settings in ``AppSettings``, and every engine or database write runs on a
``JobThread``. What the window remembers between runs (geometry, last chat,
last model) goes through ``AppSettings`` too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QEvent, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QVBoxLayout,
    QWidget,
)

from localchat.core import hardware, params, paths
from localchat.core.chat.session import ChatSession, as_messages, sent_to_model
from localchat.core.chat.store import ChatStore, StoredMessage
from localchat.core.engine.client import Engine
from localchat.core.engine.gguf_info import ModelInfo, read_model_info
from localchat.core.engine.protocol import ContextReport, LoadedModel, Message
from localchat.core.errors import LocalChatError, ModelFileError
from localchat.core.models import adapters, library
from localchat.core.models.adapters import AdapterInfo
from localchat.core.params import GenerationSettings, effective_ctx
from localchat.core.settings import AppSettings
from localchat.core.units import human_count, human_size
from localchat.ui.bridge import Emit, JobThread
from localchat.ui.chat_view import ChatView
from localchat.ui.settings_panel import SettingsPanel

if TYPE_CHECKING:  # imported when first opened: start-up stays quick
    from localchat.core.models.downloads import Download, Downloads
    from localchat.ui.model_manager import ModelManager
    from localchat.ui.train_page import TrainWindow


def _label(path: Path, info: ModelInfo | str) -> str:
    if isinstance(info, str):
        return f"{path.stem}  ·  unusable: {info}"
    return (
        f"{path.stem}  ·  {human_count(info.parameter_count)}  ·  "
        f"{info.quantization}  ·  {human_size(info.file_size)}"
    )


Survey = tuple[list[tuple[str, str]], dict[str, list[AdapterInfo]], list[AdapterInfo]]


def _survey(models: list[Path]) -> Survey:
    """Off the GUI thread: each model's label, the installed adapters that fit
    it (an adapter made here fits only the file it was trained on, by sha256,
    hashed once and remembered), and the adapters no listed model fits."""
    labels: list[tuple[str, str]] = []
    infos: dict[str, ModelInfo] = {}
    for path in models:
        info = library.describe(path)
        labels.append((str(path), _label(path, info)))
        if not isinstance(info, str):
            infos[str(path)] = info
    found = adapters.installed()
    fits: dict[str, list[AdapterInfo]] = {}
    for key, info in infos.items():
        mine: list[AdapterInfo] = []
        for adapter in found:
            try:
                if adapter.fits(info):
                    mine.append(adapter)
            except OSError:  # the model went away meanwhile
                break
        if mine:
            fits[key] = mine
    placed = {a.path for mine in fits.values() for a in mine}
    return labels, fits, [a for a in found if a.path not in placed]


def _adapter_tip(adapter: AdapterInfo) -> str:
    made = f"trained on {adapter.base_file}" if adapter.base_file else "made elsewhere"
    lines = [f"LoRA adapter {adapter.name}: rank {adapter.rank}, {made}"]
    if adapter.data:
        lines.append(f"Data: {adapter.data}")
    if adapter.loss_before is not None and adapter.loss_after is not None:
        lines.append(
            f"Held-out loss {adapter.loss_before:.3f} → {adapter.loss_after:.3f} "
            f"({adapter.steps:,} steps)"
        )
    lines.append("Its strength is in the settings (Adapter strength) and beside the picker.")
    lines.append(str(adapter.path))
    return "\n".join(lines)


ADAPTER_ROLE = Qt.ItemDataRole.UserRole + 1
"""On an adapter's row of the model picker: the adapter's path (its base's is the data)."""
CLOSED_ROLE = Qt.ItemDataRole.UserRole + 2
"""What the closed picker shows for that row: the model and the adapter."""


class ModelPicker(QComboBox):
    """The model combo: each model, with the adapters trained on it listed
    under it (indented, "↳ name"); with an adapter chosen, the closed combo
    reads "model + adapter"."""

    def paintEvent(self, _event: Any) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        closed = self.currentData(CLOSED_ROLE)
        if closed:
            option.currentText = closed
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


DEMO_LABEL = "Tiny demo model (trained on Python's docs) — get a real one in Models"
DEMO_TIP = (
    "A 1.8M-parameter GPT that LocalChat trained from scratch on Python's documentation, so "
    "that a fresh install chats offline. Open Models (Ctrl+Shift+M) for real models."
)


def _model_part(settings: GenerationSettings) -> dict[str, Any]:
    """The settings that take effect only when a model is loaded."""
    return {k: v for k, v in settings.to_dict().items() if params.spec(k).group == "model"}


class Composer(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line, Esc stops the reply."""

    submitted = Signal(str)
    stop_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            text = self.toPlainText().strip()
            if text:
                self.submitted.emit(text)
            return
        if key == Qt.Key.Key_Escape:
            self.stop_requested.emit()
            return
        super().keyPressEvent(event)


class MainWindow(QMainWindow):
    def __init__(
        self,
        store: ChatStore,
        engine: Engine,
        settings: AppSettings,
        downloads: Downloads | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.engine = engine
        self.settings = settings
        self._downloads = downloads  # the download queue, made when first needed
        self.manager: ModelManager | None = None
        self.trainer: TrainWindow | None = None
        self.model_path: Path | None = None
        self.adapter: Path | None = None
        """The LoRA adapter chosen for the current chat (None when it is off)."""
        self.loaded: LoadedModel | None = None
        self._load_again: tuple[Path, Path | None, GenerationSettings] | None = None
        self._adapter_bases: dict[str, str] = {}  # adapter -> the listed model it fits
        self.chat_id: int | None = None
        self._reply_chat: list[int] = []  # the chat a running reply writes to
        self._ops: set[JobThread] = set()  # store writes in flight
        self.job: JobThread | None = None
        # A reply runs from _run until its done/failed signal reaches the GUI
        # thread; its thread may still be returning then (isRunning), and a
        # click on Regenerate at that moment must not be ignored.
        self._replying = False
        self.loader: JobThread | None = None
        self.describer: JobThread | None = None
        self._loaded_with: dict[str, Any] = {}
        self._shown_scale = 1.0  # the Adapter strength the settings show
        self.model_info: ModelInfo | None = None
        self.planner: JobThread | None = None
        self._plan_again = False
        self.context: ContextReport | None = None
        self._closing = False
        self._painted = False
        self.setWindowTitle("LocalChat")
        self.resize(1100, 720)

        # Left: the chats.
        self.search = QLineEdit(placeholderText="Search chats")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.refresh_chats)
        new_chat = QPushButton("New chat")
        new_chat.clicked.connect(self.new_chat)
        self.chat_list = QListWidget()
        self.chat_list.currentItemChanged.connect(self._chat_selected)
        self.chat_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.chat_list.customContextMenuRequested.connect(self._chat_menu)
        left = QWidget()
        left.setMinimumWidth(200)
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.search)
        left_layout.addWidget(new_chat)
        left_layout.addWidget(self.chat_list)

        # Middle: model, conversation, composer.
        self.model_box = ModelPicker()
        self.model_box.setMinimumWidth(180)
        self.model_box.activated.connect(self._model_chosen)
        # The adapter's strength, beside the picker while an adapter is on (the
        # same setting as "Adapter strength" in the settings; per chat).
        self.adapter_scale = QDoubleSpinBox()
        self.adapter_scale.setPrefix("strength ")
        scale_spec = params.spec("lora_scale")
        self.adapter_scale.setRange(scale_spec.minimum or 0.0, scale_spec.maximum or 4.0)
        self.adapter_scale.setSingleStep(scale_spec.step or 0.05)
        self.adapter_scale.setDecimals(2)
        self.adapter_scale.setKeyboardTracking(False)
        self.adapter_scale.setToolTip(scale_spec.help + " Applies when the model is reloaded.")
        self.adapter_scale.valueChanged.connect(self._scale_edited)
        self.adapter_scale.hide()
        self.model_state = QLabel()
        # May shrink (full text in its tooltip), so the chats keep their room.
        self.model_state.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.reload_button = QPushButton("Reload model to apply")
        self.reload_button.setToolTip("Context size, GPU layers and threads apply on loading")
        self.reload_button.clicked.connect(self._reload)
        self.reload_button.hide()
        top = QHBoxLayout()
        top.addWidget(QLabel("Model:"))
        top.addWidget(self.model_box, 3)
        top.addWidget(self.adapter_scale)
        top.addWidget(self.model_state, 2)
        top.addWidget(self.reload_button)
        self.view = ChatView()
        self.view.empty_action.clicked.connect(self.open_models)
        self.view.edit_requested.connect(self.edit_message)
        self.view.regenerate_requested.connect(self.regenerate)
        self.view.show_sibling.connect(self.show_sibling)
        self.composer = Composer()
        self.composer.setPlaceholderText("Message (Enter to send, Shift+Enter for a new line)")
        self.composer.setFixedHeight(90)
        self.composer.submitted.connect(self.send)
        self.composer.stop_requested.connect(self.stop)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self._send_or_stop)
        bottom = QHBoxLayout()
        bottom.addWidget(self.composer, 1)
        bottom.addWidget(self.send_button)
        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.addLayout(top)
        middle_layout.addWidget(self.view, 1)
        middle_layout.addLayout(bottom)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(middle)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        self.setCentralWidget(splitter)

        # Right: the settings, generated from their declaration. The dock starts
        # hidden; its form is built just after the first paint (see ``panel``).
        self._panel: SettingsPanel | None = None
        self.settings_dock = QDockWidget("Settings")
        self.settings_dock.setObjectName("settings")
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.settings_dock)
        self.settings_dock.hide()
        self.settings_dock.visibilityChanged.connect(lambda shown: shown and self.panel)

        self._actions(new_chat)
        # Downloads in progress, while the model manager is closed; a click opens it.
        self.download_state = QPushButton()
        self.download_state.setFlat(True)
        self.download_state.clicked.connect(self.open_models)
        self.download_state.hide()
        self.statusBar().addPermanentWidget(self.download_state)
        self.speed = QLabel()
        self.statusBar().addPermanentWidget(self.speed)
        # What the next prompt costs, from the engine (exact tokens, the chat's
        # overflow policy applied); recounted as the chat or the draft changes.
        self.meter = QProgressBar()
        self.meter.setObjectName("context-meter")
        self.meter.setMaximumWidth(300)
        self.meter.setTextVisible(True)
        self.meter.hide()
        self.statusBar().addPermanentWidget(self.meter)
        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(400)
        self._draft_timer.timeout.connect(self.update_context)
        self.composer.textChanged.connect(self._draft_timer.start)
        if settings.problem:
            self.statusBar().showMessage(settings.problem)

        self.refresh_models()
        self.refresh_chats()
        self._restore()

    # -- setup ------------------------------------------------------------------------

    def _actions(self, new_chat: QPushButton) -> None:
        def action(
            text: str,
            keys: QKeySequence | QKeySequence.StandardKey | str,
            slot: Callable[[], object],
        ) -> QAction:
            a = QAction(text, self)
            a.setShortcut(QKeySequence(keys))

            # ``triggered`` carries ``checked``, and PySide passes it to a slot
            # that takes an optional argument: open_trainer(chats=False) then
            # failed. The slot is called with no arguments at all.
            def fire(_checked: bool = False) -> None:
                slot()

            a.triggered.connect(fire)
            self.addAction(a)
            return a

        action("New chat", QKeySequence.StandardKey.New, self.new_chat)
        action("Search", QKeySequence.StandardKey.Find, self.search.setFocus)
        action("Stop", "Esc", self.stop)
        models = action("Models…", "Ctrl+Shift+M", self.open_models)
        models.setToolTip("Installed models, the catalog, Hub search and downloads (Ctrl+Shift+M)")
        settings = self.settings_dock.toggleViewAction()
        settings.setShortcut(QKeySequence("Ctrl+,"))
        self.addAction(settings)
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        train = action("Train…", "Ctrl+Shift+T", self.open_trainer)
        train.setToolTip(
            "Fine-tune a model on your text or your chats, or train a small GPT from scratch "
            "(Ctrl+Shift+T)"
        )
        toolbar.addAction(models)
        toolbar.addAction(train)
        toolbar.addAction(settings)
        new_chat.setToolTip("New chat (Ctrl+N)")

    def _restore(self) -> None:
        geometry = self.settings.ui("geometry")
        if geometry:
            self.restoreGeometry(QByteArray.fromBase64(geometry.encode()))
        last_model = self.settings.ui("last_model")
        for i in range(self.model_box.count()):
            if self.model_box.itemData(i) == last_model:
                self.model_box.setCurrentIndex(i)
                break

    def event(self, event: QEvent) -> bool:
        # The last chat's messages, the model headers and the engine wait for
        # the first paint: the window shows at once, its content a moment later.
        if event.type() == QEvent.Type.Paint and not self._painted:
            self._painted = True
            QTimer.singleShot(0, self, self._after_first_paint)
        return super().event(event)

    @property
    def panel(self) -> SettingsPanel:
        """The settings form: it holds the settings the next reply and load
        use. Made on first use, which is at the latest just after the first
        paint, so the window shows without waiting for its thirty widgets."""
        if self._panel is None:
            self._panel = SettingsPanel(self.settings.generation())
            self._panel.changed.connect(self._settings_changed)
            self.settings_dock.setWidget(self._panel)
        return self._panel

    def _after_first_paint(self) -> None:
        self.panel  # noqa: B018 (built now: everything below reads it)
        last_chat = self.settings.ui("last_chat")
        if last_chat is not None and self.chat_id is None:
            self.select_chat(int(last_chat))
        self._describe_models()
        current = self.model_box.currentData()
        if current:  # the model used last time, else the first one (or the chat's adapter's)
            self._load_for_chat(Path(current))

    def closeEvent(self, event: QCloseEvent) -> None:
        self._closing = True  # no more counting: the store and engine go next
        self._draft_timer.stop()
        self.settings.set_ui("geometry", bytes(self.saveGeometry().toBase64().data()).decode())
        if self.busy():
            self.engine.cancel()
        for job in (self.job, self.loader, self.describer, self.planner, *self._ops):
            if job is not None:
                job.wait(5000)
        # Running downloads pause: their bytes stay, and the next start lists them.
        if self._downloads is not None:
            self._downloads.close()
        if self.manager is not None:
            self.manager.wait()
            self.manager.close()
        if self.trainer is not None:
            self.trainer.close()  # a training run stops, its checkpoint kept
        super().closeEvent(event)

    # -- models -------------------------------------------------------------------------

    def refresh_models(self) -> None:
        current = self.model_box.currentData()
        self.model_box.clear()
        models = library.installed()
        used = self.model_path
        if used is not None and used not in models and used.exists() and not library.is_demo(used):
            models.append(used)  # one used from elsewhere (the Hugging Face cache)
        bundled = library.demo()
        for path in models:
            self.model_box.addItem(path.stem, str(path))
        if bundled is not None:  # last: any real model comes first
            self.model_box.addItem(DEMO_LABEL, str(bundled))
            self.model_box.setItemData(
                self.model_box.count() - 1, DEMO_TIP, Qt.ItemDataRole.ToolTipRole
            )
        self.model_box.setEnabled(self.model_box.count() > 0)
        if self._painted:
            self._describe_models()
        if not models and bundled is not None and self.chat_id is None:
            self.view.show_empty(
                "<h3>Chatting with the tiny demo model</h3>"
                "<p>LocalChat comes with a tiny model it trained itself on Python's "
                "documentation, so it works offline from the start. It knows a little Python "
                "and not much else. For real conversations, download a model from the catalog "
                "(a 7B model at Q4 needs about 5 GB of disk and 6 GB of memory).</p>",
                action="Browse models…",
            )
        elif not models and bundled is None:
            self.model_state.setText("")
            self.view.show_empty(
                "<h3>No model yet</h3>"
                "<p>Download one from the catalog in the model manager (a 7B model at Q4 "
                "needs about 5 GB of disk and 6 GB of memory), or copy a .gguf file into "
                f"<b>{paths.models_dir()}</b> "
                f"(<a href='{QUrl.fromLocalFile(str(paths.models_dir())).toString()}'>"
                "open the folder</a>).</p>",
                action="Browse models…",
            )
            return
        elif self.chat_id is None:
            self.view.hide_empty()
        if current is not None and self.model_box.findData(current) >= 0:
            self.model_box.setCurrentIndex(self.model_box.findData(current))
        elif self.model_box.currentIndex() < 0:
            self.model_box.setCurrentIndex(0)

    @property
    def downloads(self) -> Downloads:
        """The download queue; made on first use, listing (paused) what an
        earlier run left unfinished."""
        if self._downloads is None:
            from localchat.core.models.downloads import Downloads

            self._downloads = Downloads()
        return self._downloads

    def open_models(self) -> None:
        """The model manager (a window of its own, kept while the app runs)."""
        if self.manager is None:
            from localchat.ui.model_manager import ModelManager

            self.manager = ModelManager(self.settings, self.downloads, release=self._release)
            self.manager.use_requested.connect(self.use_model)
            self.manager.installed_changed.connect(self._installed_changed)
            self.manager._relay.changed.connect(self._download_changed)
        self.manager.show()
        self.manager.raise_()
        self.manager.activateWindow()

    def open_trainer(self, chats: list[int] | None = None) -> None:
        """The Train window (training runs in a process of its own); ``chats``:
        open its Fine-tune page with those chats ticked as the data."""
        if self.trainer is None:
            from localchat.ui.train_page import TrainWindow

            self.trainer = TrainWindow(self.store)
            self.trainer.trained.connect(self._trained)
            self.trainer.adapter_trained.connect(self._adapter_trained)
            self.trainer.chat_requested.connect(self.chat_with_adapter)
        page = self.trainer.finetune
        if not page.running():
            page.refresh(prefer=str(self.model_path) if self.model_path else None)
        if chats is not None:
            self.trainer.show_page("finetune")
            page.tick_chats(chats)
        self.trainer.show()
        self.trainer.raise_()
        self.trainer.activateWindow()

    def _trained(self, path: str) -> None:
        self.refresh_models()
        if self.manager is not None:
            self.manager.refresh_installed()
        if self.model_path is None or library.is_demo(self.model_path):
            self.use_model(path)  # nothing real to chat with yet: this one
        self.statusBar().showMessage(f"{Path(path).stem} is trained and in the model picker", 10000)

    def _adapter_trained(self, path: str) -> None:
        self.refresh_models()  # lists it under its model
        self.statusBar().showMessage(
            f"The adapter {Path(path).stem} is ready: it is listed under its model in the picker",
            10000,
        )

    def use_model(self, path: str) -> None:
        """Switch the current chat to ``path`` (the conversation stays)."""
        self._list_model(path)
        self.load_model(Path(path))
        self._remember_adapter()
        self.raise_()
        self.activateWindow()

    def _list_model(self, path: str) -> None:
        if self.model_box.findData(path) < 0:
            self.model_box.addItem(Path(path).stem, path)
            self.model_box.setEnabled(True)
            self._describe_models()

    def chat_with_adapter(self, base: str, adapter: str) -> None:
        """ "Chat with it": the base model with this adapter, in a new chat (the
        open one when nothing is in it yet)."""
        if self.busy():
            self.statusBar().showMessage(
                "A reply is being written: stop it or wait for it, then Chat with it again", 10000
            )
            return
        self._list_model(base)
        self._describe_models()  # the new adapter under its model
        if self.chat_id is not None and self.store.thread(self.chat_id):
            self.chat_id = None  # the first message makes the new chat
            self.view.clear()
            self._show_stats([])
            self.refresh_chats()
        self.load_model(Path(base), Path(adapter))
        self._remember_adapter()
        self.raise_()
        self.activateWindow()
        self.composer.setFocus()

    def _release(self, path: Path) -> None:
        """Before a model is deleted (off the GUI thread): let the engine go of it."""
        if self.model_path is not None and self.model_path == path:
            if self.busy() or (self.loader is not None and self.loader.isRunning()):
                raise ModelFileError(
                    f"{path.stem} is in use: wait for the reply (or stop it), then delete it"
                )
            self.engine.unload()

    def _installed_changed(self) -> None:
        gone = self.model_path is not None and not self.model_path.exists()
        if gone:
            self.loaded, self.model_path, self.adapter = None, None, None
            self.meter.hide()
            self.adapter_scale.hide()
        self.refresh_models()
        if gone and self.model_box.count():
            self._state("The model was deleted: choose another")
            self.model_box.setCurrentIndex(-1)
        elif self.model_path is None and self.model_box.count():
            self._model_chosen(self.model_box.currentIndex())  # the first model: load it
        elif self.chat_id is not None and self.model_box.count():
            self.show_chat()

    def _download_changed(self, item: Download) -> None:
        active = [d for d in self.downloads.items() if d.state in ("queued", "downloading")]
        if active:
            total = sum(d.total for d in active)
            share = sum(d.done for d in active) / total if total else 0.0
            self.download_state.setText(f"Downloading {len(active)} · {share:.0%}")
            self.download_state.setToolTip("\n".join(d.name for d in active))
            self.download_state.show()
        else:
            self.download_state.hide()
        first = self.model_path is None or library.is_demo(self.model_path)
        if item.state == "done" and item.path is not None and first:
            self.use_model(str(item.path))  # the first real model: ready to chat

    def _model_rows(self) -> list[Path]:
        box = self.model_box
        return [
            Path(box.itemData(i))
            for i in range(box.count())
            if box.itemData(i) and not box.itemData(i, ADAPTER_ROLE)
        ]

    def _describe_models(self) -> None:
        """Size, quantization and parameters come from each file's header, and
        the adapters that fit each model from the adapters folder: read off the
        GUI thread."""
        models = self._model_rows()
        describer = self.describer = JobThread(lambda _emit: _survey(models))
        # Only the latest survey counts (an older one may finish after it).
        describer.done.connect(
            lambda survey: self._described(survey) if describer is self.describer else None
        )
        describer.start()

    def _described(self, survey: Survey) -> None:
        labels, fits, orphans = survey
        box = self.model_box
        for path, label in labels:
            index = box.findData(path)
            if index >= 0 and not library.is_demo(path):
                box.setItemText(index, label)
        # The adapters, afresh: under the model each fits, then those that fit none.
        for i in reversed(range(box.count())):
            if box.itemData(i, ADAPTER_ROLE) or not box.itemData(i):
                box.removeItem(i)
        self._adapter_bases = {}
        for base, found in fits.items():
            index = box.findData(base)
            if index < 0:
                continue
            stem = Path(base).stem
            for offset, adapter in enumerate(found, start=1):
                row = index + offset
                box.insertItem(row, f"      ↳  {adapter.name}", base)
                box.setItemData(row, str(adapter.path), ADAPTER_ROLE)
                box.setItemData(row, f"{stem}  +  adapter {adapter.name}", CLOSED_ROLE)
                box.setItemData(row, _adapter_tip(adapter), Qt.ItemDataRole.ToolTipRole)
                self._adapter_bases[str(adapter.path)] = base
        if orphans:
            box.insertSeparator(box.count())
            for adapter in orphans:
                needs = adapter.base_file or f"a {adapter.architecture} model"
                box.addItem(f"      ↳  {adapter.name}  —  needs {needs}", None)
                row = box.count() - 1
                box.setItemData(
                    row,
                    f"{adapter.name} was trained on {needs}, which is not installed (or is a "
                    "different file of that name). An adapter works only with the exact model "
                    f"it was trained on.\n{adapter.path}",
                    Qt.ItemDataRole.ToolTipRole,
                )
                item = box.model().item(row)  # type: ignore[attr-defined]
                item.setEnabled(False)
        self._sync_picker()

    def _sync_picker(self) -> None:
        """Show in the picker what is loaded (or loading): the model, or the
        model's row for the chosen adapter."""
        if self.model_path is None:
            return
        box, want = self.model_box, str(self.adapter) if self.adapter else None
        for i in range(box.count()):
            if box.itemData(i) == str(self.model_path) and box.itemData(i, ADAPTER_ROLE) == want:
                box.setCurrentIndex(i)
                return
        index = box.findData(str(self.model_path))
        if index >= 0:
            box.setCurrentIndex(index)

    def _model_chosen(self, index: int) -> None:
        """A row of the picker chosen: a model, or a model with an adapter; the
        chat remembers the choice."""
        path = self.model_box.itemData(index)
        if not path:
            return
        adapter = self.model_box.itemData(index, ADAPTER_ROLE)
        scale = self._chat_scale() if adapter else None
        self.load_model(Path(path), Path(adapter) if adapter else None, scale)
        self._remember_adapter()

    def _chat_scale(self) -> float | None:
        if self.chat_id is None:
            return None
        value = self.store.chat_settings(self.chat_id).get("lora_scale")
        return float(value) if isinstance(value, int | float) else None

    def _load_for_chat(self, default: Path) -> None:
        """Load what the open chat asks for: its adapter (with its model and its
        strength) when it has one, else ``default`` without an adapter. Nothing
        happens when that is loaded (or loading) already."""
        base, adapter, scale = default, None, None
        if self.chat_id is not None:
            chosen = self.store.chat_settings(self.chat_id)
            if chosen.get("adapter"):
                adapter, base, problem = self._adapter_base(chosen)
                if problem:
                    self.statusBar().showMessage(problem, 15000)
                if adapter is None:
                    base = default
                else:
                    scale = chosen.get("lora_scale")
        if self._is_current(base, adapter, scale):
            self._sync_picker()
            return
        self.load_model(base, adapter, scale)

    def _adapter_base(self, chosen: dict[str, Any]) -> tuple[Path | None, Path, str]:
        """A chat's adapter and the model it goes with, or (None, _, why not)."""
        adapter = Path(chosen["adapter"])
        recorded = chosen.get("adapter_base") or ""
        for candidate in (recorded, self._adapter_bases.get(str(adapter), "")):
            if candidate and Path(candidate).exists():
                base = Path(candidate)
                break
        else:
            needs = Path(recorded).name if recorded else "its base model"
            return (
                None,
                Path(),
                (
                    f"{adapter.stem} is not used: it needs {needs}, which is not installed "
                    "(an adapter works only with the model it was trained on)"
                ),
            )
        if not adapter.exists():
            gone = f"The adapter {adapter.stem} is gone ({adapter}): chatting without it"
            return None, base, gone
        return adapter, base, ""

    def _is_current(self, base: Path, adapter: Path | None, scale: Any) -> bool:
        loading = self.loader is not None and self.loader.isRunning()
        if self.model_path != base or self.adapter != adapter:
            return False
        if not (self.loaded is not None or loading):
            return False
        if adapter is None or not isinstance(scale, int | float):
            return True
        return abs(float(self._loaded_with.get("lora_scale", 1.0)) - float(scale)) < 1e-9

    def _remember_adapter(self, chat_id: int | None = None) -> None:
        """Store the adapter choice (and its strength) with the chat: switching
        back to it restores them."""
        chat = chat_id if chat_id is not None else self.chat_id
        if chat is None:
            return  # a new chat takes the choice when it is made
        choice = {
            "adapter": str(self.adapter) if self.adapter else None,
            "adapter_base": str(self.model_path) if self.adapter and self.model_path else None,
            "lora_scale": self.panel.values().lora_scale,
        }

        def write() -> None:
            stored = self.store.chat_settings(chat)
            if stored.get("adapter") or choice["adapter"] or "lora_scale" in stored:
                self.store.set_chat_settings(chat, {**stored, **choice})

        self._background(write, lambda _result: None)

    def load_model(
        self, path: Path, adapter: Path | None = None, scale: float | None = None
    ) -> None:
        """Load in the background (with ``adapter``, at ``scale`` when given, else
        at the model's Adapter strength); the conversation is untouched. While
        a load runs, the last one asked for follows it."""
        self.model_path, self.adapter = path, adapter
        self.loaded = None
        self.reload_button.hide()
        self._state(f"Loading with the adapter {adapter.stem}…" if adapter else "Loading…")
        self.settings.set_ui("last_model", str(path))
        settings = self.settings.generation(str(path))
        if scale is not None:
            settings = dataclasses.replace(settings, lora_scale=float(scale))
        self.panel.set_values(settings)
        self._shown_scale = settings.lora_scale
        self._show_scale(settings.lora_scale)
        self._loaded_with = _model_part(settings)
        self.context = None
        self.meter.hide()
        self._sync_picker()
        if self.loader is not None and self.loader.isRunning():
            self._load_again = (path, adapter, settings)
            return
        self._start_load(path, adapter, settings)

    def _start_load(self, path: Path, adapter: Path | None, settings: GenerationSettings) -> None:
        engine = self.engine

        def load(_emit: Emit) -> tuple[LoadedModel, ModelInfo, str]:
            refused = ""
            try:
                loaded = engine.load(path, settings, lora=adapter)
            except LocalChatError as exc:
                if adapter is None:
                    raise
                # Refused (trained on another file, or llama.cpp would not take
                # it): the model itself stays usable.
                refused = str(exc)
                loaded = engine.load(path, settings)
            return loaded, read_model_info(path), refused

        self.loader = JobThread(load)
        self.loader.done.connect(self._model_loaded)
        self.loader.failed.connect(self._model_failed)
        self.loader.finished.connect(self._load_finished)
        self.loader.start()

    def _load_finished(self) -> None:
        if self._load_again is not None:
            path, adapter, settings = self._load_again
            self._load_again = None
            self._start_load(path, adapter, settings)

    def _model_loaded(self, result: tuple[LoadedModel, ModelInfo, str]) -> None:
        if self._load_again is not None:
            return  # another load follows: this one is already stale
        self.loaded, self.model_info, refused = result
        where = self.loaded.backend
        note = f" — {self.loaded.notice}" if self.loaded.notice else ""
        if library.is_demo(self.loaded.path):
            note += " · demo model"
        if refused:
            self.adapter = None
            self._show_scale(None)
            self._sync_picker()
            note += " · without the adapter"
            self.statusBar().showMessage(f"Adapter refused: {refused}", 20000)
        elif self.loaded.lora:
            note += f" · adapter ×{self.panel.values().lora_scale:.2f}"
        self._state(f"Ready · context {self.loaded.n_ctx:,} · {where}{note}")
        if refused:
            self.model_state.setToolTip(f"Adapter refused: {refused}")
        self._show_memory(self.panel.values())
        self.update_context()

    def _model_failed(self, message: str) -> None:
        if self._load_again is None:
            self._state(f"Failed: {message}")

    def _show_scale(self, value: float | None) -> None:
        """The strength box beside the picker: shown while an adapter is chosen."""
        self.adapter_scale.setVisible(value is not None and self.adapter is not None)
        if value is not None:
            self.adapter_scale.blockSignals(True)
            self.adapter_scale.setValue(value)
            self.adapter_scale.blockSignals(False)

    def _scale_edited(self, value: float) -> None:
        self.panel.editors["lora_scale"].setValue(value)  # type: ignore[attr-defined]

    def _state(self, text: str) -> None:
        self.model_state.setText(text)
        self.model_state.setToolTip(text)

    def _name(self) -> str:
        """Who replies, as the chat records it: the model (and its adapter)."""
        if self.model_path is None:
            return "no model"
        if self.adapter is not None and self.loaded is not None and self.loaded.lora:
            return f"{self.model_path.stem} + {self.adapter.stem}"
        return self.model_path.stem

    # -- chats --------------------------------------------------------------------------

    def refresh_chats(self) -> None:
        query = self.search.text().strip()
        chats = self.store.search(query) if query else self.store.list_chats()
        self.chat_list.blockSignals(True)
        self.chat_list.clear()
        for chat in chats:
            item = QListWidgetItem(chat.title or "New chat")
            item.setData(Qt.ItemDataRole.UserRole, chat.id)
            self.chat_list.addItem(item)
            if chat.id == self.chat_id:
                self.chat_list.setCurrentItem(item)
        self.chat_list.blockSignals(False)

    def _background(self, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """A store write off the GUI thread; ``then`` runs on the GUI thread."""
        op = JobThread(lambda _emit: work())
        self._ops.add(op)
        op.done.connect(then)
        op.failed.connect(lambda message: self.statusBar().showMessage(message, 10000))
        op.finished.connect(lambda: self._ops.discard(op))
        op.start()

    def new_chat(self) -> None:
        self._background(self.store.create_chat, self._chat_created)

    def _chat_created(self, chat_id: int) -> None:
        self._remember_adapter(chat_id)  # a new chat goes on with the adapter chosen
        self.select_chat(chat_id, follow=False)
        self.composer.setFocus()

    def select_chat(self, chat_id: int, *, follow: bool = True) -> None:
        """Open a chat; with ``follow``, its adapter choice comes back with it
        (the model reloads when that differs from what is loaded)."""
        try:
            self.store.chat(chat_id)
        except LocalChatError:
            return
        self.chat_id = chat_id
        self.settings.set_ui("last_chat", chat_id)
        self.show_chat()
        self.refresh_chats()
        if follow and self.model_path is not None:
            self._load_for_chat(self.model_path)

    def show_chat(self) -> None:
        if self.chat_id is None:
            return
        thread = self.store.thread(self.chat_id)
        self.view.show_thread(thread)
        self._show_stats(thread)
        self.update_context()

    def _show_stats(self, thread: list[StoredMessage]) -> None:
        """Speed of the chat's last reply, in the status bar (the context meter
        beside it counts the next prompt)."""
        replies = [m for m in thread if m.role == "assistant" and m.stats]
        stats = replies[-1].stats if replies else None
        if not stats or "tokens_per_s" not in stats:
            self.speed.setText("")
            return
        self.speed.setText(
            f"{stats['tokens_per_s']:.1f} tok/s · first token {stats['ttft_ms'] / 1000:.2f} s"
        )
        self.speed.setToolTip(
            f"The last reply: {stats['completion_tokens']:,} tokens; the context held "
            f"{stats['context_used']:,} of {stats['context_size']:,} tokens at its end"
        )

    def _chat_selected(self, item: QListWidgetItem | None) -> None:
        if item is not None and not self.busy():
            self.select_chat(int(item.data(Qt.ItemDataRole.UserRole)))

    def _chat_menu(self, pos) -> None:
        item = self.chat_list.itemAt(pos)
        if item is None:
            return
        chat_id = int(item.data(Qt.ItemDataRole.UserRole))
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self._rename(chat_id))
        menu.addAction("Export as Markdown…", lambda: self._export(chat_id, "md"))
        menu.addAction("Export as JSON…", lambda: self._export(chat_id, "json"))
        menu.addAction("Fine-tune on this chat…", lambda: self.open_trainer(chats=[chat_id]))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self._delete(chat_id))
        menu.exec(self.chat_list.mapToGlobal(pos))

    def _rename(self, chat_id: int) -> None:
        title, ok = QInputDialog.getText(
            self, "Rename chat", "Title:", text=self.store.chat(chat_id).title
        )
        if ok:
            self.rename_chat(chat_id, title.strip())

    def rename_chat(self, chat_id: int, title: str) -> None:
        self._background(lambda: self.store.rename_chat(chat_id, title), self._refreshed)

    def _refreshed(self, _result: object = None) -> None:
        self.refresh_chats()

    def _delete(self, chat_id: int) -> None:
        answer = QMessageBox.question(self, "Delete chat", "Delete this chat for good?")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_chat(chat_id)

    def delete_chat(self, chat_id: int) -> None:
        if chat_id == self.chat_id:
            self.chat_id = None
            self.view.clear()
        self._background(lambda: self.store.delete_chat(chat_id), self._refreshed)

    def _export(self, chat_id: int, kind: str) -> None:
        title = self.store.chat(chat_id).title or "chat"
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export chat",
            f"{title}.{kind}",
            "Markdown (*.md)" if kind == "md" else "JSON (*.json)",
        )
        if path:
            self.export_chat(chat_id, Path(path))

    def export_chat(self, chat_id: int, path: Path) -> None:
        def write() -> Path:
            if path.suffix == ".json":
                data = self.store.export_json(chat_id)
                text = json.dumps(data, indent=2, ensure_ascii=False)
            else:
                text = self.store.export_markdown(chat_id)
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise LocalChatError(f"cannot write {path}: {exc.strerror or exc}") from None
            return path

        self._background(write, lambda p: self.statusBar().showMessage(f"Exported to {p}", 5000))

    # -- talking ------------------------------------------------------------------------

    def busy(self) -> bool:
        return self._replying

    def send(self, text: str) -> None:
        if self.busy():
            return
        if self.loaded is None:
            self.statusBar().showMessage("Choose a model first (and wait until it is ready).", 5000)
            return
        self.composer.clear()
        settings = self.panel.values()
        self._run(lambda session, emit: session.send(text, settings, emit), text)

    def regenerate(self, reply_id: int) -> None:
        if self.busy() or self.chat_id is None or self.loaded is None:
            return
        settings = self.panel.values()
        self._run(lambda session, emit: session.regenerate(reply_id, settings, emit), "")

    def edit_message(self, message_id: int) -> None:
        if self.busy() or self.chat_id is None or self.loaded is None:
            return
        old = self.store.message(message_id).content
        text, ok = QInputDialog.getMultiLineText(self, "Edit message", "Message:", old)
        if ok and text.strip() and text != old:
            self.resend_edited(message_id, text.strip())

    def resend_edited(self, message_id: int, text: str) -> None:
        settings = self.panel.values()
        self._run(lambda session, emit: session.edit(message_id, text, settings, emit), text)

    def show_sibling(self, message_id: int) -> None:
        if not self.busy():
            self._background(lambda: self.store.select(message_id), lambda _r: self.show_chat())

    def stop(self) -> None:
        if self.busy():
            self.engine.cancel()

    def _send_or_stop(self) -> None:
        if self.busy():
            self.stop()
        else:
            text = self.composer.toPlainText().strip()
            if text:
                self.send(text)

    def _run(self, talk: Callable[[ChatSession, Emit], StoredMessage], user_text: str) -> None:
        """Run ``talk`` on a JobThread with a session for the current chat (a
        new one, created there, when none is open)."""
        chat_id, model, holder = self.chat_id, self._name(), self._reply_chat
        holder.clear()

        def job(emit: Emit) -> StoredMessage:
            chat = chat_id if chat_id is not None else self.store.create_chat()
            holder.append(chat)
            return talk(ChatSession(self.store, self.engine, chat, model=model), emit)

        if user_text == "":
            self.show_chat()  # regenerating: the reply replaces the shown one
            if self.view.widgets:
                self.view.widgets[-1].hide()
        self.view.begin_stream(user_text, self._name())
        self.send_button.setText("Stop")
        if self.planner is not None and self.planner.isRunning():
            # A context count in flight would reach the engine during the reply
            # and end it (a request stops the stream in progress): let it
            # finish first (milliseconds; no new one starts while replying).
            self.planner.wait()
        self._replying = True
        self.job = JobThread(job)
        self.job.piece.connect(self.view.append)
        self.job.done.connect(self._reply_done)
        self.job.failed.connect(self._reply_failed)
        self.job.start()

    def _reply_done(self, reply: StoredMessage) -> None:
        self._end_reply()  # shows the chat, and with it this reply's stats

    def _reply_failed(self, message: str) -> None:
        crashed = self.loaded is not None and self.engine.loaded is None
        if crashed:
            self.loaded = None  # nothing asks the engine until it is reloaded
        self._end_reply()
        self.statusBar().showMessage(f"The reply failed: {message}", 10000)
        if crashed:
            self._state("Restarting the model after a crash…")
            if self.model_path is not None:
                self.load_model(self.model_path, self.adapter, self.panel.values().lora_scale)

    def _end_reply(self) -> None:
        self._replying = False
        self.view.stop_stream()
        self.send_button.setText("Send")
        if self.chat_id is None and self._reply_chat:  # the reply opened a new chat
            self.chat_id = self._reply_chat[0]
            self.settings.set_ui("last_chat", self.chat_id)
            self._remember_adapter()
        if self.chat_id is not None:
            thread = self.store.thread(self.chat_id)
            self.view.update_thread(thread)
            self._show_stats(thread)
        self.refresh_chats()
        self.update_context()

    def _settings_changed(self, values: GenerationSettings) -> None:
        model = str(self.model_path) if self.model_path else None
        scale_edited = values.lora_scale != self._shown_scale
        self._shown_scale = values.lora_scale
        stored = self.settings.generation(model)
        changed = {
            k: v
            for k, v in values.to_dict().items()
            if getattr(stored, k) != v and (k != "lora_scale" or scale_edited)
        }
        if changed:
            self.settings.set_generation(model, **changed)
        if scale_edited:  # the chat's own strength (a chat's may differ from the model's)
            self._show_scale(values.lora_scale)
            self._remember_adapter()
        self.reload_button.setVisible(self._stale(values))
        self._show_memory(values)
        self.update_context()

    def _stale(self, values: GenerationSettings) -> bool:
        """Whether a setting that applies on loading differs from the loaded
        model's (the adapter's strength only counts with an adapter)."""
        if self.model_path is None:
            return False
        now, loaded = _model_part(values), dict(self._loaded_with)
        if self.adapter is None:
            now.pop("lora_scale", None)
            loaded.pop("lora_scale", None)
        return now != loaded

    def _reload(self) -> None:
        if self.model_path is not None and not self.busy():
            self.load_model(self.model_path, self.adapter, self.panel.values().lora_scale)

    # -- context ------------------------------------------------------------------------

    def update_context(self) -> None:
        """Recount what the next prompt costs (the chat so far and the draft)
        in the background; one count at a time, the latest wins."""
        if self.loaded is None or self.busy() or self._closing:
            return
        if self.planner is not None and self.planner.isRunning():
            self._plan_again = True
            return
        self._plan_again = False
        chat_id = self.chat_id
        sent = sent_to_model(self.store.thread(chat_id)) if chat_id is not None else []
        messages: list[Message] = as_messages(sent)
        draft = self.composer.toPlainText().strip()
        if draft:
            messages.append({"role": "user", "content": draft})
        if not messages:
            self.context = None
            self.meter.hide()
            return
        settings = self.panel.values()
        ids = [m.id for m in sent]
        self.planner = JobThread(lambda _emit: self.engine.plan(messages, settings))
        self.planner.done.connect(lambda report: self._context_planned(report, chat_id, ids))
        self.planner.failed.connect(lambda _message: self.meter.hide())
        self.planner.finished.connect(self._planned)
        self.planner.start()

    def _planned(self) -> None:
        if self._plan_again:
            self.update_context()

    def _context_planned(self, report: ContextReport, chat_id: int | None, ids: list[int]) -> None:
        if chat_id != self.chat_id:
            return
        self.context = report
        outside = {ids[i] for i in report.dropped if i < len(ids)}
        if not self.busy():
            self.view.mark_outside(outside)
        used = report.prompt_tokens + report.reserve
        self.meter.setRange(0, report.n_ctx)
        self.meter.setValue(min(used, report.n_ctx))
        if report.excess:
            self.meter.setFormat(f"{report.excess:,} tokens over the context")
        else:
            self.meter.setFormat(
                f"context {report.prompt_tokens:,} + {report.reserve:,} reply / {report.n_ctx:,}"
            )
        lines = [
            f"Next prompt: {report.prompt_tokens:,} tokens (what the model will read, "
            "its chat template included)",
            f"Kept for the reply: {report.reserve:,} tokens (max tokens, at most half)",
            f"Free: {max(report.free, 0):,} of {report.n_ctx:,}",
        ]
        if report.dropped:
            lines.append(f"Out of the model's view: {len(report.dropped)} older messages")
        if report.excess:
            lines.append(
                f"{report.excess:,} tokens too many: with the 'stop' policy the chat cannot "
                "be sent as it is"
            )
        self.meter.setToolTip("\n".join(lines))
        self.meter.setProperty("over", bool(report.excess))
        self.meter.setStyleSheet(
            "QProgressBar::chunk { background: #c0392b; }" if report.excess else ""
        )
        self.meter.show()

    def _show_memory(self, values: GenerationSettings) -> None:
        """Under the context size: the memory the model needs at that size,
        before it is applied (the estimate ``localchat info --ctx`` gives)."""
        info = self.model_info
        if info is None:
            self.panel.set_note("ctx", "")
            return
        n_ctx = effective_ctx(values.ctx, info.context_length)
        need = info.ram_estimate(n_ctx)
        kv = info.kv_cache_bytes(n_ctx)
        text = (
            f"About {human_size(need)} of memory at {n_ctx:,} tokens (the model "
            f"{human_size(info.weights_bytes)}, its KV cache {human_size(kv)})"
        )
        if n_ctx != values.ctx:
            text += f"; this model takes at most {info.context_length:,}"
        ram = hardware.memory()
        warn = False
        if ram is not None:
            text += f". This computer has {human_size(ram[1])} free of {human_size(ram[0])}."
            warn = need > ram[1]
        self.panel.set_note("ctx", text, warn=warn)
