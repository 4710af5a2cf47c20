"""The model manager: what is installed, the curated catalog, a Hub search,
and the download queue.

Everything slow (reading model headers, asking the Hub, copying, deleting)
runs on a ``JobThread``; downloads run in the core queue
(:class:`~localchat.core.models.downloads.Downloads`), whose changes cross to
the GUI thread as a queued signal. Each file shows a fit badge (fits / tight /
won't fit) for this computer's memory at the chosen context, the numbers in
its tooltip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localchat.core import hardware, paths
from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.models import catalog, fit, hub, library
from localchat.core.models.catalog import CatalogEntry
from localchat.core.models.downloads import Download, Downloads
from localchat.core.params import effective_ctx
from localchat.core.settings import AppSettings
from localchat.core.units import duration, human_count, human_size, plural
from localchat.ui.bridge import JobThread

log = logging.getLogger(__name__)

BADGES = {"fits": "fits", "tight": "tight", "too big": "won't fit", "unknown": "?"}
BADGE_COLORS = {"fits": "#2e8b57", "tight": "#d4880f", "too big": "#c0392b"}
ROLE = Qt.ItemDataRole.UserRole


def badge(item: QTreeWidgetItem, column: int, verdict: fit.Fit) -> None:
    """Show ``verdict`` in ``column``: a coloured word, the numbers on hover."""
    item.setText(column, f"● {BADGES[verdict.verdict]}")
    color = BADGE_COLORS.get(verdict.verdict)
    if color:
        item.setForeground(column, QBrush(QColor(color)))
    item.setToolTip(column, verdict.explain())


def _tree(*columns: str) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setHeaderLabels(list(columns))
    tree.setRootIsDecorated(False)
    tree.setUniformRowHeights(True)
    tree.setAlternatingRowColors(True)
    header = tree.header()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for i in range(1, len(columns)):
        header.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(False)
    return tree


Machine = tuple[tuple[int, int] | None, tuple[int, int] | None]


def _machine() -> Machine:
    """This computer's RAM and GPU memory now (asked off the GUI thread)."""
    return hardware.memory(), hardware.gpu_memory()


class _Relay(QObject):
    """Carries the queue's changes from download threads to the GUI thread."""

    changed = Signal(object)  # Download


# -- a repository's files ----------------------------------------------------------------


