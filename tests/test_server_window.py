"""The window's "Local server" switch, driven as a user would, offscreen, with
the real OpenAI client: one engine behind the chat and the API."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PySide6.QtCore import Qt

from localchat.core.errors import LocalChatError, SettingError
from localchat.core.settings import AppSettings, ServerChoice
from localchat.server.runner import EngineTurns, ServerRunner
from localchat.server.security import ServerConfig
from localchat.server.service import EngineService
from localchat.testing.tiny_models import write_llama_gguf
from localchat.ui.main_window import MainWindow
from localchat.ui.server_panel import ServerPanel
from tests.server_helpers import free_port, install

TIMEOUT = 60_000
HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def steady_model(models_dir: Path) -> Path:
    """Never ends a reply by itself, at some 1,000 tokens a second (on a
    laptop; slower on a busy machine): a reply of 300 tokens is still being
    written when the next one is asked."""
    return write_llama_gguf(
        models_dir / "steady.gguf",
        n_embd=384,
        n_layer=6,
        n_ff=768,
        suppress_special=True,
        ascii_only=True,
    )


@pytest.fixture
def open_window(qtbot, home: Path, parts) -> Iterator[Callable[..., MainWindow]]:
    """Install the models (path, name), open the window, wait for its model;
    the window closes (its server with it) before the engine does."""
    made: list[MainWindow] = []

    def make(*models: tuple[Path, str]) -> MainWindow:
        for model, name in models:
            install(home, model, name)
        window = MainWindow(*parts)
        qtbot.addWidget(window)
        window.show()
        made.append(window)
        qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)
        return window

    yield make
    for window in made:
        window.close()


def form(window: MainWindow) -> ServerPanel:
    found = window.panel.findChild(ServerPanel)
    assert found is not None
    return found


def switch(qtbot, window: MainWindow, on: bool, port: int | None = None) -> None:
    """Through the settings' form: the port typed in, the switch clicked."""
    panel = form(window)
    if port is not None:
        panel.port.setValue(port)
        panel.port.editingFinished.emit()
    assert panel.switch.isChecked() != on
    panel.switch.click()
    settled = ("on", "failed") if on else ("off",)
    qtbot.waitUntil(lambda: window.server.state.phase in settled, timeout=TIMEOUT)


def client_for(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)


def type_and_send(qtbot, window: MainWindow, text: str) -> None:
    window.composer.setPlainText(text)
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)


def test_the_switch_serves_the_window_s_model_and_logs_each_request(
    qtbot, open_window, tiny_model: Path
) -> None:
    window = open_window((tiny_model, "tiny-chat.gguf"))
    button = window.server_view.button
    assert not button.isVisible()  # off: nothing in the status bar
    port = free_port()
    switch(qtbot, window, True, port)
    assert window.server.state.phase == "on", window.server.state.error
    assert button.isVisible() and button.text() == f"API on 127.0.0.1:{port}"
    assert f"http://127.0.0.1:{port}/v1" in form(window).note.text()
    assert not form(window).port.isEnabled()  # fixed while it runs

    reply = client_for(port).chat.completions.create(
        model="tiny-chat", messages=HI, max_tokens=8, seed=7
    )
    assert reply.choices[0].message.content and reply.usage is not None
    qtbot.waitUntil(lambda: len(window.server.state.records) == 1, timeout=TIMEOUT)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.server_view.dock.isVisible()
    table = window.server_view.pane().model
    assert table.rowCount() == 1
    _time, client, request, model, tokens, rate, status = (
        table.index(0, column).data() for column in range(table.columnCount())
    )
    assert (client, model, status) == ("127.0.0.1", "tiny-chat", "200")
    assert request == "POST /v1/chat/completions"
    assert tokens == str(reply.usage.completion_tokens) and float(rate) > 0
    assert "finished: length" in table.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)
    # The window's own model stays loaded and its chat goes on.
    assert window.model_path is not None and window.model_path.stem == "tiny-chat"
    window.panel.editors["max_tokens"].setValue(8)
    type_and_send(qtbot, window, "and in the window?")
    qtbot.waitUntil(lambda: not window.busy(), timeout=TIMEOUT)
    assert window.store.thread(window.chat_id)[-1].status == "done"

    switch(qtbot, window, False)
    assert not button.isVisible()
    assert window.settings.server().on is False
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=5)


