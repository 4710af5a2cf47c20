"""The Train window: training in a process of its own, a live loss curve, stop
and go on, and the result in the model picker."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.settings import AppSettings
from localchat.testing.texts import grammar_text
from localchat.ui.main_window import MainWindow
from localchat.ui.train.scratch_page import ScratchPage

TIMEOUT = 240_000


@pytest.fixture
def window(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path / "home"))
    with ChatStore(tmp_path / "chats.sqlite3") as store, Engine() as engine:
        w = MainWindow(store, engine, AppSettings(tmp_path / "settings.json"))
        qtbot.addWidget(w)
        w.show()
        yield w


def open_scratch(qtbot, window: MainWindow) -> ScratchPage:
    window.open_trainer()
    assert window.trainer is not None
    qtbot.addWidget(window.trainer)
    window.trainer.show_page("scratch")
    return window.trainer.scratch


def test_train_watch_the_loss_and_chat_with_the_result(qtbot, window, tmp_path: Path) -> None:
    trainer = open_scratch(qtbot, window)
    trainer.files.addItem(str(grammar_text(tmp_path / "grammar.txt")))
    trainer.name.setText("grammar gpt")
    trainer.preset.setCurrentText("tiny")
    trainer.steps.setValue(40)
    with qtbot.waitSignal(trainer.trained, timeout=TIMEOUT) as done:
        trainer.start_button.click()
        assert trainer.running() and trainer.stop_button.isEnabled()
    path = Path(done.args[0])
    assert path == tmp_path / "home" / "models" / "grammar-gpt.gguf" and path.exists()
    assert [s for s, _ in trainer.plot.train] == list(range(1, 41))
    assert len(trainer.plot.heldout) >= 4  # every tenth of the run
    assert trainer.plot.train[-1][1] < trainer.plot.train[0][1]
    assert "in the model picker" in trainer.status.text()
    assert window.model_box.findData(str(path)) >= 0
    # Nothing else to chat with: the window loads it.
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)
    assert window.model_path == path
    trainer.plot.grab()  # paints with data


def test_stop_keeps_the_checkpoint_and_start_goes_on(qtbot, window, tmp_path: Path) -> None:
    trainer = open_scratch(qtbot, window)
    trainer.files.addItem(str(grammar_text(tmp_path / "grammar.txt")))
    trainer.steps.setValue(100_000)
    trainer.start_button.click()
    qtbot.waitUntil(lambda: len(trainer.plot.train) >= 5, timeout=TIMEOUT)
    trainer.stop_button.click()
    qtbot.waitUntil(lambda: not trainer.running(), timeout=TIMEOUT)
    assert trainer.status.text().startswith("Stopped at step")
    stopped_at = trainer.plot.train[-1][0]
    assert trainer.output().with_suffix(".ckpt").exists()
    drawn = len(trainer.plot.train)
    trainer.start_button.click()  # goes on, and so does the curve
    qtbot.waitUntil(lambda: len(trainer.plot.train) > drawn, timeout=TIMEOUT)
    assert trainer.plot.train[drawn][0] == stopped_at + 1
    trainer.stop_button.click()
    qtbot.waitUntil(lambda: not trainer.running(), timeout=TIMEOUT)


def test_bad_input_is_said_in_one_line(qtbot, window, tmp_path: Path) -> None:
    trainer = open_scratch(qtbot, window)
    trainer.start_button.click()
    assert "Add some text files" in trainer.status.text()
    binary = tmp_path / "x.txt"
    binary.write_bytes(b"\0\1\2" * 100)
    trainer.files.addItem(str(binary))
    trainer.start_button.click()
    qtbot.waitUntil(lambda: not trainer.running(), timeout=TIMEOUT)
    assert "binary" in trainer.status.text() and "\n" not in trainer.status.text()
