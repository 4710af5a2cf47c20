"""The window's documents: the Documents window making, pausing, stopping,
resuming, updating and removing collections; a folder's change picked up by
the watch; and a chat grounded in a collection, its replies listing their
sources (a passage opened in place and in its file), or saying that nothing
was found."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox

from localchat.core.chat.session import DOCUMENTS
from localchat.core.documents import indexer
from localchat.core.documents.indexer import Progress
from localchat.core.documents.store import DocumentStore
from localchat.ui.documents_window import DocumentsWindow
from localchat.ui.indexing import Ended, Indexing, Throttle
from localchat.ui.main_window import MainWindow
from localchat.ui.sources_view import NOT_FOUND
from localchat.ui.state import DocumentsState
from tests.test_window import TIMEOUT, install, open_window, type_and_send, wait_ready

CORPUS = Path(__file__).parent / "fixtures" / "documents"
FILES = ("en-harbour-town.md", "en-lighthouse-diary.md", "en-observatory.md")
QUESTION = "How long is the granite pier that Josiah Penhallow designed?"
ANSWER = "280 yards long"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """A folder of three documents from the test corpus."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for name in FILES:
        shutil.copy(CORPUS / name, folder / name)
    return folder


@pytest.fixture
def indexing(home: Path) -> Iterator[Indexing]:
    """The window's indexing over this test's data folder, its watch quick."""
    work = Indexing(DocumentsState(), debounce_ms=50)
    yield work
    work.close()


@pytest.fixture
def window(qtbot, indexing: Indexing) -> DocumentsWindow:
    shown = DocumentsWindow(indexing)
    qtbot.addWidget(shown)
    shown.show()
    return shown


def make(qtbot, window: DocumentsWindow, name: str, *paths: Path) -> None:
    """New collection… as the user fills it in."""
    qtbot.mouseClick(window.new_button, Qt.MouseButton.LeftButton)
    dialog = window.new_dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.ok.isEnabled()  # nothing chosen yet
    dialog.add_paths(list(paths))
    dialog.name_box.setText(name)
    assert dialog.ok.isEnabled()
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)


def ended(qtbot, indexing: Indexing, action: str = "add") -> Ended:
    """Wait for the next task's end (the state already drawn)."""
    with qtbot.waitSignal(indexing.ended, timeout=TIMEOUT) as signal:
        pass
    result = signal.args[0]
    assert isinstance(result, Ended) and result.task.action == action
    return result


def test_progress_reaches_the_window_at_most_ten_times_a_second() -> None:
    sent: list[Progress] = []
    throttle = Throttle(sent.append)
    for i in range(200):  # a folder of small files, read in a moment
        throttle(Progress(i, 200, i * 10, 2000, None, f"f{i}.md"))
    throttle(Progress(200, 200, 2000, 2000, 0.0))
    assert [p.files_done for p in sent] == [0, 200]  # the first, then the end


def test_a_new_collection_is_indexed_with_progress_paused_and_resumed(
    qtbot, window: DocumentsWindow, indexing: Indexing, notes: Path
) -> None:
    qtbot.waitUntil(lambda: window.status.text().startswith("No collections yet"))
    indexing.pause()  # the task then waits at its first file: its progress shows
    assert window.pause_button.text() == "Resume" and window.progress.isVisible()
    make(qtbot, window, "notes", notes)
    qtbot.waitUntil(
        lambda: indexing.state.task is not None and indexing.state.task.progress is not None
    )
    assert window.progress_label.text().startswith("Paused: notes: 0 of 3 files")
    assert "0 B of 15.6 KB" in window.progress_label.text()
    assert window.current.text() == FILES[0]
    assert window.stop_button.isEnabled()
    qtbot.mouseClick(window.pause_button, Qt.MouseButton.LeftButton)  # Resume
    done = ended(qtbot, indexing)
    assert done.report is not None and len(done.report.indexed) == 3
    [row] = window.rows()
    name, roots, files, skipped, passages, size, state = row
    assert (name, files, skipped, size) == ("notes", "3", "", "15.6 KB")
    assert roots.endswith("notes") and int(passages) > 3
    assert state.startswith("updated ")
    assert not window.progress.isVisible()
    assert window.status.text() == "notes: 3 indexed"