class RepoFiles(QWidget):
    """The GGUF models of one repository: file, quantization, size, fit; a
    Download button for the selected one."""

    download_requested = Signal(object)  # RemoteModel

    def __init__(self, ctx: Callable[[], int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.repo_id: str | None = None
        self.models: list[hub.RemoteModel] = []
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.tree = _tree("File", "Quant", "Size", "Fit")
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
        self.status.setText(f"<span style='color:#c0392b'>{message}</span>")

    def show_models(
        self,
        repo_id: str,
        models: list[hub.RemoteModel],
        *,
        recommended: str | None = None,
        memory: tuple[int, int] | None = None,
        gpu: tuple[int, int] | None = None,
    ) -> None:
        self.repo_id, self.models = repo_id, models
        self.tree.clear()
        n_ctx = self._ctx()
        pick: QTreeWidgetItem | None = None
        for m in models:
            name = m.name if not m.split else f"{m.name}  ({len(m.parts)} parts)"
            item = QTreeWidgetItem([name, m.quant, human_size(m.size), ""])
            item.setData(0, ROLE, m)
            item.setToolTip(0, "\n".join(p.path for p in m.parts))
            badge(item, 3, fit.fit(m.size, n_ctx, memory=memory, gpu=gpu))
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
            f"{plural(len(models), 'model')} in {repo_id}. Fit: at a {n_ctx:,}-token context, "
            "for this computer's memory (hover for the numbers)."
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


# -- the download queue ----------------------------------------------------------------------


class DownloadRow(QWidget):
    """One download: its name, a progress bar, what it is doing, and buttons."""

    def __init__(self, panel: DownloadsPanel, item: Download) -> None:
        super().__init__()
        self.panel = panel
        self.name = item.name
        self.title = QLabel(f"<b>{item.name}</b>")
        files = "\n".join(p.path for p in item.model.parts)
        self.title.setToolTip(f"{item.model.repo_id}\n{files}")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(12)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.primary = QPushButton()
        self.primary.clicked.connect(self._primary)
        self.secondary = QPushButton()
        self.secondary.clicked.connect(self._secondary)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.primary)
        top.addWidget(self.secondary)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.bar)
        layout.addWidget(self.info)
        self.item = item
        self.update_item(item)

    def update_item(self, item: Download) -> None:
        self.item = item
        share = item.done / item.total if item.total else 0.0
        self.bar.setValue(int(share * 1000))
        amount = f"{human_size(item.done)} of {human_size(item.total)}"
        color = ""
        if item.state == "downloading":
            eta = item.eta
            text = f"{share:.0%} · {amount}"
            if item.speed > 0:
                text += f" · {human_size(item.speed)}/s"
            if eta is not None:
                text += f" · {duration(eta)} left"
            if item.stopping:
                text += " · stopping…"
        elif item.state == "queued":
            text = f"waiting for the download before it · {amount}"
        elif item.state == "paused":
            text = f"paused at {share:.0%} · {amount}"
        elif item.state == "failed":
            text, color = item.message, "#c0392b"
        elif item.state == "done":
            text = f"installed · {human_size(item.total)}"
        else:
            text = item.message or "cancelled"
        self.info.setText(text)
        self.info.setStyleSheet(f"color: {color}" if color else "")
        self.info.setToolTip(item.message)
        buttons = {
            "downloading": ("Pause", "Cancel"),
            "queued": ("Pause", "Cancel"),
            "paused": ("Resume", "Cancel"),
            "failed": ("Retry", "Dismiss"),
            "done": ("Use in this chat", "Dismiss"),
            "cancelled": ("", "Dismiss"),
        }[item.state]
        for button, text in zip((self.primary, self.secondary), buttons, strict=True):
            button.setText(text)
            button.setVisible(bool(text))
            button.setEnabled(not item.stopping)

    def _primary(self) -> None:
        self.panel.act(self.name, self.primary.text())

    def _secondary(self) -> None:
        self.panel.act(self.name, self.secondary.text())


