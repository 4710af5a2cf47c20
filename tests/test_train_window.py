"""The Train window: training in a process of its own, a live loss curve, stop
and go on, the result in the model picker; the status line follows the data
chosen, and chats that give nothing to learn are named with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from PySide6.QtWidgets import QFileDialog, QPushButton

from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.settings import AppSettings
from localchat.core.units import human_size
from localchat.testing.texts import grammar_text
from localchat.ui.main_window import MainWindow
from localchat.ui.train.scratch_page import ScratchPage
from tests.test_finetune_window import chat_jsonl, install_model, open_finetune
from tests.test_window import open_window

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


def test_the_hint_follows_the_files(qtbot, window, tmp_path: Path, monkeypatch) -> None:
    trainer = open_scratch(qtbot, window)
    assert trainer.status.text() == "Add text files, then Start."
    texts = [tmp_path / "a.txt", tmp_path / "b.md", tmp_path / "c.txt"]
    for i, path in enumerate(texts):
        path.write_text("Some words to learn. " * (10 + i), encoding="utf-8")
    monkeypatch.setattr(
        QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(p) for p in texts], "")
    )
    next(b for b in trainer.findChildren(QPushButton) if b.text() == "Add files…").click()
    size = sum(p.stat().st_size for p in texts)
    qtbot.waitUntil(lambda: trainer.status.text() == f"3 files, {human_size(size)}: press Start.")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "one.txt").write_text("More words.", encoding="utf-8")
    (folder / "skip.bin").write_bytes(b"\0" * 100)  # not text: not counted
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    next(b for b in trainer.findChildren(QPushButton) if b.text() == "Add a folder…").click()
    size += len("More words.")
    qtbot.waitUntil(
        lambda: (
            trainer.status.text()
            == f"3 files and 1 folder (4 files), {human_size(size)}: press Start."
        )
    )
    next(b for b in trainer.findChildren(QPushButton) if b.text() == "Clear").click()
    assert trainer.status.text() == "Add text files, then Start."


# -- the Fine-tune page's data (no run needed) ---------------------------------------------


def failed_trip(store: ChatStore) -> int:
    """A chat whose only replies failed or were stopped: nothing to learn."""
    rome = store.create_chat("Trip to Rome")
    store.add_message(rome, "user", "Plan a trip to Rome")
    store.add_message(rome, "assistant", "Day one:", status="failed")
    store.add_message(rome, "user", "Again, please")
    store.add_message(rome, "assistant", "Day", status="cancelled")
    return rome


TRIP_NOTE = (
    "chat 'Trip to Rome' gave nothing to learn: its replies failed or were stopped (only "
    "finished replies are learned)"
)


def test_chats_that_give_nothing_are_named(qtbot, home: Path, parts, monkeypatch) -> None:
    install_model(home, "tiny-chat.gguf")
    store: ChatStore = parts[0]
    good = store.create_chat("Counting")
    store.add_message(good, "user", "What comes after 1?")
    store.add_message(good, "assistant", "After 1 comes 2.")
    rome = failed_trip(store)
    window = open_window(qtbot, parts)
    page = open_finetune(qtbot, window)
    started: list[list[str]] = []
    monkeypatch.setattr(page.run, "start", started.append)

    # Two ticked, one gives nothing: too little left, and the message says which and why.
    page.tick_chats([good, rome])
    page.start_button.click()
    text = page.status.text()
    assert not started and "\n" not in text
    assert text.startswith("Too little to learn from: the chats give a single conversation")
    assert TRIP_NOTE in text

    # Enough left: the run starts, and says what gave nothing with the trainer's lines.
    other = store.create_chat("More counting")
    store.add_message(other, "user", "What comes after 2?")
    store.add_message(other, "assistant", "After 2 comes 3.")
    page.refresh()
    page.tick_chats([good, rome, other])
    page.start_button.click()
    assert len(started) == 1 and TRIP_NOTE[:1].upper() + TRIP_NOTE[1:] in page.details.text()
    # The trainer refuses the data (it reads the chats as a file): its error names the chat.
    page.run.ended.emit(1, "the data is too small to hold some of it out: give more")
    assert page.status.text() == (
        f"The data is too small to hold some of it out: give more; {TRIP_NOTE}"
    )
    page.run.ended.emit(1, "out of memory")  # not about the data: said as it came
    assert page.status.text() == "Out of memory"


def test_the_fine_tune_hint_follows_the_data(qtbot, home: Path, parts, tmp_path) -> None:
    install_model(home, "tiny-chat.gguf")
    store: ChatStore = parts[0]
    chats = [store.create_chat(f"chat {i}") for i in range(2)]
    window = open_window(qtbot, parts)
    page = open_finetune(qtbot, window)
    assert page.status.text() == "Choose some data (files, a folder or your chats), then Start."
    page.add_data(chat_jsonl(tmp_path / "counting.jsonl"))
    size = (tmp_path / "counting.jsonl").stat().st_size
    qtbot.waitUntil(lambda: page.status.text() == f"1 file, {human_size(size)}: press Start.")
    page.tick_chats(chats)
    assert page.status.text() == f"1 file, {human_size(size)} and 2 chats: press Start."
    page.data.files.clear()
    assert page.status.text() == "2 chats: press Start."
    page.data.no_chats_button.click()
    assert page.status.text() == "Choose some data (files, a folder or your chats), then Start."
