"""Does the window stay responsive while a fast model streams, and start quickly?

Run from the repository root (Qt needs a display; offscreen works)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/ui.py

1. **Stalls.** The real main window streams a long reply from a tiny model that
   writes thousands of tokens a second (far faster than any real model), while
   a 5 ms heartbeat timer on the GUI thread records how late each tick fires.
   Printed: p50 / p99 / max stall in ms (goal: p99 <= 16 ms, max <= 50 ms), how
   many repaints the reply took, and the GUI process's resident memory. The
   goal is for text (printable ASCII); a second run streams random bytes, a
   broken model's output in a dozen scripts, as the worst case (no goal).
2. **Start-up.** Time from starting the process to the window's first paint,
   for `localchat` (as the command starts: ``localchat.__main__``) and for a
   bare PySide6 window started the same way, alternating, medians of several
   runs after an uncounted warm-up; the ratio is the figure (goal <= 2x). The
   package is byte-compiled first, as an installed one is.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import localchat

HEARTBEAT_MS = 5

FIRST_PAINT = r"""
import sys

if sys.argv[1] == "bare":
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    class Window(QMainWindow):
        pass

    def start():
        app = QApplication(sys.argv)
        window = Window()
        window.setCentralWidget(QLabel("bare"))
        window.resize(1100, 720)
        window.show()
        app.exec()
else:  # as the `localchat` command starts
    from localchat.__main__ import main
    from localchat.ui.main_window import MainWindow as Window

    start = lambda: main([])

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

def painted():
    print("painted", flush=True)
    QApplication.instance().quit()

class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        # The window's first paint event; the timer fires once the whole frame
        # (every child widget) is painted and on screen.
        if event.type() == QEvent.Type.Paint and not hasattr(self, "seen"):
            self.seen = True
            QTimer.singleShot(0, painted)
        return False

# The filter goes on the window alone (one on the whole application would add
# a Python call to every event of every widget).
watch = FirstPaint()
show = Window.show
Window.show = lambda window: (window.installEventFilter(watch), show(window))
start()
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stalls(home: Path, tokens: int, *, text: bool) -> None:
    """``text``: the model writes printable ASCII (random words, punctuation,
    Markdown marks) like any working model's prose; else random bytes, whose
    UTF-8 falls in a dozen scripts (Hebrew, Syriac, Hangul, ...) or none: a
    broken model, the worst case for Qt's font fallback, which searches the
    fonts again for a script none of them has at every layout."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from localchat.core.chat.store import ChatStore
    from localchat.core.engine.client import Engine
    from localchat.core.settings import AppSettings
    from localchat.testing.tiny_models import write_llama_gguf
    from localchat.ui.main_window import MainWindow

    home = home / ("text" if text else "bytes")
    os.environ["LOCALCHAT_HOME"] = str(home)
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    write_llama_gguf(
        models / "fast.gguf", context_length=8192, suppress_special=True, ascii_only=text
    )
    app = QApplication.instance() or QApplication(sys.argv)
    AppSettings(home / "settings.json").set_generation(ctx=8192, max_tokens=tokens)
    store, engine = ChatStore(home / "chats.sqlite3"), Engine()
    window = MainWindow(store, engine, AppSettings(home / "settings.json"))
    window.resize(1100, 720)
    window.show()
    while window.loaded is None:
        app.processEvents()
        time.sleep(0.01)

    clock = QElapsedTimer()
    late: list[float] = []
    last = [0.0]

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        late.append(now - last[0] - HEARTBEAT_MS)
        last[0] = now

    heartbeat = QTimer()
    heartbeat.setTimerType(heartbeat.timerType().PreciseTimer)
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.timeout.connect(tick)
    window.send("Talk for a long time.")
    job = window.job
    assert job is not None
    clock.start()
    heartbeat.start()
    started = time.perf_counter()
    loop = QEventLoop()
    job.done.connect(loop.quit)
    job.failed.connect(loop.quit)
    loop.exec()
    heartbeat.stop()
    elapsed = time.perf_counter() - started
    reply = store.thread(window.chat_id)[-1] if window.chat_id else None
    n = reply.stats.get("completion_tokens", 0) if reply and reply.stats else 0
    late = late[1:]  # the first tick has no predecessor
    what = "text" if text else "random bytes (a broken model's worst case)"
    print(
        f"stalls   while streaming {n} tokens of {what} "
        f"in {elapsed:.1f} s ({n / elapsed:.0f} tokens/s)"
    )
    print(
        f"         heartbeat {HEARTBEAT_MS} ms, {len(late)} ticks; late by p50 "
        f"{percentile(late, 0.5):.1f} ms, p99 {percentile(late, 0.99):.1f} ms, "
        f"max {max(late):.1f} ms"
    )
    print(
        f"         {window.view.repaints} repaints of the reply; "
        f"GUI resident memory {rss_mib():.0f} MiB"
    )
    if text:
        ok = percentile(late, 0.99) <= 16 and max(late) <= 50
        print(f"         goal p99 <= 16 ms and max <= 50 ms: {'met' if ok else 'NOT MET'}")
    window.close()
    engine.close()
    store.close()


def first_paint(home: Path, runs: int) -> None:
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}
    # An installed app starts from bytecode (pip and the bundle compile it); an
    # editable checkout run with PYTHONDONTWRITEBYTECODE would compile its
    # sources at every start, which is not what a user waits for.
    compileall.compile_dir(Path(localchat.__file__).parent, quiet=1)
    times: dict[str, list[float]] = {"bare": [], "localchat": []}
    for i in range(-1, runs):  # run -1 warms the disk cache and is not counted
        order = ("bare", "localchat") if i % 2 == 0 else ("localchat", "bare")
        for which in order:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", FIRST_PAINT, which],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                text=True,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()
            painted = time.perf_counter() - start
            proc.wait(timeout=30)
            if line.strip() != "painted":
                raise SystemExit(f"the {which} window did not paint")
            if i >= 0:
                times[which].append(painted)
    bare, ours = statistics.median(times["bare"]), statistics.median(times["localchat"])
    print(
        f"start-up to first paint (median of {runs}): bare PySide6 {bare * 1000:.0f} ms, "
        f"LocalChat {ours * 1000:.0f} ms, ratio {ours / bare:.2f} (goal <= 2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("stalls", "startup"), help="run one of the two parts")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="localchat-bench-"))
    os.environ["LOCALCHAT_HOME"] = str(home)
    try:
        if args.only != "startup":
            stalls(home, args.tokens, text=True)
            stalls(home, args.tokens, text=False)
        if args.only != "stalls":
            first_paint(home, args.runs)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
