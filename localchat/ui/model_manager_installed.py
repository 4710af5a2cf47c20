"""The model manager's Installed tab: the models on this computer (the models
folder, the Hugging Face cache, the bundled demo) with their facts and fit,
to use in the chat, delete, or add by importing a GGUF file.

While the window is shown, the models folder is watched: a model another
process adds or removes there (``localchat models import``, a file manager)
shows up on its own, a moment after the folder changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QFileSystemWatcher, QTimer, QUrl
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

FOLDER = "models folder"
CHECKOUT = "this checkout's models/"
HF_CACHE = "Hugging Face cache"
DEMO = "demo (ships with LocalChat)"
"""Where a model is: the Where column's words. Only the models folder's can be deleted."""
SETTLE_MS = 400
"""How long the models folder must stay unchanged before it is read again."""


def link_kind(path: Path) -> str | None:
    """``link`` (a symbolic link), ``hard link`` (another name of a file that
    has one elsewhere too, as ``models import --link`` makes), or None."""
    if path.is_symlink():
        return "link"
    files = [p for p in library.parts_of(path) if p.exists()]
    if files and all(p.stat().st_nlink > 1 for p in files):
        return "hard link"
    return None


def delete_question(path: Path) -> tuple[str, str]:
    """The title and the question before deleting ``path``: a link removes
    only the link, so the file's size is said only for a file of its own."""
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        return (
            "Remove link",
            f"Remove the link to {target} from the models folder (the file itself stays)?\n\n"
            "Chats made with it stay; to use it again, import it again.",
        )
    files = [p for p in library.parts_of(path) if p.exists()]
    size = sum(p.stat().st_size for p in files)
    if link_kind(path) == "hard link":
        what = (
            f"Remove {path.stem} from the models folder? It is a hard link: the same file "
            "stays under its other name, so no disk space is freed."
        )
    else:
        what = f"Delete {path.stem} ({human_size(size)}) from this computer?"
    return (
        "Delete model",
        f"{what}\n\nChats made with it stay; to use it again, download or import it again.",
    )


