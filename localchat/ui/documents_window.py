"""The Documents window: the collections of folders and files that chats can
draw on, a row each (what it is made of, files, skipped, passages, size,
its state), with New collection…, Add folder…, Update (Resume for an
unfinished one), Skipped files… and Remove…; under them, the indexing
under way with its progress (files, MB, time left), Pause and Stop.

It only draws ``DocumentsState`` and asks ``Indexing`` (``indexing.py``),
which does the work off the GUI thread and goes on while the window is
closed (the status bar shows it then)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QDate, QDateTime, QLocale, Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.core.documents.store import Collection
from localchat.core.units import duration, human_size, plural
from localchat.ui import theme
from localchat.ui.bridge import Background
from localchat.ui.documents_dialogs import (
    NewCollectionDialog,
    SkippedDialog,
    choose_folder,
    confirm_remove,
)
from localchat.ui.indexing import Indexing
from localchat.ui.model_manager_widgets import tree
from localchat.ui.state import DocumentsState, IndexTask

COLUMNS = ("Collection", "Folders and files", "Files", "Skipped", "Passages", "Size", "State")
INTRO = (
    "Collections of your folders and files that a chat can draw on: tick them under "
    "the message box (Documents), and each reply is given the passages that answer "
    "your question, and lists them as its sources. The files stay where they are; "
    "LocalChat keeps an index of them, updated as they change while it runs."
)
EMPTY = "No collections yet: New collection… makes one of your folders and files."


def shorter(path: str) -> str:
    """A path with the home folder as ~."""
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + "/") else path


def state_text(collection: Collection, state: DocumentsState) -> str:
    """A collection's State column: what is happening to it, or when it was updated."""
    task = state.task
    if task is not None and task.name == collection.name:
        if task.action == "remove":
            return "removing…"
        if task.stopping:
            return "stopping…"
        return "paused" if state.paused else "indexing…"
    if collection.name in state.waiting:
        return "waiting"
    if collection.updating:
        return "unfinished"
    if collection.updated_at is None:
        return ""
    when = QDateTime.fromSecsSinceEpoch(int(collection.updated_at))
    locale = QLocale()
    time = locale.toString(when.time(), QLocale.FormatType.ShortFormat)
    if when.date() == QDate.currentDate():
        return f"updated today, {time}"
    return f"updated {locale.toString(when.date(), 'd MMM yyyy')}, {time}"


def progress_text(task: IndexTask, state: DocumentsState) -> str:
    """The line over the progress bar."""
    if task.action == "remove":
        return f"Removing {task.name} from the index…"
    verb = "Paused:" if state.paused else "Indexing"
    p = task.progress
    if p is None:
        text = f"{verb} {task.name}: looking for files…"
    else:
        text = (
            f"{verb} {task.name}: {p.files_done:,} of {plural(p.files_total, 'file')} · "
            f"{human_size(p.bytes_done)} of {human_size(p.bytes_total)}"
        )
        if p.eta_s is not None and not state.paused and p.files_done < p.files_total:
            text += f" · about {duration(p.eta_s)} left"
    if task.stopping:
        text += " · stopping after this file…"
    return text


