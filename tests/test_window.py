"""The chat window, driven as a user would, offscreen."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from localchat.core.chat.store import ChatStore
from localchat.ui.main_window import MainWindow

TIMEOUT = 60_000


def install(home: Path, model: Path, name: str = "tiny-chat.gguf") -> Path:
    target = home / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, target)
    return target


def open_window(qtbot, parts) -> MainWindow:
    window = MainWindow(*parts)
    qtbot.addWidget(window)
    window.show()
    return window


def wait_ready(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)


def type_and_send(qtbot, window: MainWindow, text: str) -> None:
    window.composer.setPlainText(text)
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)


def test_first_run_without_a_model_says_what_to_do(qtbot, home: Path, parts) -> None:
    window = open_window(qtbot, parts)
    assert "No model yet" in window.view.empty.text()
    assert str(home / "models") in window.view.empty.text()
    assert not window.model_box.isEnabled()
    type_and_send(qtbot, window, "hello?")
    assert "Choose a model first" in window.statusBar().currentMessage()


def test_send_streams_a_reply_and_keeps_the_chat(qtbot, home: Path, parts, tiny_model) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    assert window.model_state.text().startswith("Ready")
    qtbot.waitUntil(lambda: "F32" in window.model_box.currentText(), timeout=TIMEOUT)
    assert window.model_box.currentText().startswith("tiny-chat  ·  ")
    window.panel.editors["max_tokens"].setValue(40)
    pieces: list[str] = []
    type_and_send(qtbot, window, "Write **bold** and `code`")
    assert window.job is not None
    window.job.piece.connect(pieces.append)
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    assert window.composer.toPlainText() == ""
    store = parts[0]
    chats = store.list_chats()
    assert [c.title for c in chats] == ["Write bold and code"]  # plain: no Markdown marks
    thread = store.thread(chats[0].id)
    assert [m.role for m in thread] == ["user", "assistant"]
    assert thread[1].status == "done" and thread[1].model == "tiny-chat"
    assert [w.role for w in window.view.widgets] == ["user", "assistant"]
    assert window.view.widgets[1].markdown() == thread[1].content
    assert "tok/s" in window.speed.text() and "first token" in window.speed.text()
    qtbot.waitUntil(lambda: window.context is not None, timeout=TIMEOUT)
    assert "tokens used" in window.meter.text() and not window.meter.isHidden()
    assert window.chat_list.count() == 1


def test_stop_keeps_what_was_written(qtbot, home: Path, parts, slow_model) -> None:
    install(home, slow_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(4000)
    type_and_send(qtbot, window, "Go on and on")
    assert window.job is not None
    qtbot.waitUntil(lambda: len(window.view._stream_text) > 10, timeout=TIMEOUT)
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        qtbot.keyClick(window.composer, Qt.Key.Key_Escape)
    reply = parts[0].thread(window.chat_id)[-1]
    assert reply.status == "cancelled" and len(reply.content) > 10
    assert window.view.widgets[-1].note.text() == "stopped"
    assert not window.view.widgets[-1].note.error  # stopping is no failure
    assert window.send_button.text() == "Send"
    # The round button sends, then stops the reply it started.
    window.composer.setPlainText("Once more")
    qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
    assert window.job is not None and window.send_button.text() == "Stop"
    qtbot.waitUntil(lambda: len(window.view._stream_text) > 10, timeout=TIMEOUT)
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
    assert parts[0].thread(window.chat_id)[-1].status == "cancelled"
    assert parts[0].thread(window.chat_id)[-2].content == "Once more"


def test_restart_restores_the_last_chat_and_model(qtbot, home: Path, parts, tiny_model) -> None:
    install(home, tiny_model, "first.gguf")
    install(home, tiny_model, "second.gguf")
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.model_box.setCurrentIndex(1)
    window._model_chosen(1)
    wait_ready(qtbot, window)
    chosen = window.model_path
    window.panel.editors["max_tokens"].setValue(8)
    type_and_send(qtbot, window, "remember me")
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    chat = window.chat_id
    window.close()

    again = open_window(qtbot, parts)
    # Chat and model come back right after the window's first paint.
    qtbot.waitUntil(lambda: again.model_path is not None, timeout=TIMEOUT)
    assert again.chat_id == chat
    assert again.view.widgets[0].markdown() == "remember me"
    assert again.model_path == chosen
    assert again.panel.values().max_tokens == 8  # remembered for that model


def test_chats_rename_search_delete_export(qtbot, home: Path, parts, tmp_path) -> None:
    store = parts[0]
    a = store.create_chat("Holiday")
    store.add_message(a, "user", "beaches in Portugal")
    b = store.create_chat("Taxes")
    window = open_window(qtbot, parts)
    assert window.chat_list.count() == 2
    window.search.setText("portugal")
    assert [window.chat_list.item(i).text() for i in range(window.chat_list.count())] == ["Holiday"]
    window.search.clear()

    def titles() -> list[str]:
        return [window.chat_list.item(i).text() for i in range(window.chat_list.count())]

    # Writes run off the GUI thread; the list follows when they are done.
    window.rename_chat(b, "Tax return")
    qtbot.waitUntil(lambda: "Tax return" in titles(), timeout=TIMEOUT)
    window.export_chat(a, tmp_path / "out.md")
    window.export_chat(a, tmp_path / "out.json")
    qtbot.waitUntil(lambda: (tmp_path / "out.json").exists(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: (tmp_path / "out.md").exists(), timeout=TIMEOUT)
    assert "beaches in Portugal" in (tmp_path / "out.md").read_text()
    assert json.loads((tmp_path / "out.json").read_text())["title"] == "Holiday"
    window.export_chat(a, tmp_path / "no-such-dir" / "out.md")
    qtbot.waitUntil(lambda: "cannot write" in window.statusBar().currentMessage(), timeout=TIMEOUT)
    window.select_chat(b)
    window.delete_chat(b)
    assert window.chat_id is None
    qtbot.waitUntil(lambda: titles() == ["Holiday"], timeout=TIMEOUT)
    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id is not None, timeout=TIMEOUT)
    assert len(titles()) == 2


def test_a_worker_crash_during_a_reply_keeps_window_and_chat(
    qtbot, home: Path, parts, slow_model
) -> None:
    install(home, slow_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(4000)
    type_and_send(qtbot, window, "Keep talking")
    qtbot.waitUntil(lambda: len(window.view._stream_text) > 5, timeout=TIMEOUT)
    pid = parts[1].worker_pid
    assert pid is not None
    with qtbot.waitSignal(window.job.failed, timeout=TIMEOUT):
        os.kill(pid, signal.SIGKILL)
    assert "crashed" in window.statusBar().currentMessage()
    thread = parts[0].thread(window.chat_id)
    assert thread[0].content == "Keep talking" and thread[1].status == "failed"
    assert window.view.widgets[-1].note.text().startswith("failed: the model process crashed")
    wait_ready(qtbot, window)  # the model comes back by itself
    window.panel.editors["max_tokens"].setValue(5)
    type_and_send(qtbot, window, "Still there?")
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    assert parts[0].thread(window.chat_id)[-1].status == "done"


def test_regenerate_edit_and_flip_between_versions(
    qtbot, home: Path, parts, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(12)
    window.panel.editors["temperature"].setValue(1.0)
    type_and_send(qtbot, window, "Hello")
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    store, chat = parts[0], window.chat_id
    first = store.thread(chat)[-1]

    # Regenerate from the reply's own button.
    reply_widget = window.view.widgets[-1]
    with _started(qtbot, window):
        qtbot.mouseClick(reply_widget.action, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    second = store.thread(chat)[-1]
    assert second.id != first.id and second.sibling_ids == (first.id, second.id)
    shown = window.view.widgets[-1]
    assert shown.position.text() == "2/2" and not shown.position.isHidden()

    # The arrow flips back to the first version.
    qtbot.mouseClick(shown.older, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.view.widgets[-1].markdown() == first.content, timeout=TIMEOUT)
    assert window.view.widgets[-1].position.text() == "1/2"

    # Edit the question in place: a new text, saved and sent.
    question = window.view.widgets[0]
    with _started(qtbot, window):
        qtbot.mouseClick(question.action, Qt.MouseButton.LeftButton)  # edits in place
        question.edit_box.setPlainText("Hello again")
        qtbot.mouseClick(question.save_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    thread = store.thread(chat)
    assert thread[0].content == "Hello again" and thread[0].sibling_index == 1
    assert store.message(first.parent_id).content == "Hello"  # the old question stays


def test_switching_model_mid_chat_keeps_the_conversation(
    qtbot, home: Path, parts, tiny_model, phi3_model
) -> None:
    install(home, tiny_model, "alpha.gguf")
    install(home, phi3_model, "beta.gguf")
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(6)
    type_and_send(qtbot, window, "First question")
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    first_model = window.model_path
    other = 1 if window.model_box.itemData(0) == str(first_model) else 0
    window.model_box.setCurrentIndex(other)
    window._model_chosen(other)
    qtbot.waitUntil(
        lambda: window.loaded is not None and window.model_path != first_model, timeout=TIMEOUT
    )
    window.panel.editors["max_tokens"].setValue(6)
    type_and_send(qtbot, window, "Second question")
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    thread = parts[0].thread(window.chat_id)
    assert [m.content for m in thread if m.role == "user"] == ["First question", "Second question"]
    assert [m.model for m in thread if m.role == "assistant"] == [
        first_model.stem,
        window.model_path.stem,
    ]


class _started:
    """Wait until the window has started a reply job."""

    def __init__(self, qtbot, window: MainWindow) -> None:
        self.qtbot, self.window, self.before = qtbot, window, window.job

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.qtbot.waitUntil(lambda: self.window.job is not self.before, timeout=TIMEOUT)


APP_STREAMING = r"""
import json, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.settings import AppSettings
from localchat.ui.main_window import MainWindow

