"""Does the window stay responsive while a fast model streams, and start quickly?

Run from the repository root (Qt needs a display; offscreen works)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/ui.py

1. **Stalls.** The real main window streams a long reply from a tiny model that
   writes thousands of tokens a second (far faster than any real model), while
   a 5 ms heartbeat timer on the GUI thread records how late each tick fires.
   Printed: p50 / p99 / max stall in ms (goal: p99 <= 16 ms, max <= 50 ms), how
   many repaints the reply took, and the GUI process's resident memory.
2. **Start-up.** Time from starting the process to the window's first paint,
   for LocalChat's window and for a bare PySide6 window started the same way,
   alternating, medians of several runs; the ratio is the figure (goal <= 2x).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEARTBEAT_MS = 5

FIRST_PAINT = r"""
import sys, time
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            print("painted", flush=True)
            QApplication.instance().exit(0)
        return False

app = QApplication(sys.argv)
if sys.argv[1] == "bare":
    window = QMainWindow()
    window.setCentralWidget(QLabel("bare"))
    window.resize(1100, 720)
    engine = store = None
else:
    from localchat.core.chat.store import ChatStore
    from localchat.core.engine.client import Engine
    from localchat.core.settings import AppSettings
    from localchat.ui.main_window import MainWindow
    store, engine = ChatStore(), Engine()
    window = MainWindow(store, engine, AppSettings())
watch = FirstPaint()
window.installEventFilter(watch)
window.show()
app.exec()
if engine is not None:
    engine.close()
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


def stalls(home: Path, tokens: int) -> None:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from localchat.core.chat.store import ChatStore
    from localchat.core.engine.client import Engine
    from localchat.core.settings import AppSettings
    from localchat.testing.tiny_models import write_llama_gguf
    from localchat.ui.main_window import MainWindow

    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    write_llama_gguf(models / "fast.gguf", context_length=8192, suppress_special=True)
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
    print(f"stalls   while streaming {n} tokens in {elapsed:.1f} s ({n / elapsed:.0f} tokens/s)")
    print(
        f"         heartbeat {HEARTBEAT_MS} ms, {len(late)} ticks; late by p50 "
        f"{percentile(late, 0.5):.1f} ms, p99 {percentile(late, 0.99):.1f} ms, "
        f"max {max(late):.1f} ms"
    )
    print(
        f"         {window.view.repaints} repaints of the reply; "
        f"GUI resident memory {rss_mib():.0f} MiB"
    )
    ok = percentile(late, 0.99) <= 16 and max(late) <= 50
    print(f"         goal p99 <= 16 ms and max <= 50 ms: {'met' if ok else 'NOT MET'}")
    window.close()
    engine.close()
    store.close()


def first_paint(home: Path, runs: int) -> None:
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}
    times: dict[str, list[float]] = {"bare": [], "localchat": []}
    for i in range(runs):
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
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="localchat-bench-"))
    os.environ["LOCALCHAT_HOME"] = str(home)
    try:
        stalls(home, args.tokens)
        first_paint(home, args.runs)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
