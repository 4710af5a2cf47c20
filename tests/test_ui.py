"""Replies stream through real Qt signals; the settings form follows the declaration."""

from __future__ import annotations

import sys
from pathlib import Path

from localchat.core.engine.client import Engine
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import write_llama_gguf
from localchat.ui.bridge import JobThread


def test_thousands_of_tokens_stream_through_signals(qtbot, tmp_path: Path) -> None:
    """PySide6 6.12.0 on Python 3.11 aborted after a few hundred emits of a
    str: this must stream 5,000 tokens to the GUI thread intact."""
    path = write_llama_gguf(tmp_path / "long.gguf", suppress_special=True, context_length=8192)
    s = GenerationSettings(temperature=0.8, seed=7, max_tokens=5000, ctx=8192)
    received: list[str] = []
    results: list[object] = []
    # The 6.12.0 bug drops a reference to True or False at each emit until
    # Python frees one and aborts; on 3.12+ they are immortal and never move.
    bool_refs = sys.getrefcount(True), sys.getrefcount(False)
    with Engine() as engine:
        engine.load(path, s)

        def job(emit):
            stream = engine.chat([{"role": "user", "content": "Go"}], s)
            for piece in stream:
                emit(piece)
            return stream.result

        thread = JobThread(job)
        thread.piece.connect(received.append)
        thread.done.connect(results.append)
        with qtbot.waitSignal(thread.done, timeout=120_000):
            thread.start()
        thread.wait()
    assert sys.getrefcount(True) > bool_refs[0] - 500, "a bool's references are draining"
    assert sys.getrefcount(False) > bool_refs[1] - 500, "a bool's references are draining"
    (result,) = results
    assert result.completion_tokens == 5000
    assert len(received) >= 4000
    assert "".join(received) == result.reply


def test_a_failure_arrives_as_a_signal(qtbot, tiny_model: Path) -> None:
    refuse = GenerationSettings(ctx=256, overflow="stop")
    with Engine() as engine:
        engine.load(tiny_model, refuse)
        thread = JobThread(
            lambda emit: engine.chat([{"role": "user", "content": "word " * 400}], refuse).text()
        )
        with qtbot.waitSignal(thread.failed, timeout=60_000) as blocker:
            thread.start()
        thread.wait()
    assert "tokens over the 256-token context" in blocker.args[0]


def test_only_the_latest_request_counts() -> None:
    """Tickets: an answer to an older request is stale. One at a time, a request
    made while another runs waits, a newer one replaces it, and it starts when
    the running one ends; a start with nothing to do ends at once."""
    from localchat.core.latest import Latest

    started: list[int] = []

    def start(ticket: int) -> bool:
        started.append(ticket)
        return True

    latest = Latest()
    first, second = latest.request(start), latest.request(start)
    assert started == [first, second]  # both run: only the answers are judged
    assert not latest.current(first) and latest.current(second)

    serial = Latest(one_at_a_time=True)
    started.clear()
    running = serial.request(start)
    waiting = serial.request(start)
    newest = serial.request(start)
    assert started == [running] and serial.waiting and serial.running
    assert not serial.current(running) and not serial.current(waiting)
    serial.ended(running)
    assert started == [running, newest] and not serial.waiting  # the one that waited is gone
    serial.ended(newest)
    assert not serial.running
    nothing = serial.request(lambda _ticket: False)
    assert not serial.running and serial.current(nothing)
    serial.drop()
    assert not serial.current(nothing)


