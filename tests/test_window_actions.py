"""Every action of the main window, from its toolbar and its shortcut, with
chats in the list and a model loaded; and a failed reply's long error, which
must wrap inside the view rather than widen it."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QLabel, QToolBar, QWidget

from localchat.ui.chat_view import ChatView
from tests.test_window import TIMEOUT, install, open_window, wait_ready


def _close_modal_dialogs(opened: list[str]) -> QTimer:
    """No action should open a modal dialog, but one that did would block the
    test forever: close it, and say so (``opened``)."""
    timer = QTimer()

    def close() -> None:
        modal = QApplication.activeModalWidget()
        if modal is not None:
            opened.append(f"{type(modal).__name__} {modal.windowTitle()!r}")
            modal.close()

    timer.timeout.connect(close)
    timer.start(100)
    return timer


def test_every_toolbar_action_and_shortcut_works_with_chats_listed(
    qtbot, home: Path, parts, tiny_model
) -> None:
    """Issue 18: the Train button and Ctrl+Shift+T raised ``TypeError: argument
    of type 'bool' is not iterable`` once a chat was listed (``triggered``'s
    ``checked`` reached ``open_trainer(chats=...)``)."""
    install(home, tiny_model)
    store = parts[0]
    holiday = store.create_chat("Holiday")
    store.add_message(holiday, "user", "beaches in Portugal")
    store.create_chat("Taxes")
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    assert window.chat_list.count() == 2
    window.select_chat(holiday)
    toolbar = window.findChild(QToolBar, "main-toolbar")
    assert toolbar is not None
    on_toolbar = [a for a in toolbar.actions() if not a.isSeparator()]
    with_keys = [a for a in window.actions() if not a.shortcut().isEmpty()]
    names = {a.text() for a in on_toolbar}
    assert {"Models…", "Train…", "Settings"} <= names, names
    assert {"New chat", "Search", "Stop", "Models…", "Train…", "Settings"} <= {
        a.text() for a in with_keys
    }

    def effect(action: QAction) -> None:
        """What the user sees after the action, for those whose effect is known."""
        text = action.text()
        if text == "Train…":
            assert window.trainer is not None
            qtbot.waitUntil(window.trainer.isVisible)
            # Opened from the toolbar: the chats are offered, none ticked for the user.
            assert window.trainer.finetune.data.chats.count() == window.chat_list.count()
            assert window.trainer.finetune.data.chosen_chats() == []
        elif text == "Models…":
            assert window.manager is not None
            qtbot.waitUntil(window.manager.isVisible)
        elif text == "Search":
            qtbot.waitUntil(window.search.hasFocus)

    def activate() -> None:
        """Back to the main window: other windows closed, it active (window
        shortcuts fire only in the active window)."""
        for other in (window.manager, window.trainer):
            if other is not None:
                other.close()
        window.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
        window.chat_list.setFocus()

    fired: list[str] = []

    def record(name: str):
        return lambda *_checked: fired.append(name)

    for a in set(on_toolbar) | set(with_keys):
        a.triggered.connect(record(a.text()))
    settings_shown = window.settings_dock.isVisible()
    chats_before = window.chat_list.count()
    # An error shown in a modal dialog would be a failure too (and would block).
    opened_dialogs: list[str] = []
    guard = _close_modal_dialogs(opened_dialogs)
    try:
        with qtbot.captureExceptions() as exceptions:

            def check(what: str) -> None:
                """Fail on any exception a slot raised (Qt only prints it)."""
                assert not exceptions, f"{what} raised:\n" + "\n".join(
                    "".join(traceback.format_exception(*e)) for e in exceptions
                )
                assert opened_dialogs == [], (what, opened_dialogs)

            for action in with_keys:
                activate()
                before = len(fired)
                qtbot.keySequence(window.chat_list, action.shortcut())
                assert fired[before:] == [action.text()], (action.text(), action.shortcut())
                qtbot.wait(150)  # queued slots run too
                check(f"{action.text()} ({action.shortcut().toString()})")
                effect(action)
            # The New chat shortcut made a chat; Ctrl+, showed the settings.
            qtbot.waitUntil(lambda: window.chat_list.count() == chats_before + 1, timeout=TIMEOUT)
            assert window.settings_dock.isVisible() != settings_shown
            for action in on_toolbar:
                activate()
                button = toolbar.widgetForAction(action)
                assert isinstance(button, QWidget) and button.isVisible(), action.text()
                before = len(fired)
                qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
                assert fired[before:] == [action.text()], action.text()
                qtbot.wait(150)
                check(f"{action.text()} on the toolbar")
                effect(action)
            assert window.settings_dock.isVisible() == settings_shown  # toggled back
            activate()
            check("closing the windows the actions opened")
    finally:
        guard.stop()
    # The chat menu's "Fine-tune on this chat…" (chats given) still ticks that chat.
    window.open_trainer(chats=[holiday])
    assert window.trainer is not None and window.trainer.finetune.data.chosen_chats() == [holiday]
    window.trainer.close()


LONG_ERRORS = {
    "spaces": "the model process crashed: " + "llama_model_load: error loading model " * 12,
    "no spaces": "x" * 600,
    "a path": "failed to open /home/someone/"
    + "very-long-directory-name/" * 12
    + "model-q4_k_m.gguf: no such file",
}


@pytest.mark.parametrize("kind", list(LONG_ERRORS))
def test_a_failed_replys_long_error_wraps_inside_the_view(qtbot, home: Path, parts, kind) -> None:
    """Issue 18: an error written as one long line made every card of the chat
    wider than the view (no sideways scrolling), Copy and Regenerate off
    screen. The note wraps; every card and its buttons stay in the view."""
    store = parts[0]
    chat = store.create_chat("Failing")
    store.add_message(chat, "user", "Tell me about the file")
    reply = store.begin_reply(chat, model="tiny-chat")
    reply.append("Partial answer before the crash.")
    error = LONG_ERRORS[kind]
    reply.finish("failed", {"error": error})
    window = open_window(qtbot, parts)
    window.resize(1000, 700)
    window.select_chat(chat)
    view: ChatView = window.view
    assert [w.role for w in view.widgets] == ["user", "assistant"]
    failed = view.widgets[-1]
    assert failed.note.text() == f"failed: {error}"
    assert failed.note.error  # in the error tone, not the grey of "stopped"
    qtbot.waitUntil(lambda: failed.note.isVisible() and failed.note.height() > 0)
    qtbot.wait(50)  # the layout settles
    viewport = view.viewport()
    inside = viewport.rect()

    def within(widget: QWidget) -> bool:
        top_left = widget.mapTo(viewport, QPoint(0, 0))
        return top_left.x() >= 0 and top_left.x() + widget.width() <= inside.width()

    for card in view.widgets:
        assert within(card), (card.role, card.width(), inside.width())
        for button in (card.copy, card.action):
            assert button.isVisible() and within(button), (card.role, button.text())
    # The whole error is shown, over several lines.
    note = failed.note
    assert within(note)
    assert note.height() > 2 * note.fontMetrics().height()
    assert view.horizontalScrollBar().maximum() == 0


def test_a_note_moves_under_the_title_when_long_and_back_when_short(qtbot) -> None:
    """A short note ("writing…", "stopped") stays beside the title; a long one
    gets a line of its own, shown as plain text with break opportunities
    that its text() does not carry."""
    from localchat.ui.chat_view import ZERO_WIDTH_SPACE, MessageWidget, breakable

    card = MessageWidget("assistant", "Assistant · m")
    qtbot.addWidget(card)
    head = card.layout().itemAt(0).layout()  # the row with the title and buttons
    assert head.indexOf(card.title) >= 0
    card.set_note("writing…")
    assert head.indexOf(card.note) >= 0
    error = "failed: <b>no</b> file /a/" + "b" * 100
    card.set_note(error)
    assert head.indexOf(card.note) < 0 and card.layout().indexOf(card.note) == 1
    assert card.note.text() == error
    shown = QLabel.text(card.note)  # what Qt draws: the breaks added
    assert shown.replace(ZERO_WIDTH_SPACE, "") == error and shown != error
    assert card.note.textFormat() == Qt.TextFormat.PlainText  # "<b>" is shown as typed
    card.set_note("stopped")
    assert head.indexOf(card.note) >= 0 and card.layout().indexOf(card.note) < 0
    # Short words are left alone; a long token breaks after separators and
    # every 16 characters, never elsewhere.
    assert breakable("the model process crashed") == "the model process crashed"
    pieces = breakable("/home/someone/" + "x" * 40).split(ZERO_WIDTH_SPACE)
    assert pieces == ["/", "home/", "someone/", "x" * 16, "x" * 16, "x" * 8]
