"""Render the README's screenshot and the docs' screenshots of the window, offscreen.

    .venv/bin/python packaging/screenshots.py        # assets/screenshot.png, docs/screenshots/*.png
    .venv/bin/python packaging/screenshots.py documents sources   # only these (light, dark, 150%)

A scratch data folder with a few chats and a small random-weight model named
like a real one (nothing is generated: the replies are written into the store),
the window in the light and the dark theme, grabbed as Qt draws it. Run it
after changing what the window shows, and look at the result. Shots named
on the command line (a name without its theme: ``chat``, ``documents``)
are the only ones written; the others are left as they are.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HOME = Path(tempfile.mkdtemp(prefix="localchat-shots-"))
os.environ.update(
    LOCALCHAT_HOME=str(HOME),
    HF_HUB_CACHE=str(HOME / "hf"),
    LOCALCHAT_CHECKOUT_MODELS="0",
    HOME=str(HOME),  # the documents' folders shown as ~/Documents/…
)
ONLY = set(sys.argv[1:])
"""The shots to write (none named: all)."""
CORPUS = ROOT / "tests" / "fixtures" / "documents"

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from localchat.core import hardware  # noqa: E402
from localchat.core.chat.store import ChatStore  # noqa: E402
from localchat.core.engine.client import Engine  # noqa: E402
from localchat.core.engine.protocol import TokenLogprob  # noqa: E402
from localchat.core.settings import AppSettings  # noqa: E402
from localchat.testing.tiny_models import write_llama_gguf  # noqa: E402
from localchat.ui import theme  # noqa: E402
from localchat.ui.main_window import MainWindow  # noqa: E402

MODEL = "tiny-chat"  # a random-weight test model: the replies are written into the store
ANSWER = """There are **two** common ways:

1. In place, with `list.reverse()`:

```python
items = [1, 2, 3]
items.reverse()
print(items)  # [3, 2, 1]
```

2. As a new list, with slicing: `items[::-1]`.

