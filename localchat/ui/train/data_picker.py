"""What a fine-tune learns from: text files, folders and chat JSONL in one
list, your own chats ticked in another (written out as chat JSONL for the run,
with the chats that gave nothing named)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.store import ChatStore
from localchat.core.trainer import chat_data
from localchat.core.trainer.data import TEXT_SUFFIXES
from localchat.core.units import plural
from localchat.ui.train.files_survey import FilesSurvey
from localchat.ui.train.widgets import caption, note

DATA_SUFFIXES = {*TEXT_SUFFIXES, ".jsonl"}


class DataPicker(QGroupBox):
    """The "Training data" box: files and folders (added, removed), and the
    chats of ``store`` with a tick each (All, None, how many are chosen).
    :attr:`changed` says the files or the ticks changed."""

    changed = Signal()

    def __init__(self, store: ChatStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Training data", parent)
        self.store = store
        self._chats_dir: tempfile.TemporaryDirectory[str] | None = None
        self._ticked: list[int] = []
        self.survey = FilesSurvey(DATA_SUFFIXES, self)
        self.survey.ready.connect(self.changed)
        self.files = QListWidget()
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.files.setToolTip(
            "Text files or folders (continued training: style and knowledge), or chat JSONL "
            '({"messages": [...]} per line: only the assistant replies are learned)'
        )
        add = QPushButton("Add files…")
        add.clicked.connect(self._add_files)
        add_folder = QPushButton("Add a folder…")
        add_folder.clicked.connect(self._add_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_files)
        file_buttons = QVBoxLayout()
        for b in (add, add_folder, remove):
            file_buttons.addWidget(b)
        file_buttons.addStretch(1)
        self.chats = QListWidget()
        self.chats.setToolTip("Your conversations: the model learns the assistant's replies")
        self.chats.itemChanged.connect(self._chats_ticked)
        self.all_chats_button = QPushButton("All")
        self.all_chats_button.clicked.connect(lambda: self._tick_all(True))
        self.no_chats_button = QPushButton("None")
        self.no_chats_button.clicked.connect(lambda: self._tick_all(False))
        self.chat_count = note("")
        self.chat_count.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        chat_buttons = QVBoxLayout()
        chat_buttons.addWidget(self.all_chats_button)
        chat_buttons.addWidget(self.no_chats_button)
        chat_buttons.addWidget(self.chat_count)
        chat_buttons.addStretch(1)
        data = QGridLayout(self)
        data.addWidget(caption("Files and folders"), 0, 0, 1, 2)
        data.addWidget(self.files, 1, 0)
        data.addLayout(file_buttons, 1, 1)
        data.addWidget(caption("Your chats"), 2, 0, 1, 2)
        data.addWidget(self.chats, 3, 0)
        data.addLayout(chat_buttons, 3, 1)
        data.setColumnStretch(0, 1)
        data.setRowStretch(1, 2)
        data.setRowStretch(3, 3)
        model = self.files.model()
        for changed in (model.rowsInserted, model.rowsRemoved, model.modelReset):
            changed.connect(self.changed)

    # -- files and folders ------------------------------------------------------------------

    def paths(self) -> list[str]:
        """The files and folders listed, in order."""
        return [self.files.item(i).text() for i in range(self.files.count())]

    def summary(self) -> str:
        """What is chosen, for the page's hint ('' for nothing): "2 files, 12.0 KB
        and 3 chats"."""
        parts = [self.survey.summary(self.paths())] if self.files.count() else []
        if chats := len(self.chosen_chats()):
            parts.append(plural(chats, "chat"))
        return " and ".join(parts)

    def add_data(self, path: str | os.PathLike[str]) -> None:
        text = str(path)
        if not self.files.findItems(text, Qt.MatchFlag.MatchExactly):
            self.files.addItem(text)

    def _add_files(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(
            self,
            "Text or chats to train on",
            str(Path.home()),
            "Text and chat JSONL (*.txt *.md *.rst *.html *.jsonl);;All (*)",
        )
        for path in chosen:
            self.add_data(path)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of text", str(Path.home()))
        if folder:
            self.add_data(folder)

    def _remove_files(self) -> None:
        for item in self.files.selectedItems():
            self.files.takeItem(self.files.row(item))

    # -- chats ------------------------------------------------------------------------------

    def refresh_chats(self) -> None:
        """Re-list the chats (the ticks kept)."""
        ticked = set(self.chosen_chats())
        self.chats.blockSignals(True)
        self.chats.clear()
        for chat in self.store.list_chats() if self.store is not None else []:
            item = QListWidgetItem(chat.title or "New chat")
            item.setData(Qt.ItemDataRole.UserRole, chat.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if chat.id in ticked else Qt.CheckState.Unchecked
            )
            self.chats.addItem(item)
        self.chats.blockSignals(False)
        self._chats_ticked()

    def chosen_chats(self) -> list[int]:
        return [
            int(self.chats.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.chats.count())
            if self.chats.item(i).checkState() == Qt.CheckState.Checked
        ]

    def tick_chats(self, chat_ids: list[int]) -> None:
        for i in range(self.chats.count()):
            item = self.chats.item(i)
            wanted = int(item.data(Qt.ItemDataRole.UserRole)) in chat_ids
            item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)

    def _tick_all(self, on: bool) -> None:
        state = Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
        self.chats.blockSignals(True)
        for i in range(self.chats.count()):
            self.chats.item(i).setCheckState(state)
        self.chats.blockSignals(False)
        self._chats_ticked()

    def _chats_ticked(self, _item: object = None) -> None:
        chosen = self.chosen_chats()
        if not self.chats.count():
            self.chat_count.setText("no chats yet")
        else:
            self.chat_count.setText(f"{len(chosen)} of {self.chats.count()} chosen")
        if chosen != self._ticked:  # not for a re-listing that kept the ticks
            self._ticked = chosen
            self.changed.emit()

    def export_chats(self, chat_ids: list[int]) -> tuple[Path | None, chat_data.StoreChats]:
        """The chats as chat JSONL, in a folder of the run's own (kept until
        :meth:`forget_export`), or None when they hold no finished reply; and
        what they gave (which gave nothing, and why)."""
        assert self.store is not None
        found = chat_data.read_store(self.store, chat_ids)
        if not found.conversations:
            return None, found
        if self._chats_dir is None:
            self._chats_dir = tempfile.TemporaryDirectory(prefix="localchat-chats-")
        path = Path(self._chats_dir.name) / "my-chats.jsonl"
        return chat_data.write_jsonl(found.conversations, path), found

    def forget_export(self) -> None:
        """The run is over: its copy of the chats goes."""
        if self._chats_dir is not None:
            self._chats_dir.cleanup()
            self._chats_dir = None