def test_the_windows_state_is_plain_python() -> None:
    """The state the widgets draw needs no Qt: it imports without PySide6, and
    a change reaches whoever subscribed."""
    import subprocess

    probe = (
        "import sys; from localchat.ui.state import ChatState, ModelState; "
        "print('PySide6' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

    from localchat.ui.state import ChatState, ModelState, model_part

    model, chat = ModelState(), ChatState()
    heard: list[object] = []
    model.chosen.connect(lambda _: heard.append((model.path, model.adapter)))
    model.said.connect(lambda _: heard.append(model.tip))
    chat.counted.connect(heard.append)
    model.choose(Path("m.gguf"), None)
    model.say("Loading…")
    chat.set_context(None)
    assert heard == [(Path("m.gguf"), None), "Loading…", None]
    assert model.name() == "m"
    model.loaded_with = model_part(GenerationSettings(ctx=1024))
    assert not model.stale(GenerationSettings(ctx=1024, lora_scale=2.0))  # no adapter
    assert model.stale(GenerationSettings(ctx=2048))


def test_a_stale_jobs_answer_is_dropped_on_the_gui_thread(qtbot) -> None:
    """LatestJobs: an older job that finishes after a newer one is not heard;
    the answer that counts is delivered on the GUI thread."""
    import threading

    from PySide6.QtCore import QCoreApplication, QThread

    from localchat.ui.bridge import LatestJobs

    gate = threading.Event()
    answers: list[tuple[str, bool]] = []

    def slow(_emit) -> str:
        gate.wait(10)
        return "old"

    jobs = LatestJobs()
    jobs.done.connect(
        lambda answer: answers.append(
            (answer, QThread.currentThread() is QCoreApplication.instance().thread())
        )
    )
    jobs.request(lambda: slow)
    with qtbot.waitSignal(jobs.done, timeout=10_000):
        jobs.request(lambda: lambda _emit: "new")
    gate.set()
    qtbot.waitUntil(lambda: not jobs.running, timeout=10_000)
    qtbot.wait(50)
    assert answers == [("new", True)]


def test_a_reply_thread_only_emits(qtbot, tmp_path: Path) -> None:
    """The reply job makes its chat on its own thread and says so by signal,
    before its first piece: nothing of the window is written from there. The
    thinking and the answer come by signals of their own."""
    from localchat.core.chat.store import ChatStore
    from localchat.core.engine.protocol import Piece
    from localchat.ui.replies import ReplyThread

    events: list[object] = []

    def talk(session, say):
        say(Piece("hmm", reasoning=True))
        say(Piece("piece"))
        return session.chat_id

    with ChatStore(tmp_path / "chats.sqlite3") as store:
        thread = ReplyThread(store, None, None, "m", talk)  # type: ignore[arg-type]
        thread.chat_opened.connect(lambda chat: events.append(("chat", chat)))
        thread.piece.connect(lambda piece: events.append(("piece", piece)))
        thread.thought.connect(lambda piece: events.append(("thought", piece)))
        with qtbot.waitSignal(thread.done, timeout=10_000) as blocker:
            thread.start()
        thread.wait()
        chat = store.list_chats()[0].id
    assert events == [("chat", chat), ("thought", "hmm"), ("piece", "piece")]
    assert blocker.args == [chat]


def test_the_settings_form_is_built_from_the_declaration(qtbot) -> None:
    from PySide6.QtWidgets import QDoubleSpinBox, QPlainTextEdit, QSpinBox

    from localchat.core import params
    from localchat.ui.settings_panel import SettingsPanel

    panel = SettingsPanel(GenerationSettings(temperature=0.2, seed=42, system_prompt="Hi"))
    qtbot.addWidget(panel)
    assert set(panel.editors) == {name for name, _ in params.specs()}
    for name, spec in params.specs():
        editor = panel.editors[name]
        assert editor.toolTip() == spec.help
        if isinstance(editor, QSpinBox | QDoubleSpinBox):
            assert editor.minimum() == spec.minimum and editor.maximum() == spec.maximum
    assert panel.values() == GenerationSettings(temperature=0.2, seed=42, system_prompt="Hi")
    assert panel.editors["seed"].specialValueText() == "random"
    assert panel.editors["ctx"].singleStep() == 256

    seen: list[GenerationSettings] = []
    panel.changed.connect(seen.append)
    panel.editors["top_k"].setValue(7)
    assert seen[-1].top_k == 7 and seen[-1].temperature == 0.2
    text = panel.editors["system_prompt"]
    assert isinstance(text, QPlainTextEdit)
    text.setPlainText("Answer in French.")
    assert seen[-1].system_prompt == "Answer in French."
    count = len(seen)
    panel.set_values(GenerationSettings())  # showing values is not an edit
    assert len(seen) == count and panel.values() == GenerationSettings()


def test_the_form_words_choices_names_its_model_and_fits_the_model(qtbot) -> None:
    """Overflow choices in words (values stored); a heading names the model; the
    context size capped at the model's; GPU layers shown as none without a GPU."""
    from localchat.ui.settings_panel import WIDTH, SettingsPanel

    panel = SettingsPanel(GenerationSettings(overflow="keep-start", ctx=8192, gpu_layers=20))
    qtbot.addWidget(panel)
    combo = panel.editors["overflow"]
    assert combo.currentText() == "Keep the first exchange, forget the next oldest"
    assert [combo.itemText(i) for i in range(combo.count())] == [
        "Forget the oldest messages",
        "Keep the first exchange, forget the next oldest",
        "Stop and say so",
    ]
    seen: list[GenerationSettings] = []
    panel.changed.connect(seen.append)
    combo.setCurrentIndex(2)
    assert seen[-1].overflow == "stop" and panel.values().overflow == "stop"
    assert panel.heading.text() == "Settings for new chats"
    panel.set_heading("mistral-7b")
    assert panel.heading.text() == "Settings for mistral-7b"

    count = len(seen)
    ctx = panel.editors["ctx"]
    panel.limit("ctx", 4096)  # the model's: shown capped, not an edit
    assert ctx.maximum() == 4096 and panel.values().ctx == 4096 and len(seen) == count
    panel.limit("ctx", None)
    assert ctx.maximum() == params_max("ctx")

    gpu = panel.editors["gpu_layers"]
    panel.set_unavailable("gpu_layers", "none (no GPU)", "No GPU was found")
    assert not gpu.isEnabled() and gpu.text() == "none (no GPU)"
    assert gpu.toolTip() == "No GPU was found" and panel.values().gpu_layers == 20
    panel.set_unavailable("gpu_layers", None)
    assert gpu.isEnabled() and gpu.text() == "20" and len(seen) == count
    assert panel.sizeHint().width() == WIDTH


def params_max(name: str) -> float | None:
    from localchat.core import params

    return params.spec(name).maximum


def test_markdown_is_split_into_prose_and_fenced_code() -> None:
    from localchat.ui.code_block import Segment, split_markdown

    text = "Use this:\n\n```python\nx = 1\n```\nDone.\n~~~~\n```not closing\n~~~~\nend"
    assert split_markdown(text) == [
        Segment("prose", "Use this:\n"),
        Segment("code", "x = 1", "python"),
        Segment("prose", "Done."),
        Segment("code", "```not closing"),
        Segment("prose", "end"),
    ]
    # While streaming, an open fence is code to the end.
    assert split_markdown("Here:\n```js\nlet a = [") == [
        Segment("prose", "Here:"),
        Segment("code", "let a = [", "js"),
    ]
    assert split_markdown("no code at all") == [Segment("prose", "no code at all")]


def test_code_blocks_are_highlighted_and_copied_on_their_own(qtbot) -> None:
    from PySide6.QtGui import QGuiApplication

    from localchat.ui.chat_view import MessageWidget
    from localchat.ui.code_block import CodeBlock

    w = MessageWidget("assistant", "Assistant")
    qtbot.addWidget(w)
    code = "def greet(name):\n    return f'hi {name}'  # friendly"
    streamed = f"Try:\n\n```python\n{code}\n```\n\nThat's all."
    for end in range(10, len(streamed) + 1, 7):  # as it streams in
        w.set_markdown(streamed[:end])
    w.set_markdown(streamed)
    kinds = [type(s).__name__ for s in w.segments]
    assert kinds == ["MessageText", "CodeBlock", "MessageText"]
    block = w.segments[1]
    assert isinstance(block, CodeBlock)
    assert block.code() == code and block.language.text() == "python"
    # 'def' is a keyword: coloured unlike the plain text of the name after it.
    line = block.editor.document().firstBlock().layout().formats()
    assert line, "no highlighting applied"
    keyword = next(f for f in line if f.start == 0)
    assert keyword.format.foreground().color() != block.editor.palette().text().color()
    block.copy.click()
    assert QGuiApplication.clipboard().text() == code
    w.copy.click()
    assert QGuiApplication.clipboard().text() == streamed


def test_long_prose_is_chunked_so_a_stream_rerenders_only_its_tail() -> None:
    from localchat.ui.code_block import CHUNK_CHARS, split_markdown

    paragraph = "word " * 100  # 500 characters
    text = "\n\n".join([paragraph] * 12)
    segments = split_markdown(text)
    assert len(segments) > 1 and all(s.kind == "prose" for s in segments)
    assert "\n\n".join(s.text for s in segments) == text
    assert all(len(s.text) >= CHUNK_CHARS - len(paragraph) for s in segments[:-1])
    # More text only ever changes the last chunk.
    grown = split_markdown(text + "\n\nmore and more")
    assert grown[: len(segments) - 1] == segments[:-1]
    # One long paragraph is cut at line ends as well.
    lines = "\n".join(["word " * 60] * 30)
    assert len(split_markdown(lines)) > 1
    assert "\n".join(s.text for s in split_markdown(lines)) == lines
    # A paragraph with no line breaks at all is cut at spaces before words,
    # outside inline code, so the tail that is re-rendered stays short.
    endless = " ".join(f"word{i} `a b c` *x*" for i in range(600))
    cut = split_markdown(endless)
    assert len(cut) > 1 and all(len(s.text) < 2 * CHUNK_CHARS for s in cut)
    assert " ".join(s.text for s in cut) == endless
    assert all(s.text.count("`") % 2 == 0 and s.text[0].isalpha() for s in cut)
    assert split_markdown(endless + " more")[: len(cut) - 1] == cut[:-1]
    assert len(split_markdown("x" * 5 * CHUNK_CHARS)) == 1  # no space: nowhere to cut
    # A list is never cut between its items, even at a blank line.
    items = "\n\n".join(f"{i}. " + "item " * 120 for i in range(1, 8))
    assert len(split_markdown(items)) == 1


def test_dark_and_light_follow_the_scheme(qtbot) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from localchat.ui import theme
    from localchat.ui.code_block import CodeBlock

    app = QApplication.instance()
    try:
        assert theme.apply(app, Qt.ColorScheme.Dark)
        assert app.palette().window().color().lightness() < 100
        block = CodeBlock()
        qtbot.addWidget(block)
        block.set_code("x = 1  # note", "python")
        assert block.highlighter is not None
        assert block.highlighter.dark  # the code highlighter follows the palette
        assert not theme.apply(app, Qt.ColorScheme.Light)
        assert app.palette().window().color().lightness() > 150
    finally:
        theme.apply(app, Qt.ColorScheme.Light)


def test_secondary_text_is_readable_in_both_themes(qtbot) -> None:
    """Notes (a failed reply's error), statistics and placeholders are drawn in
    the secondary tone: at least 4.5:1 against the backgrounds they sit on."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication, QLabel

    from localchat.ui import theme
    from localchat.ui.message_parts import Note

    app = QApplication.instance()
    role = QPalette.ColorRole
    try:
        for scheme in (Qt.ColorScheme.Light, Qt.ColorScheme.Dark):
            theme.apply(app, scheme)
            label = theme.secondary(QLabel("failed: out of memory"))
            qtbot.addWidget(label)
            palette = app.palette()
            tone = palette.color(label.foregroundRole())
            for background in (role.Base, role.Window):
                ratio = theme.contrast(tone, palette.color(background))
                assert ratio >= 4.5, (scheme, background, ratio)
            # A failed reply's note is in the error tone, as readable.
            note = Note()
            qtbot.addWidget(note)
            note.set_error(True)
            error = note.palette().color(note.foregroundRole())
            assert error == theme.error_colour(palette) != tone
            for background in (role.Base, role.Window):
                assert theme.contrast(error, palette.color(background)) >= 4.5, scheme
            note.set_error(False)
            assert note.palette().color(note.foregroundRole()) == tone
        # A note in the error tone follows a switch of theme.
        theme.apply(app, Qt.ColorScheme.Dark)
        note = Note()
        qtbot.addWidget(note)
        note.set_error(True)
        theme.apply(app, Qt.ColorScheme.Light)
        QApplication.processEvents()
        assert note.palette().color(note.foregroundRole()) == theme.ERROR_LIGHT
    finally:
        theme.apply(app, Qt.ColorScheme.Light)


def test_the_view_follows_a_reply_only_from_the_bottom(qtbot) -> None:
    from localchat.ui.chat_view import ChatView

    view = ChatView()
    qtbot.addWidget(view)
    view.resize(500, 300)
    view.show()
    for i in range(8):
        view.add("user", "You").set_markdown(f"message {i}\n\n" + "line\n\n" * 5)
    view.begin_stream("and now?", "m")
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())

    def stream(lines: int) -> None:
        for _ in range(lines):
            view.append("more text\n\n")
        view._repaint_stream()
        qtbot.wait(20)  # the scroll lands after the layout

    stream(20)
    assert bar.value() == bar.maximum()  # at the bottom: it follows
    bar.setValue(0)  # the user scrolls up to read
    stream(20)
    assert bar.value() == 0 and bar.maximum() > 0  # and stays where they are
    view.stop_stream()


def test_a_long_chat_is_shown_whole_and_laid_out_a_bounded_number_of_times(
    qtbot, monkeypatch
) -> None:
    """Switching to a chat of 200 messages (the column is filled hidden and
    laid out when shown): every message and code block ends up visible, and
    no code block is resized more than a few times (a re-layout per message
    added would resize each one hundreds of times)."""

    from localchat.core.chat.store import StoredMessage
    from localchat.ui.chat_view import ChatView
    from localchat.ui.code_block import CodeBlock

    messages = [
        StoredMessage(
            id=i + 1,
            chat_id=1,
            parent_id=i or None,
            role="user" if i % 2 == 0 else "assistant",
            content=f"Question {i}?"
            if i % 2 == 0
            else f"Answer {i}:\n\n```python\nprint({i})\n```\n",
            status="done",
            model="m",
            settings=None,
            stats=None,
            created_at=0.0,
        )
        for i in range(200)
    ]

    # Each code block's resize events, counted in the block itself: an event
    # filter on the whole application (the obvious way) makes PySide wrap every
    # object of every event, which crashes it (shiboken 6.11's lazy types).
    resizes = 0
    resize_event = CodeBlock.resizeEvent

    def counted(block: CodeBlock, event) -> None:
        nonlocal resizes
        resizes += 1
        resize_event(block, event)

    monkeypatch.setattr(CodeBlock, "resizeEvent", counted)
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    for _ in range(2):  # opening it, and again after another chat was shown
        view.show_thread(messages)
        qtbot.wait(50)
    blocks = [w for m in view.widgets for w in m.segments if isinstance(w, CodeBlock)]
    assert len(view.widgets) == 200 and len(blocks) == 100
    assert 0 < resizes <= 2 * 10 * len(blocks), resizes
    assert all(b.isVisible() and b.height() > 0 for b in blocks)


def test_the_app_icon_is_rendered_from_its_svg_in_every_format(qtbot) -> None:
    """The icon files installers use are the SVG source rendered (by
    packaging/icons.py), at the sizes each platform looks up."""
    import struct

    from PySide6.QtGui import QIcon, QImage

    from localchat.ui.app import ICON

    root = Path(__file__).resolve().parents[1]
    icons = root / "assets" / "icons"
    assert not QIcon(str(ICON)).isNull() and QImage(str(ICON)).width() == 256
    sys.path.insert(0, str(root / "packaging"))
    try:
        import icons as renderer  # packaging/icons.py
    finally:
        sys.path.pop(0)
    for n in (16, 48, 256):
        fresh = QImage.fromData(renderer.render(n))
        committed = QImage(str(icons / f"localchat-{n}.png"))
        assert committed.size() == fresh.size()
        worst = max(
            abs(fresh.pixelColor(x, y).blue() - committed.pixelColor(x, y).blue())
            for x in range(0, n, max(1, n // 16))
            for y in range(0, n, max(1, n // 16))
        )
        assert worst <= 8, f"localchat-{n}.png is stale: run packaging/icons.py"
    # Windows: an ICO holding 16-256 px; macOS: an ICNS up to 1024 px.
    ico = (icons / "localchat.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    sizes = {ico[6 + 16 * i] or 256 for i in range(count)}
    assert (reserved, kind) == (0, 1) and {16, 32, 48, 256} <= sizes
    icns = (icons / "localchat.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    chunks, at = set(), 8
    while at < len(icns):
        chunks.add(icns[at : at + 4])
        at += struct.unpack(">I", icns[at + 4 : at + 8])[0]
    assert {b"ic07", b"ic08", b"ic09", b"ic10"} <= chunks  # 128, 256, 512, 1024 px


STARTUP_PROBE = """
import sys
from localchat.__main__ import main
from localchat.ui.main_window import MainWindow
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

def painted(self):  # the first paint, before the deferred work it starts
    print(" ".join(sorted(sys.modules)), flush=True)
    QApplication.instance().quit()

MainWindow._after_first_paint = painted
main([])
"""


def test_the_window_paints_before_the_engine_machinery_is_imported(tmp_path: Path) -> None:
    """Start-up waits only for what the first paint needs: multiprocessing,
    hashing and ctypes (the worker, adapter checks) come when first used, and
    llama.cpp, numpy and the Hub client never load in the window's process."""
    import os
    import subprocess

    env = {**os.environ, "LOCALCHAT_HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    loaded = set(out.split())
    assert "localchat.ui.main_window" in loaded and "PySide6.QtWidgets" in loaded
    heavy = {"multiprocessing", "hashlib", "ctypes", "llama_cpp", "numpy", "huggingface_hub"}
    assert loaded & heavy == set()
