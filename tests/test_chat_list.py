"""The chat list (issue 20): plain titles, date headings, elided rows, New
chat without a pile of empty chats, Delete with Undo, a draft per chat, and
each chat's model."""

from __future__ import annotations

import shutil
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from PySide6.QtCore import QPoint, Qt

from localchat.core.chat.chat_titles import date_group, plain_title
from localchat.core.chat.store import ChatStore
from localchat.core.models.matching import model_named
from localchat.ui.chat_rows import HEADING_ROLE
from localchat.ui.main_window import MainWindow

TIMEOUT = 60_000


def open_window(qtbot, parts) -> MainWindow:
    window = MainWindow(*parts)
    qtbot.addWidget(window)
    window.show()
    return window


def install(home: Path, model: Path, name: str) -> Path:
    target = home / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, target)
    return target


def rows(window: MainWindow) -> list[tuple[str, str]]:
    """(heading, title) per row; "" where a row has no heading above it."""
    items = [window.chat_list.item(i) for i in range(window.chat_list.count())]
    return [(item.data(HEADING_ROLE) or "", item.text()) for item in items]


def test_titles_are_plain_text_cut_at_a_word() -> None:
    assert plain_title("Write **bold** and `code`") == "Write bold and code"
    assert plain_title("```python\nprint(1)\n```\nwhy  does\n\nthis fail?") == (
        "print(1) why does this fail?"
    )
    assert plain_title("# Title\n- a [link](http://x) and _snake_case_ > 2*3") == (
        "Title a link and snake_case > 2*3"
    )
    long = plain_title("word " * 40)
    assert long.endswith("word…") and len(long) <= 61


def test_date_groups() -> None:
    today = date(2026, 3, 10)

    def at(days: int) -> float:
        return (datetime(2026, 3, 10, 12) - timedelta(days=days)).timestamp()

    groups = [date_group(at(d), today) for d in (0, 1, 2, 7, 8, 30, 31, 400)]
    assert groups == [
        "Today",
        "Yesterday",
        "Previous 7 days",
        "Previous 7 days",
        "Previous 30 days",
        "Previous 30 days",
        "Older",
        "Older",
    ]


def test_model_named() -> None:
    models = [Path("/m/first.gguf"), Path("/m/second.gguf")]
    assert model_named("second", models) == models[1]
    assert model_named("first + my-style", models) == models[0]
    assert model_named("gone", models) is None


def test_the_list_groups_by_date_elides_and_shows_plain_titles(qtbot, parts) -> None:
    store = parts[0]
    now = time.time()
    for title, days in [
        ("Older one", 90),
        ("A month ago", 20),
        ("Last week", 3),
        ("Yesterday's", 1),
        ("**Bold** ```python chat", 0),
        ("A very long title " * 8, 0),
    ]:
        chat = store.create_chat(title)
        store._db.execute(
            "UPDATE chats SET updated_at = ? WHERE id = ?", (now - days * 86400, chat)
        )
    window = open_window(qtbot, parts)
    window.resize(900, 600)
    shown = rows(window)
    assert [heading for heading, _ in shown] == [
        "Today",
        "",
        "Yesterday",
        "Previous 7 days",
        "Previous 30 days",
        "Older",
    ]
    assert shown[1][1] == "Bold chat"  # no marks, no fence (nor its language)
    listing = window.chat_list
    assert listing.textElideMode() == Qt.TextElideMode.ElideRight
    assert listing.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    long_item = listing.item(0)
    assert long_item.toolTip().startswith("A very long title A very long title")
    assert len(long_item.toolTip()) > len(long_item.text()) - 1
    assert not listing.horizontalScrollBar().isVisible()
    # A screen reader hears each painted heading with its group's first chat.
    from PySide6.QtGui import QAccessible

    cells = QAccessible.queryAccessibleInterface(listing)
    heard = [cells.child(i).text(QAccessible.Text.Name) for i in range(cells.childCount())]
    assert heard[0].startswith("Today: A very long title") and heard[1] == "Bold chat"
    assert heard[2:] == [
        "Yesterday: Yesterday's",
        "Previous 7 days: Last week",
        "Previous 30 days: A month ago",
        "Older: Older one",
    ]
    assert cells.child(1).text(QAccessible.Text.Description) == "chat from Today"
    # A click on a heading selects nothing.
    rect = listing.visualItemRect(listing.item(2))
    qtbot.mouseClick(listing.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(20, rect.top() + 3))
    assert window.chat_id is None
    qtbot.mouseClick(
        listing.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(20, rect.bottom() - 3)
    )
    assert window.chat_id == listing.item(2).data(Qt.ItemDataRole.UserRole)


