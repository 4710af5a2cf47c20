"""The model manager's Search tab: GGUF repositories on the Hugging Face Hub
that match some words, and the selected one's files, to download.

A search runs on a thread of its own; Cancel (or a newer search) stops
waiting for it: its answer, whenever it comes, is dropped."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.core.models import hub
from localchat.core.units import plural
from localchat.ui.model_manager_widgets import ROLE, RepoFiles, tree

if TYPE_CHECKING:
    from localchat.ui.model_manager import ModelManager


class SearchTab(QWidget):
    """A query and its sort order over the results and the selected one's files."""

    def __init__(self, manager: ModelManager) -> None:
        super().__init__()
        self.manager = manager
        self._ticket = 0
        """The search whose answer counts (each search takes the next)."""
        self.query = QLineEdit(placeholderText="Search GGUF models on the Hugging Face Hub")
        self.query.returnPressed.connect(self.search)
        self.sort = QComboBox()
        for label, key in (("Most downloaded", "downloads"), ("Most liked", "likes")):
            self.sort.addItem(label, key)
        self.sort.addItem("Recently updated", "recent")
        self.sort.currentIndexChanged.connect(lambda _i: self.search())
        self.go = QPushButton("Search")
        self.go.clicked.connect(self.search)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop waiting for the Hub")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.results = tree("Repository", "Downloads", "Likes", "Updated")
        self.results.itemSelectionChanged.connect(self._result_selected)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.files = RepoFiles(manager.judge)
        self.files.download_requested.connect(manager.download)
        row = QHBoxLayout()
        row.addWidget(self.query, 1)
        row.addWidget(self.sort)
        row.addWidget(self.go)
        row.addWidget(self.cancel_button)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.results)
        split.addWidget(self.files)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)

    def search(self) -> None:
        query = self.query.text().strip()
        if not query:
            return
        sort = self.sort.currentData()
        self._ticket += 1
        ticket = self._ticket
        self._searching(True)
        self.status.setText(f"Searching the Hub for {query!r}…")

        def found(results: list[hub.RepoSummary]) -> None:
            if ticket != self._ticket:
                return  # cancelled, or an older search
            self._searching(False)
            self.results.clear()
            for r in results:
                name = r.repo_id + ("  (gated)" if r.gated else "")
                item = QTreeWidgetItem(
                    [name, f"{r.downloads:,}", f"{r.likes:,}", r.last_modified[:10]]
                )
                item.setData(0, ROLE, r.repo_id)
                if r.gated:
                    item.setToolTip(0, "Gated: accept its terms on the Hub and set HF_TOKEN")
                self.results.addTopLevelItem(item)
            self.status.setText(
                f"{plural(len(results), 'repository', 'repositories')} with GGUF files "
                f"match {query!r}."
                if results
                else f"No GGUF models on the Hub match {query!r}."
            )

        def failed(message: str) -> None:
            if ticket != self._ticket:
                return
            self._searching(False)
            self.status.setText(f"<span style='color:#c0392b'>{escape(message)}</span>")

        self.manager.run(lambda: hub.search(query, sort=sort, limit=50), found, failed)

    def cancel(self) -> None:
        """Stop waiting for the search in flight (its answer is dropped)."""
        if not self.searching():
            return
        self._ticket += 1
        self._searching(False)
        self.status.setText("Search cancelled.")

    def searching(self) -> bool:
        """Whether a search is in flight (and not cancelled)."""
        return not self.go.isEnabled()

    def _searching(self, running: bool) -> None:
        self.go.setEnabled(not running)
        self.cancel_button.setVisible(running)

    def _result_selected(self) -> None:
        item = self.results.currentItem()
        if item is not None:
            self.manager.open_repo(item.data(0, ROLE), self.files)
