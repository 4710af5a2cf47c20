"""The main window: chats on the left, the conversation in the middle, the
generation settings on the right.

The window holds no state of its own that matters: chats are in the store,
settings in ``AppSettings``, and every engine or database write runs on a
``JobThread``. What the window remembers between runs (geometry, last chat,
last model) goes through ``AppSettings`` too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QEvent, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
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
    QVBoxLayout,
    QWidget,
)

from localchat.core import hardware, params, paths
from localchat.core.chat.session import ChatSession, as_messages, sent_to_model
from localchat.core.chat.store import ChatStore, StoredMessage
from localchat.core.engine.client import Engine
from localchat.core.engine.gguf_info import ModelInfo, human_count, human_size, read_model_info
from localchat.core.engine.protocol import ContextReport, LoadedModel, Message
from localchat.core.errors import LocalChatError, ModelFileError
from localchat.core.models import library
from localchat.core.params import GenerationSettings, effective_ctx
from localchat.core.settings import AppSettings
from localchat.ui.bridge import Emit, JobThread
from localchat.ui.chat_view import ChatView
from localchat.ui.settings_panel import SettingsPanel

if TYPE_CHECKING:  # imported when first opened: start-up stays quick
    from localchat.core.models.downloads import Download, Downloads
    from localchat.ui.model_manager import ModelManager
    from localchat.ui.train_page import TrainWindow


def _describe(path: Path) -> str:
    info = library.describe(path)
    if isinstance(info, str):
        return f"{path.stem}  ·  unusable: {info}"
    return (
        f"{path.stem}  ·  {human_count(info.parameter_count)}  ·  "
        f"{info.quantization}  ·  {human_size(info.file_size)}"
    )


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
        self.loaded: LoadedModel | None = None
        self.chat_id: int | None = None
        self._reply_chat: list[int] = []  # the chat a running reply writes to
        self._ops: set[JobThread] = set()  # store writes in flight
        self.job: JobThread | None = None
        self.loader: JobThread | None = None
        self.describer: JobThread | None = None
        self._loaded_with: dict[str, Any] = {}
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
        self.model_box = QComboBox()
        self.model_box.setMinimumWidth(180)
        self.model_box.activated.connect(self._model_chosen)
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

        # Right: the settings, generated from their declaration.
        self.panel = SettingsPanel(settings.generation())
        self.panel.changed.connect(self._settings_changed)
        self.settings_dock = QDockWidget("Settings")
        self.settings_dock.setObjectName("settings")
        self.settings_dock.setWidget(self.panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.settings_dock)
        self.settings_dock.hide()

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
        def action(text: str, keys: QKeySequence | QKeySequence.StandardKey | str, slot) -> QAction:
            a = QAction(text, self)
            a.setShortcut(QKeySequence(keys))
            a.triggered.connect(slot)
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
        train.setToolTip("Train a small GPT from scratch on your own text (Ctrl+Shift+T)")
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

    def _after_first_paint(self) -> None:
        last_chat = self.settings.ui("last_chat")
        if last_chat is not None and self.chat_id is None:
            self.select_chat(int(last_chat))
        self._describe_models()
        if self.model_box.count():  # the model used last time, else the first one
            self._model_chosen(self.model_box.currentIndex())

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

    def open_trainer(self) -> None:
        """The Train window (training runs in a process of its own)."""
        if self.trainer is None:
            from localchat.ui.train_page import TrainWindow

            self.trainer = TrainWindow()
            self.trainer.trained.connect(self._trained)
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

    def use_model(self, path: str) -> None:
        """Switch the current chat to ``path`` (the conversation stays)."""
        if self.model_box.findData(path) < 0:
            self.model_box.addItem(Path(path).stem, path)
            self.model_box.setEnabled(True)
            self._describe_models()
        self.model_box.setCurrentIndex(self.model_box.findData(path))
        self.load_model(Path(path))
        self.raise_()
        self.activateWindow()

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
            self.loaded, self.model_path = None, None
            self.meter.hide()
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

    def _describe_models(self) -> None:
        """Size, quantization and parameters come from each file's header: read
        off the GUI thread."""
        models = [Path(self.model_box.itemData(i)) for i in range(self.model_box.count())]
        self.describer = JobThread(lambda _emit: [(str(p), _describe(p)) for p in models])
        self.describer.done.connect(self._described)
        self.describer.start()

    def _described(self, labels: list[tuple[str, str]]) -> None:
        for path, label in labels:
            index = self.model_box.findData(path)
            if index >= 0 and not library.is_demo(path):
                self.model_box.setItemText(index, label)

    def _model_chosen(self, index: int) -> None:
        path = self.model_box.itemData(index)
        if path:
            self.load_model(Path(path))

    def load_model(self, path: Path) -> None:
        """Load in the background; the conversation is untouched."""
        if self.loader is not None and self.loader.isRunning():
            return
        self.model_path = path
        self.loaded = None
        self.reload_button.hide()
        self._state("Loading…")
        self.settings.set_ui("last_model", str(path))
        settings = self.settings.generation(str(path))
        self.panel.set_values(settings)
        self._loaded_with = _model_part(settings)
        self.context = None
        self.meter.hide()
        self.loader = JobThread(
            lambda _emit: (self.engine.load(path, settings), read_model_info(path))
        )
        self.loader.done.connect(self._model_loaded)
        self.loader.failed.connect(self._model_failed)
        self.loader.start()

    def _model_loaded(self, result: tuple[LoadedModel, ModelInfo]) -> None:
        self.loaded, self.model_info = result
        where = "GPU" if self.loaded.gpu_layers else "CPU"
        note = f" — {self.loaded.notice}" if self.loaded.notice else ""
        if library.is_demo(self.loaded.path):
            note += " · demo model"
        self._state(f"Ready · context {self.loaded.n_ctx:,} · {where}{note}")
        self._show_memory(self.panel.values())
        self.update_context()

    def _model_failed(self, message: str) -> None:
        self._state(f"Failed: {message}")

    def _state(self, text: str) -> None:
        self.model_state.setText(text)
        self.model_state.setToolTip(text)

    def _name(self) -> str:
        return self.model_path.stem if self.model_path else "no model"

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
        self.select_chat(chat_id)
        self.composer.setFocus()

    def select_chat(self, chat_id: int) -> None:
        try:
            self.store.chat(chat_id)
        except LocalChatError:
            return
        self.chat_id = chat_id
        self.settings.set_ui("last_chat", chat_id)
        self.show_chat()
        self.refresh_chats()

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
        return self.job is not None and self.job.isRunning()

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
                self.load_model(self.model_path)

    def _end_reply(self) -> None:
        self.view.stop_stream()
        self.send_button.setText("Send")
        if self.chat_id is None and self._reply_chat:  # the reply opened a new chat
            self.chat_id = self._reply_chat[0]
            self.settings.set_ui("last_chat", self.chat_id)
        if self.chat_id is not None:
            thread = self.store.thread(self.chat_id)
            self.view.update_thread(thread)
            self._show_stats(thread)
        self.refresh_chats()
        self.update_context()

    def _settings_changed(self, values: GenerationSettings) -> None:
        model = str(self.model_path) if self.model_path else None
        changed = {
            k: v
            for k, v in values.to_dict().items()
            if getattr(self.settings.generation(model), k) != v
        }
        if changed:
            self.settings.set_generation(model, **changed)
        stale = self.model_path is not None and _model_part(values) != self._loaded_with
        self.reload_button.setVisible(stale)
        self._show_memory(values)
        self.update_context()

    def _reload(self) -> None:
        if self.model_path is not None and not self.busy():
            self.load_model(self.model_path)

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
