"""Issue 21 in the window: a reasoning model's thinking streams into a
dimmed block above the answer, collapsed, that opens and copies; it is
stored apart and comes back after a restart; the thinking settings show only
for a model whose template has them."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QGuiApplication

from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.settings import AppSettings
from tests.test_window import TIMEOUT, install, open_window, type_and_send, wait_ready


def test_thinking_streams_collapsed_opens_copies_and_comes_back(
    qtbot, home: Path, parts, r1_model: Path
) -> None:
    install(home, r1_model, "r1-distill-tiny.gguf")
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    panel = window.panel
    assert panel.offered("thinking") and panel.offered("thinking_budget")
    assert not panel.offered("reasoning_effort")  # this template has no effort levels
    switch = panel.editors["thinking"]
    switch.setCurrentIndex(switch.findData("on"))  # this template's own default is off
    panel.editors["thinking_budget"].setValue(10)
    panel.editors["max_tokens"].setValue(40)
    type_and_send(qtbot, window, "hello world")
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: not window.chat.replying, timeout=TIMEOUT)
    reply = parts[0].thread(window.chat_id)[-1]
    assert reply.reasoning and reply.content  # stored apart
    assert reply.stats is not None and reply.stats["reasoning_tokens"] > 10
    widget = window.view.widgets[-1]
    block = widget.thinking
    assert block is not None and block.header.text().startswith("Thought")
    assert not block.is_open() and not block.text.isVisible()  # collapsed by default
    assert widget.markdown() == reply.content  # the answer renders as before, alone
    block.toggle()
    qtbot.waitUntil(block.text.isVisible)
    assert block.text.toPlainText().strip() == reply.reasoning.strip()
    block.copy.click()
    assert QGuiApplication.clipboard().text() == reply.reasoning
    block.toggle()
    assert not block.text.isVisible()
    chat_id = window.chat_id
    window.close()

    # A restart shows it again, collapsed, with how long it took.
    store, engine, settings = parts
    again = open_window(qtbot, (store, engine, settings))
    again.select_chat(chat_id)
    qtbot.waitUntil(lambda: bool(again.view.widgets), timeout=TIMEOUT)
    block = again.view.widgets[-1].thinking
    assert block is not None and block.thinking() == reply.reasoning
    assert block.header.text().startswith("Thought") and not block.is_open()


def test_a_model_that_does_not_think_shows_no_thinking_settings(
    qtbot, home: Path, parts: tuple[ChatStore, Engine, AppSettings], tiny_model: Path
) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    panel = window.panel
    for name in ("thinking", "reasoning_effort", "thinking_budget"):
        assert not panel.offered(name)
    assert not panel.boxes["thinking"].isVisibleTo(panel)
    assert panel.offered("temperature")


def test_the_figures_say_how_much_was_thinking(qtbot) -> None:
    from localchat.core.engine.protocol import ContextReport
    from localchat.ui.context_meter import ContextMeter
    from localchat.ui.message_parts import stats_text
    from localchat.ui.model_bar import ModelBar
    from localchat.ui.state import ChatState, ModelState

    stats = {"completion_tokens": 120, "reasoning_tokens": 80, "tokens_per_s": 20.0}
    assert stats_text(stats).startswith("120 tokens (80 thinking) · 20.0 tok/s")
    bar = ModelBar(ModelState())
    qtbot.addWidget(bar)
    bar.show_writing(12.5, tokens=10, thinking=10)
    assert (
        bar.status.text() == "Thinking · 12.5 tok/s"
        and "10 of them thinking" in bar.status.toolTip()
    )
    bar.show_writing(12.5, tokens=14, thinking=10)
    assert bar.status.text() == "Writing a reply · 12.5 tok/s"
    chat = ChatState()

    from types import SimpleNamespace

    # The meter only listens to its counter's failures.
    counter = SimpleNamespace(jobs=SimpleNamespace(failed=SimpleNamespace(connect=print)))
    meter = ContextMeter(chat, counter)  # type: ignore[arg-type]
    qtbot.addWidget(meter)
    meter.show_report(
        ContextReport(prompt_tokens=300, n_ctx=4096, reserve=1024, thinking_tokens=40)
    )
    assert meter.text() == "300 of 4,096 tokens used (40 thinking) · 1,024 kept for the reply"
    assert "40 tokens are the model's earlier thinking" in meter.toolTip()
