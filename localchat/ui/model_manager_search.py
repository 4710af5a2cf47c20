"""The model manager's Search tab: GGUF repositories on the Hugging Face Hub
that match some words, and the selected one's files, to download."""

from __future__ import annotations

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
        self.query = QLineEdit(placeholderText="Search GGUF models on the Hugging Face Hub")
        self.query.returnPressed.connect(self.search)
        self.sort = QComboBox()
        for label, key in (("Most downloaded", "downloads"), ("Most liked", "likes")):
            self.sort.addItem(label, key)
        self.sort.addItem("Recently updated", "recent")
        self.sort.currentIndexChanged.connect(lambda _i: self.search())
        go = QPushButton("Search")
        go.clicked.connect(self.search)
        self.results = tree("Repository", "Downloads", "Likes", "Updated")
        self.results.itemSelectionChanged.connect(self._result_selected)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.files = RepoFiles(manager.judge)
        self.files.download_requested.connect(manager.download)
        row = QHBoxLayout()
        row.addWidget(self.query, 1)
        row.addWidget(self.sort)
        row.addWidget(go)
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
        self.status.setText(f"Searching the Hub for {query!r}…")

        def found(results: list[hub.RepoSummary]) -> None:
            if self.query.text().strip() != query:
                return  # an older search
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
            self.status.setText(f"<span style='color:#c0392b'>{message}</span>")

        self.manager.run(lambda: hub.search(query, sort=sort, limit=50), found, failed)

    def _result_selected(self) -> None:
        item = self.results.currentItem()
        if item is not None:
            self.manager.open_repo(item.data(0, ROLE), self.files)
