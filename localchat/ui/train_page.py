"""The Train window: pick text files, a preset and a length, start; watch the
loss fall (training and held-out) and the speed; stop at any time.

Training runs as ``localchat train scratch --json`` in a process of its own
(``QProcess``): PyTorch never loads in the window's process, a crash in it
cannot take the window down, and the window reads the same JSON lines a
script would. Stop sends it Ctrl+C, which keeps its checkpoint; starting again
with the same name goes on from there. The finished model lands in the
models folder, so it appears in the model picker.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, QProcess, QProcessEnvironment, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from localchat.core import paths

PRESETS = ("tiny", "mini", "small", "base")
TRAIN_COLOR = "#2a82da"
HELDOUT_COLOR = "#d4880f"


class LossPlot(QWidget):
    """Training loss per step (a line) and held-out loss (dots joined)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train: list[tuple[int, float]] = []
        self.heldout: list[tuple[int, float]] = []
        self.steps = 1
        self.setMinimumHeight(220)

    def clear(self, steps: int) -> None:
        self.train, self.heldout, self.steps = [], [], max(steps, 1)
        self.update()

    def add(self, step: int, loss: float, heldout: float | None) -> None:
        self.train.append((step, loss))
        if heldout is not None:
            self.heldout.append((step, heldout))
        self.update()

    def paintEvent(self, _event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        left, top, right, bottom = 44, 10, self.width() - 10, self.height() - 24
        p.setPen(pal.color(QPalette.ColorRole.Mid))
        p.drawRect(left, top, right - left, bottom - top)
        values = [v for _, v in self.train + self.heldout if math.isfinite(v)]
        p.setPen(pal.color(QPalette.ColorRole.Text))
        if not values:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The loss appears here.")
            return
        low, high = min(values), max(values)
        if high - low < 1e-6:
            high = low + 1.0

        def at(step: int, value: float) -> QPointF:
            x = left + (right - left) * step / self.steps
            y = bottom - (bottom - top) * (value - low) / (high - low)
            return QPointF(x, y)

        for value in (low, (low + high) / 2, high):
            p.drawText(2, int(at(0, value).y()) + 4, f"{value:.2f}")
        p.drawText(left, self.height() - 6, "step 0")
        p.drawText(right - 80, self.height() - 6, f"step {self.steps:,}")
        for series, color in ((self.train, TRAIN_COLOR), (self.heldout, HELDOUT_COLOR)):
            if not series:
                continue
            path = QPainterPath(at(*series[0]))
            for point in series[1:]:
                path.lineTo(at(*point))
            p.setPen(QPen(QColor(color), 2))
            p.drawPath(path)
            if series is self.heldout:
                for point in series:
                    p.drawEllipse(at(*point), 3, 3)
        p.end()


class TrainWindow(QWidget):
    """A window of its own; emits :attr:`trained` with the model's path."""

    trained = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Train a model — LocalChat")
        self.resize(760, 620)
        self.process: QProcess | None = None
        self._buffer = ""
        self._stderr = ""
        self.last: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None

        intro = QLabel(
            "Train a small GPT from scratch on your own text files: they are cleaned and "
            "deduplicated, a tokenizer is learned, then the model. It runs on the CPU; "
            "'tiny' takes minutes, 'small' hours. Stop whenever you like: starting again "
            "with the same name goes on from where it stopped."
        )
        intro.setWordWrap(True)
        self.files = QListWidget()
        self.files.setMaximumHeight(110)
        add = QPushButton("Add files…")
        add.clicked.connect(self._add_files)
        add_folder = QPushButton("Add a folder…")
        add_folder.clicked.connect(self._add_folder)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.files.clear)
        file_buttons = QHBoxLayout()
        for b in (add, add_folder, clear):
            file_buttons.addWidget(b)
        file_buttons.addStretch(1)
        self.name = QLineEdit("my-gpt")
        self.preset = QComboBox()
        self.preset.addItems(PRESETS)
        self.preset.setCurrentText("tiny")
        self.steps = QSpinBox()
        self.steps.setRange(10, 1_000_000)
        self.steps.setSingleStep(100)
        self.steps.setValue(500)
        form = QFormLayout()
        form.addRow("Model name:", self.name)
        form.addRow("Size:", self.preset)
        form.addRow("Steps:", self.steps)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.start_button)
        run_buttons.addWidget(self.stop_button)
        run_buttons.addStretch(1)
        self.plot = LossPlot()
        legend = QLabel(
            f"<span style='color:{TRAIN_COLOR}'>━ training loss</span> &nbsp; "
            f"<span style='color:{HELDOUT_COLOR}'>● held-out loss</span>"
        )
        self.status = QLabel("Add text files, then Start.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.files)
        layout.addLayout(file_buttons)
        layout.addLayout(form)
        layout.addLayout(run_buttons)
        layout.addWidget(self.plot, 1)
        layout.addWidget(legend)
        layout.addWidget(self.status)

    # -- inputs ---------------------------------------------------------------------------

    def _add_files(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(
            self, "Text to train on", str(Path.home()), "Text (*.txt *.md *.rst *.html);;All (*)"
        )
        for path in chosen:
            self.files.addItem(path)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of text", str(Path.home()))
        if folder:
            self.files.addItem(folder)

    def output(self) -> Path:
        name = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name.text().strip())
        return paths.models_dir() / f"{name or 'my-gpt'}.gguf"

    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    # -- the run --------------------------------------------------------------------------

    def start(self) -> None:
        if self.running():
            return
        data = [self.files.item(i).text() for i in range(self.files.count())]
        if not data:
            self.status.setText("Add some text files first.")
            return
        out = self.output()
        args = ["-m", "localchat", "train", "scratch", "--json", "--data", *data]
        args += ["--out", str(out), "--preset", self.preset.currentText()]
        args += ["--steps", str(self.steps.value())]
        self.plot.clear(self.steps.value())
        self._buffer, self._stderr, self.last, self.result = "", "", None, None
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read)
        process.readyReadStandardError.connect(self._read_errors)
        process.finished.connect(self._finished)
        self.process = process
        self.status.setText("Preparing the text and learning a tokenizer…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        process.start(sys.executable, args)

    def stop(self) -> None:
        """Ctrl+C for the trainer: it saves its checkpoint and ends."""
        if self.running() and self.process is not None:
            pid = self.process.processId()
            if sys.platform == "win32":
                self.process.kill()  # no Ctrl+C for a child there; the last checkpoint stays
            else:
                os.kill(pid, signal.SIGINT)
            self.status.setText("Stopping after this step (the checkpoint is kept)…")

    def _read(self) -> None:
        assert self.process is not None
        self._buffer += bytes(self.process.readAllStandardOutput().data()).decode("utf-8")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "done" in event:
                self.result = event["done"]
                continue
            self.last = event
            self.plot.add(event["step"], event["loss"], event.get("heldout_loss"))
            eta = int(event["eta_s"])
            held = event.get("heldout_loss")
            held_text = f" · held-out {held:.3f}" if held is not None else ""
            self.status.setText(
                f"Step {event['step']:,} of {event['steps']:,} · loss {event['loss']:.3f}"
                f"{held_text} · {event['tokens_per_s']:,.0f} tokens/s · "
                f"{eta // 60}:{eta % 60:02d} left"
            )

    def _read_errors(self) -> None:
        assert self.process is not None
        self._stderr += bytes(self.process.readAllStandardError().data()).decode("utf-8")

    def _finished(self, code: int, _status: Any) -> None:
        self._read()
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if code == 0 and self.result is not None:
            ppl = self.result.get("heldout_perplexity")
            self.status.setText(
                f"Done: {Path(self.result['model']).stem} is in the model picker "
                f"(held-out perplexity {ppl})."
            )
            self.trained.emit(self.result["model"])
            return
        errors = [ln for ln in self._stderr.splitlines() if ln.startswith("error: ")]
        if code == 130:
            step = self.last["step"] if self.last else 0
            self.status.setText(f"Stopped at step {step:,}; Start goes on from there.")
        elif errors:
            self.status.setText(errors[-1].removeprefix("error: "))
        else:
            tail = self._stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
            self.status.setText(f"Training stopped unexpectedly: {tail[0]}")

    def closeEvent(self, event: Any) -> None:
        if self.running():
            self.stop()
            if self.process is not None and not self.process.waitForFinished(15000):
                self.process.kill()
        super().closeEvent(event)
