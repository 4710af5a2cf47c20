"""The chat list's rows: one per chat, its title on one line (elided, the
whole title as tooltip), under the date heading of its group (Today,
Yesterday, …), which is painted above the group's first row and is never
selectable; a screen reader hears it with that row."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QFont, QMouseEvent, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListWidget,
    QListWidgetItem,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from localchat.core.chat.chat_titles import date_group, plain_title
from localchat.core.chat.store import ChatInfo

CHAT_ROLE = Qt.ItemDataRole.UserRole
HEADING_ROLE = Qt.ItemDataRole.UserRole + 1
"""On a group's first row: the group's heading."""

ROW_PADDING = 8
"""Extra height of a row (pixels): a chat is easy to hit."""

Index = QModelIndex | QPersistentModelIndex


def _heading_font(font: QFont) -> QFont:
    heading = QFont(font)
    heading.setBold(True)
    heading.setPointSizeF(max(font.pointSizeF() * 0.85, 7.0))
    return heading


class _Headed(QStyledItemDelegate):
    """Paints a row, and above it its group's heading when it has one."""

    def heading_height(self, option: QStyleOptionViewItem) -> int:
        return int(option.fontMetrics.height() * 1.9)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        size = super().sizeHint(option, index)
        size.setHeight(size.height() + ROW_PADDING)
        if index.data(HEADING_ROLE):
            size.setHeight(size.height() + self.heading_height(option))
        return size

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        heading = index.data(HEADING_ROLE)
        if not heading:
            super().paint(painter, option, index)
            return
        height = self.heading_height(option)
        rect = QRect(option.rect)
        painter.save()
        painter.setFont(_heading_font(option.font))
        painter.setPen(option.palette.color(QPalette.ColorRole.PlaceholderText))
        area = QRect(rect.left() + 6, rect.top(), rect.width() - 12, height - 4)
        flags = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom
        painter.drawText(area, int(flags), str(heading))
        painter.restore()
        row = QStyleOptionViewItem(option)
        row.rect = rect.adjusted(0, height, 0, 0)
        super().paint(painter, row, index)


class ChatRows(QListWidget):
    """The list: ``show_chats`` fills it; a click on a heading selects nothing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._delegate = _Headed(self)
        self.setItemDelegate(self._delegate)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setWordWrap(False)

    def show_chats(self, chats: list[ChatInfo], current: int | None) -> None:
        """One row per chat (the list is newest first), ``current`` selected."""
        self.clear()
        group = ""
        for chat in chats:
            title = plain_title(chat.title) or "New chat"
            item = QListWidgetItem(title)
            item.setToolTip(plain_title(chat.title, limit=500) or "New chat")
            item.setData(CHAT_ROLE, chat.id)
            heading = date_group(chat.updated_at)
            # The heading is painted: a screen reader hears it with the
            # group's first chat, and every chat says its group when asked.
            item.setData(Qt.ItemDataRole.AccessibleDescriptionRole, f"chat from {heading}")
            if heading != group:
                item.setData(HEADING_ROLE, heading)
                item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{heading}: {title}")
                group = heading
            self.addItem(item)
            if chat.id == current:
                self.setCurrentItem(item)

    def heading_at(self, item: QListWidgetItem, y: int) -> bool:
        """Whether ``y`` (viewport coordinates) is on the heading above ``item``."""
        if not item.data(HEADING_ROLE):
            return False
        option = QStyleOptionViewItem()
        self.initViewItemOption(option)
        top = self.visualItemRect(item).top()
        return y < top + self._delegate.heading_height(option)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        point = event.position().toPoint()
        item = self.itemAt(point)
        if item is not None and self.heading_at(item, point.y()):
            event.accept()
            return
        super().mousePressEvent(event)
