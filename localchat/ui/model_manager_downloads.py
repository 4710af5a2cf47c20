"""The model manager's download queue: a row per download, newest last, with
its progress, what it is doing and its buttons (Pause, Resume, Cancel, Retry,
Dismiss, Use). Rows show the core queue's snapshots; the buttons act on it."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from localchat.core.models import transfer
from localchat.core.models.downloads import Download, Downloads
from localchat.core.units import duration, human_size


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
        except transfer.DownloadError as exc:
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
