"""The main window, which only wires its parts together: the chats on the
left (``ChatList``); the model bar (``ModelBar``), the conversation and the
composer in the middle; the generation settings on the right; the context
meter and the last reply's speed in the status bar.

What the widgets show lives in ``ModelState`` and ``ChatState`` (``state.py``,
no Qt), which they subscribe to. The work runs in ``ModelLoader``,
``ContextCounter`` and ``Replies``, each on jobs that report by signal to the
GUI thread. Chats are in the store (each with its unsent draft, ``Drafts``),
settings in ``AppSettings``, and every engine or database write runs on a
``JobThread``. What the window remembers
between runs (geometry, last chat, last model) goes through ``AppSettings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QEvent, Qt, QTimer, QUrl
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from localchat.core import paths
from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import ContextReport
from localchat.core.errors import LocalChatError
from localchat.core.models import library
from localchat.core.params import GenerationSettings
from localchat.core.settings import AppSettings
from localchat.ui import menus, window_size, window_state
from localchat.ui.bridge import Background
from localchat.ui.chat_documents import ChatDocuments
from localchat.ui.chat_list import ChatList
from localchat.ui.chat_view import DEMO_ONLY, NO_MODEL, ChatView
from localchat.ui.composer import Composer, ComposerBox
from localchat.ui.context_meter import ContextCounter, ContextMeter, SpeedLabel
from localchat.ui.drafts import Drafts
from localchat.ui.local_server import LocalServer
from localchat.ui.memory_note import MemoryNote
from localchat.ui.model_bar import ADAPTER_ROLE, CLOSED_ROLE, DEMO_LABEL, DEMO_TIP, ModelBar
from localchat.ui.model_loading import ModelLoader
from localchat.ui.other_windows import OtherWindows
from localchat.ui.replies import Replies
from localchat.ui.server_window import ServerView
from localchat.ui.settings_link import SettingsLink
from localchat.ui.settings_panel import SettingsPanel
from localchat.ui.state import ChatState, ModelState
from localchat.ui.window_actions import add_actions

if TYPE_CHECKING:
    from localchat.core.models.downloads import Downloads
    from localchat.ui.xray_dialog import XrayDialog

__all__ = ["ADAPTER_ROLE", "CLOSED_ROLE", "DEMO_LABEL", "DEMO_TIP", "Composer", "MainWindow"]


class _Alias:
    """A window attribute kept from before the split: another part's attribute
    (``window.loaded`` is ``window.model.loaded``)."""

    def __init__(self, part: str, name: str) -> None:
        self.part, self.name = part, name

    def __get__(self, window: Any, _owner: Any = None) -> Any:
        return self if window is None else getattr(getattr(window, self.part), self.name)

    def __set__(self, window: Any, value: Any) -> None:
        setattr(getattr(window, self.part), self.name, value)


def embedding_in(engine: Engine, name: str) -> Any:
    """The installed embedding model ``name`` loaded in ``engine``."""
    from localchat.core.documents.embedding import Embedding, installed_embedder

    return Embedding(engine, installed_embedder(name))


class MainWindow(QMainWindow):
    model_path = _Alias("model", "path")
    adapter = _Alias("model", "adapter")
    loaded = _Alias("model", "loaded")
    model_info = _Alias("model", "info")
    _loaded_with = _Alias("model", "loaded_with")
    chat_id = _Alias("chat", "id")
    context = _Alias("chat", "context")
    job = _Alias("replies", "job")
    manager = _Alias("windows", "manager")
    trainer = _Alias("windows", "trainer")
    downloads = _Alias("windows", "downloads")

    def __init__(
        self,
        store: ChatStore,
        engine: Engine,
        settings: AppSettings,
        downloads: Downloads | None = None,
    ) -> None:
        super().__init__()
        self.store, self.engine, self.settings = store, engine, settings
        self.model, self.chat = ModelState(), ChatState()
        self._painted = False
        self.setWindowTitle("LocalChat")
        self.resize(1100, 720)
        self.background = Background(self)  # store writes
        self.background.failed.connect(lambda message: self._say(message, 10000))
        values = self._values

        # Left: the chats.
        self.chats = ChatList(store, self.chat, self.background)
        self.search, self.chat_list = self.chats.search, self.chats.list
        self.chats.opened.connect(self._chat_clicked)
        self.chats.created.connect(self._chat_created)
        self.chats.deleting.connect(self._chat_deleting)
        self.chats.fine_tune.connect(lambda chat_id: self.open_trainer(chats=[chat_id]))
        self.chats.message.connect(self._say)

        # Middle: model, conversation, composer.
        self.model_bar = ModelBar(self.model)
        bar = self.model_bar
        self.model_box, self.adapter_scale = bar.box, bar.scale
        self.model_state, self.reload_button = bar.status, bar.reload_button
        self.model_box.activated.connect(self._model_chosen)
        self.view = ChatView()
        self.composer_box = ComposerBox()
        self.composer, self.send_button = self.composer_box.composer, self.composer_box.send_button
        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.addWidget(bar)
        middle_layout.addWidget(self.view, 1)
        middle_layout.addWidget(self.composer_box)

        splitter = QSplitter()
        splitter.addWidget(self.chats)
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

        # The work: loading models, counting the context, writing replies; each
        # takes its turn with the API server's requests while it runs (the switch).
        self.server = LocalServer(engine, settings, self)
        turn, shared = self.server.turns.turn, self.server.shared.as_engine()
        self.loader = ModelLoader(
            engine, store, settings, self.model, self.chat, values, self.background, self,
            turn=turn,
        )  # fmt: skip
        self.loader.message.connect(self._say)
        self.loader.kept.connect(bar.sync)
        self.memory = MemoryNote(self.model, lambda: self.panel)
        self.counter = ContextCounter(
            shared, store, self.chat, self.model, self._draft, values, self
        )
        self.chat.counted.connect(self._counted)
        self.link = SettingsLink(
            settings, self.model, self.chat, lambda: self.panel, bar, self.loader,
            self.memory, self.counter, self,
        )  # fmt: skip
        self.replies = Replies(
            store, engine, self.chat, self.model, self.view, self.composer_box,
            self.counter, values, self, turn=turn, serving=lambda: self.server.turns.serving,
        )  # fmt: skip
        self.replies.regenerating.connect(self.show_chat)
        self.replies.ended.connect(self._reply_ended)
        self.replies.message.connect(self._say)
        self.view.empty_action.clicked.connect(self.open_models)
        self.view.edited.connect(self.replies.edit_message)  # edited in place
        self.view.example_chosen.connect(self._use_example)
        self.model.chosen.connect(lambda _: self.view.set_model(self.model.path))
        self.view.regenerate_requested.connect(self.replies.regenerate)
        self.view.show_sibling.connect(self.show_sibling)
        self.view.token_picked.connect(self._token_picked)
        self.view.prompt_picked.connect(
            lambda message_id: self._xray_window().show_prompt(message_id)
        )
        self._xray: XrayDialog | None = None

        # The model manager and the Train window, made when first opened.
        self.windows = OtherWindows(
            store, settings, self.model, self.loader.release, downloads, self
        )
        self.windows.use_requested.connect(self.use_model)
        self.windows.installed_changed.connect(self._installed_changed)
        self.windows.trained.connect(self._trained)
        self.windows.adapter_trained.connect(self._adapter_trained)
        self.windows.chat_requested.connect(self.chat_with_adapter)
        self.windows.message.connect(self._say)
        self.windows.embedding_for = lambda name: embedding_in(shared, name)
        # Under the message box: the collections of documents the chat draws on.
        self.chat_documents = ChatDocuments(
            store, self.chat, self.windows.documents_state, self.background,
            lambda: self.windows.indexing.store,
        )  # fmt: skip
        self.chat_documents.manage.connect(self.open_documents)
        self.replies.documents = self.chat_documents.for_reply
        middle_layout.addWidget(self.chat_documents)

        add_actions(
            self,
            new_chat=self.new_chat,
            search=self.search.setFocus,
            stop=self.replies.stop,
            open_models=self.open_models,
            open_trainer=self.open_trainer,
            settings_dock=self.settings_dock,
            new_button=self.chats.new_button,
        )
        # Downloads in progress, while the model manager is closed; a click opens it.
        self.download_state = self.windows.download_state
        self.statusBar().addPermanentWidget(self.chats.undo_button)  # after a Delete
        self.statusBar().addPermanentWidget(self.download_state)
        self.statusBar().addPermanentWidget(self.windows.index_state)
        self.speed = SpeedLabel()
        self.statusBar().addPermanentWidget(self.speed)
        # What the next prompt costs; recounted as the chat or the draft changes.
        self.meter = ContextMeter(self.chat, self.counter)
        self.statusBar().addPermanentWidget(self.meter)
        self.chat_documents.changed.connect(self.meter.set_grounding)
        self.composer.textChanged.connect(self.counter.draft_timer.start)
        self.drafts = Drafts(store, settings, self.composer, self.background, self)
        self.drafts.discarded.connect(lambda _chat: self.chats.refresh())
        self.server_view = ServerView(self)  # the status bar's "API on …", its log
        menus.install(self)  # File, View, Help
        window_state.follow(self)  # "Writing a reply · N tok/s" while it is written
        window_size.fit(self)  # minimum sizes at which nothing is cut
        if settings.problem:
            self.statusBar().showMessage(settings.problem)

        self.refresh_models()
        self.chats.refresh()
        self._restore()

    # -- setup ------------------------------------------------------------------------

    def _use_example(self, text: str) -> None:
        """An example prompt of the empty chat, put in the composer to send or change."""
        self.composer.setPlainText(text)
        self.composer.setFocus()

    def _restore(self) -> None:
        geometry = self.settings.ui("geometry")
        if geometry:
            self.restoreGeometry(QByteArray.fromBase64(geometry.encode()))
        last_model = self.settings.ui("last_model")
        if last_model is not None and self.model_box.findData(last_model) >= 0:
            self.model_box.setCurrentIndex(self.model_box.findData(last_model))

    def event(self, event: QEvent) -> bool:
        # The last chat's messages, the model headers and the engine wait for
        # the first paint: the window shows at once, its content a moment later.
        if event.type() == QEvent.Type.Paint and not self._painted:
            self._painted = True
            QTimer.singleShot(0, self, self._after_first_paint)
        return super().event(event)

    def _token_picked(self, message_id: int, index: int) -> None:
        """A token of a reply's X-ray was clicked: its candidates, in the X-ray window."""
        self._xray_window().show_token(message_id, index)

    def _xray_window(self) -> XrayDialog:
        if self._xray is None:
            from localchat.ui.xray_dialog import XrayDialog

            self._xray = XrayDialog(
                self.store, self.server.shared.as_engine(), self.chat, self.model,
                self.replies.continue_with, self,
            )  # fmt: skip
        return self._xray

    @property
    def panel(self) -> SettingsPanel:
        """The settings form: it holds the settings the next reply and load
        use. Made on first use, which is at the latest just after the first
        paint, so the window shows without waiting for its thirty widgets."""
        if self._panel is None:
            self._panel = SettingsPanel(self.settings.generation())
            self._panel.changed.connect(self.link.changed)
            self._panel.reset_requested.connect(self.link.reset)
            self._panel.add_section(self.server_view.form())
            self.settings_dock.setWidget(self._panel)
        return self._panel

    def _values(self) -> GenerationSettings:
        return self.panel.values()

    def _draft(self) -> str:
        return self.composer.toPlainText().strip()

    def _say(self, text: str, msecs: int) -> None:
        self.statusBar().showMessage(text, msecs)

    def _after_first_paint(self) -> None:
        self.panel  # noqa: B018 (built now: everything below reads it)
        last_chat = self.settings.ui("last_chat")
        if last_chat is not None and self.chat.id is None:
            self.select_chat(int(last_chat))
        self.model_bar.describe()
        current = self.model_box.currentData()
        if current:  # the model used last time, else the first one (or the chat's adapter's)
            self.loader.for_chat(Path(current))
        self.server.resume()  # the API server, when its switch was left on
        self.windows.start_documents()  # the collections' folders watched

    def closeEvent(self, event: QCloseEvent) -> None:
        self.counter.close()  # no more counting: the store and engine go next
        self.settings.set_ui("geometry", bytes(self.saveGeometry().toBase64().data()).decode())
        if self.busy():
            self.replies.stop()
        self.server.close()  # the server's reply in flight is cancelled
        self.replies.wait(5000)
        for jobs in (self.loader.jobs, self.model_bar.surveys, self.counter.jobs):
            jobs.wait(5000)
        self.drafts.close()
        self.background.wait(5000)
        self.windows.close()  # downloads pause, a training run stops (its checkpoint kept)
        super().closeEvent(event)

    # -- the parts' actions, as the window's -----------------------------------------------

    def busy(self) -> bool:
        return self.chat.replying

    def send(self, text: str) -> None:
        self.replies.send(text)

    def new_chat(self) -> None:
        self.chats.new_chat()

    def rename_chat(self, chat_id: int, title: str) -> None:
        self.chats.rename_chat(chat_id, title)

    def delete_chat(self, chat_id: int) -> None:
        self.chats.delete_chat(chat_id)

    def export_chat(self, chat_id: int, path: Path) -> None:
        self.chats.export_chat(chat_id, path)

    # -- models -------------------------------------------------------------------------

    def refresh_models(self) -> None:
        models, bundled = self.model_bar.refresh(describe=self._painted)
        if not models and bundled is not None and self.chat.id is None:
            self.view.show_empty(DEMO_ONLY, action="Browse models…")
        elif not models and bundled is None:
            self.model.say("", self.model.tip)
            folder = paths.models_dir()
            url = QUrl.fromLocalFile(str(folder)).toString()
            self.view.show_empty(NO_MODEL.format(folder=folder, url=url), action="Browse models…")
        elif self.chat.id is None:
            self.view.hide_empty()

    def open_models(self) -> None:
        self.windows.open_models()

    def open_trainer(self, chats: list[int] | None = None) -> None:
        self.windows.open_trainer(chats)

    def open_documents(self) -> None:
        self.windows.open_documents()

    def _trained(self, path: str) -> None:
        self.refresh_models()
        self.windows.refresh_installed()
        if self.model.path is None or library.is_demo(self.model.path):
            self.use_model(path)  # nothing real to chat with yet: this one
        self._say(f"{Path(path).stem} is trained and in the model picker", 10000)

    def _adapter_trained(self, path: str) -> None:
        self.refresh_models()  # lists it under its model
        self._say(
            f"The adapter {Path(path).stem} is ready: it is listed under its model in the picker",
            10000,
        )

    def use_model(self, path: str) -> None:
        """Switch the current chat to ``path`` (the conversation stays)."""
        self._list_model(path)
        self.loader.load(Path(path))
        self.loader.remember()
        self.raise_()
        self.activateWindow()

    def _list_model(self, path: str) -> None:
        if self.model_bar.add_model(path):
            self.model_bar.describe()

    def chat_with_adapter(self, base: str, adapter: str) -> None:
        """ "Chat with it": the base model with this adapter, in a new chat (the
        open one when nothing is in it yet)."""
        if self.busy():
            self._say(
                "A reply is being written: stop it or wait for it, then Chat with it again", 10000
            )
            return
        self._list_model(base)
        self.model_bar.describe()  # the new adapter under its model
        if self.chat.id is not None and self.store.thread(self.chat.id):
            self.drafts.show(None)
            self.chat.id = None  # the first message makes the new chat
            self.view.clear()
            self.speed.show_stats([])
            self.chats.refresh()
        self.loader.load(Path(base), Path(adapter))
        self.loader.remember()
        self.raise_()
        self.activateWindow()
        self.composer.setFocus()

    def _installed_changed(self) -> None:
        gone = self.model.path is not None and not self.model.path.exists()
        if gone:
            self.model.choose(None, None)  # the meter and the strength go with it
        self.refresh_models()
        if gone and self.model_box.count():
            self.model.say("The model was deleted: choose another")
            self.model_box.setCurrentIndex(-1)
        elif self.model.path is None and self.model_box.count():
            self._model_chosen(self.model_box.currentIndex())  # the first model: load it
        elif self.chat.id is not None and self.model_box.count():
            self.show_chat()

    def _model_chosen(self, index: int) -> None:
        """A row of the picker chosen: a model, or a model with an adapter."""
        path = self.model_box.itemData(index)
        if path:
            self.loader.choose(path, self.model_box.itemData(index, ADAPTER_ROLE))

    # -- chats --------------------------------------------------------------------------

    def select_chat(self, chat_id: int, *, follow: bool = True) -> None:
        """Open a chat; with ``follow``, its adapter choice comes back with it
        (the model reloads when that differs from what is loaded)."""
        try:
            self.store.chat(chat_id)
        except LocalChatError:
            return
        self.drafts.show(chat_id)  # the chat left keeps its draft (or goes, if empty)
        self.chat.id = chat_id
        self.settings.set_ui("last_chat", chat_id)
        self.show_chat()
        self.chats.refresh()
        if follow and self.model.path is not None:
            self.loader.for_chat(self.model.path)

    def show_chat(self) -> None:
        if self.chat.id is None:
            return
        thread = self.store.thread(self.chat.id)
        self.view.show_thread(thread)
        self.speed.show_stats(thread)
        self.counter.update()

    def _chat_clicked(self, chat_id: int) -> None:
        if not self.busy():
            self.select_chat(chat_id)

    def _chat_created(self, chat_id: int) -> None:
        self.loader.remember(chat_id)  # a new chat goes on with the adapter chosen
        self.select_chat(chat_id, follow=False)
        self.composer.setFocus()

    def _chat_deleting(self, chat_id: int) -> None:
        if chat_id == self.chat.id:
            self.drafts.show(None)
            self.chat.id = None
            self.view.clear()
            self.speed.show_stats([])  # its figures go with it (opening a chat redraws them)
            self.chat.set_context(None)
            self.counter.update()  # a draft left in the composer is counted on its own

    def show_sibling(self, message_id: int) -> None:
        if not self.busy():
            self.background.run(lambda: self.store.select(message_id), lambda _r: self.show_chat())

    def _counted(self, report: ContextReport | None) -> None:
        """Mark the messages that dropped out of the model's view (not mid-reply)."""
        if report is not None and not self.busy():
            self.view.mark_outside(self.chat.outside)

    def _reply_ended(self, failure: str) -> None:
        crashed = bool(failure) and self.model.loaded is not None and self.engine.loaded is None
        if crashed:
            self.model.loaded = None  # nothing asks the engine until it is reloaded
        reply_chat = self.replies.reply_chat
        if self.chat.id is None and reply_chat is not None:  # the reply opened a new chat
            self.chat.id = reply_chat
            self.drafts.adopt(reply_chat)
            self.settings.set_ui("last_chat", reply_chat)
            self.loader.remember()
        if self.chat.id is not None:  # shows the chat, and with it this reply's stats
            thread = self.store.thread(self.chat.id)
            self.view.update_thread(thread)
            self.speed.show_stats(thread)
        self.chats.refresh()
        self.counter.update()
        if failure:
            self._say(f"The reply failed: {failure}", 10000)
        if crashed:
            self.model.say("Restarting the model after a crash…")
            if self.model.path is not None:
                self.loader.load(self.model.path, self.model.adapter, self._values().lora_scale)