def test_a_port_in_use_is_one_line_in_the_status_bar(qtbot, open_window, tiny_model: Path) -> None:
    window = open_window((tiny_model, "tiny-chat.gguf"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        switch(qtbot, window, True, port)
        state = window.server.state
        assert state.phase == "failed"
        text = window.server_view.button.text()
        assert text == f"API server: cannot listen on 127.0.0.1:{port}: address already in use"
        assert "\n" not in text and "Traceback" not in text
        assert window.server_view.button.isVisible()
        assert form(window).note.text() == state.error
        assert form(window).port.isEnabled()  # to choose another
    # Nothing else minds: the chat goes on, and the switch can be turned off.
    window.panel.editors["max_tokens"].setValue(4)
    type_and_send(qtbot, window, "still here?")
    qtbot.waitUntil(lambda: not window.busy(), timeout=TIMEOUT)
    assert window.store.thread(window.chat_id)[-1].status == "done"
    switch(qtbot, window, False)
    assert not window.server_view.button.isVisible()


def test_a_request_for_another_model_shows_it_in_the_window(
    qtbot, open_window, home: Path, parts, tiny_model: Path
) -> None:
    port = free_port()
    settings: AppSettings = parts[2]
    settings.set_server(on=True, port=port)  # left on when the app last closed
    window = open_window((tiny_model, "first.gguf"), (tiny_model, "second.gguf"))
    qtbot.waitUntil(lambda: window.server.state.phase == "on", timeout=TIMEOUT)
    assert form(window).switch.isChecked()
    assert window.model_path is not None
    shown = window.model_path.stem
    other = "second" if shown == "first" else "first"

    reply = client_for(port).chat.completions.create(model=other, messages=HI, max_tokens=4)
    assert reply.model == other
    path = home / "models" / f"{other}.gguf"
    qtbot.waitUntil(lambda: window.model_path == path, timeout=TIMEOUT)
    assert window.loaded is not None and Path(window.loaded.path).stem == other
    assert window.model_box.currentData() == str(path)
    status = window.model_state.text()
    assert status.startswith("Ready") and "API server" in status
    assert window.panel.heading.text() == f"Settings for {other}"
    # The window's next reply is the model it shows, and says so.
    window.panel.editors["max_tokens"].setValue(4)
    type_and_send(qtbot, window, "who are you?")
    qtbot.waitUntil(lambda: not window.busy(), timeout=TIMEOUT)
    assert window.store.thread(window.chat_id)[-1].model == other


def test_a_window_reply_and_a_request_at_once_both_end_whole(
    qtbot, open_window, steady_model: Path
) -> None:
    """Each waits for the other's turn: a request in the middle of the
    window's reply would end it (and the reverse; a context count too) if
    they used the engine at once."""
    window = open_window((steady_model, "steady.gguf"))
    port = free_port()
    switch(qtbot, window, True, port)
    client = client_for(port)
    store = window.store
    long, short = 300, 30

    # The window's reply first; a request while it is written.
    window.panel.editors["max_tokens"].setValue(long)
    type_and_send(qtbot, window, "Tell me a story")
    qtbot.waitUntil(lambda: len(window.view._stream_text) > 3, timeout=TIMEOUT)
    answers: dict[str, Any] = {}

    def ask() -> None:
        answers["reply"] = client.chat.completions.create(
            model="steady", messages=HI, max_tokens=short
        )

    asking = threading.Thread(target=ask)
    asking.start()
    qtbot.waitUntil(lambda: not window.busy(), timeout=TIMEOUT)
    asking.join(60)
    written = store.thread(window.chat_id)[-1]
    assert written.status == "done" and written.stats is not None
    assert written.stats["completion_tokens"] == long
    assert answers["reply"].choices[0].finish_reason == "length"
    assert answers["reply"].usage.completion_tokens == short

    # A request first (streamed); the window's reply while it streams.
    window.panel.editors["max_tokens"].setValue(short)
    stream = iter(
        client.chat.completions.create(
            model="steady",
            messages=HI,
            max_tokens=long,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert next(stream).choices[0].delta.role == "assistant"  # its reply has begun
    type_and_send(qtbot, window, "And another")
    chunks = list(stream)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == long
    qtbot.waitUntil(lambda: not window.busy(), timeout=TIMEOUT)
    written = store.thread(window.chat_id)[-1]
    assert written.status == "done" and written.content
    assert written.stats is not None and written.stats["completion_tokens"] == short

    # The context meter's count (as the user types) while a request streams.
    stream = iter(
        client.chat.completions.create(model="steady", messages=HI, max_tokens=long, stream=True)
    )
    next(stream)
    window.chat.set_context(None)
    window.counter.update()
    assert [c.choices[0].finish_reason for c in stream if c.choices][-1] == "length"
    qtbot.waitUntil(lambda: window.context is not None, timeout=TIMEOUT)


def test_stop_on_a_reply_waiting_for_its_turn_leaves_the_request_alone(
    qtbot, open_window, steady_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop while the reply waits for the engine: a cancel then would stop
    the request that has it; the reply stops as soon as it begins instead."""
    window = open_window((steady_model, "steady.gguf"))
    switch(qtbot, window, True, free_port())
    cancels: list[int] = []
    cancel = window.engine.cancel
    monkeypatch.setattr(window.engine, "cancel", lambda: (cancels.append(1), cancel()))
    holding, release = threading.Event(), threading.Event()

    def request() -> None:  # as a request of the server's does, from another thread
        with window.server.turns.turn():
            holding.set()
            release.wait(60)

    other = threading.Thread(target=request)
    other.start()
    assert holding.wait(10)
    window.panel.editors["max_tokens"].setValue(300)
    type_and_send(qtbot, window, "Wait for it")
    qtbot.keyClick(window.composer, Qt.Key.Key_Escape)
    assert window.busy() and cancels == []  # the request's engine is left alone
    release.set()
    other.join(10)
    qtbot.waitUntil(lambda: not window.busy(), timeout=TIMEOUT)
    reply = window.store.thread(window.chat_id)[-1]
    assert reply.status == "cancelled" and cancels
    assert reply.stats is not None and reply.stats["completion_tokens"] < 300


def test_the_server_settings_are_checked_and_kept(home: Path) -> None:
    settings = AppSettings(home / "settings.json")
    assert settings.server() == ServerChoice()  # off, 127.0.0.1:4891, no key
    assert settings.server().port == 4891
    settings.set_server(on=True, port=8080, api_key="s3cret")
    again = AppSettings(home / "settings.json").server()
    assert (again.on, again.host, again.port, again.api_key) == (True, "127.0.0.1", 8080, "s3cret")
    for bad in ({"port": 70000}, {"port": "80"}, {"host": ""}, {"on": "yes"}, {"api_key": "a b"}):
        with pytest.raises(SettingError):
            settings.set_server(**bad)
    with pytest.raises(SettingError, match="unknown"):
        settings.set_server(colour="blue")
    assert settings.server().port == 8080  # nothing stored
    # A value an older or hand-edited file holds that no longer validates is dropped alone.
    settings.set_ui("server", {"on": True, "port": -1, "host": "::1"})
    assert settings.server() == ServerChoice(on=True, host="::1")


# -- the runner and the turns, without the window -------------------------------------


class Engine:
    """What the runner asks of an engine when it stops."""

    def __init__(self) -> None:
        self.cancels = 0
        self.loaded = None

    def cancel(self) -> None:
        self.cancels += 1


def test_a_runner_on_port_0_says_where_it_serves_and_stops() -> None:
    engine = Engine()
    ended: list[str] = []
    records: list[Any] = []
    runner = ServerRunner(
        EngineService(engine),
        turns=EngineTurns(),
        listeners=[records.append],
        on_exit=ended.append,
    )
    address = runner.start(ServerConfig(port=0))
    assert address.startswith("127.0.0.1:") and not address.endswith(":0")
    answer = httpx.get(f"http://{address}/api/version", timeout=10)
    assert answer.status_code == 200  # the Host guard knows the port it got
    runner.stop()
    assert runner.join(10) and ended == [""]
    assert engine.cancels == 1  # the server's reply in flight, if any
    assert [(r.method, r.path, r.status) for r in records] == [("GET", "/api/version", 200)]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{address}/api/version", timeout=5)


def test_a_runner_that_cannot_listen_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = ServerRunner(EngineService(Engine()))
        with pytest.raises(LocalChatError) as failure:
            runner.start(ServerConfig(port=port))
    assert str(failure.value) == f"cannot listen on 127.0.0.1:{port}: address already in use"
    assert not runner.running
    with pytest.raises(LocalChatError, match="needs --api-key"):
        ServerRunner(EngineService(Engine())).start(ServerConfig("0.0.0.0", 0))


def test_a_stop_does_not_cancel_the_window_s_own_reply() -> None:
    engine = Engine()
    turns = EngineTurns()
    runner = ServerRunner(EngineService(engine), turns=turns)
    runner.start(ServerConfig(port=0))
    with turns.turn():  # the window's reply has the engine
        runner.stop()
        assert engine.cancels == 0
    assert runner.join(10)
    with turns.turn():  # no server now: it holds nothing
        assert not turns.serving
