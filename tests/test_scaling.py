"""Readable at 125% and 150% (issue 20): at a fractional scale factor the
conversation lays out without clipping a line, overlapping a name and its
badge, or scrolling sideways. Each scale needs a process of its own (Qt
reads QT_SCALE_FACTOR once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import json, sys
from PySide6.QtWidgets import QApplication, QLabel
app = QApplication([])
from tests.test_chat_view import STATS, message
from localchat.ui.chat_view import ChatView
from localchat.ui.message_parts import MessageText

view = ChatView()
view.resize(720, 2400)  # tall: every message laid out on screen
view.show()
view.show_thread([
    message(1, "user", "How do I reverse a list in Python without changing it?"),
    message(2, "assistant", "Two ways:\n\n1. `list.reverse()`\n2. slicing\n\n```python\n"
            "items = [1, 2, 3]\nprint(items[::-1])\n```\n\nUse the first in place.",
            stats=STATS),
    message(3, "user", "word " * 80),
    message(4, "assistant", "With slicing:", status="failed",
            stats={"error": "the model process crashed (SIGSEGV); it reloads itself"}),
])
for _ in range(5):
    app.processEvents()
problems = []
def box(w):
    return w.geometry().translated(w.parentWidget().mapTo(view, w.parentWidget().rect().topLeft()))
for w in view.widgets:
    for text in w.findChildren(MessageText):
        need = int(text.document().size().height())
        if text.height() < need:
            problems.append(f"{w.role}: text clipped ({text.height()} < {need})")
    for label in w.findChildren(QLabel):
        if not label.isVisibleTo(w) or not label.text():
            continue
        need = (label.heightForWidth(label.width()) if label.wordWrap()
                else label.sizeHint().height())
        if label.height() < need:
            problems.append(f"{w.role}: {label.text()[:30]!r} clipped ({label.height()} < {need})")
        if box(label).right() > view.viewport().width():
            problems.append(f"{w.role}: {label.text()[:30]!r} past the right edge")
    if box(w.avatar).intersects(box(w.title)):
        problems.append(f"{w.role}: the badge overlaps the name")
    if w.bubble is not None and box(w.bubble).right() > view.viewport().width():
        problems.append("the bubble passes the right edge")
if view.horizontalScrollBar().isVisible():
    problems.append("the conversation scrolls sideways")
print(json.dumps({"ratio": view.devicePixelRatioF(), "problems": problems}))
"""


@pytest.mark.parametrize("scale", ["1.25", "1.5"])
def test_the_conversation_lays_out_whole_at_fractional_scales(scale: str) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": scale}
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["ratio"] == pytest.approx(float(scale))
    assert found["problems"] == []
