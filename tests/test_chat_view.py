"""The message view: bubbles and replies, hover actions, versions, editing in
place, statistics, and the welcome of an empty chat."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QEnterEvent
from PySide6.QtWidgets import QApplication, QPushButton

from localchat.core.chat.store import StoredMessage
from localchat.ui.chat_view import ChatView, MessageWidget
from localchat.ui.empty_state import DEMO_PROMPTS, PROMPTS
from localchat.ui.message_parts import ACTION_SIZE, stats_text

STATS = {
    "completion_tokens": 42,
    "tokens_per_s": 18.34,
    "ttft_ms": 412.0,
    "context_used": 120,
    "context_size": 4096,
}


def message(
    id: int,
    role: str,
    content: str,
    *,
    siblings: tuple[int, ...] = (),
    status: str = "done",
    stats: dict | None = None,
) -> StoredMessage:
    return StoredMessage(
        id=id,
        chat_id=1,
        parent_id=id - 1 or None,
        role=role,  # type: ignore[arg-type]
        content=content,
        status=status,  # type: ignore[arg-type]
        model="tiny-chat" if role == "assistant" else None,
        settings=None,
        stats=stats,
        created_at=0.0,
        sibling_ids=siblings or (id,),
    )


@pytest.fixture
def view(qtbot) -> ChatView:
    v = ChatView()
    qtbot.addWidget(v)
    v.resize(800, 600)
    v.show()
    return v


def hover(widget: MessageWidget, inside: bool) -> None:
    if inside:
        QApplication.sendEvent(widget, QEnterEvent(QPointF(2, 2), QPointF(2, 2), QPointF(2, 2)))
    else:
        from PySide6.QtCore import QEvent

        QApplication.sendEvent(widget, QEvent(QEvent.Type.Leave))


def test_the_user_is_a_bubble_on_the_right_and_the_model_full_width(view, qtbot) -> None:
    view.show_thread(
        [message(1, "user", "Hi there"), message(2, "assistant", "Hello! " * 60, stats=STATS)]
    )
    qtbot.wait(20)
    user, reply = view.widgets
    assert user.bubble is not None and reply.bubble is None
    # Each side is named and has its own badge: "You" with a person at the
    # right edge, the model's name with its initial at the left.
    assert user.title.isVisible() and user.title.text() == "You"
    assert reply.title.text() == "tiny-chat"
    assert user.avatar.isVisible() and user.avatar.person
    assert reply.avatar.isVisible() and not reply.avatar.person
    assert user.avatar.accessibleName() == "you" and reply.avatar.accessibleName() == "model"
    assert user.avatar.mapTo(user, user.avatar.rect().topRight()).x() > user.width() - 30
    assert reply.avatar.mapTo(reply, reply.avatar.rect().topLeft()).x() < 30
    # The short question's bubble fits its text, on the right.
    right = user.bubble.mapTo(user, user.bubble.rect().topRight()).x()
    assert user.bubble.width() < user.width() / 2
    assert right > user.width() - 30
    # The reply takes the width.
    text = reply.segments[0]
    assert text.width() > 0.8 * reply.width() - reply.avatar.width() - 40


def test_a_long_question_wraps_in_a_bubble_of_limited_width(view, qtbot) -> None:
    view.show_thread([message(1, "user", "word " * 200)])
    qtbot.wait(20)
    (user,) = view.widgets
    assert user.bubble is not None
    assert user.bubble.width() <= 0.8 * user.width() + 1
    assert user.segments[0].height() > 3 * user.fontMetrics().height()


def test_the_actions_show_on_hover_and_on_keyboard_focus(view, qtbot) -> None:
    view.show_thread([message(1, "user", "Hi"), message(2, "assistant", "Hello")])
    user, reply = view.widgets
    for card in (user, reply):
        assert card.copy.isVisible() and card.action.isVisible()  # their place is kept
        assert not card.copy.drawn() and not card.action.drawn()
        assert card.copy.toolTip() and card.copy.accessibleName() == "Copy"
        assert min(card.copy.width(), card.copy.height()) >= 24
    assert user.action.accessibleName() == "Edit"
    assert reply.action.accessibleName() == "Regenerate"
    redrawn: list[str] = []
    for button in (reply.copy, reply.action, reply.xray):
        button.update = functools.partial(redrawn.append, button.text())  # type: ignore[method-assign]
    hover(reply, True)
    assert reply.copy.drawn() and reply.action.drawn() and not user.copy.drawn()
    assert reply.xray.isVisibleTo(reply) and reply.xray.drawn()
    assert redrawn == ["Copy", "Regenerate", "X-ray"]  # each is painted as the pointer enters
    hover(reply, False)
    assert not reply.copy.drawn()
    view.activateWindow()
    reply.copy.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(reply.copy.hasFocus)
    assert reply.action.drawn()


def test_copy_and_regenerate(view, qtbot) -> None:
    view.show_thread([message(1, "user", "Hi"), message(2, "assistant", "**Hello**")])
    reply = view.widgets[1]
    reply.copy.click()
    assert QApplication.clipboard().text() == "**Hello**"
    with qtbot.waitSignal(view.regenerate_requested) as asked:
        reply.action.click()
    assert asked.args == [2]


def test_the_arrows_switch_versions_and_are_easy_to_hit(view, qtbot) -> None:
    view.show_thread([message(1, "user", "Hi"), message(3, "assistant", "second", siblings=(2, 3))])
    reply = view.widgets[1]
    assert reply.position.text() == "2/2" and reply.position.isVisible()
    assert reply.older.isEnabled() and not reply.newer.isEnabled()
    assert reply.older.height() >= 24 and reply.older.width() >= 24 and ACTION_SIZE >= 24
    assert reply.older.drawn()  # always drawn, not only on hover
    with qtbot.waitSignal(view.show_sibling) as flipped:
        qtbot.mouseClick(reply.older, Qt.MouseButton.LeftButton)
    assert flipped.args == [2]
    view.show_thread([message(1, "user", "Hi"), message(2, "assistant", "first")])
    assert not view.widgets[1].position.isVisible()


def test_edit_in_place_saves_and_cancels(view, qtbot) -> None:
    view.show_thread([message(1, "user", "Hello"), message(2, "assistant", "Hi")])
    user = view.widgets[0]
    with qtbot.assertNotEmitted(view.edit_requested):
        user.action.click()
    assert user.editor is not None and user.editor.isVisible()
    assert user.bubble is not None and not user.bubble.isVisible()
    assert user.edit_box.toPlainText() == "Hello"
    # Esc cancels: the bubble is back, nothing sent.
    with qtbot.assertNotEmitted(view.edited):
        qtbot.keyClick(user.edit_box, Qt.Key.Key_Escape)
    assert user.editor is None and user.bubble.isVisible() and user.markdown() == "Hello"
    # Cancel as well; an unchanged text is not sent.
    user.action.click()
    with qtbot.assertNotEmitted(view.edited):
        user.save_button.click()
    user.action.click()
    user.cancel_button.click()
    assert user.editor is None
    # Save & send.
    user.action.click()
    user.edit_box.setPlainText("Hello again ")
    with qtbot.waitSignal(view.edited) as saved:
        user.save_button.click()
    assert saved.args == [1, "Hello again"]
    assert user.editor is None
    # Ctrl+Enter saves.
    user.action.click()
    user.edit_box.setPlainText("Third try")
    with qtbot.waitSignal(view.edited) as saved:
        qtbot.keyClick(user.edit_box, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert saved.args == [1, "Third try"]


def test_the_stats_line_shows_under_a_reply(view) -> None:
    assert stats_text(STATS) == "42 tokens · 18.3 tok/s · first token 0.41 s"
    assert stats_text(None) == "" and stats_text({"error": "boom"}) == ""
    view.show_thread(
        [
            message(1, "user", "Hi"),
            message(2, "assistant", "Hello", stats=STATS),
            message(3, "user", "Again"),
            message(4, "assistant", "Part", status="failed", stats={"error": "crashed"}),
        ]
    )
    done, failed = view.widgets[1], view.widgets[3]
    assert done.stats.isVisible() and done.stats.text() == stats_text(STATS)
    assert "4,096" in done.stats.toolTip()
    assert not failed.stats.isVisible() and failed.note.text() == "failed: crashed"
    assert not view.widgets[0].stats.isVisible()


def test_an_empty_chat_welcomes_with_examples_for_the_composer(view, qtbot) -> None:
    view.show_thread([])
    assert view.welcome.isVisible()
    assert [c.text() for c in view.welcome.chips] == list(PROMPTS)
    view.set_model(Path("/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf"))
    assert "Qwen2.5-7B-Instruct-Q4_K_M" in view.welcome.model_line.text()
    assert not view.empty_action.isVisible()
    with qtbot.waitSignal(view.example_chosen) as chosen:
        qtbot.mouseClick(view.welcome.chips[0], Qt.MouseButton.LeftButton)
    assert chosen.args == [PROMPTS[0]]
    # A message hides the welcome; an empty chat brings it back.
    view.show_thread([message(1, "user", "Hi")])
    assert not view.welcome.isVisible()
    view.show_thread([])
    assert view.welcome.isVisible()


def test_the_demo_model_gets_prompts_it_answers_and_its_limits_said(
    view, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localchat.core.models import library

    path = Path("/app/assets/localchat-demo.gguf")
    monkeypatch.setattr(library, "demo", lambda: path)
    assert library.is_demo(path)
    view.show_thread([])  # the general examples first, then the model is known
    view.set_model(path)
    assert [c.text() for c in view.welcome.chips] == list(DEMO_PROMPTS)
    QApplication.processEvents()  # a layout shows the buttons it gets on the next round
    shown = [b.text() for b in view.welcome.findChildren(QPushButton) if b.isVisibleTo(view)]
    assert set(shown) == {*DEMO_PROMPTS, "Browse models…"}  # none of the old ones left
    line = view.welcome.model_line.text()
    assert "tiny demo" in line and "a little Python" in line and "Models" in line
    assert view.empty_action.isVisible() and view.empty_action.text() == "Browse models…"
    with qtbot.waitSignal(view.example_chosen) as chosen:
        view.welcome.chips[-1].click()
    assert chosen.args == [DEMO_PROMPTS[-1]]


def test_the_window_message_replaces_the_welcome(view) -> None:
    from localchat.ui.chat_view import NO_MODEL

    view.show_empty(NO_MODEL.format(folder="/x/models", url="file:///x/models"), action="Browse")
    assert "No model yet" in view.empty.text() and "/x/models" in view.empty.text()
    assert view.empty_action.isVisible() and view.welcome.chips == []
    view.hide_empty()
    assert "No model yet" not in view.empty.text() and view.welcome.isVisible()


def test_a_streamed_reply_repaints_only_on_the_timer(view, qtbot) -> None:
    view.begin_stream("Tell me", "tiny-chat")
    assert not view.welcome.isVisible()
    reply = view.streaming
    assert reply is not None and reply.title.text() == "tiny-chat"
    for _ in range(100):
        view.append("word ")
    assert reply.markdown() == ""  # collected, not yet painted
    qtbot.waitUntil(lambda: reply.markdown() == "word " * 100)
    view.stop_stream()
    assert view.repaints >= 1


def test_thinking_streams_live_above_the_answer(view, qtbot) -> None:
    """While the model thinks the block says "Thinking…" (collapsed); the
    first piece of the answer ends it: "Thought for …"."""
    view.begin_stream("What is 2+2?", "tiny-chat")
    view.append_thinking("The user asks ")
    view.append_thinking("for a sum.")
    view._repaint_stream()
    reply = view.widgets[-1]
    block = reply.thinking
    assert block is not None and block.header.text() == "Thinking…" and block.running
    assert not block.is_open() and block.thinking() == "The user asks for a sum."
    block.toggle()  # opened while it streams: the text follows live
    view.append_thinking(" Easy.")
    view._repaint_stream()
    assert block.text.toPlainText() == "The user asks for a sum. Easy."
    view.append("It is **4**.")
    view._repaint_stream()
    assert block.header.text().startswith("Thought") and not block.running
    assert reply.markdown() == "It is **4**."
    view.stop_stream()
    assert block.header.text().startswith("Thought")