class InstalledTab(QWidget):
    """The installed models, a row each: parameters, quantization, size,
    trained context, fit at the context chosen for it, and where it is."""

    def __init__(self, manager: ModelManager) -> None:
        super().__init__()
        self.manager = manager
        self.rows: list[Row] = []
        self._listed: set[Path] | None = None
        """The models the last scan found (None before the first)."""
        self._note = ""
        """What was just done (deleted, imported), said before the count once the list is in."""
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
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self._folder_changed)
        self._settle = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self._settle.timeout.connect(lambda: self.refresh(announce=True))
        self._watching = False

    # -- the list -------------------------------------------------------------------

    def refresh(self, *, announce: bool = False) -> None:
        """Read the models' headers (and the Hugging Face cache) in the
        background; ``announce``: say ``installed_changed`` when the models
        found are not the ones listed (the folder changed behind our back)."""

        def scan() -> tuple[list[Row], Machine]:
            found = [
                (p, CHECKOUT if library.in_checkout(p) else FOLDER) for p in library.installed()
            ]
            found += [(p, HF_CACHE) for p in library.hf_cache_models()]
            bundled = library.demo()
            if bundled is not None:
                found.append((bundled, DEMO))
            return [(p, where, library.describe(p)) for p, where in found], read_machine()

        self.manager.run(scan, lambda result: self._show(result, announce=announce))

    def watch(self, on: bool) -> None:
        """Watch the models folder (while the window is shown), or stop; when
        watching starts again, what changed meanwhile is read."""
        if on and not self._watching:
            self._watching = True
            self._watch()
            if self._listed is not None:
                self.refresh(announce=True)
        elif not on and self._watching:
            self._watching = False
            self._settle.stop()
            if self.watcher.directories():
                self.watcher.removePaths(self.watcher.directories())

    def _watch(self) -> None:
        """Watch the models folder (made again if it was removed)."""
        folder = str(paths.models_dir())
        if self._watching and folder not in self.watcher.directories():
            self.watcher.addPath(folder)

    def _folder_changed(self, _path: str) -> None:
        self._watch()  # the models folder may have been made (or removed)
        self._settle.start()  # read it again once it settles

    def _show(self, result: tuple[list[Row], Machine], *, announce: bool = False) -> None:
        rows, machine = result
        self.manager.set_machine(machine)
        listed = {path for path, _where, _info in rows}
        same = listed == self._listed
        if announce and self._listed is not None and not same:
            self.manager.installed_changed.emit()
        self._listed = listed
        self.rows = rows
        current = self._current()
        chosen = current[0] if current is not None else None
        self.tree.clear()
        for path, where, info in rows:
            item = QTreeWidgetItem([path.stem, "", "", "", "", "", where])
            item.setData(0, ROLE, str(path))
            item.setToolTip(0, str(path))
            if where == DEMO:
                item.setToolTip(
                    6, "The tiny demo model that comes with LocalChat, to try it: it stays"
                )
            elif (kind := link_kind(path)) == "link":
                item.setText(6, f"{where} (link)")
                item.setToolTip(6, f"A link to {os.path.realpath(path)}")
            elif kind == "hard link":
                item.setText(6, f"{where} (hard link)")
                item.setToolTip(6, "Another name of a file kept elsewhere too: no extra space")
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
            if path == chosen:
                self.tree.setCurrentItem(item)  # the selection stays where it was
        first = self.tree.topLevelItem(0)
        if self.tree.currentItem() is None and first is not None:
            self.tree.setCurrentItem(first)
        if not (announce and same):  # a rescan that found nothing new leaves the status
            self.status.setText(self._note + self._summary(len(rows)))
            self._note = ""
        self._selected()

    @staticmethod
    def _summary(count: int) -> str:
        if count:
            return (
                f"{plural(count, 'model')}. Fit: at each model's context size, for this "
                "computer's memory (hover for the numbers)."
            )
        return (
            "No models yet: pick one in the Catalog tab (or search the Hub) and download "
            "it, or import a .gguf file you already have."
        )

    def _current(self) -> tuple[Path, str] | None:
        """The selected model and where it is (:data:`FOLDER`, :data:`DEMO`...)."""
        item = self.tree.currentItem()
        if item is None:
            return None
        path = Path(item.data(0, ROLE))
        where = next((w for p, w, _i in self.rows if p == path), item.text(6))
        return path, where

    def _selected(self) -> None:
        current = self._current()
        self.use_button.setEnabled(current is not None)
        self.delete_button.setEnabled(current is not None and current[1] == FOLDER)
        self.delete_button.setToolTip(
            "The demo model comes with LocalChat and stays"
            if current is not None and current[1] == DEMO
            else ""
        )

    def _use(self) -> None:
        current = self._current()
        if current is not None:
            self.manager.use_requested.emit(str(current[0]))

    # -- delete ---------------------------------------------------------------------------

    def _delete(self) -> None:
        current = self._current()
        if current is None or current[1] != FOLDER:
            return
        path = current[0]
        title, question = delete_question(path)
        answer = QMessageBox.question(self, title, question)
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(path)

    def delete(self, path: Path) -> None:
        try:  # asked here, on the GUI thread: is the model in use?
            let_go = self.manager.release(path) if self.manager.release else None
        except LocalChatError as exc:
            self.status.setText(str(exc))
            return

        link = link_kind(path)

        def work() -> Path:
            if let_go is not None:
                let_go()
            return library.remove_model(str(path))

        self.manager.run(work, lambda gone: self._deleted(gone, link=link))

    def _deleted(self, path: Path, *, link: str | None = None) -> None:
        self._note = {
            "link": f"Removed the link {path.stem} (the file itself stays). ",
            "hard link": f"Removed {path.stem} from the models folder (the same file stays "
            "under its other name). ",
        }.get(link or "", f"Deleted {path.stem}. ")
        self.status.setText(self._note)
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
        self._note = f"Imported {path.stem}. "
        self.status.setText(self._note)
        self.manager.installed_changed.emit()
        self.refresh()