def test_new_chat_reuses_an_empty_chat_and_an_empty_chat_left_goes(qtbot, parts) -> None:
    store: ChatStore = parts[0]
    kept = store.create_chat()
    store.add_message(kept, "user", "something")
    window = open_window(qtbot, parts)
    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id is not None, timeout=TIMEOUT)
    fresh = window.chat_id
    for _ in range(3):
        window.new_chat()
        qtbot.wait(50)
    assert window.chat_id == fresh
    assert len(store.list_chats()) == 2
    window.select_chat(kept)  # the empty one is left: it goes
    qtbot.waitUntil(lambda: [c.id for c in store.list_chats()] == [kept], timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.chat_list.count() == 1, timeout=TIMEOUT)
    # A chat with only a draft in it stays: nothing the user wrote is lost.
    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id not in (None, kept), timeout=TIMEOUT)
    drafted = window.chat_id
    window.composer.setPlainText("half a thought")
    window.select_chat(kept)
    qtbot.waitUntil(lambda: store.draft(drafted) == "half a thought", timeout=TIMEOUT)
    window.select_chat(drafted)
    assert window.composer.toPlainText() == "half a thought"


def test_delete_names_the_chat_and_undo_brings_it_back_whole(qtbot, parts) -> None:
    store: ChatStore = parts[0]
    chat = store.create_chat("Holiday **plans**")
    store.add_message(chat, "user", "beaches")
    store.begin_reply(chat, model="m").finish("done")
    store.set_chat_settings(chat, {"lora_scale": 0.7})
    thread = store.thread(chat)
    window = open_window(qtbot, parts)
    window.select_chat(chat)
    window.delete_chat(chat)
    assert window.chat_id is None
    undo = window.chats.undo_button
    qtbot.waitUntil(lambda: not undo.isHidden(), timeout=TIMEOUT)
    assert window.statusBar().currentMessage() == "Deleted “Holiday plans”"
    assert window.chat_list.count() == 0 and store.list_chats() == []
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.chat_id == chat, timeout=TIMEOUT)
    assert store.thread(chat) == thread and store.chat_settings(chat) == {"lora_scale": 0.7}
    assert window.chat_list.count() == 1 and undo.isHidden()
    # Without Undo, the chat is deleted for good when the undo window is over.
    window.delete_chat(chat)
    qtbot.waitUntil(lambda: not undo.isHidden(), timeout=TIMEOUT)
    window.chats._undo_timer.timeout.emit()
    qtbot.waitUntil(
        lambda: store._db.execute("SELECT COUNT(*) FROM chats").fetchone()[0] == 0,
        timeout=TIMEOUT,
    )
    assert undo.isHidden()


def test_a_draft_survives_closing_the_window(qtbot, parts) -> None:
    store: ChatStore = parts[0]
    chat = store.create_chat("Notes")
    store.add_message(chat, "user", "first")
    other = store.create_chat("Other")
    store.add_message(other, "user", "x")
    window = open_window(qtbot, parts)
    window.select_chat(chat)
    window.composer.setPlainText("an unsent\nmessage")
    window.close()
    assert store.draft(chat) == "an unsent\nmessage"

    again = open_window(qtbot, parts)
    qtbot.waitUntil(lambda: again.chat_id == chat, timeout=TIMEOUT)
    assert again.composer.toPlainText() == "an unsent\nmessage"
    again.select_chat(other)
    assert again.composer.toPlainText() == ""
    again.select_chat(chat)
    assert again.composer.toPlainText() == "an unsent\nmessage"
    # Typing saves (a moment later) without leaving the chat.
    again.composer.setPlainText("changed")
    qtbot.waitUntil(lambda: store.draft(chat) == "changed", timeout=TIMEOUT)


def test_a_draft_with_no_chat_open_comes_back(qtbot, parts) -> None:
    window = open_window(qtbot, parts)
    window.composer.setPlainText("before any chat")
    window.close()
    again = open_window(qtbot, parts)
    assert again.composer.toPlainText() == "before any chat"


def test_sending_clears_the_draft(qtbot, home: Path, parts, tiny_model) -> None:
    install(home, tiny_model, "tiny-chat.gguf")
    store: ChatStore = parts[0]
    chat = store.create_chat("Ask")
    store.set_draft(chat, "hello there")
    window = open_window(qtbot, parts)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)
    window.select_chat(chat)
    assert window.composer.toPlainText() == "hello there"
    window.panel.editors["max_tokens"].setValue(4)
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: store.draft(chat) == "", timeout=TIMEOUT)


def test_opening_a_chat_loads_the_model_it_was_made_with(
    qtbot, home: Path, parts, tiny_model
) -> None:
    first = install(home, tiny_model, "first.gguf")
    second = install(home, tiny_model, "second.gguf")
    store: ChatStore = parts[0]
    made = {}
    for name in ("first", "second", "gone"):
        made[name] = store.create_chat(f"with {name}")
        store.add_message(made[name], "user", "q")
        store.begin_reply(made[name], model=name).finish("done")
    window = open_window(qtbot, parts)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)
    window.select_chat(made["first"])
    qtbot.waitUntil(
        lambda: window.loaded is not None and window.model_path == first, timeout=TIMEOUT
    )
    window.select_chat(made["second"])
    qtbot.waitUntil(
        lambda: window.loaded is not None and window.model_path == second, timeout=TIMEOUT
    )
    window.select_chat(made["gone"])
    assert window.model_path == second
    message = window.statusBar().currentMessage()
    assert message.startswith("This chat was written with gone, which is not installed")
