"""What the window's API server did: the requests it answered, as a table in
a pane (``ServerLog``: time, client, request, model, tokens, tok/s, status;
newest last, the last 500), and the status bar's button (``ServerButton``: "API on
127.0.0.1:4891", or why it could not start; a click opens the pane). Both
draw ``ServerState``; the records come to it by a queued signal, one per
request."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from localchat.ui import theme
from localchat.ui.state import ServerState

if TYPE_CHECKING:
    from localchat.server.app import RequestRecord

COLUMNS = ("Time", "Client", "Request", "Model", "Tokens", "Tok/s", "Status")
NUMBERS = {"Tokens", "Tok/s", "Status"}
Index = QModelIndex | QPersistentModelIndex


def cells(record: RequestRecord) -> tuple[str, ...]:
    """A request's row, as the table shows it."""
    return (
        time.strftime("%H:%M:%S", time.localtime(record.time)),
        record.client,
        f"{record.method} {record.path}",
        record.model or "—",
        f"{record.tokens:,}" if record.tokens is not None else "—",
        f"{record.tokens_per_s:.1f}" if record.tokens_per_s is not None else "—",
        str(record.status) if record.status else "gone",
    )


def details(record: RequestRecord) -> str:
    """A row's tooltip: how the request ended, how long it took."""
    parts = [f"{record.method} {record.path}"]
    if record.finish:
        parts.append(f"finished: {record.finish}")
    if not record.status:
        parts.append("the client left before the answer")
    parts.append(f"{record.ms:,.0f} ms")
    return " · ".join(parts)


class RequestTable(QAbstractTableModel):
    """``ServerState.records`` as rows: the state keeps the last ``KEPT``;
    when it is full, a new request drops the first row."""

    def __init__(self, state: ServerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._rows = len(state.records)
        state.logged.connect(lambda _record: self._added())

    def _added(self) -> None:
        if self._rows == self.state.KEPT:  # the oldest went out of the state
            self.beginRemoveRows(QModelIndex(), 0, 0)
            self._rows -= 1
            self.endRemoveRows()
        self.beginInsertRows(QModelIndex(), self._rows, self._rows)
        self._rows += 1
        self.endInsertRows()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.state.records):
            return None
        record = self.state.records[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cells(record)[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return details(record)
        if role == Qt.ItemDataRole.TextAlignmentRole and COLUMNS[index.column()] in NUMBERS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        failed = not record.status or record.status >= 400
        status = COLUMNS[index.column()] == "Status"
        if role == Qt.ItemDataRole.ForegroundRole and failed and status:
            return theme.error_colour(QGuiApplication.palette())
        return None


class ServerLog(QWidget):
    """The request table under a line saying where the server is."""

    def __init__(self, state: ServerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("server-log")
        self.state = state
        self.heading = QLabel()
        theme.secondary(self.heading)
        self.table = QTableView()
        self.table.setObjectName("server-requests")
        self.model = RequestTable(state, self)
        self.table.setModel(self.model)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Request"), QHeaderView.ResizeMode.Stretch)
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(self.fontMetrics().height() + 6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.heading)
        layout.addWidget(self.table, 1)
        self._at_end = True
        self.model.rowsAboutToBeInserted.connect(lambda *_: self._note_end())
        self.model.rowsInserted.connect(lambda *_: self._follow())
        state.changed.connect(lambda _: self._describe())
        state.logged.connect(lambda _: self._describe())
        self._describe()

    def _describe(self) -> None:
        state, count = self.state, len(self.state.records)
        where = state.summary() or "The API server is off (Settings › Local server)"
        shown = f"{count:,} request{'s' if count != 1 else ''}"
        if count == state.KEPT:
            shown = f"the last {count:,} requests"
        self.heading.setText(f"{where} · {shown}" if count else where)

    def _note_end(self) -> None:
        bar = self.table.verticalScrollBar()
        self._at_end = bar.value() >= bar.maximum()

    def _follow(self) -> None:
        """Newest last: the new row comes into view, unless the user had
        scrolled up to read an older one."""
        if self._at_end:
            self.table.scrollToBottom()


class ServerButton(QPushButton):
    """The status bar's "API on 127.0.0.1:4891" (hidden while off); the
    failure in one line when the server could not start."""

    def __init__(self, state: ServerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("server-status")
        self.setFlat(True)
        self.state = state
        state.changed.connect(lambda _: self.draw())
        self.draw()

    def draw(self) -> None:
        state = self.state
        self.setText(state.summary())
        self.setVisible(state.phase != "off")
        tip = "Click for the requests it answered"
        if state.phase == "on":
            tip = (
                f"OpenAI's API at http://{state.address}/v1, Ollama's at "
                f"http://{state.address}/api. {tip}"
            )
        self.setToolTip(tip)
        palette = QPalette()  # the application's, following the theme
        if state.phase == "failed":
            palette.setColor(QPalette.ColorRole.ButtonText, theme.error_colour(palette))
        self.setPalette(palette)