def test_stop_leaves_it_unfinished_and_resume_finishes_it(
    qtbot, window: DocumentsWindow, indexing: Indexing, notes: Path
) -> None:
    indexing.pause()
    make(qtbot, window, "notes", notes)
    qtbot.waitUntil(
        lambda: indexing.state.task is not None and indexing.state.task.progress is not None
    )
    qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    done = ended(qtbot, indexing)
    assert done.report is not None and done.report.stopped and not done.report.indexed
    assert window.rows()[0][6] == "unfinished"
    assert "Resume goes on from there" in window.status.text()
    assert window.update_button.text() == "Resume"
    assert window.pause_button.text() == "Pause"  # Stop ended the pause
    qtbot.mouseClick(window.update_button, Qt.MouseButton.LeftButton)
    done = ended(qtbot, indexing, "update")
    assert done.report is not None and len(done.report.indexed) == 3
    assert window.rows()[0][2] == "3" and window.rows()[0][6].startswith("updated ")
    assert window.update_button.text() == "Update"


def test_a_skipped_file_is_listed_with_its_reason(
    qtbot, window: DocumentsWindow, indexing: Indexing, notes: Path
) -> None:
    (notes / "empty.md").write_bytes(b"")
    make(qtbot, window, "notes", notes)
    ended(qtbot, indexing)
    assert window.rows()[0][2:4] == ["3", "1"]
    assert window.skipped_button.isEnabled()
    qtbot.mouseClick(window.skipped_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.skipped_dialog is not None)
    assert window.skipped_dialog is not None
    assert window.skipped_dialog.rows() == [(str(notes.resolve() / "empty.md"), "empty file")]


def test_a_file_changed_in_a_watched_folder_is_indexed_again(
    qtbot, window: DocumentsWindow, indexing: Indexing, notes: Path
) -> None:
    make(qtbot, window, "notes", notes)
    ended(qtbot, indexing)
    qtbot.waitUntil(lambda: str(notes.resolve()) in indexing.watch.watched())
    changed = notes / FILES[1]
    with changed.open("a") as f:  # rewritten in place: the file's own watch sees it
        f.write("\n\nThe keeper's cat was called Marmalade.\n")
    done = ended(qtbot, indexing, "update")
    assert done.report is not None and done.report.indexed == [str(changed.resolve())]
    assert window.status.text() == "notes: 1 indexed"
    (notes / "new.md").write_text("# Gulls\n\nGulls nest on the pier every spring.\n")
    done = ended(qtbot, indexing, "update")  # a new file: the folder's watch
    assert done.report is not None and done.report.indexed == [str((notes / "new.md").resolve())]
    assert window.rows()[0][2] == "4"


def test_removing_a_collection_keeps_its_files(
    qtbot, window: DocumentsWindow, indexing: Indexing, notes: Path, monkeypatch
) -> None:
    make(qtbot, window, "notes", notes)
    ended(qtbot, indexing)
    asked: list[str] = []

    def answer(_parent, _title: str, text: str, *_args) -> QMessageBox.StandardButton:
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    qtbot.mouseClick(window.remove_button, Qt.MouseButton.LeftButton)
    assert "Remove notes (3 files) from the index?" in asked[0]
    assert "files themselves stay" in asked[0]
    ended(qtbot, indexing, "remove")
    assert window.rows() == [] and indexing.state.collections == []
    assert sorted(p.name for p in notes.iterdir()) == sorted(FILES)
    assert "removed from the index" in window.status.text()


def grounded_reply(qtbot, window: MainWindow, text: str):
    type_and_send(qtbot, window, text)
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: not window.busy())
    reply = window.view.widgets[-1]
    assert reply.role == "assistant" and reply.sources is not None
    return reply


