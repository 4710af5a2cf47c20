"""The Train window: its two pages (Fine-tune, Train from scratch) in tabs,
one training at a time, and what they trained passed on to the main window."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from localchat.core.chat.store import ChatStore
from localchat.ui.train.finetune_page import FinetunePage
from localchat.ui.train.run_page import RunPage
from localchat.ui.train.scratch_page import ScratchPage


class TrainWindow(QWidget):
    """A window of its own, two pages: Fine-tune (LoRA on a model you have)
    and Train from scratch. Emits :attr:`trained` with a new model's path,
    :attr:`adapter_trained` with a new adapter's, and :attr:`chat_requested`
    (base, adapter) for "Chat with it". One training runs at a time."""

    trained = Signal(str)
    adapter_trained = Signal(str)
    chat_requested = Signal(str, str)

    def __init__(self, store: ChatStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Train — LocalChat")
        self.resize(1080, 700)
        self.finetune = FinetunePage(store)
        self.scratch = ScratchPage()
        self.finetune.adapter_trained.connect(self.adapter_trained)
        self.finetune.chat_requested.connect(self.chat_requested)
        self.scratch.trained.connect(self.trained)
        for page in self.pages():
            page.running_toggled.connect(self.update_blocking)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.finetune, "Fine-tune a model")
        self.tabs.addTab(self.scratch, "Train from scratch")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)

    def pages(self) -> tuple[RunPage, ...]:
        return (self.finetune, self.scratch)

    def running(self) -> bool:
        return any(page.running() for page in self.pages())

    def update_blocking(self) -> None:
        """Two trainings at once would halve each other's speed: while one runs,
        the other page's Start says so."""
        for page in self.pages():
            others = [p for p in self.pages() if p is not page and p.running()]
            kind = "fine-tune" if self.finetune in others else "training"
            page.blocked = ""
            if others:
                page.blocked = f"A {kind} is running on the other page: stop it first."

    def show_page(self, kind: str, base: str | None = None) -> None:
        """``kind``: 'finetune' (with ``base`` chosen, when given) or 'scratch'."""
        page = self.finetune if kind == "finetune" else self.scratch
        self.tabs.setCurrentWidget(page)
        if page is self.finetune and not self.finetune.running():
            self.finetune.refresh(prefer=base)

    def closeEvent(self, event: Any) -> None:
        for page in self.pages():
            page.close_run()  # a run stops, its checkpoint kept
        super().closeEvent(event)