class DocumentsWindow(QWidget):
    """A window of its own (non-modal), made when first opened."""

    def __init__(self, indexing: Indexing, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Documents — LocalChat")
        self.resize(900, 520)
        self.indexing, self.state = indexing, indexing.state
        self.background = Background(self)
        self.background.failed.connect(self._say)
        self.new_dialog: NewCollectionDialog | None = None
        self.skipped_dialog: SkippedDialog | None = None
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.tree = tree(*COLUMNS)
        self.tree.setAccessibleName("Collections")
        # The folders' column takes the room and is shortened in its middle
        # (the whole paths are in its tooltip): a long path never pushes the
        # figures out of sight.
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.itemSelectionChanged.connect(self._buttons)
        self.new_button = QPushButton("New collection…")
        self.new_button.clicked.connect(self.new_collection)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Add a folder (with its subfolders) to the collection")
        self.add_button.clicked.connect(self.add_folder)
        self.update_button = QPushButton("Update")
        self.update_button.clicked.connect(self.update_selected)
        self.skipped_button = QPushButton("Skipped files…")
        self.skipped_button.setToolTip("The files that could not be indexed, and why")
        self.skipped_button.clicked.connect(self.show_skipped)
        self.remove_button = QPushButton("Remove…")
        self.remove_button.setToolTip("Remove the collection from the index (the files stay)")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        for button in (self.new_button, self.add_button, self.update_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.skipped_button)
        buttons.addWidget(self.remove_button)

        # The indexing under way.
        self.progress = QWidget()
        self.progress.setObjectName("indexing")
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        self.current = theme.secondary(QLabel())
        self.current.setTextFormat(Qt.TextFormat.PlainText)
        self.current.setMinimumWidth(0)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(12)
        self.bar.setAccessibleName("Indexing progress")
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(
            "Stop after the file being read: what is done stays done, and Resume goes on"
        )
        self.stop_button.clicked.connect(self.indexing.stop)
        top = QHBoxLayout()
        top.addWidget(self.progress_label, 1)
        top.addWidget(self.pause_button)
        top.addWidget(self.stop_button)
        box = QVBoxLayout(self.progress)
        box.setContentsMargins(0, 4, 0, 0)
        box.addLayout(top)
        box.addWidget(self.bar)
        box.addWidget(self.current)

        self.status = QLabel()
        self.status.setObjectName("documents-status")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.state.listed.connect(lambda _: self._list())
        self.state.working.connect(lambda _: self._work())
        indexing.message.connect(lambda text, _ms: self._say(text))
        self._list()
        self._work()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.indexing.refresh()  # made or changed elsewhere (localchat docs) meanwhile

    # -- the list ---------------------------------------------------------------------

    def selected(self) -> Collection | None:
        items = self.tree.selectedItems()
        return self.state.find(items[0].text(0)) if items else None

    def select(self, name: str) -> None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item is not None and item.text(0) == name:
                self.tree.setCurrentItem(item)

    def rows(self) -> list[list[str]]:
        """The rows as shown (for tests)."""
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [[item.text(c) for c in range(len(COLUMNS))] for item in items if item]

    def _list(self) -> None:
        chosen = self.selected()
        self.tree.clear()
        for c in self.state.collections:
            roots = ", ".join(shorter(r) for r in c.roots)
            item = QTreeWidgetItem(
                [
                    c.name,
                    roots,
                    f"{c.files:,}",
                    f"{c.skipped:,}" if c.skipped else "",
                    f"{c.chunks:,}",
                    human_size(c.bytes),
                    state_text(c, self.state),
                ]
            )
            item.setToolTip(1, "\n".join(c.roots))
            if c.updating and not self.state.busy_with(c.name):
                item.setToolTip(6, "An update stopped before its end: Resume finishes it")
            for column in range(2, 6):
                item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight)
            self.tree.addTopLevelItem(item)
        if chosen is not None:
            self.select(chosen.name)
        elif (first := self.tree.topLevelItem(0)) is not None:
            self.tree.setCurrentItem(first)
        if not self.state.collections and not self.status.text():
            self.status.setText(EMPTY)
        elif self.status.text() == EMPTY:
            self.status.clear()
        self._buttons()

    def _work(self) -> None:
        task, state = self.state.task, self.state
        self.progress.setVisible(task is not None or bool(state.waiting) or state.paused)
        if task is None:
            waiting = ", ".join(state.waiting)
            if state.paused:
                text = "Indexing is paused" + (f": {waiting} waits" if waiting else "")
            else:
                text = f"Waiting: {waiting}" if waiting else ""
            self.progress_label.setText(text)
            self.current.clear()
            self.bar.setRange(0, 1000)
            self.bar.setValue(0)
        else:
            text = progress_text(task, state)
            later = [n for n in state.waiting if n != task.name]
            if later:
                text += f" (then {', '.join(later)})"
            self.progress_label.setText(text)
            p = task.progress
            self.current.setText(Path(p.current).name if p is not None and p.current else "")
            self.current.setToolTip(p.current if p is not None else "")
            if task.action == "remove" or p is None:
                self.bar.setRange(0, 0)  # busy: no figure to show
            else:
                self.bar.setRange(0, 1000)
                share = (
                    p.bytes_done / p.bytes_total
                    if p.bytes_total
                    else p.files_done / max(p.files_total, 1)
                )
                self.bar.setValue(int(share * 1000))
        self.pause_button.setText("Resume" if state.paused else "Pause")
        self.pause_button.setAccessibleName("Resume indexing" if state.paused else "Pause indexing")
        self.pause_button.setEnabled(task is None or task.action != "remove")
        self.stop_button.setEnabled(task is not None and not task.stopping)
        for i in range(self.tree.topLevelItemCount()):  # the State column
            item = self.tree.topLevelItem(i)
            found = self.state.find(item.text(0)) if item is not None else None
            if item is not None and found is not None:
                item.setText(6, state_text(found, state))
        self._buttons()

    def _buttons(self) -> None:
        chosen = self.selected()
        busy = chosen is not None and self.state.busy_with(chosen.name)
        for button in (self.add_button, self.remove_button):
            button.setEnabled(chosen is not None)
        self.update_button.setEnabled(chosen is not None and not busy)
        resume = chosen is not None and chosen.updating and not busy
        self.update_button.setText("Resume" if resume else "Update")
        self.update_button.setToolTip(
            "Finish the update that stopped before its end"
            if resume
            else "Read again what changed in the collection's folders and files"
        )
        self.skipped_button.setEnabled(chosen is not None and chosen.skipped > 0)

    def _say(self, text: str) -> None:
        self.status.setText(text)

    # -- the actions ------------------------------------------------------------------

    def new_collection(self) -> None:
        """Ask for a name and folders or files (a dialog of its own, not blocking)."""
        dialog = NewCollectionDialog(self.state.names(), self)
        dialog.accepted.connect(lambda: self.indexing.add(dialog.name(), dialog.paths()))
        dialog.accepted.connect(lambda: self._made(dialog.name()))
        self.new_dialog = dialog
        dialog.open()

    def _made(self, name: str) -> None:
        self._say(f"Indexing {name}…")

    def add_folder(self) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        folder = choose_folder(self, f"Add a folder to {chosen.name}")
        if folder is not None:
            self.indexing.add(chosen.name, [folder])

    def update_selected(self) -> None:
        chosen = self.selected()
        if chosen is not None:
            self.indexing.update(chosen.name)

    def remove_selected(self) -> None:
        chosen = self.selected()
        if chosen is not None and confirm_remove(self, chosen.name, chosen.files):
            self.indexing.remove(chosen.name)

    def show_skipped(self) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        store = self.indexing.store

        def shown(skipped: list[tuple[str, str]]) -> None:
            self.skipped_dialog = SkippedDialog(chosen.name, skipped, self)
            self.skipped_dialog.open()

        self.background.run(lambda: store().skipped(chosen.id), shown)

    def _pause_or_resume(self) -> None:
        if self.state.paused:
            self.indexing.resume()
        else:
            self.indexing.pause()
