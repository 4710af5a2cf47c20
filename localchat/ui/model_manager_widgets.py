"""What the model manager's tabs share: fit badges, their tables, and the
list of a Hub repository's files (the Catalog and Search tabs each show one)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.core import hardware
from localchat.core.models import fit, hub
from localchat.core.units import human_size, plural

BADGES = {"fits": "fits", "tight": "tight", "too big": "won't fit", "unknown": "?"}
BADGE_COLORS = {"fits": "#2e8b57", "tight": "#d4880f", "too big": "#c0392b"}
ROLE = Qt.ItemDataRole.UserRole

Machine = tuple[fit.Memory | None, fit.Memory | None]
"""This computer's RAM and GPU memory, as :func:`read_machine` found them."""
Judge = Callable[[int], fit.Fit]
"""The fit of a file of so many bytes, at the context the settings choose."""


def read_machine() -> Machine:
    """This computer's RAM and GPU memory now (asking the GPU runs nvidia-smi:
    call it off the GUI thread)."""
    return hardware.memory(), hardware.gpu_memory()


def badge(item: QTreeWidgetItem, column: int, verdict: fit.Fit) -> None:
    """Show ``verdict`` in ``column``: a coloured word, the numbers on hover."""
    item.setText(column, f"● {BADGES[verdict.verdict]}")
    color = BADGE_COLORS.get(verdict.verdict)
    if color:
        item.setForeground(column, QBrush(QColor(color)))
    item.setToolTip(column, verdict.explain())


def tree(*columns: str) -> QTreeWidget:
    """A table: the first column stretches, the others fit their contents."""
    table = QTreeWidget()
    table.setHeaderLabels(list(columns))
    table.setRootIsDecorated(False)
    table.setUniformRowHeights(True)
    table.setAlternatingRowColors(True)
    header = table.header()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for i in range(1, len(columns)):
        header.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(False)
    return table


class RepoFiles(QWidget):
    """The GGUF models of one repository: file, quantization, size, fit; a
    Download button for the selected one."""

    download_requested = Signal(object)  # RemoteModel

    def __init__(self, judge: Judge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._judge = judge
        self.repo_id: str | None = None
        self.models: list[hub.RemoteModel] = []
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.tree = tree("File", "Quant", "Size", "Fit")
        self.tree.itemSelectionChanged.connect(self._selected)
        self.tree.itemDoubleClicked.connect(lambda _item, _col: self._download())
        self.download = QPushButton("Download")
        self.download.setEnabled(False)
        self.download.clicked.connect(self._download)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.download)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree, 1)
        layout.addLayout(row)

    def show_loading(self, repo_id: str) -> None:
        self.repo_id, self.models = repo_id, []
        self.tree.clear()
        self.download.setEnabled(False)
        self.status.setText(f"Asking the Hub for the files of {repo_id}…")

    def show_error(self, message: str) -> None:
        self.tree.clear()
        self.models = []
        self.download.setEnabled(False)
        self.status.setText(f"<span style='color:#c0392b'>{escape(message)}</span>")

    def show_models(
        self, repo_id: str, models: list[hub.RemoteModel], *, recommended: str | None = None
    ) -> None:
        self.repo_id, self.models = repo_id, models
        self.tree.clear()
        verdicts = [self._judge(m.size) for m in models]
        pick: QTreeWidgetItem | None = None
        for m, verdict in zip(models, verdicts, strict=True):
            name = m.name if not m.split else f"{m.name}  ({len(m.parts)} parts)"
            item = QTreeWidgetItem([name, m.quant, human_size(m.size), ""])
            item.setData(0, ROLE, m)
            item.setToolTip(0, "\n".join(p.path for p in m.parts))
            badge(item, 3, verdict)
            if recommended and m.quant == recommended.upper():
                item.setText(1, f"{m.quant} (recommended)")
                font = item.font(0)
                font.setBold(True)
                item.setFont(0, font)
                pick = pick or item
            self.tree.addTopLevelItem(item)
        if not models:
            self.status.setText(f"{repo_id} has no GGUF model files.")
            return
        self.status.setText(
            f"{plural(len(models), 'model')} in {repo_id}. Fit: at a {verdicts[0].n_ctx:,}-token "
            "context, for this computer's memory (hover for the numbers)."
        )
        first = pick or self.tree.topLevelItem(0)
        if first is not None:
            self.tree.setCurrentItem(first)

    def selected(self) -> hub.RemoteModel | None:
        item = self.tree.currentItem()
        return item.data(0, ROLE) if item is not None else None

    def _selected(self) -> None:
        self.download.setEnabled(self.selected() is not None)

    def _download(self) -> None:
        model = self.selected()
        if model is not None:
            self.download_requested.emit(model)
