"""The model manager window: the Installed, Catalog and Search tabs over the
download queue, and what they share: background jobs, fit verdicts for this
computer, the Hub's file lists, and queueing a download.

Everything slow (reading model headers, asking the Hub, copying, deleting)
runs on a ``JobThread``; downloads run in the core queue
(:class:`~localchat.core.models.downloads.Downloads`), whose changes cross to
the GUI thread as a queued signal. Each file shows a fit badge (fits / tight /
won't fit) for this computer's memory at the chosen context, the numbers in
its tooltip (:func:`localchat.core.models.fit.fit`). The tabs live in
``model_manager_installed``, ``model_manager_catalog`` and
``model_manager_search``, the queue in ``model_manager_downloads``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from localchat.core import hardware
from localchat.core.engine.gguf_info import ModelInfo
from localchat.core.models import catalog, fit, hub, transfer
from localchat.core.models.downloads import Download, Downloads
from localchat.core.settings import AppSettings
from localchat.ui.bridge import JobThread
from localchat.ui.model_manager_catalog import CatalogTab
from localchat.ui.model_manager_downloads import DownloadsPanel
from localchat.ui.model_manager_installed import InstalledTab
from localchat.ui.model_manager_search import SearchTab
from localchat.ui.model_manager_widgets import Machine, RepoFiles, read_machine


class _Relay(QObject):
    """Carries the queue's changes from download threads to the GUI thread."""

    changed = Signal(object)  # Download


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
        release: Callable[[Path], Callable[[], None]] | None = None,
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
        self.memory: fit.Memory | None = hardware.memory()
        """The RAM, read at once (quick); again with each background scan."""
        self.gpu: fit.Memory | None = None
        """The GPU's memory, where one is found (nvidia-smi is asked off the GUI thread)."""
        self._files: dict[str, list[hub.RemoteModel]] = {}

        self.installed_tab = InstalledTab(self)
        self.catalog_tab = CatalogTab(self)
        self.search_tab = SearchTab(self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.installed_tab, "Installed")
        self.tabs.addTab(self.catalog_tab, "Catalog")
        self.tabs.addTab(self.search_tab, "Search the Hub")
        self.queue = DownloadsPanel(downloads)
        self.queue.use_requested.connect(self.use_requested)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.queue)
        # The tabs' parts the main window and the tests drive, by name.
        self.installed = self.installed_tab.tree
        self.installed_status = self.installed_tab.status
        self.use_button = self.installed_tab.use_button
        self.catalog = self.catalog_tab.tree
        self.catalog_about = self.catalog_tab.about
        self.catalog_files = self.catalog_tab.files
        self.query = self.search_tab.query
        self.results = self.search_tab.results
        self.search_status = self.search_tab.status
        self.search_files = self.search_tab.files

        self._relay = _Relay(self)
        self._relay.changed.connect(self._download_changed)
        downloads.listen(self._relay.changed.emit)
        self.refresh_installed()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.installed_tab.watch(True)

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.installed_tab.watch(False)

    # -- background jobs ----------------------------------------------------------------

    def run(
        self,
        work: Callable[[], Any],
        then: Callable[[Any], None],
        failed: Callable[[str], None] | None = None,
    ) -> JobThread:
        """``work()`` on a thread of its own; ``then`` (or ``failed``, with a
        one-line message) on the GUI thread."""
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

    # -- fit --------------------------------------------------------------------------------

    def judge(self, model: int | ModelInfo, path: str | None = None) -> fit.Fit:
        """The fit badge's verdict for a file of so many bytes, or an installed
        model (``path``, whose own settings then count), at the context the
        settings choose, for the memory last read."""
        chosen = self.settings.generation(path)
        return fit.fit(
            model, chosen.ctx, memory=self.memory, gpu=self.gpu, gpu_layers=chosen.gpu_layers
        )

    def set_machine(self, machine: Machine) -> None:
        """This computer's memory as a background job read it; the catalog's
        badges follow."""
        self.memory, self.gpu = machine
        self.catalog_tab.refit()

    # -- tabs -------------------------------------------------------------------------------

    def refresh_installed(self) -> None:
        self.installed_tab.refresh()

    def delete(self, path: Path) -> None:
        self.installed_tab.delete(path)

    def import_file(self, source: Path, *, link: bool = False) -> None:
        self.installed_tab.import_file(source, link=link)

    def search(self) -> None:
        self.search_tab.search()

    def open_repo(self, repo_id: str, view: RepoFiles, *, recommended: str | None = None) -> None:
        """Ask the Hub for the repository's files (once per window) and show them."""
        cached = self._files.get(repo_id)
        if cached is not None:
            view.show_models(repo_id, cached, recommended=recommended)
            return
        view.show_loading(repo_id)

        def shown(result: tuple[list[hub.RemoteModel], Machine]) -> None:
            models, machine = result
            self.set_machine(machine)
            self._files[repo_id] = models
            if view.repo_id == repo_id:
                view.show_models(repo_id, models, recommended=recommended)

        def failed(message: str) -> None:
            if view.repo_id == repo_id:
                view.show_error(message)

        self.run(lambda: (hub.files(repo_id), read_machine()), shown, failed)

    # -- downloads ----------------------------------------------------------------------------

    def download(self, model: hub.RemoteModel) -> None:
        """Queue ``model``; the catalog's recommended settings go with it."""
        try:
            self.downloads.add(model, tag=model.repo_id)
        except transfer.DownloadError as exc:
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
