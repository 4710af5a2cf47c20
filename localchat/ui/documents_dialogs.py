"""The Documents window's dialogs: a new collection (its name, and the
folders and files it is made of, chosen with the system's file dialogs),
the files a collection skipped with the reason for each, and the question
before removing one (the index goes, the files stay)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.core.documents.extract import FORMATS
from localchat.core.units import plural
from localchat.ui import theme
from localchat.ui.model_manager_widgets import tree

FILE_FILTER = "Documents (" + " ".join(f"*{s}" for s in sorted(FORMATS)) + ");;All files (*)"
"""What "Add files…" offers: the formats the index reads (others are listed as skipped)."""


def choose_folder(parent: QWidget, title: str = "Add a folder") -> Path | None:
    folder = QFileDialog.getExistingDirectory(parent, title)
    return Path(folder) if folder else None


class NewCollectionDialog(QDialog):
    """A name and at least one folder or file; ``name()`` and ``paths()``
    once accepted. ``taken``: the names in use (a collection's name is its
    key in chats and on the command line)."""

    def __init__(self, taken: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New collection")
        self.taken = {t.casefold() for t in taken}
        self.name_box = QLineEdit()
        self.name_box.setPlaceholderText("e.g. Notes")
        self.name_box.setAccessibleName("Collection name")
        self.name_box.textChanged.connect(self._check)
        self.list = QListWidget()
        self.list.setAccessibleName("Folders and files")
        self.list.setMinimumHeight(120)
        self.list.itemSelectionChanged.connect(self._check)
        self.add_folder = QPushButton("Add folder…")
        self.add_folder.clicked.connect(self._folder)
        self.add_files = QPushButton("Add files…")
        self.add_files.clicked.connect(self._files)
        self.drop = QPushButton("Remove from the list")
        self.drop.clicked.connect(self._drop)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        palette = self.problem.palette()
        palette.setColor(QPalette.ColorRole.WindowText, theme.error_colour(palette))
        self.problem.setPalette(palette)
        note = theme.secondary(
            QLabel(
                "The files stay where they are: LocalChat reads them and keeps an index "
                "of their passages. Folders are read with their subfolders, and watched "
                "for changes while LocalChat runs."
            )
        )
        note.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Make collection")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Name:", self.name_box)
        row = QHBoxLayout()
        row.addWidget(self.add_folder)
        row.addWidget(self.add_files)
        row.addStretch(1)
        row.addWidget(self.drop)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Folders and files:"))
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        layout.addWidget(note)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.resize(560, 380)
        self._check()

    def name(self) -> str:
        return " ".join(self.name_box.text().split())

    def paths(self) -> list[Path]:
        return [Path(self.list.item(i).text()) for i in range(self.list.count())]

    def add_paths(self, paths: list[Path]) -> None:
        shown = set(map(str, self.paths()))
        for p in paths:
            if str(p) not in shown:
                self.list.addItem(str(p))
                shown.add(str(p))
        if not self.name_box.text().strip() and paths:
            self.name_box.setText(paths[0].stem if paths[0].is_file() else paths[0].name)
        self._check()

    def _folder(self) -> None:
        folder = choose_folder(self)
        if folder is not None:
            self.add_paths([folder])

    def _files(self) -> None:
        files, _chosen = QFileDialog.getOpenFileNames(self, "Add files", "", FILE_FILTER)
        self.add_paths([Path(f) for f in files])

    def _drop(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self._check()

    def _check(self) -> None:
        name = self.name()
        problem = ""
        if name.casefold() in self.taken:
            problem = f"There is already a collection named {name}: choose another name."
        elif not name and self.list.count():
            problem = "Give the collection a name."
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.ok.setEnabled(bool(name) and not problem and self.list.count() > 0)
        self.drop.setEnabled(bool(self.list.selectedItems()))


class SkippedDialog(QDialog):
    """The files of a collection that were not indexed, each with why."""

    def __init__(self, name: str, skipped: list[tuple[str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Skipped files — {name}")
        intro = QLabel(
            f"{plural(len(skipped), 'file')} of {name} could not be indexed. Fix or replace a "
            "file and it is read again at the next update."
        )
        intro.setWordWrap(True)
        self.tree = tree("File", "Why")
        self.tree.setAccessibleName("Skipped files")
        for path, reason in skipped:  # a short name, the whole path on hover
            row = QTreeWidgetItem([Path(path).name, reason])
            row.setToolTip(0, path)
            row.setToolTip(1, reason)
            self.tree.addTopLevelItem(row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.tree, 1)
        layout.addWidget(buttons)
        self.resize(620, 360)

    def rows(self) -> list[tuple[str, str]]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [(item.toolTip(0), item.text(1)) for item in items if item is not None]


def confirm_remove(parent: QWidget, name: str, files: int) -> bool:
    """Ask before removing ``name`` from the index (its files stay)."""
    answer = QMessageBox.question(
        parent,
        "Remove collection",
        f"Remove {name} ({plural(files, 'file')}) from the index?\n\n"
        "The files themselves stay where they are: only LocalChat's index of them goes. "
        "Chats that drew on it keep the sources they were given.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Yes
