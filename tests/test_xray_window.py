"""Issue 22 in the window: a reply's token X-ray, the panel of one position
(candidates, stages, the sampling playground), and "Continue with this
instead" making a new version of the reply."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QPoint, Qt

from localchat.ui.replies import RECORDED_CANDIDATES
from tests.test_window import TIMEOUT, install, open_window, type_and_send, wait_ready


def send(qtbot, window, text: str) -> None:
    type_and_send(qtbot, window, text)
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: not window.chat.replying, timeout=TIMEOUT)


def test_xray_panel_playground_and_continue(qtbot, home: Path, parts, tiny_model: Path) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(24)
    window.panel.editors["temperature"].setValue(0.0)
    send(qtbot, window, "hello world")
    store = parts[0]
    reply = store.thread(window.chat_id)[-1]
    assert reply.has_tokens and len(reply.tokens) == 24
    assert all(len(t.top) == RECORDED_CANDIDATES for t in reply.tokens)
    widget = window.view.widgets[-1]
    assert widget.xray.isVisibleTo(widget)  # offered for a reply with tokens
    qtbot.mouseClick(widget.xray, Qt.MouseButton.LeftButton)
    view = widget.tokens_view
    assert view is not None and view.isVisible()
    assert not any(s.isVisible() for s in widget.segments)  # the tokens in place of the text
    assert view.toPlainText().replace("\u200b", "").replace("↵", "") == reply.content.replace(
        "\n", ""
    )
    first = reply.tokens[0]
    assert f"{math.exp(first.logprob) * 100:.0f}"[:1] in view.tip(0)
    # A click on a token: its candidates.
    cursor = view.cursorForPosition(QPoint(0, 0))
    rect = view.cursorRect(cursor)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center() + QPoint(3, 0))
    dialog = window._xray
    assert dialog is not None and dialog.isVisible()
    panel = dialog.panel
    assert panel.heading.text().startswith(f"Token 1 of {len(reply.tokens)}")
    rows = panel.chart.rows
    assert len(rows) == RECORDED_CANDIDATES and rows[0][4]  # the chosen one, first (greedy)
    assert rows[0][2] == 1.0 and all(r[2] == 0 for r in rows[1:])  # greedy: all on it
    # The playground: a warmer, wider setting spreads the draw, without the model.
    panel.knobs["temperature"].setValue(1.5)
    panel.knobs["top_k"].setValue(0)
    panel.knobs["top_p"].setValue(1.0)
    panel.knobs["min_p"].setValue(0.0)
    spread = [r[2] for r in panel.chart.rows]
    assert 0 < spread[0] < 1 and sum(1 for p in spread if p > 0) == RECORDED_CANDIDATES
    panel.knobs["top_k"].setValue(2)
    assert [r[3] for r in panel.chart.rows][2:] == ["top_k"] * (RECORDED_CANDIDATES - 2)
    qtbot.mouseClick(panel.reset_button, Qt.MouseButton.LeftButton)
    assert panel.knobs["temperature"].value() == 0.0
    # Continue with the second candidate instead: a new version.
    assert not panel.continue_button.isEnabled()
    qtbot.mouseClick(
        panel.chart,
        Qt.MouseButton.LeftButton,
        pos=QPoint(20, 2 + 3 + 1 * panel.chart._row_height()),
    )
    assert panel.chart.current == 1 and panel.continue_button.isEnabled()
    chosen = reply.tokens[0].top[1]
    qtbot.mouseClick(panel.continue_button, Qt.MouseButton.LeftButton)
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: not window.chat.replying, timeout=TIMEOUT)
    new = store.thread(window.chat_id)[-1]
    assert new.id != reply.id and new.parent_id == reply.parent_id
    assert new.sibling_ids == (reply.id, new.id)  # another version: nothing lost
    assert new.tokens[0].id == chosen[0]
    qtbot.waitUntil(lambda: window.view.widgets[-1].message.id == new.id, timeout=TIMEOUT)
    assert window.view.widgets[-1].position.text() == "2/2"


def test_the_prompt_xray_shows_what_the_model_read(
    qtbot, home: Path, parts, tiny_model: Path
) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(8)
    window.panel.editors["system_prompt"].setPlainText("Answer in French.")
    send(qtbot, window, "hello world")
    store = parts[0]
    reply = store.thread(window.chat_id)[-1]
    widget = window.view.widgets[-1]
    qtbot.mouseClick(widget.xray, Qt.MouseButton.LeftButton)
    widget.tokens_view.picked.emit(0)
    dialog = window._xray
    assert dialog is not None
    dialog.tabs.setCurrentIndex(1)  # The prompt
    prompt = dialog.prompt
    qtbot.waitUntil(lambda: "tokens of the" in prompt.summary.text(), timeout=TIMEOUT)
    shown = prompt.tokens.tokens
    assert len(shown) == reply.stats["prompt_tokens"]  # what the model read, exactly
    text = "".join(t.text for t in shown)
    assert "Answer in French." in text and "hello world" in text  # the system prompt in
    assert "token" in prompt.tokens.tip(0) and str(shown[0].id) in prompt.tokens.tip(0)
    dialog.hide()
    # A reply without recorded tokens: its X-ray is the prompt.
    old = store.begin_reply(window.chat_id, parent_id=reply.parent_id, model="tiny-chat")
    old.append("An older reply.")
    old.finish("done", {"completion_tokens": 3})
    window.show_chat()
    qtbot.waitUntil(lambda: window.view.widgets[-1].message.id == old.message_id)
    widget = window.view.widgets[-1]
    assert widget.xray.isVisibleTo(widget) and "prompt" in widget.xray.toolTip()
    qtbot.mouseClick(widget.xray, Qt.MouseButton.LeftButton)
    assert not widget.xray.isChecked() and widget.tokens_view is None  # no tokens to show
    assert dialog.isVisible() and dialog.tabs.currentIndex() == 1
    assert not dialog.tabs.isTabEnabled(0)
    qtbot.waitUntil(lambda: "tokens of the" in prompt.summary.text(), timeout=TIMEOUT)
