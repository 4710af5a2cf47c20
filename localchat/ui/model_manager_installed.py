"""The model manager's Installed tab: the models on this computer (the models
folder and the Hugging Face cache) with their facts and fit, to use in the
chat, delete, or add by importing a GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QUrl
from PySide6.QtGui import QBrush, QColor, QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.core import paths
from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.errors import LocalChatError
from localchat.core.models import library
from localchat.core.units import human_count, human_size, plural
from localchat.ui.model_manager_widgets import (
    BADGE_COLORS,
    ROLE,
    Machine,
    badge,
    read_machine,
    tree,
)

if TYPE_CHECKING:
    from localchat.ui.model_manager import ModelManager

Row = tuple[Path, str, ModelInfo | str]
"""A model file, where it is, and its header (or why it is unusable)."""


class InstalledTab(QWidget):
    """The installed models, a row each: parameters, quantization, size,
    trained context, fit at the context chosen for it, and where it is."""

    def __init__(self, manager: ModelManager) -> None:
        super().__init__()
        self.manager = manager
        self.rows: list[Row] = []
        self.tree = tree("Model", "Parameters", "Quant", "Size", "Context", "Fit", "Where")
        self.tree.itemSelectionChanged.connect(self._selected)
        self.tree.itemDoubleClicked.connect(lambda _i, _c: self._use())
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.use_button = QPushButton("Use in this chat")
        self.use_button.clicked.connect(self._use)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self._delete)
        self.import_button = QPushButton("Import a GGUF file…")
        self.import_button.clicked.connect(self._import)
        self.link_box = QCheckBox("Link instead of copying")
        self.link_box.setToolTip(
            "Saves disk space: the models folder gets a hard link to the file (where the disk "
            "allows it), so the original must stay where it is"
        )
        folder = QPushButton("Open the models folder")
        folder.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(paths.models_dir())))
        )
        buttons = QHBoxLayout()
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.delete_button)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.link_box)
        buttons.addWidget(folder)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._selected()

    def refresh(self) -> None:
        """Read the models' headers (and the Hugging Face cache) in the background."""

        def scan() -> tuple[list[Row], Machine]:
            found = [
                (p, "this checkout's models/" if library.in_checkout(p) else "models folder")
                for p in library.installed()
            ]
            found += [(p, "Hugging Face cache") for p in library.hf_cache_models()]
            return [(p, where, library.describe(p)) for p, where in found], read_machine()

        self.manager.run(scan, self._show)

    def _show(self, result: tuple[list[Row], Machine]) -> None:
        rows, machine = result
        self.manager.set_machine(machine)
        self.rows = rows
        self.tree.clear()
        for path, where, info in rows:
            item = QTreeWidgetItem([path.stem, "", "", "", "", "", where])
            item.setData(0, ROLE, str(path))
            item.setToolTip(0, str(path))
            if isinstance(info, str):
                item.setText(1, "unusable")
                item.setToolTip(1, info)
                item.setForeground(1, QBrush(QColor(BADGE_COLORS["too big"])))
            else:
                item.setText(1, human_count(info.parameter_count))
                item.setText(2, info.quantization)
                item.setText(3, human_size(info.file_size))
                item.setText(4, f"{info.context_length:,}")
                badge(item, 5, self.manager.judge(info, str(path)))
            self.tree.addTopLevelItem(item)
        if rows:
            self.status.setText(
                f"{plural(len(rows), 'model')}. Fit: at each model's context size, for this "
                "computer's memory (hover for the numbers)."
            )
            first = self.tree.topLevelItem(0)
            if first is not None:
                self.tree.setCurrentItem(first)
        else:
            self.status.setText(
                "No models yet: pick one in the Catalog tab (or search the Hub) and download "
                "it, or import a .gguf file you already have."
            )
        self._selected()

    def _current(self) -> tuple[Path, str] | None:
        item = self.tree.currentItem()
        if item is None:
            return None
        return Path(item.data(0, ROLE)), item.text(6)

    def _selected(self) -> None:
        current = self._current()
        self.use_button.setEnabled(current is not None)
        self.delete_button.setEnabled(current is not None and current[1] == "models folder")

    def _use(self) -> None:
        current = self._current()
        if current is not None:
            self.manager.use_requested.emit(str(current[0]))

    # -- delete ---------------------------------------------------------------------------

    def _delete(self) -> None:
        current = self._current()
        if current is None or current[1] != "models folder":
            return
        path = current[0]
        size = sum(p.stat().st_size for p in library.parts_of(path) if p.exists())
        answer = QMessageBox.question(
            self,
            "Delete model",
            f"Delete {path.stem} ({human_size(size)}) from this computer?\n\n"
            "Chats made with it stay; to use it again, download or import it again.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(path)

    def delete(self, path: Path) -> None:
        try:  # asked here, on the GUI thread: is the model in use?
            let_go = self.manager.release(path) if self.manager.release else None
        except LocalChatError as exc:
            self.status.setText(str(exc))
            return

        def work() -> Path:
            if let_go is not None:
                let_go()
            return library.remove_model(str(path))

        self.manager.run(work, self._deleted)

    def _deleted(self, path: Path) -> None:
        self.status.setText(f"Deleted {path.stem}.")
        self.manager.installed_changed.emit()
        self.refresh()

    # -- import ---------------------------------------------------------------------------

    def _import(self) -> None:
        source, _ = QFileDialog.getOpenFileName(
            self, "Import a model", str(Path.home()), "GGUF models (*.gguf)"
        )
        if source:
            self.import_file(Path(source), link=self.link_box.isChecked())

    def import_file(self, source: Path, *, link: bool = False) -> None:
        self.status.setText(f"Importing {source.name}…")
        self.import_button.setEnabled(False)
        job = self.manager.run(lambda: library.import_model(source, link=link), self._imported)
        job.finished.connect(lambda: self.import_button.setEnabled(True))

    def _imported(self, path: Path) -> None:
        self.status.setText(f"Imported {path.stem}.")
        self.manager.installed_changed.emit()
        self.refresh()