def test_a_grounded_chat_lists_sources_under_its_replies(
    qtbot, home: Path, parts, tiny_model, notes: Path, monkeypatch
) -> None:
    store = DocumentStore(home / "documents.sqlite")
    indexer.add(store, "notes", [notes])
    store.close()
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(8)
    control = window.chat_documents
    qtbot.waitUntil(lambda: window.windows.documents_state.names() == ["notes"], timeout=TIMEOUT)
    assert control.isVisible() and control.button.text() == "Documents"
    control._fill()  # the menu, as it opens
    [notes_action] = [a for a in control.menu.actions() if a.text() == "notes"]
    notes_action.trigger()  # ticked before the chat exists: its first message makes it
    assert control.button.text() == "Documents: notes"

    reply = grounded_reply(qtbot, window, QUESTION)
    chats = parts[0]
    assert window.chat_id is not None
    assert chats.chat_settings(window.chat_id)[DOCUMENTS] == ["notes"]
    stored = chats.thread(window.chat_id)[-1]
    assert stored.sources and any(ANSWER in s["text"] for s in stored.sources)
    sources = reply.sources
    assert sources.header.isVisible() and not sources.not_found.isVisible()
    assert len(sources.rows) == len(stored.sources)
    assert sources.texts()[0].startswith("en-harbour-town.md · lines ")
    row = next(r for r in sources.rows if ANSWER in r.source["text"])
    assert not row.passage.isVisible()
    row.line.linkActivated.emit(f"#{row.number}")  # the source's name clicked
    assert row.passage.isVisible() and ANSWER in row.passage.text.text()
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    qtbot.mouseClick(row.passage.open_button, Qt.MouseButton.LeftButton)
    assert [u.toLocalFile() for u in opened] == [row.path]
    qtbot.mouseClick(row.passage.context_button, Qt.MouseButton.LeftButton)
    viewer = row.passage.viewer
    assert viewer is not None
    qtbot.waitUntil(lambda: viewer.loaded)
    assert ANSWER in viewer.highlighted() and viewer.note.text().startswith("Lines ")
    # The meter says what the passages may add to the next message.
    qtbot.waitUntil(lambda: "tokens used" in window.meter.text(), timeout=TIMEOUT)
    assert "up to 1,500 for passages" in window.meter.text()
    assert "Drawing on notes" in window.meter.toolTip()

    reply = grounded_reply(qtbot, window, "What is the capital of Peru?")
    assert reply.sources is not None and reply.sources.rows == []
    assert reply.sources.not_found.isVisible() and reply.sources.not_found.text() == NOT_FOUND
    assert chats.thread(window.chat_id)[-1].sources == ()

    # The collection removed, the old replies keep the sources they were given.
    window.windows.indexing.remove("notes")
    qtbot.waitUntil(lambda: window.windows.documents_state.collections == [], timeout=TIMEOUT)
    window.show_chat()
    kept = window.view.widgets[1].sources
    assert kept is not None and len(kept.rows) == len(stored.sources)
    assert control.button.text() == "Documents"  # it names none that exists
    assert "passages" not in window.meter.text()
    # A new chat starts with none.
    grounded = window.chat_id
    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id != grounded, timeout=TIMEOUT)
    assert control.chosen == [] and not control.isVisible()


def test_a_collection_with_an_embedder_is_updated_with_it_in_the_window(
    qtbot, window: DocumentsWindow, indexing: Indexing, notes: Path, home: Path, tmp_path: Path
) -> None:
    """A collection made with an embedding model (docs add --embedder) is
    updated from the window with that model, loaded in the window's engine:
    a changed file's passages get their vectors."""
    from localchat.core.engine.client import Engine
    from localchat.testing.tiny_models import write_bert_gguf
    from localchat.ui.main_window import embedding_in

    (home / "models").mkdir(exist_ok=True)
    write_bert_gguf(home / "models" / "bert.gguf")
    with Engine() as engine:
        first = embedding_in(engine, "bert.gguf")
        indexer.add(indexing.store(), "meaning", [notes], embedding=first)
        indexing.embedding_for = lambda name: embedding_in(engine, name)
        indexing.refresh()
        qtbot.waitUntil(lambda: bool(window.rows()))
        (notes / FILES[0]).write_text("A short new note about the granite pier.\n")
        indexing.update("meaning")
        done = ended(qtbot, indexing, "update")
        assert done.report is not None and [Path(p).name for p in done.report.indexed] == [FILES[0]]
        cid = indexing.store().collection("meaning").id
        assert indexing.store().unembedded(cid) == []