Use the first when you no longer need the original order."""
STATS = {"tokens_per_s": 31.4, "ttft_ms": 420.0, "completion_tokens": 74}


def fill(store: ChatStore) -> dict[str, int]:
    chats = {}
    for title, question, answer in (
        (
            "Trip to Lisbon",
            "Three things to see in Lisbon in one day?",
            "Belém, Alfama, LX Factory.",
        ),
        ("Sourdough starter", "Why is my starter not rising?", "Too cold, most likely."),
    ):
        chat = store.create_chat(title)
        store.add_message(chat, "user", question)
        reply = store.begin_reply(chat, model=MODEL)
        reply.append(answer)
        reply.finish("done", STATS)
        chats[title] = chat
    chat = store.create_chat("How do I reverse a list in Python?")
    store.add_message(chat, "user", "How do I reverse a list in Python?")
    reply = store.begin_reply(chat, model=MODEL)
    reply.append(ANSWER)
    reply.finish("done", {**STATS, "context_used": 212, "context_size": 4096})
    store.add_message(chat, "user", "And without changing the original?")
    failed = store.begin_reply(chat, model=MODEL)
    failed.append("With slicing:")
    failed.finish("failed", {"error": "the model process crashed (SIGSEGV); it reloads itself"})
    chats["main"] = chat
    long = store.create_chat("A long chat")
    for i in range(30):
        store.add_message(long, "user", f"Question {i + 1}: what does `list.sort` do with key={i}?")
        reply = store.begin_reply(long, model=MODEL)
        reply.append(
            f"It sorts the list in place, comparing `key(x)` for each item (answer {i + 1})."
        )
        reply.finish("done", STATS)
    chats["long"] = long
    thinking = store.create_chat("Train timetable")
    store.add_message(
        thinking, "user", "A train leaves at 9:40 and takes 2 h 35 min. When does it arrive?"
    )
    reply = store.begin_reply(thinking, model=MODEL)
    reply.append(
        "The user wants the arrival time. 9:40 plus 2 hours is 11:40; plus 35 minutes is "
        "12:15. No time zones are mentioned, so the answer is **12:15**.",
        reasoning=True,
    )
    reply.append("It arrives at **12:15** (9:40 + 2 h = 11:40, + 35 min = 12:15).")
    reply.finish("done", {**STATS, "thinking_ms": 3400.0, "reasoning_tokens": 48})
    chats["thinking"] = thinking
    xray = store.create_chat("Capital of France")
    store.add_message(xray, "user", "What is the capital of France?")
    reply = store.begin_reply(xray, model=MODEL)
    reply.append(XRAY_ANSWER)
    reply.finish("done", STATS, tokens=xray_tokens())
    chats["xray"] = xray
    return chats


XRAY_ANSWER = "The capital of France is Paris, on the Seine."
XRAY_PICKS = [
    # (text, probability, [other candidates and theirs])
    ("The", 0.62, [("Paris", 0.21), ("France", 0.08), ("It", 0.05)]),
    (" capital", 0.81, [(" French", 0.07), (" city", 0.05), (" answer", 0.03)]),
    (" of", 0.97, [(" city", 0.01), (" is", 0.01)]),
    (" France", 0.99, [(" the", 0.004)]),
    (" is", 0.93, [(",", 0.03), (" has", 0.01)]),
    (" Paris", 0.71, [(" the", 0.12), (" a", 0.05), (" located", 0.04), (" Lyon", 0.01)]),
    (",", 0.34, [(".", 0.52), (" (", 0.06), (" which", 0.04)]),
    (" on", 0.18, [(" the", 0.22), (" a", 0.19), (" located", 0.15), (" known", 0.09)]),
    (" the", 0.96, [(" both", 0.02)]),
    (" Seine", 0.88, [(" banks", 0.06), (" river", 0.03)]),
    (".", 0.9, [(" River", 0.05), (" river", 0.02)]),
]


def xray_tokens() -> tuple[TokenLogprob, ...]:
    """Illustrative tokens for the X-ray's screenshot (the test model's own
    replies are random): plausible probabilities and candidates."""
    out = []
    for i, (text, p, others) in enumerate(XRAY_PICKS):
        top = sorted([(text, p), *others], key=lambda c: -c[1])
        out.append(
            TokenLogprob(
                1000 + i,
                text,
                math.log(p),
                tuple((2000 + 50 * i + k, t, math.log(q)) for k, (t, q) in enumerate(top)),
                lse=4.0,
            )
        )
    # The chosen token's id is its own candidate's.
    fixed = []
    for t in out:
        cid = next(c[0] for c in t.top if c[1] == t.text)
        fixed.append(TokenLogprob(cid, t.text, t.logprob, t.top, lse=t.lse))
    return tuple(fixed)


SERVED = [
    # (seconds after the first, client, method and path, model, status, tokens, tok/s, ms)
    (0, "127.0.0.1", "GET /v1/models", None, 200, None, None, 3),
    (2, "127.0.0.1", "POST /v1/chat/completions", MODEL, 200, 118, 31.2, 4210),
    (9, "127.0.0.1", "POST /api/chat", MODEL, 200, 64, 30.8, 2330),
    (15, "127.0.0.1", "POST /v1/chat/completions", "llama-3.2-1b", 404, None, None, 2),
    (21, "127.0.0.1", "POST /v1/chat/completions", MODEL, 200, 256, 29.7, 8990),
    (34, "127.0.0.1", "POST /v1/chat/completions", MODEL, 0, 12, 30.1, 610),
]


def serve_for_show(window: MainWindow) -> None:
    """The status bar's "API on …" and the request log, as after a few
    requests (illustrative records, like the chats: nothing is served)."""
    from localchat.server.app import RequestRecord

    window.settings.set_server(on=True)  # the switch as it would be (undone after the shot)
    state = window.server.state
    state.set("on", "127.0.0.1:4891")
    first = time.mktime((2026, 5, 4, 14, 2, 10, 0, 0, -1))
    for after, client, request, model, status, tokens, rate, ms in SERVED:
        method, path = request.split()
        finish = ("length" if tokens == 256 else "stop") if tokens else None
        state.log(
            RequestRecord(
                first + after, client, method, path, model, status, tokens, rate, finish, ms
            )
        )
    window.server_view.open_log()
    window.settings_dock.show()


def index_documents() -> list[dict[str, object]]:
    """Two collections of the test corpus under ~/Documents: "Harbour notes"
    (one file skipped) and "Local history", left unfinished (its indexing
    stopped after two files); returns the sources of the grounded reply."""
    from localchat.core.chat.session import source_record
    from localchat.core.documents import grounding, indexer
    from localchat.core.documents.indexer import Control
    from localchat.core.documents.store import DocumentStore

    notes, history = HOME / "Documents" / "Harbour notes", HOME / "Documents" / "Local history"
    for folder, names in (
        (notes, ("en-harbour-town.md", "en-lighthouse-diary.md", "en-observatory.md")),
        (history, ("en-ashford-bridge.md", "en-bakery-history.md", "en-railway-line.md",
                   "en-sourdough-starter.md", "en-water-mill.md")),
    ):  # fmt: skip
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_bytes((CORPUS / name).read_bytes())
    (notes / "draft.md").write_bytes(b"")  # skipped: "empty file"
    store = DocumentStore(HOME / "documents.sqlite")
    indexer.add(store, "Harbour notes", [notes])
    control = Control()

    def stop_after_two(p: indexer.Progress) -> None:
        if p.files_done == 2:
            control.stop()

    indexer.add(store, "Local history", [history], progress=stop_after_two, control=control)
    passages = grounding.retrieve(store, ["Harbour notes"], GROUNDED_QUESTION)
    store.close()
    return [source_record(p) for p in passages]


GROUNDED_QUESTION = "How long is the stone pier at Port Selwick, and who built it?"
GROUNDED_ANSWER = (
    "The pier is **280 yards** long. It was designed by **Josiah Penhallow**, a Cornish "
    "engineer, after the storm of 26 November 1703 tore the old timber pier away; it is "
    "built of granite from Brannock Head and took eight years [1]."
)


def grounded_chat(store: ChatStore, sources: list[dict[str, object]]) -> int:
    chat = store.create_chat("Port Selwick's pier")
    store.set_chat_settings(chat, {"documents": ["Harbour notes"]})
    store.add_message(chat, "user", GROUNDED_QUESTION)
    reply = store.begin_reply(chat, model=MODEL, sources=sources)
    reply.append(GROUNDED_ANSWER)
    reply.finish("done", {**STATS, "context_used": 1180, "context_size": 4096})
    return chat


def index_for_show(window: MainWindow) -> None:
    """The Documents window as while "Local history" is indexed (illustrative,
    like the server's log: the indexing is not running)."""
    from localchat.core.documents.indexer import Progress
    from localchat.ui.state import IndexTask

    state = window.windows.documents_state
    progress = Progress(2, 5, 9_860, 24_989, 4.0, str(HOME / "Documents" / "Local history" /
                        "en-railway-line.md"))  # fmt: skip
    state.set_work(IndexTask("update", "Local history", progress))


def wanted(name: str) -> bool:
    return not ONLY or name in ONLY


def save(widget: QWidget, name: str, scheme: str, suffix: str) -> None:
    """Write the shot ``name`` (if asked for) in docs/screenshots/."""
    if wanted(name):
        widget.grab().save(str(ROOT / "docs" / "screenshots" / f"{name}-{scheme}{suffix}.png"))


def settle(app: QApplication, window: MainWindow, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (window.loaded is None or window.busy()):
        app.processEvents()
        time.sleep(0.01)
    for _ in range(60):
        app.processEvents()
        time.sleep(0.01)


def main() -> int:
    hardware.memory = lambda: (16 * 2**30, 9 * 2**30)  # the same note on every machine
    app = QApplication([])
    (HOME / "models").mkdir(parents=True)
    write_llama_gguf(HOME / "models" / f"{MODEL}.gguf")
    store = ChatStore(HOME / "chats.sqlite3")
    chats = fill(store)
    chats["grounded"] = grounded_chat(store, index_documents())
    engine = Engine()
    settings = AppSettings(HOME / "settings.json")
    out = ROOT / "docs" / "screenshots"
    suffix = os.environ.get("LOCALCHAT_SHOTS_SUFFIX", "")
    out.mkdir(parents=True, exist_ok=True)
    for scheme, name in ((Qt.ColorScheme.Light, "light"), (Qt.ColorScheme.Dark, "dark")):
        theme.apply(app, scheme)
        window = MainWindow(store, engine, settings)
        window.resize(1200, 760)
        window.show()
        window.select_chat(chats["main"])
        settle(app, window)
        save(window, "chat", name, suffix)
        if name == "light" and not suffix and wanted("chat"):
            window.grab().save(str(ROOT / "assets" / "screenshot.png"))
        window.settings_dock.show()
        settle(app, window)
        save(window, "settings", name, suffix)
        window.settings_dock.hide()
        serve_for_show(window)
        settle(app, window, 0)
        bar = window.panel.verticalScrollBar()
        bar.setValue(bar.maximum())  # the "Local server" form, at the foot of the settings
        settle(app, window, 0)
        save(window, "server", name, suffix)
        window.server_view.dock.hide()
        window.settings_dock.hide()
        window.settings.set_server(on=False)
        window.server.state.set("off")
        window.select_chat(chats["long"])
        settle(app, window)
        window.view.verticalScrollBar().setValue(window.view.verticalScrollBar().maximum() // 2)
        settle(app, window, 0)
        save(window, "long-chat", name, suffix)
        window.select_chat(chats["thinking"])
        settle(app, window)
        save(window, "thinking", name, suffix)
        block = window.view.widgets[-1].thinking
        assert block is not None
        block.toggle()
        settle(app, window, 0)
        save(window, "thinking-open", name, suffix)
        window.select_chat(chats["xray"])
        settle(app, window)
        reply = window.view.widgets[-1]
        reply.xray.setChecked(True)
        settle(app, window, 0)
        save(window, "xray", name, suffix)
        reply.token_picked.emit(reply.message.id, 5)  # " Paris"
        settle(app, window, 0)
        assert window._xray is not None
        save(window._xray, "xray-panel", name, suffix)
        window._xray.hide()
        # Documents: the window (a collection being indexed), and a reply's sources.
        window.open_documents()
        documents = window.windows.documents
        assert documents is not None
        documents.resize(980, 400)
        settle(app, window, 0)
        index_for_show(window)
        documents.select("Harbour notes")
        settle(app, window, 0)
        save(documents, "documents", name, suffix)
        window.windows.documents_state.set_work(None)
        documents.hide()
        window.select_chat(chats["grounded"])
        settle(app, window)
        sources = window.view.widgets[-1].sources
        assert sources is not None and sources.rows
        sources.rows[0].toggle()
        settle(app, window, 0)
        window.view.scroll_to_end()
        settle(app, window, 0)
        save(window, "sources", name, suffix)
        window.new_chat()
        settle(app, window)
        save(window, "new-chat", name, suffix)
        window.close()
    engine.close()
    store.close()
    if os.environ.get("QT_SCALE_FACTOR") is None:  # the same at 150%, in a process of its own
        scaled = {**os.environ, "QT_SCALE_FACTOR": "1.5", "LOCALCHAT_SHOTS_SUFFIX": "-150"}
        subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=scaled, check=True)
    for png in sorted(out.glob("*.png")):
        if not ONLY or any(png.name.startswith(f"{n}-") for n in ONLY):
            print(png.relative_to(ROOT))
    if wanted("chat"):
        print("assets/screenshot.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