class DownloadsPanel(QWidget):
    """The queue, a row per download, newest last."""

    use_requested = Signal(str)

    def __init__(self, downloads: Downloads, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.downloads = downloads
        self.rows: dict[str, DownloadRow] = {}
        self.title = QLabel()
        body = QWidget()
        self.column = QVBoxLayout(body)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.column.addStretch(1)
        self.rows_area = QScrollArea()
        self.rows_area.setWidgetResizable(True)
        self.rows_area.setWidget(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.rows_area, 1)
        for item in downloads.items():
            self.show_item(item)
        self._retitle()

    def show_item(self, item: Download) -> None:
        row = self.rows.get(item.name)
        if row is None:
            row = self.rows[item.name] = DownloadRow(self, item)
            self.column.insertWidget(self.column.count() - 1, row)
        else:
            row.update_item(item)
        self._retitle()

    def act(self, name: str, action: str) -> None:
        try:
            if action == "Pause":
                self.downloads.pause(name)
            elif action == "Cancel":
                self.downloads.cancel(name)
            elif action in ("Resume", "Retry"):
                self.downloads.resume(name)
            elif action == "Dismiss":
                self.downloads.forget(name)
                row = self.rows.pop(name, None)
                if row is not None:
                    row.deleteLater()
                self._retitle()
            elif action == "Use in this chat":
                done = self.downloads.get(name)
                if done is not None and done.path is not None:
                    self.use_requested.emit(str(done.path))
        except hub.DownloadError as exc:
            self.title.setText(str(exc))

    def _retitle(self) -> None:
        items = self.downloads.items()
        active = [d for d in items if d.state in ("queued", "downloading")]
        # As tall as its rows, up to three; none: the title alone.
        rows = list(self.rows.values())
        self.rows_area.setVisible(bool(rows))
        if rows:
            height = sum(r.sizeHint().height() for r in rows[:3])
            self.rows_area.setFixedHeight(height + 2 * self.rows_area.frameWidth() + 4)
        if not items:
            self.title.setText("Downloads: none yet. Choose a file and press Download.")
        elif active:
            total = sum(d.total for d in active)
            done = sum(d.done for d in active)
            self.title.setText(
                f"Downloads: {len(active)} in progress · {human_size(done)} of {human_size(total)}"
            )
        else:
            self.title.setText("Downloads")


# -- the window --------------------------------------------------------------------------------


class ModelManager(QWidget):
    """A window of its own (non-modal): Installed / Catalog / Search tabs over
    the download queue."""

    use_requested = Signal(str)
    """The user wants this model in the current chat."""
    installed_changed = Signal()
    """A model was installed or removed."""

    def __init__(
        self,
        settings: AppSettings,
        downloads: Downloads,
        *,
        release: Callable[[Path], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Models — LocalChat")
        self.resize(960, 680)
        self.settings = settings
        self.downloads = downloads
        self.release = release
        """Called (off the GUI thread) before a model is deleted: let go of it."""
        self.jobs: set[JobThread] = set()
        self.memory: tuple[int, int] | None = None
        self.gpu: tuple[int, int] | None = None
        """The GPU's memory, where one is found and layers go to it."""
        self.installed_rows: list[tuple[Path, str, ModelInfo | str]] = []
        self._files: dict[str, list[hub.RemoteModel]] = {}

        self.tabs = QTabWidget()
        self.tabs.addTab(self._installed_tab(), "Installed")
        self.tabs.addTab(self._catalog_tab(), "Catalog")
        self.tabs.addTab(self._search_tab(), "Search the Hub")
        self.queue = DownloadsPanel(downloads)
        self.queue.use_requested.connect(self.use_requested)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.queue)

        self._relay = _Relay(self)
        self._relay.changed.connect(self._download_changed)
        downloads.listen(self._relay.changed.emit)
        self.refresh_installed()

    # -- common -------------------------------------------------------------------------

    def ctx(self) -> int:
        """The context size fit badges assume: the app-wide setting."""
        return self.settings.generation().ctx

    def run(
        self,
        work: Callable[[], Any],
        then: Callable[[Any], None],
        failed: Callable[[str], None] | None = None,
    ) -> JobThread:
        job = JobThread(lambda _emit: work(), self)
        self.jobs.add(job)
        job.done.connect(then)
        job.failed.connect(failed or self._say)
        job.finished.connect(lambda: self.jobs.discard(job))
        job.start()
        return job

    def _say(self, message: str) -> None:
        self.installed_status.setText(message)

    def busy(self) -> bool:
        return any(job.isRunning() for job in self.jobs)

    def wait(self, ms: int = 10_000) -> None:
        for job in list(self.jobs):
            job.wait(ms)

    # -- installed ------------------------------------------------------------------------

    def _installed_tab(self) -> QWidget:
        self.installed = _tree("Model", "Parameters", "Quant", "Size", "Context", "Fit", "Where")
        self.installed.itemSelectionChanged.connect(self._installed_selected)
        self.installed.itemDoubleClicked.connect(lambda _i, _c: self._use())
        self.installed_status = QLabel()
        self.installed_status.setWordWrap(True)
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
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(self.installed, 1)
        layout.addWidget(self.installed_status)
        layout.addLayout(buttons)
        self._installed_selected()
        return tab

    def refresh_installed(self) -> None:
        """Read the models' headers (and the Hugging Face cache) in the background."""

        def scan() -> tuple[list[tuple[Path, str, ModelInfo | str]], Machine]:
            found = [(p, "models folder") for p in library.installed()]
            found += [(p, "Hugging Face cache") for p in library.hf_cache_models()]
            return [(p, where, library.describe(p)) for p, where in found], _machine()

        self.run(scan, self._show_installed)

    def _show_installed(
        self, result: tuple[list[tuple[Path, str, ModelInfo | str]], Machine]
    ) -> None:
        rows, (self.memory, self.gpu) = result
        self._refit_catalog()
        self.installed_rows = rows
        self.installed.clear()
        for path, where, info in rows:
            item = QTreeWidgetItem([path.stem, "", "", "", "", "", where])
            item.setData(0, ROLE, str(path))
            item.setToolTip(0, str(path))
            if isinstance(info, str):
                item.setText(1, "unusable")
                item.setToolTip(1, info)
                item.setForeground(1, QBrush(QColor(BADGE_COLORS["too big"])))
            else:
                chosen = self.settings.generation(str(path))
                n_ctx = effective_ctx(chosen.ctx, info.context_length)
                item.setText(1, human_count(info.parameter_count))
                item.setText(2, info.quantization)
                item.setText(3, human_size(info.file_size))
                item.setText(4, f"{info.context_length:,}")
                gpu = self.gpu if chosen.gpu_layers != 0 else None
                verdict = fit.fit(info.file_size, n_ctx, info=info, memory=self.memory, gpu=gpu)
                badge(item, 5, verdict)
            self.installed.addTopLevelItem(item)
        if rows:
            self.installed_status.setText(
                f"{plural(len(rows), 'model')}. Fit: at each model's context size, for this "
                "computer's memory (hover for the numbers)."
            )
            first = self.installed.topLevelItem(0)
            if first is not None:
                self.installed.setCurrentItem(first)
        else:
            self.installed_status.setText(
                "No models yet: pick one in the Catalog tab (or search the Hub) and download "
                "it, or import a .gguf file you already have."
            )
        self._installed_selected()

    def _current_installed(self) -> tuple[Path, str] | None:
        item = self.installed.currentItem()
        if item is None:
            return None
        return Path(item.data(0, ROLE)), item.text(6)

    def _installed_selected(self) -> None:
        current = self._current_installed()
        self.use_button.setEnabled(current is not None)
        self.delete_button.setEnabled(current is not None and current[1] == "models folder")

    def _use(self) -> None:
        current = self._current_installed()
        if current is not None:
            self.use_requested.emit(str(current[0]))

    def _delete(self) -> None:
        current = self._current_installed()
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
        def work() -> Path:
            if self.release is not None:
                self.release(path)
            return library.remove_model(str(path))

        self.run(work, self._deleted)

    def _deleted(self, path: Path) -> None:
        self.installed_status.setText(f"Deleted {path.stem}.")
        self.installed_changed.emit()
        self.refresh_installed()

    def _import(self) -> None:
        source, _ = QFileDialog.getOpenFileName(
            self, "Import a model", str(Path.home()), "GGUF models (*.gguf)"
        )
        if source:
            self.import_file(Path(source), link=self.link_box.isChecked())

    def import_file(self, source: Path, *, link: bool = False) -> None:
        self.installed_status.setText(f"Importing {source.name}…")
        self.import_button.setEnabled(False)
        job = self.run(lambda: library.import_model(source, link=link), self._imported)
        job.finished.connect(lambda: self.import_button.setEnabled(True))

    def _imported(self, path: Path) -> None:
        self.installed_status.setText(f"Imported {path.stem}.")
        self.installed_changed.emit()
        self.refresh_installed()

    # -- catalog -------------------------------------------------------------------------

    def _catalog_tab(self) -> QWidget:
        self.catalog = _tree("Model", "Parameters", "Context", "License", "Size", "Fit")
        self.catalog.itemSelectionChanged.connect(self._catalog_selected)
        self.catalog_about = QLabel()
        self.catalog_about.setWordWrap(True)
        self.catalog_about.setOpenExternalLinks(True)
        self.catalog_files = RepoFiles(self.ctx)
        self.catalog_files.download_requested.connect(self.download)
        try:
            self.entries = catalog.entries()
        except Exception as exc:  # a broken catalog file: say so, the rest works
            log.exception("the catalog could not be read")
            self.entries = []
            self.catalog_about.setText(str(exc))
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
            self.catalog.addTopLevelItem(item)
        self._refit_catalog()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.catalog)
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.catalog_about)
        lower_layout.addWidget(self.catalog_files, 1)
        split.addWidget(lower)
        tab = QWidget()
        QVBoxLayout(tab).addWidget(split)
        return tab

    def _refit_catalog(self) -> None:
        """Each entry's badge, at its recommended quantization's estimated size."""
        n_ctx = self.ctx()
        for i in range(self.catalog.topLevelItemCount()):
            item = self.catalog.topLevelItem(i)
            if item is None:
                continue
            entry: CatalogEntry = item.data(0, ROLE)
            size = entry.estimated_size()
            verdict = fit.fit(size, n_ctx, memory=self.memory, gpu=self._gpu())
            badge(item, 5, verdict)
            item.setToolTip(
                5,
                f"At {entry.quant}, about {human_size(size)} on disk; {verdict.explain()} "
                f"(at a {n_ctx:,}-token context)",
            )

    def _gpu(self) -> tuple[int, int] | None:
        """The GPU, unless the settings keep every layer on the CPU."""
        return self.gpu if self.settings.generation().gpu_layers != 0 else None

    def _catalog_selected(self) -> None:
        item = self.catalog.currentItem()
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
        self.catalog_about.setText("<br>".join(about))
        self.open_repo(entry.repo_id, self.catalog_files, recommended=entry.quant)

    def open_repo(self, repo_id: str, view: RepoFiles, *, recommended: str | None = None) -> None:
        """Ask the Hub for the repository's files (once per window) and show them."""
        cached = self._files.get(repo_id)
        if cached is not None:
            view.show_models(
                repo_id, cached, recommended=recommended, memory=self.memory, gpu=self._gpu()
            )
            return
        view.show_loading(repo_id)

        def shown(result: tuple[list[hub.RemoteModel], Machine]) -> None:
            models, (self.memory, self.gpu) = result
            self._files[repo_id] = models
            if view.repo_id == repo_id:
                view.show_models(
                    repo_id, models, recommended=recommended, memory=self.memory, gpu=self._gpu()
                )

        def failed(message: str) -> None:
            if view.repo_id == repo_id:
                view.show_error(message)

        self.run(lambda: (hub.files(repo_id), _machine()), shown, failed)

    # -- search -----------------------------------------------------------------------------

    def _search_tab(self) -> QWidget:
        self.query = QLineEdit(placeholderText="Search GGUF models on the Hugging Face Hub")
        self.query.returnPressed.connect(self.search)
        self.sort = QComboBox()
        for label, key in (("Most downloaded", "downloads"), ("Most liked", "likes")):
            self.sort.addItem(label, key)
        self.sort.addItem("Recently updated", "recent")
        self.sort.currentIndexChanged.connect(lambda _i: self.search())
        go = QPushButton("Search")
        go.clicked.connect(self.search)
        self.results = _tree("Repository", "Downloads", "Likes", "Updated")
        self.results.itemSelectionChanged.connect(self._result_selected)
        self.search_status = QLabel()
        self.search_status.setWordWrap(True)
        self.search_files = RepoFiles(self.ctx)
        self.search_files.download_requested.connect(self.download)
        row = QHBoxLayout()
        row.addWidget(self.query, 1)
        row.addWidget(self.sort)
        row.addWidget(go)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.results)
        split.addWidget(self.search_files)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addLayout(row)
        layout.addWidget(self.search_status)
        layout.addWidget(split, 1)
        return tab

    def search(self) -> None:
        query = self.query.text().strip()
        if not query:
            return
        sort = self.sort.currentData()
        self.search_status.setText(f"Searching the Hub for {query!r}…")

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
            self.search_status.setText(
                f"{plural(len(results), 'repository', 'repositories')} with GGUF files "
                f"match {query!r}."
                if results
                else f"No GGUF models on the Hub match {query!r}."
            )

        def failed(message: str) -> None:
            self.search_status.setText(f"<span style='color:#c0392b'>{message}</span>")

        self.run(lambda: hub.search(query, sort=sort, limit=50), found, failed)

    def _result_selected(self) -> None:
        item = self.results.currentItem()
        if item is not None:
            self.open_repo(item.data(0, ROLE), self.search_files)

    # -- downloads ----------------------------------------------------------------------------

    def download(self, model: hub.RemoteModel) -> None:
        """Queue ``model``; the catalog's recommended settings go with it."""
        try:
            self.downloads.add(model, tag=model.repo_id)
        except hub.DownloadError as exc:
            self.queue.title.setText(str(exc))

    def _download_changed(self, item: Download) -> None:
        self.queue.show_item(item)
        if item.state == "done" and item.path is not None:
            adopted = catalog.adopt(item.path, item.model.repo_id, self.settings)
            if adopted:
                self.installed_status.setText(
                    f"{item.path.stem} installed, with the catalog's recommended settings."
                )
            self.installed_changed.emit()
            self.refresh_installed()
