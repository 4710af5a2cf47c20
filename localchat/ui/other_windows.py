"""The windows the main window opens, each made when first opened and kept
while the app runs: the model manager (with the download queue, whose
progress shows in the status bar while the manager is closed), the Train
window and the Documents window (with the indexing, which goes on, in the
status bar, while it is closed). What they ask of the chat comes out as
signals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QPushButton

from localchat.core import paths
from localchat.core.chat.store import ChatStore
from localchat.core.models import library
from localchat.core.settings import AppSettings
from localchat.ui.state import DocumentsState, ModelState

if TYPE_CHECKING:  # imported when first opened: start-up stays quick
    from localchat.core.models.downloads import Download, Downloads
    from localchat.ui.documents_window import DocumentsWindow
    from localchat.ui.indexing import Indexing
    from localchat.ui.model_manager import ModelManager
    from localchat.ui.train.window import TrainWindow


class OtherWindows(QObject):
    """``manager`` and ``trainer`` (None until first opened), ``downloads`` and
    ``download_state`` (the status bar's button; a click opens the manager)."""

    use_requested = Signal(str)
    """Chat with this model: the manager's Use, or the first real model downloaded."""
    installed_changed = Signal()
    trained = Signal(str)
    """A model trained from scratch, ready in the models folder."""
    adapter_trained = Signal(str)
    chat_requested = Signal(str, str)
    """The Train window's "Chat with it": base model, adapter."""
    message = Signal(str, int)
    """A line for the status bar (the indexing's), and how long it stays (ms)."""

    def __init__(
        self,
        store: ChatStore,
        settings: AppSettings,
        model: ModelState,
        release: Callable[[Path], Callable[[], None]],
        downloads: Downloads | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store, self.settings, self.model, self._release = store, settings, model, release
        self._downloads = downloads  # the download queue, made when first needed
        self.manager: ModelManager | None = None
        self.trainer: TrainWindow | None = None
        self.download_state = QPushButton()
        self.download_state.setFlat(True)
        self.download_state.clicked.connect(self.open_models)
        self.download_state.hide()
        self.documents_state = DocumentsState()
        self._indexing: Indexing | None = None  # the document index, made when first needed
        self.embedding_for: Callable[[str], Any] | None = None
        """The loaded embedding model a collection names (set by the window)."""
        self.documents: DocumentsWindow | None = None
        self.index_state = QPushButton()  # "Indexing notes · 40%" while the window is closed
        self.index_state.setFlat(True)
        self.index_state.clicked.connect(self.open_documents)
        self.index_state.hide()
        self.documents_state.working.connect(lambda _: self._index_changed())

    @property
    def downloads(self) -> Downloads:
        """The download queue; made on first use, listing (paused) what an
        earlier run left unfinished."""
        if self._downloads is None:
            from localchat.core.models.downloads import Downloads

            self._downloads = Downloads()
        return self._downloads

    @property
    def indexing(self) -> Indexing:
        """The document collections' indexing and folder watch; made on first use."""
        if self._indexing is None:
            from localchat.ui.indexing import Indexing

            self._indexing = Indexing(self.documents_state, parent=self)
            self._indexing.embedding_for = self.embedding_for
            self._indexing.message.connect(self.message)
        return self._indexing

    def start_documents(self) -> None:
        """After the first paint: the collections listed and their folders
        watched, when there is an index."""
        if self._indexing is not None or (paths.home() / "documents.sqlite").exists():
            self.indexing.start()

    def open_documents(self) -> None:
        """The Documents window (kept while the app runs)."""
        if self.documents is None:
            from localchat.ui.documents_window import DocumentsWindow

            self.documents = DocumentsWindow(self.indexing)
        self.documents.show()
        self.documents.raise_()
        self.documents.activateWindow()
        self._index_changed()

    def _index_changed(self) -> None:
        state, task = self.documents_state, self.documents_state.task
        shown = self.documents is not None and self.documents.isVisible()
        if task is None or task.action == "remove" or shown:
            self.index_state.hide()
            return
        p = task.progress
        share = f" · {p.bytes_done / p.bytes_total:.0%}" if p and p.bytes_total else ""
        verb = "Indexing paused:" if state.paused else "Indexing"
        self.index_state.setText(f"{verb} {task.name}{share}")
        self.index_state.setToolTip("Open the Documents window")
        self.index_state.show()

    def open_models(self) -> None:
        """The model manager (a window of its own, kept while the app runs)."""
        if self.manager is None:
            from localchat.ui.model_manager import ModelManager

            self.manager = ModelManager(self.settings, self.downloads, release=self._release)
            self.manager.use_requested.connect(self.use_requested)
            self.manager.installed_changed.connect(self.installed_changed)
            self.manager._relay.changed.connect(self._download_changed)
        self.manager.show()
        self.manager.raise_()
        self.manager.activateWindow()

    def refresh_installed(self) -> None:
        if self.manager is not None:
            self.manager.refresh_installed()

    def open_trainer(self, chats: list[int] | None = None) -> None:
        """The Train window (training runs in a process of its own); ``chats``:
        open its Fine-tune page with those chats ticked as the data."""
        if self.trainer is None:
            from localchat.ui.train.window import TrainWindow

            self.trainer = TrainWindow(self.store)
            self.trainer.trained.connect(self.trained)
            self.trainer.adapter_trained.connect(self.adapter_trained)
            self.trainer.chat_requested.connect(self.chat_requested)
        page = self.trainer.finetune
        if not page.running():
            page.refresh(prefer=str(self.model.path) if self.model.path else None)
        if chats is not None:
            self.trainer.show_page("finetune")
            page.tick_chats(chats)
        self.trainer.show()
        self.trainer.raise_()
        self.trainer.activateWindow()

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
        first = self.model.path is None or library.is_demo(self.model.path)
        if item.state == "done" and item.path is not None and first:
            self.use_requested.emit(str(item.path))  # the first real model: ready to chat

    def close(self) -> None:
        """Running downloads pause (their bytes stay, and the next start lists
        them); a training run stops, its checkpoint kept."""
        if self._downloads is not None:
            self._downloads.close()
        if self.manager is not None:
            self.manager.wait()
            self.manager.close()
        if self.trainer is not None:
            self.trainer.close()
        if self.documents is not None:
            self.documents.close()
        if self._indexing is not None:
            self._indexing.close()  # an indexing under way stops after its file