if __name__ == "__main__":
    app = QApplication(sys.argv)
    AppSettings().set_generation(max_tokens=4000)
    window = MainWindow(ChatStore(), Engine(), AppSettings())
    window.show()
    count = [0]

    def piece(text):
        if count[0] == 0:  # by now the reply's job has said which chat it opened
            print("chat", window.replies.reply_chat, flush=True)
        count[0] += 1
        print("piece", json.dumps(text), flush=True)

    def go():
        if window.loaded is None:
            QTimer.singleShot(20, go)
            return
        window.send("Tell me everything")
        window.job.piece.connect(piece)

    QTimer.singleShot(0, go)
    app.exec()
"""


def test_kill_9_of_the_app_while_streaming_keeps_the_chat(home: Path, slow_model) -> None:
    import subprocess
    import sys

    from localchat.core.chat.store import ReplyWriter

    install(home, slow_model)
    env = {**os.environ, "LOCALCHAT_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [sys.executable, "-c", APP_STREAMING], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        while not line.startswith("chat"):
            assert line, "the app ended before it replied"
            line = proc.stdout.readline()
        chat = int(line.split()[1])
        shown: list[str] = []
        while len(shown) < 60:
            shown.append(json.loads(proc.stdout.readline().split(" ", 1)[1]))
    finally:
        proc.send_signal(signal.SIGKILL)  # also when the test fails: no app left running
        proc.wait()

    with ChatStore(home / "chats.sqlite3") as store:
        assert store.integrity_ok()
        question, reply = store.thread(chat)
    assert question.content == "Tell me everything"
    assert reply.status == "interrupted"
    # Each piece is written to the store before the window shows it, and the
    # writer commits at least every FLUSH_PIECES pieces: all that was shown,
    # but for the last few pieces, survived the kill.
    assert reply.content.startswith("".join(shown[: -ReplyWriter.FLUSH_PIECES]))


def test_model_settings_apply_on_reload(qtbot, home: Path, parts, tiny_model) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    assert window.loaded is not None and window.loaded.n_ctx == 4096
    assert window.reload_button.isHidden()
    # The form is built after the first paint; the Settings action shows it.
    window.settings_dock.toggleViewAction().trigger()
    assert window.settings_dock.isVisible() and window.settings_dock.widget() is window.panel
    assert window.panel.isVisible() and window.panel.editors["ctx"].value() == 4096
    window.panel.editors["temperature"].setValue(0.3)  # a sampling setting: no reload
    assert window.reload_button.isHidden()
    window.panel.editors["ctx"].setValue(2048)
    assert not window.reload_button.isHidden()
    qtbot.mouseClick(window.reload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)
    assert window.loaded.n_ctx == 2048 and window.reload_button.isHidden()


def test_shift_enter_is_a_new_line_and_enter_sends(qtbot, home: Path, parts, tiny_model) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(4)
    qtbot.keyClicks(window.composer, "first line")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer, "second line")
    assert window.composer.toPlainText() == "first line\nsecond line"
    assert window.job is None  # nothing sent yet
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    assert parts[0].thread(window.chat_id)[0].content == "first line\nsecond line"


def test_context_meter_memory_note_and_messages_out_of_view(
    qtbot, home: Path, parts, tiny_model
) -> None:
    """The meter counts what the next prompt costs (the draft too); the memory a
    context size needs shows before it is applied; messages that dropped out of
    the model's view are marked, and stay in the chat."""
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    note = window.panel.notes["ctx"]
    assert "memory at 4,096 tokens" in note.text() and not note.isHidden()
    window.panel.editors["ctx"].setValue(1024)  # shown before it is applied
    assert "memory at 1,024 tokens" in note.text() and not window.reload_button.isHidden()
    window.panel.editors["ctx"].setValue(512)
    qtbot.mouseClick(window.reload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)
    window.panel.editors["max_tokens"].setValue(20)
    window.panel.editors["temperature"].setValue(0.0)
    assert window.meter.isHidden()  # nothing to count yet

    window.composer.setPlainText("a draft " * 10)
    qtbot.waitUntil(lambda: window.context is not None, timeout=TIMEOUT)
    draft_cost = window.context.prompt_tokens
    assert not window.meter.isHidden() and window.meter.maximum() == 512
    assert "of 512 tokens used" in window.meter.text()
    assert "Kept for the reply: 20" in window.meter.toolTip()
    window.composer.setPlainText("a longer draft " * 10)
    qtbot.waitUntil(lambda: window.context.prompt_tokens > draft_cost, timeout=TIMEOUT)

    for turn in range(5):
        before = window.context
        type_and_send(qtbot, window, f"message {turn}: " + "tell me more " * 12)
        assert window.job is not None
        with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
            pass
        # The meter follows the chat: recounted once the reply is in.
        qtbot.waitUntil(lambda before=before: window.context is not before, timeout=TIMEOUT)
        assert len(parts[0].thread(window.chat_id)) == 2 * (turn + 1)
    report = window.context
    assert report is not None and report.dropped and report.prompt_tokens + 20 <= 512
    qtbot.waitUntil(lambda: bool(window.view.outside_ids()), timeout=TIMEOUT)
    thread = parts[0].thread(window.chat_id)
    assert window.view.outside_ids() == {thread[i].id for i in report.dropped}
    first = window.view.widgets[0]
    assert first.outside.isVisibleTo(first) and "no longer sees" in first.toolTip()
    assert not window.view.widgets[-1].outside.isVisibleTo(window.view.widgets[-1])
    assert "older messages" in window.meter.toolTip()
    assert len(window.view.widgets) == len(thread) == 10  # all still in the chat


def test_a_fresh_install_chats_with_the_demo_model(
    qtbot, home: Path, parts, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localchat.core import paths
    from localchat.ui.main_window import DEMO_LABEL

    demo = shutil.copy(tiny_model, home / "localchat-demo.gguf")
    monkeypatch.setenv(paths.DEMO_ENV, str(demo))
    window = open_window(qtbot, parts)
    assert window.model_box.isEnabled() and window.model_box.itemText(0) == DEMO_LABEL
    assert "tiny demo model" in window.view.empty.text()
    assert window.view.empty_action.isVisible()  # the way to a real model
    wait_ready(qtbot, window)
    assert "demo model" in window.model_state.text()
    window.panel.editors["max_tokens"].setValue(5)
    type_and_send(qtbot, window, "hello")
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    assert parts[0].thread(window.chat_id)[-1].status == "done"
    # A real model, once installed, comes first; the demo stays listed last.
    install(home, tiny_model, "real.gguf")
    window.refresh_models()
    assert window.model_box.itemData(0) == str(home / "models" / "real.gguf")
    assert window.model_box.itemText(window.model_box.count() - 1) == DEMO_LABEL
