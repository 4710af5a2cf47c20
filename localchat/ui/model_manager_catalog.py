"""The model manager's Catalog tab: the curated models, each with its facts
and an estimated fit; the selected one's Hub files below, to download."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QTreeWidgetItem, QVBoxLayout, QWidget

from localchat.core.models import catalog, hub
from localchat.core.models.catalog import CatalogEntry
from localchat.core.units import human_count, human_size
from localchat.ui.model_manager_widgets import ROLE, RepoFiles, badge, tree

if TYPE_CHECKING:
    from localchat.ui.model_manager import ModelManager

log = logging.getLogger(__name__)


class CatalogTab(QWidget):
    """The catalog's entries over the selected entry's description and files."""

    def __init__(self, manager: ModelManager) -> None:
        super().__init__()
        self.manager = manager
        self.tree = tree("Model", "Parameters", "Context", "License", "Size", "Fit")
        self.tree.itemSelectionChanged.connect(self._selected)
        self.about = QLabel()
        self.about.setWordWrap(True)
        self.about.setOpenExternalLinks(True)
        self.files = RepoFiles(manager.judge)
        self.files.download_requested.connect(manager.download)
        try:
            self.entries = catalog.entries()
        except Exception as exc:  # a broken catalog file: say so, the rest works
            log.exception("the catalog could not be read")
            self.entries = []
            self.about.setText(str(exc))
        for entry in self.entries:
            item = QTreeWidgetItem(
                [
                    entry.name,
                    human_count(entry.parameters),
                    f"{entry.context:,}",
                    entry.license,
                    f"~{human_size(entry.estimated_size())} ({entry.quant})",
                    "",
                ]
            )
            item.setData(0, ROLE, entry)
            item.setToolTip(
                4, "About, from the parameters; the exact sizes come from the Hub below"
            )
            self.tree.addTopLevelItem(item)
        self.refit()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.about)
        lower_layout.addWidget(self.files, 1)
        split.addWidget(lower)
        QVBoxLayout(self).addWidget(split)

    def refit(self) -> None:
        """Each entry's badge, at its recommended quantization's estimated size."""
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item is None:
                continue
            entry: CatalogEntry = item.data(0, ROLE)
            size = entry.estimated_size()
            verdict = self.manager.judge(size)
            badge(item, 5, verdict)
            item.setToolTip(
                5,
                f"At {entry.quant}, about {human_size(size)} on disk; {verdict.explain()} "
                f"(at a {verdict.n_ctx:,}-token context)",
            )

    def _selected(self) -> None:
        item = self.tree.currentItem()
        if item is None:
            return
        entry: CatalogEntry = item.data(0, ROLE)
        about = [
            f"<b>{entry.name}</b> · <a href='{hub.endpoint()}/{entry.repo_id}'>"
            f"{entry.repo_id}</a> · recommended: {entry.quant}"
        ]
        if entry.settings:
            chosen = ", ".join(f"{k.replace('_', ' ')} {v!r}" for k, v in entry.settings.items())
            about.append(f"Recommended settings (applied when it is installed): {chosen}.")
        if entry.notes:
            about.append(entry.notes)
        self.about.setText("<br>".join(about))
        self.manager.open_repo(entry.repo_id, self.files, recommended=entry.quant)
