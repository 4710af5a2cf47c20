"""The model manager, driven as a user would (offscreen), against the local
Hub-protocol server: catalog, search, the download queue, installed models."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from localchat.core.models import catalog, library, network
from localchat.core.models.downloads import Downloads
from localchat.core.settings import AppSettings
from localchat.core.units import human_size
from localchat.testing.hub_server import FakeHub, blob
from localchat.ui.main_window import MainWindow
from localchat.ui.model_manager import ModelManager
from localchat.ui.model_manager_installed import DEMO, delete_question
from tests.test_window import open_window

TIMEOUT = 60_000
MB = 2**20


def manager_of(qtbot, window: MainWindow) -> ModelManager:
    window.open_models()
    manager = window.manager
    assert manager is not None and manager.isVisible()
    qtbot.addWidget(manager)
    qtbot.waitUntil(lambda: not manager.busy(), timeout=TIMEOUT)
    return manager


def rows(tree) -> list[list[str]]:
    return [
        [tree.topLevelItem(i).text(c) for c in range(tree.columnCount())]
        for i in range(tree.topLevelItemCount())
    ]


def test_first_run_to_a_reply_through_the_catalog(
    qtbot, home: Path, parts, fake_hub: FakeHub, tiny_model: Path
) -> None:
    qwen = catalog.for_repo("Qwen/Qwen2.5-7B-Instruct-GGUF")
    assert qwen is not None and qwen.settings
    model_bytes = tiny_model.read_bytes()
    fake_hub.add(
        qwen.repo_id,
        {
            "qwen2.5-7b-instruct-q2_k.gguf": blob(5000),
            "qwen2.5-7b-instruct-q4_k_m.gguf": model_bytes,
            "README.md": b"# card",
        },
    )
    window = open_window(qtbot, parts)
    assert "No model yet" in window.view.empty.text()
    assert window.view.empty_action.isVisible()
    window.view.empty_action.click()  # "Browse models…"
    manager = manager_of(qtbot, window)

    manager.tabs.setCurrentIndex(1)
    listed = rows(manager.catalog)
    assert [r[0] for r in listed] == [e.name for e in catalog.entries()]
    assert all(r[5].split()[-1] in ("fits", "tight", "fit") for r in listed)  # a badge each
    qwen_row = next(i for i, r in enumerate(listed) if r[0] == qwen.name)
    manager.catalog.setCurrentItem(manager.catalog.topLevelItem(qwen_row))
    files = manager.catalog_files
    qtbot.waitUntil(lambda: files.tree.topLevelItemCount() == 2, timeout=TIMEOUT)
    assert "temperature 0.7" in manager.catalog_about.text()
    chosen = files.selected()
    assert chosen is not None and chosen.quant == "Q4_K_M"  # the recommended one
    assert "(recommended)" in files.tree.currentItem().text(1)
    assert "needs about" in files.tree.currentItem().toolTip(3)

    files.download.click()
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)  # the first model
    installed = home / "models" / "qwen2.5-7b-instruct-q4_k_m.gguf"
    assert installed.read_bytes() == model_bytes
    assert window.model_path == installed
    row = manager.queue.rows[installed.name]
    assert row.info.text().startswith("installed") and row.primary.text() == "Use in this chat"
    assert window.download_state.isHidden()
    # The catalog's recommended settings came with it.
    assert window.panel.values().temperature == qwen.settings["temperature"]
    assert window.panel.values().top_k == qwen.settings["top_k"]
    qtbot.waitUntil(lambda: manager.installed.topLevelItemCount() == 1, timeout=TIMEOUT)
    assert rows(manager.installed)[0][0] == installed.stem

    window.panel.editors["max_tokens"].setValue(8)
    window.send("hello")
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    reply = parts[0].thread(window.chat_id)[-1]
    assert reply.role == "assistant" and reply.status == "done"


def test_search_pause_resume_cancel_and_resume_after_a_restart(
    qtbot, home: Path, parts, fake_hub: FakeHub
) -> None:
    fake_hub.add("a/Mistral-GGUF", {"Mistral-Q4_K_M.gguf": blob(6 * MB)}, downloads=9)
    fake_hub.add("b/Mistral-Big-GGUF", {"Big-Q8_0.gguf": blob(6 * MB, 1)}, downloads=99)
    fake_hub.add("c/Llama-GGUF", {"Llama-Q4_0.gguf": blob(MB, 2)})
    fake_hub.bytes_per_s = 3 * MB
    window = open_window(qtbot, parts)
    manager = manager_of(qtbot, window)
    manager.tabs.setCurrentIndex(2)
    manager.query.setText("mistral")
    manager.search()
    qtbot.waitUntil(lambda: manager.results.topLevelItemCount() == 2, timeout=TIMEOUT)
    assert [r[0] for r in rows(manager.results)] == ["b/Mistral-Big-GGUF", "a/Mistral-GGUF"]

    for i in (1, 0):  # queue both: the smaller-numbered waits for the first
        manager.results.setCurrentItem(manager.results.topLevelItem(i))
        qtbot.waitUntil(lambda: manager.search_files.tree.topLevelItemCount() == 1)
        manager.search_files.download.click()
    first, second = "Mistral-Q4_K_M.gguf", "Big-Q8_0.gguf"
    queue = manager.queue
    qtbot.waitUntil(lambda: window.downloads.get(first).done > MB, timeout=TIMEOUT)
    assert window.downloads.get(second).state == "queued"
    assert "waiting" in queue.rows[second].info.text()
    assert window.download_state.isVisible() and "Downloading 2" in window.download_state.text()
    qtbot.waitUntil(  # the rows hear of progress through queued signals
        lambda: "MB/s" in queue.rows[first].info.text() and "left" in queue.rows[first].info.text(),
        timeout=TIMEOUT,
    )

    queue.rows[second].secondary.click()  # Cancel the waiting one
    assert window.downloads.get(second).state == "cancelled"
    queue.rows[first].primary.click()  # Pause
    qtbot.waitUntil(lambda: window.downloads.get(first).state == "paused", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: queue.rows[first].primary.text() == "Resume", timeout=TIMEOUT)
    assert (home / "models" / f"{first}.part").exists()
    assert window.model_box.count() == 0  # a .part is never a model

    queue.rows[first].primary.click()  # Resume
    qtbot.waitUntil(lambda: window.downloads.get(first).done > 3 * MB, timeout=TIMEOUT)
    window.close()  # quitting pauses it; the bytes stay
    assert window.downloads.get(first).state == "paused"
    had = (home / "models" / f"{first}.part").stat().st_size
    assert 3 * MB < had < 6 * MB

    fake_hub.bytes_per_s = 0
    fake_hub.served.clear()
    again = open_window(qtbot, parts)  # the next start
    manager = manager_of(qtbot, again)
    row = manager.queue.rows[first]
    assert row.primary.text() == "Resume" and "paused" in row.info.text()
    row.primary.click()
    qtbot.waitUntil(lambda: again.loaded is not None or again.model_box.count() == 1)
    qtbot.waitUntil(lambda: again.downloads.get(first).state == "done", timeout=TIMEOUT)
    assert sum(sent for _, start, sent in fake_hub.served if start == had) == 6 * MB - had
    assert (home / "models" / first).stat().st_size == 6 * MB


def test_installed_models_use_delete_and_import(
    qtbot, home: Path, parts, tiny_model: Path, phi3_model: Path
) -> None:
    folder = home / "models"
    folder.mkdir()
    shutil.copy(tiny_model, folder / "tiny-chat.gguf")
    shutil.copy(phi3_model, folder / "phi3-chat.gguf")
    store = parts[0]
    window = open_window(qtbot, parts)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=TIMEOUT)
    window.send("keep this chat")
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    chat_id = window.chat_id
    manager = manager_of(qtbot, window)
    qtbot.waitUntil(lambda: manager.installed.topLevelItemCount() == 2, timeout=TIMEOUT)
    table = {r[0]: r for r in rows(manager.installed)}
    assert set(table) == {"tiny-chat", "phi3-chat"}
    assert table["tiny-chat"][2] == "F32" and table["tiny-chat"][6] == "models folder"
    fit_tip = manager.installed.topLevelItem(0).toolTip(5)
    assert "needs about" in fit_tip and "free now" in fit_tip

    other = next(
        p for p in (folder / "tiny-chat.gguf", folder / "phi3-chat.gguf") if p != window.model_path
    )
    index = [r[0] for r in rows(manager.installed)].index(other.stem)
    manager.installed.setCurrentItem(manager.installed.topLevelItem(index))
    manager.use_button.click()  # "Use in this chat"
    qtbot.waitUntil(
        lambda: window.loaded is not None and window.model_path == other, timeout=TIMEOUT
    )
    assert window.chat_id == chat_id  # the conversation stays
    assert window.model_box.currentData() == str(other)

    window.loader.chat.set_replying(True)  # as while a reply streams from it
    manager.delete(other)  # refused at once, on the GUI thread
    assert "is in use" in manager.installed_status.text() and other.exists()
    window.loader.chat.set_replying(False)
    manager.delete(other)  # the loaded one: the engine lets go first
    qtbot.waitUntil(lambda: not other.exists() and window.model_path is None, timeout=TIMEOUT)
    assert "deleted" in window.model_state.text()
    assert window.model_box.count() == 1
    assert store.thread(chat_id)[0].content == "keep this chat"  # chats stay
    qtbot.waitUntil(lambda: manager.installed.topLevelItemCount() == 1, timeout=TIMEOUT)

    manager.import_file(phi3_model)  # copy it back in
    qtbot.waitUntil(lambda: window.model_box.count() == 2, timeout=TIMEOUT)
    assert (folder / "phi3.gguf").read_bytes() == phi3_model.read_bytes()
    manager.import_file(folder / "nope.gguf")
    qtbot.waitUntil(lambda: "nope.gguf" in manager.installed_status.text(), timeout=TIMEOUT)
    assert "\n" not in manager.installed_status.text()


@pytest.mark.parametrize("endpoint", ["http://no-such-host.invalid", "closed port"])
def test_the_hub_unreachable_is_said_in_one_line_at_once(
    qtbot, home: Path, parts, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    if endpoint == "closed port":
        with socket.socket() as s:  # nothing listens there
            s.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    network.forget()
    window = open_window(qtbot, parts)
    manager = manager_of(qtbot, window)
    manager.tabs.setCurrentIndex(1)
    manager.catalog.setCurrentItem(manager.catalog.topLevelItem(0))
    files = manager.catalog_files
    qtbot.waitUntil(lambda: "cannot be reached" in files.status.text(), timeout=TIMEOUT)
    assert "no network?" in files.status.text() and not files.download.isEnabled()
    manager.tabs.setCurrentIndex(2)
    search = manager.search_tab
    manager.query.setText("llama")
    started = time.monotonic()
    manager.search()
    assert not search.go.isEnabled() and search.cancel_button.isVisible()
    qtbot.waitUntil(lambda: "cannot be reached" in manager.search_status.text(), timeout=TIMEOUT)
    assert time.monotonic() - started < 2.0
    assert "the Hugging Face Hub cannot be reached (no network?): " in search.status.text()
    assert search.go.isEnabled() and not search.cancel_button.isVisible()  # try again at will
    network.forget()


def test_cancel_stops_waiting_for_a_slow_search(
    qtbot, lone: ModelManager, fake_hub: FakeHub
) -> None:
    fake_hub.add("a/Llama-GGUF", {"Llama-Q4_0.gguf": blob(1000)})
    fake_hub.api_delay = 2.0
    manager, search = lone, lone.search_tab
    manager.tabs.setCurrentIndex(2)
    manager.query.setText("llama")
    manager.search()
    assert search.searching() and search.cancel_button.isVisible()
    qtbot.wait(200)
    search.cancel_button.click()
    assert not search.searching() and search.go.isEnabled()
    assert not search.cancel_button.isVisible() and "cancelled" in search.status.text()
    qtbot.waitUntil(lambda: not manager.busy(), timeout=TIMEOUT)  # the Hub answers late:
    assert manager.results.topLevelItemCount() == 0  # the answer is dropped
    assert "cancelled" in search.status.text()

    fake_hub.api_delay = 0
    search.go.click()  # and a new search works
    qtbot.waitUntil(lambda: manager.results.topLevelItemCount() == 1, timeout=TIMEOUT)
    assert search.go.isEnabled() and "1 repository" in search.status.text()


# -- the Installed tab -------------------------------------------------------------------


@pytest.fixture
def lone(qtbot, home: Path) -> Iterator[ModelManager]:
    """The model manager on its own (no main window, no engine)."""
    downloads = Downloads(restore=False)
    manager = ModelManager(AppSettings(home / "settings.json"), downloads)
    qtbot.addWidget(manager)
    manager.show()
    qtbot.waitUntil(lambda: not manager.busy(), timeout=TIMEOUT)
    yield manager
    manager.wait()
    downloads.close()


def test_the_demo_model_is_listed_and_stays(
    qtbot, home: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCHAT_DEMO_MODEL", str(tiny_model))
    manager = ModelManager(AppSettings(home / "settings.json"), Downloads(restore=False))
    qtbot.addWidget(manager)
    qtbot.waitUntil(lambda: manager.installed.topLevelItemCount() == 1, timeout=TIMEOUT)
    (row,) = rows(manager.installed)
    assert row[0] == tiny_model.stem and row[6] == DEMO and row[2] == "F32"
    manager.installed.setCurrentItem(manager.installed.topLevelItem(0))
    tab = manager.installed_tab
    assert manager.use_button.isEnabled() and not tab.delete_button.isEnabled()
    assert "stays" in tab.delete_button.toolTip()
    manager.wait()


def test_a_model_another_program_adds_shows_up(
    qtbot, home: Path, lone: ModelManager, tiny_model: Path
) -> None:
    folder = home / "models"
    watcher = lone.installed_tab.watcher
    assert watcher.directories() == [str(folder)] and lone.installed.topLevelItemCount() == 0
    folder.rmdir()  # removed: made again, and watched again
    qtbot.waitUntil(
        lambda: folder.is_dir() and watcher.directories() == [str(folder)], timeout=TIMEOUT
    )
    with qtbot.waitSignal(lone.installed_changed, timeout=TIMEOUT):
        shutil.copy(tiny_model, folder / "added.gguf.part")  # as `models import`: a .part
        (folder / "added.gguf.part").rename(folder / "added.gguf")  # renamed when whole
        qtbot.waitUntil(lambda: lone.installed.topLevelItemCount() == 1, timeout=TIMEOUT)
    assert rows(lone.installed)[0][0] == "added"
    with qtbot.waitSignal(lone.installed_changed, timeout=TIMEOUT):
        (folder / "added.gguf").unlink()  # `localchat models rm`
    qtbot.waitUntil(lambda: lone.installed.topLevelItemCount() == 0, timeout=TIMEOUT)
    lone.hide()  # closed: not watched; opened again: read again
    assert watcher.directories() == []
    shutil.copy(tiny_model, folder / "later.gguf")
    lone.show()
    qtbot.waitUntil(lambda: lone.installed.topLevelItemCount() == 1, timeout=TIMEOUT)
    assert watcher.directories() == [str(folder)]


def test_deleting_a_link_removes_only_the_link(
    qtbot, home: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = home / "models"
    folder.mkdir()
    original = tmp_path / "elsewhere" / "big.gguf"
    original.parent.mkdir()
    shutil.copy(tiny_model, original)
    (folder / "linked.gguf").symlink_to(original)
    shutil.copy(tiny_model, folder / "copied.gguf")
    title, question = delete_question(folder / "linked.gguf")
    assert title == "Remove link"
    assert f"Remove the link to {original} from the models folder (the file itself stays)" in (
        question
    )
    assert "B)" not in question  # no size: nothing is freed
    title, question = delete_question(folder / "copied.gguf")
    size = human_size(tiny_model.stat().st_size)
    assert title == "Delete model" and f"Delete copied ({size}) from this computer?" in question

    manager = ModelManager(AppSettings(home / "settings.json"), Downloads(restore=False))
    qtbot.addWidget(manager)
    qtbot.waitUntil(lambda: manager.installed.topLevelItemCount() == 2, timeout=TIMEOUT)
    table = [r[0] for r in rows(manager.installed)]
    assert rows(manager.installed)[table.index("linked")][6] == "models folder (link)"
    asked: list[str] = []

    def answer(_parent, title: str, text: str) -> QMessageBox.StandardButton:
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    manager.installed.setCurrentItem(manager.installed.topLevelItem(table.index("linked")))
    manager.installed_tab.delete_button.click()
    assert asked and "the file itself stays" in asked[0]
    qtbot.waitUntil(lambda: manager.installed.topLevelItemCount() == 1, timeout=TIMEOUT)
    assert not (folder / "linked.gguf").is_symlink() and original.exists()
    assert "the file itself stays" in manager.installed_status.text()

    # What `models import --link` and the window's link box make: a hard link.
    hard = library.import_model(original, link=True)
    assert hard.stat().st_nlink > 1
    title, question = delete_question(hard)
    assert "It is a hard link" in question and "no disk space is freed" in question
    manager.refresh_installed()
    qtbot.waitUntil(lambda: manager.installed.topLevelItemCount() == 2, timeout=TIMEOUT)
    table = [r[0] for r in rows(manager.installed)]
    assert rows(manager.installed)[table.index(hard.stem)][6] == "models folder (hard link)"
    manager.installed.setCurrentItem(manager.installed.topLevelItem(table.index(hard.stem)))
    manager.installed_tab.delete_button.click()
    qtbot.waitUntil(lambda: not hard.exists(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: "same file stays" in manager.installed_status.text(), timeout=TIMEOUT)
    assert original.exists()
    manager.wait()
