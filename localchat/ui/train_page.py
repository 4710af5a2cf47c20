"""The Train window: fine-tune a model you have (LoRA) on your text or your
chats, or train a small GPT from scratch; watch the loss fall (training and
held-out) and the speed; stop at any time and go on later.

Both run as ``localchat train ... --json`` in a process of their own
(``QProcess``): PyTorch never loads in the window's process, a crash in it
cannot take the window down, and the window reads the same JSON lines a
script would. Stop sends the trainer Ctrl+C, which keeps its checkpoint;
starting again with the same name goes on from there. A finished model lands
in the models folder, a finished adapter in the adapters folder: both appear
in the model picker (an adapter under its base model).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QPointF, QProcess, QProcessEnvironment, Qt, Signal
from PySide6.QtGui import QColor, QDoubleValidator, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from localchat.core import paths
from localchat.core.chat.store import ChatStore
from localchat.core.models import adapters, library
from localchat.core.trainer import chat_data
from localchat.core.units import clock

SIZES = ("tiny", "mini", "small", "base")
"""The from-scratch model sizes (``train scratch --preset``)."""
FINETUNE_PRESETS: dict[str, dict[str, float]] = {
    # The LoRA side of localchat.core.trainer.finetune.PRESETS (a test keeps them
    # equal): shown in the advanced fields, and passed only where they differ.
    "quick": {"rank": 8, "alpha": 16.0, "epochs": 1.0, "lr": 3e-4},
    "balanced": {"rank": 16, "alpha": 32.0, "epochs": 2.0, "lr": 2e-4},
    "thorough": {"rank": 32, "alpha": 64.0, "epochs": 4.0, "lr": 1e-4},
}
PRESET_NOTES = {
    "quick": "Rank 8, one pass over the data: a first try, the fastest.",
    "balanced": "Rank 16, two passes over the data: a good default.",
    "thorough": "Rank 32, four passes over the data: learns the most, takes the longest.",
}
DEFAULT_CTX, DEFAULT_BATCH = 512, 4
TRAIN_COLOR = "#2a82da"
HELDOUT_COLOR = "#d4880f"
STOPPED = 130
"""The trainer's exit status after Ctrl+C (its checkpoint saved)."""


def safe_name(text: str, fallback: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip())
    return name.strip(".") or fallback


class LossPlot(QWidget):
    """Training loss per step (a line) and held-out loss (dots joined, from
    step 0: the loss before any training, where a fine-tune starts)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train: list[tuple[int, float]] = []
        self.heldout: list[tuple[int, float]] = []
        self.steps = 1
        self.setMinimumHeight(200)

    def clear(self, steps: int) -> None:
        self.train, self.heldout, self.steps = [], [], max(steps, 1)
        self.update()

    def add(self, step: int, loss: float | None, heldout: float | None) -> None:
        if loss is not None and math.isfinite(loss):
            self.train.append((step, loss))
        if heldout is not None and math.isfinite(heldout):
            self.heldout.append((step, heldout))
        self.update()

    def paintEvent(self, _event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        left, top, right, bottom = 48, 10, self.width() - 12, self.height() - 24
        p.setPen(pal.color(QPalette.ColorRole.Mid))
        p.drawRect(left, top, right - left, bottom - top)
        values = [v for _, v in self.train + self.heldout]
        p.setPen(pal.color(QPalette.ColorRole.Text))
        if not values:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The loss appears here.")
            p.end()
            return
        low, high = min(values), max(values)
        if high - low < 1e-6:
            low, high = low - 0.5, high + 0.5

        def at(step: int, value: float) -> QPointF:
            x = left + (right - left) * step / self.steps
            y = bottom - (bottom - top) * (value - low) / (high - low)
            return QPointF(x, y)

        for value in (low, (low + high) / 2, high):
            p.drawText(4, int(at(0, value).y()) + 4, f"{value:.2f}")
        p.drawText(left, self.height() - 6, "step 0")
        end = f"step {self.steps:,}"
        p.drawText(right - p.fontMetrics().horizontalAdvance(end), self.height() - 6, end)
        for series, color in ((self.train, TRAIN_COLOR), (self.heldout, HELDOUT_COLOR)):
            if not series:
                continue
            path = QPainterPath(at(*series[0]))
            for point in series[1:]:
                path.lineTo(at(*point))
            p.setPen(QPen(QColor(color), 2))
            p.drawPath(path)
            if series is self.heldout:
                p.setBrush(QColor(color))
                for point in series:
                    p.drawEllipse(at(*point), 3, 3)
                p.setBrush(Qt.BrushStyle.NoBrush)
        p.end()


class TrainRun(QObject):
    """One ``python -m localchat train ... --json`` in a QProcess; what it
    prints arrives as signals: :attr:`info` lines, :attr:`progress` per step,
    :attr:`done` with the summary, and :attr:`ended` with the exit status
    (``STOPPED`` after :meth:`stop`) and, for a failure, its one-line message."""

    info = Signal(str)
    progress = Signal(object)  # the step's dict
    done = Signal(object)  # the summary's dict
    ended = Signal(int, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process: QProcess | None = None
        self._buffer = ""
        self._stderr = ""
        self._stopping = False

    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, args: list[str]) -> None:
        self._buffer, self._stderr, self._stopping = "", "", False
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read)
        process.readyReadStandardError.connect(self._read_errors)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        process.start(sys.executable, ["-m", "localchat", *args])

    def stop(self) -> None:
        """Ctrl+C for the trainer: it saves its checkpoint and ends."""
        if self.running() and self.process is not None:
            self._stopping = True
            if sys.platform == "win32":
                self.process.kill()  # no Ctrl+C for a child there; the last checkpoint stays
            else:
                os.kill(self.process.processId(), signal.SIGINT)

    def close(self, wait_ms: int = 15000) -> None:
        """Stop and wait for the checkpoint (killed if it takes too long)."""
        if self.running() and self.process is not None:
            self.stop()
            if not self.process.waitForFinished(wait_ms):
                self.process.kill()
                self.process.waitForFinished(2000)

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
            if not isinstance(event, dict):
                continue
            if "done" in event:
                self.done.emit(event["done"])
            elif "info" in event:
                self.info.emit(str(event["info"]))
            elif "step" in event:
                self.progress.emit(event)

    def _read_errors(self) -> None:
        assert self.process is not None
        self._stderr += bytes(self.process.readAllStandardError().data()).decode("utf-8")

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.ended.emit(-1, f"could not start {sys.executable}")

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read()
        self._read_errors()
        crashed = status == QProcess.ExitStatus.CrashExit
        if self._stopping and (code == STOPPED or crashed):
            self.ended.emit(STOPPED, "")  # Ctrl+C, also before the trainer took it over
            return
        if code == 0 and not crashed:
            self.ended.emit(0, "")
            return
        errors = [ln for ln in self._stderr.splitlines() if ln.startswith("error: ")]
        if errors:
            message = errors[-1].removeprefix("error: ")
        else:
            tail = self._stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
            message = f"Training stopped unexpectedly: {tail[0]}"
        self.ended.emit(code if code else -1, message)


class RunPage(QWidget):
    """What both kinds of training share: Start and Stop, the loss plot, the
    progress bar and line, and the run itself. A page says what to run
    (:meth:`arguments`) and what a finished run means (:meth:`finished_ok`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = TrainRun(self)
        self.run.info.connect(self._info)
        self.run.progress.connect(self._progress)
        self.run.done.connect(self._done)
        self.run.ended.connect(self._ended)
        self.last: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.blocked = ""
        """Why Start cannot run now (another training is going on), or ''."""
        self._held: float | None = None
        self._plotted: Path | None = None  # the output the plot shows; a resume extends it
        self._stopped = False
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stops after this step; the checkpoint is kept")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.plot = LossPlot()
        self.legend = QLabel(
            f"<span style='color:{TRAIN_COLOR}'>━ training loss</span> &nbsp; "
            f"<span style='color:{HELDOUT_COLOR}'>● held-out loss</span>"
        )
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(6)
        self.bar.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    # -- what a page defines ----------------------------------------------------------------

    def output(self) -> Path:
        raise NotImplementedError

    def arguments(self, fresh: bool) -> list[str] | None:
        """The command's arguments, or None (and a status line saying why)."""
        raise NotImplementedError

    def starting_text(self) -> str:
        return "Starting…"

    def finished_ok(self, result: dict[str, Any]) -> None:
        raise NotImplementedError

    def after_run(self) -> None:
        """Called when a run ends, however it ended."""

    # -- the run ----------------------------------------------------------------------------

    def running(self) -> bool:
        return self.run.running()

    def start(self, fresh: bool = False) -> None:
        if self.running():
            return
        if self.blocked:
            self.status.setText(self.blocked)
            return
        args = self.arguments(fresh)
        if args is None:
            return
        out = self.output()
        if fresh or not self._stopped or self._plotted != out:
            self.plot.clear(1)  # a resumed run goes on drawing the same curve
            self._held = None
        self._plotted, self._stopped = out, False
        self.last, self.result = None, None
        self.status.setText(self.starting_text())
        self.bar.setRange(0, 0)  # busy until the first step
        self.bar.show()
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.run.start(args)
        self.running_changed()

    def stop(self) -> None:
        if self.running():
            self.run.stop()
            self.status.setText("Stopping after this step (the checkpoint is kept)…")

    def running_changed(self) -> None:
        """Tells the window a run started or ended (it blocks the other page)."""
        window = self.window()
        if isinstance(window, TrainWindow):
            window.update_blocking()

    def _info(self, line: str) -> None:
        self.status.setText(line[:1].upper() + line[1:])

    def _progress(self, event: dict[str, Any]) -> None:
        self.last = event
        step, steps = int(event["step"]), int(event["steps"])
        loss, held = event.get("loss"), event.get("heldout_loss")
        self.plot.steps = max(steps, 1)
        self.plot.add(step, loss, held)
        if held is not None:
            self._held = held
        self.bar.setRange(0, max(steps, 1))
        self.bar.setValue(step)
        if loss is None:  # step 0: the held-out loss before training
            self.status.setText(f"Held-out loss before training: {held:.3f} · training…")
            return
        held_text = f" · held-out {self._held:.3f}" if self._held is not None else ""
        self.status.setText(
            f"Step {step:,} of {steps:,} · loss {loss:.3f}{held_text} · "
            f"{event['tokens_per_s']:,.0f} tokens/s · {clock(event['eta_s'])} left"
        )

    def _done(self, summary: dict[str, Any]) -> None:
        self.result = summary

    def _ended(self, code: int, message: str) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.bar.hide()
        if code == 0 and self.result is not None:
            self.finished_ok(self.result)
        elif code == STOPPED:
            self._stopped = True
            step = self.last["step"] if self.last else 0
            self.status.setText(
                f"Stopped at step {step:,} — Start again to resume (the checkpoint is kept)."
            )
        else:
            message = message or f"Training stopped unexpectedly (exit status {code})."
            self.status.setText(message[:1].upper() + message[1:])
        self.after_run()
        self.running_changed()

    def close_run(self) -> None:
        self.run.close()


class ScratchPage(RunPage):
    """Train a small GPT from scratch on text files: ``localchat train scratch``."""

    trained = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        self.preset.addItems(SIZES)
        self.preset.setCurrentText("tiny")
        self.steps = QSpinBox()
        self.steps.setRange(10, 1_000_000)
        self.steps.setSingleStep(100)
        self.steps.setValue(500)
        form = QFormLayout()
        form.addRow("Model name:", self.name)
        form.addRow("Size:", self.preset)
        form.addRow("Steps:", self.steps)
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.start_button)
        run_buttons.addWidget(self.stop_button)
        run_buttons.addStretch(1)
        self.status.setText("Add text files, then Start.")
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.files)
        layout.addLayout(file_buttons)
        layout.addLayout(form)
        layout.addLayout(run_buttons)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)

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
        return paths.models_dir() / f"{safe_name(self.name.text(), 'my-gpt')}.gguf"

    def starting_text(self) -> str:
        return "Preparing the text and learning a tokenizer…"

    def arguments(self, fresh: bool) -> list[str] | None:
        data = [self.files.item(i).text() for i in range(self.files.count())]
        if not data:
            self.status.setText("Add some text files first.")
            return None
        args = ["train", "scratch", "--json", "--data", *data, "--out", str(self.output())]
        args += ["--preset", self.preset.currentText(), "--steps", str(self.steps.value())]
        return args

    def finished_ok(self, result: dict[str, Any]) -> None:
        ppl = result.get("heldout_perplexity")
        self.status.setText(
            f"Done: {Path(result['model']).stem} is in the model picker "
            f"(held-out perplexity {ppl})."
        )
        self.trained.emit(result["model"])


def _base_models() -> list[tuple[str, Path]]:
    """The models a fine-tune can start from: installed, in the Hugging Face
    cache, and the demo model (a llama: it fine-tunes too)."""
    found: list[tuple[str, Path]] = [(p.stem, p) for p in library.installed()]
    found += [(f"{p.stem} (Hugging Face cache)", p) for p in library.hf_cache_models()]
    bundled = library.demo()
    if bundled is not None:
        found.append((f"{bundled.stem} (the demo model)", bundled))
    return found


class FinetunePage(RunPage):
    """Fine-tune a model you have with LoRA: ``localchat train lora``. The
    adapter lands in the adapters folder and shows under its base model in
    the model picker; "Chat with it" loads the two."""

    adapter_trained = Signal(str)
    chat_requested = Signal(str, str)  # base model, adapter

    def __init__(self, store: ChatStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.trained_adapter: tuple[str, str] | None = None  # (base, adapter) of the last run
        self._auto_name = ""
        self._rank = 0
        self._chats_dir: tempfile.TemporaryDirectory[str] | None = None

        intro = QLabel(
            "Teach a model you have your style or your subject: LoRA trains a small "
            "adapter (megabytes) on top of the model, on your text files, chat JSONL or "
            "your own chats; the model file itself is never changed. Stop whenever you "
            "like: Start goes on from where it stopped."
        )
        intro.setWordWrap(True)

        self.base = QComboBox()
        self.base.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.base.setMinimumContentsLength(18)
        self.base.currentIndexChanged.connect(self._base_changed)

        # The data: files and folders, and chats from the sidebar.
        self.files = QListWidget()
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.files.setToolTip(
            "Text files or folders (continued training: style and knowledge), or chat JSONL "
            '({"messages": [...]} per line: only the assistant replies are learned)'
        )
        add = QPushButton("Add files…")
        add.clicked.connect(self._add_files)
        add_folder = QPushButton("Add a folder…")
        add_folder.clicked.connect(self._add_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_files)
        file_buttons = QVBoxLayout()
        for b in (add, add_folder, remove):
            file_buttons.addWidget(b)
        file_buttons.addStretch(1)
        self.chats = QListWidget()
        self.chats.setToolTip("Your conversations: the model learns the assistant's replies")
        self.chats.itemChanged.connect(self._chats_ticked)
        self.all_chats_button = QPushButton("All")
        self.all_chats_button.clicked.connect(lambda: self._tick_all(True))
        self.no_chats_button = QPushButton("None")
        self.no_chats_button.clicked.connect(lambda: self._tick_all(False))
        self.chat_count = _note("")
        self.chat_count.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        chat_buttons = QVBoxLayout()
        chat_buttons.addWidget(self.all_chats_button)
        chat_buttons.addWidget(self.no_chats_button)
        chat_buttons.addWidget(self.chat_count)
        chat_buttons.addStretch(1)
        data_box = QGroupBox("Training data")
        data = QGridLayout(data_box)
        data.addWidget(_caption("Files and folders"), 0, 0, 1, 2)
        data.addWidget(self.files, 1, 0)
        data.addLayout(file_buttons, 1, 1)
        data.addWidget(_caption("Your chats"), 2, 0, 1, 2)
        data.addWidget(self.chats, 3, 0)
        data.addLayout(chat_buttons, 3, 1)
        data.setColumnStretch(0, 1)
        data.setRowStretch(1, 2)
        data.setRowStretch(3, 3)

        # How: a preset, the details one click away.
        self.preset = QComboBox()
        self.preset.addItems(list(FINETUNE_PRESETS))
        self.preset_note = _note("")
        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced settings")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.toggled.connect(self._show_advanced)
        self.rank = QSpinBox()
        self.rank.setRange(1, 512)
        self.rank.setToolTip("The adapter's rank: larger learns more, and is bigger and slower")
        self.rank.valueChanged.connect(self._rank_changed)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.5, 4096.0)
        self.alpha.setDecimals(1)
        self.alpha.setToolTip("LoRA alpha: the update is scaled by alpha / rank")
        self.epochs = QDoubleSpinBox()
        self.epochs.setRange(0.1, 100.0)
        self.epochs.setDecimals(1)
        self.epochs.setSingleStep(0.5)
        self.epochs.setToolTip("Passes over the training data")
        self.steps = QSpinBox()
        self.steps.setRange(0, 1_000_000)
        self.steps.setSingleStep(50)
        self.steps.setSpecialValueText("from the epochs")
        self.steps.setToolTip("Optimiser steps; instead of the epochs when set")
        self.steps.valueChanged.connect(lambda v: self.epochs.setEnabled(v == 0))
        self.lr = QLineEdit()
        validator = QDoubleValidator(1e-7, 1.0, 8, self.lr)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        self.lr.setValidator(validator)
        self.lr.setToolTip("The peak learning rate (e.g. 2e-4)")
        self.ctx = QSpinBox()
        self.ctx.setRange(16, 131072)
        self.ctx.setSingleStep(128)
        self.ctx.setValue(DEFAULT_CTX)
        self.ctx.setToolTip("The longest training sequence, in tokens; longer texts are cut")
        self.batch = QSpinBox()
        self.batch.setRange(1, 256)
        self.batch.setValue(DEFAULT_BATCH)
        self.batch.setToolTip("Sequences per step: more is smoother and needs more memory")
        self.advanced = QWidget()
        grid = QGridLayout(self.advanced)
        grid.setContentsMargins(18, 0, 0, 0)
        for i, (label, editor) in enumerate(
            (
                ("Rank", self.rank),
                ("Alpha", self.alpha),
                ("Epochs", self.epochs),
                ("Steps", self.steps),
                ("Learning rate", self.lr),
                ("Context", self.ctx),
                ("Batch", self.batch),
            )
        ):
            row, col = divmod(i, 2)
            caption = QLabel(label + ":")
            caption.setBuddy(editor)
            caption.setToolTip(editor.toolTip())
            grid.addWidget(caption, row, col * 2)
            grid.addWidget(editor, row, col * 2 + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.advanced.hide()
        self.preset.currentTextChanged.connect(self._preset_changed)
        self.preset.setCurrentText("balanced")
        self._preset_changed("balanced")
        for box in (self.rank, self.alpha, self.epochs, self.steps):
            box.valueChanged.connect(self._show_preset)
        self.lr.textChanged.connect(self._show_preset)

        self.name = QLineEdit()
        self.name.textChanged.connect(self._name_changed)
        self.name_note = _note("")
        self.fresh_button = QPushButton("Start over")
        self.fresh_button.setToolTip("Forget the stopped run of this name and train anew")
        self.fresh_button.clicked.connect(lambda: self.start(fresh=True))
        self.fresh_button.hide()

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Base model:", self.base)
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset)
        preset_row.addWidget(self.advanced_button)
        preset_row.addStretch(1)
        form.addRow("Preset:", preset_row)
        form.addRow("", self.preset_note)
        form.addRow(self.advanced)
        form.addRow("Adapter name:", self.name)
        form.addRow("", self.name_note)

        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.start_button)
        run_buttons.addWidget(self.stop_button)
        run_buttons.addWidget(self.fresh_button)
        run_buttons.addStretch(1)

        left = QVBoxLayout()
        left.addWidget(intro)
        left.addLayout(form)
        left.addWidget(data_box, 1)
        left.addLayout(run_buttons)

        # Right: the run as it goes, and what came of it.
        self.details = _note("")
        self.outcome = QLabel()
        self.outcome.setWordWrap(True)
        self.outcome.setTextFormat(Qt.TextFormat.RichText)
        self.chat_button = QPushButton("Chat with it")
        self.chat_button.setToolTip("Load the base model with this adapter in the chat window")
        self.chat_button.clicked.connect(self._chat_with_it)
        result_row = QHBoxLayout()
        result_row.addWidget(self.outcome, 1)
        result_row.addWidget(self.chat_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.result_frame = QFrame()
        self.result_frame.setFrameShape(QFrame.Shape.StyledPanel)
        self.result_frame.setLayout(result_row)
        self.result_frame.hide()
        right = QVBoxLayout()
        right.addWidget(self.plot, 1)
        right.addWidget(self.legend)
        right.addWidget(self.bar)
        right.addWidget(self.status)
        right.addWidget(self.details)
        right.addWidget(self.result_frame)

        layout = QHBoxLayout(self)
        left_widget = QWidget()
        left_widget.setLayout(left)
        left_widget.setMinimumWidth(440)
        left_widget.setMaximumWidth(540)
        left.setContentsMargins(0, 0, 0, 0)
        right_widget = QWidget()
        right_widget.setLayout(right)
        right.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(left_widget, 0)
        layout.addWidget(right_widget, 1)
        self.status.setText("Choose a base model and some data, then Start.")
        self.refresh()

    # -- inputs -----------------------------------------------------------------------------

    def refresh(self, prefer: str | None = None) -> None:
        """Re-list the models and chats (the selection and ticks kept)."""
        current = prefer or self.base.currentData()
        self.base.blockSignals(True)
        self.base.clear()
        for label, path in _base_models():
            self.base.addItem(label, str(path))
            self.base.setItemData(self.base.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
        index = self.base.findData(current) if current else -1
        self.base.setCurrentIndex(index if index >= 0 else 0)
        self.base.blockSignals(False)
        self._base_changed()
        ticked = set(self.chosen_chats())
        self.chats.blockSignals(True)
        self.chats.clear()
        for chat in self.store.list_chats() if self.store is not None else []:
            item = QListWidgetItem(chat.title or "New chat")
            item.setData(Qt.ItemDataRole.UserRole, chat.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if chat.id in ticked else Qt.CheckState.Unchecked
            )
            self.chats.addItem(item)
        self.chats.blockSignals(False)
        self._chats_ticked()

    def chosen_chats(self) -> list[int]:
        return [
            int(self.chats.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.chats.count())
            if self.chats.item(i).checkState() == Qt.CheckState.Checked
        ]

    def tick_chats(self, chat_ids: list[int]) -> None:
        for i in range(self.chats.count()):
            item = self.chats.item(i)
            wanted = int(item.data(Qt.ItemDataRole.UserRole)) in chat_ids
            item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)

    def _tick_all(self, on: bool) -> None:
        state = Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
        self.chats.blockSignals(True)
        for i in range(self.chats.count()):
            self.chats.item(i).setCheckState(state)
        self.chats.blockSignals(False)
        self._chats_ticked()

    def _chats_ticked(self, _item: object = None) -> None:
        n = len(self.chosen_chats())
        if not self.chats.count():
            self.chat_count.setText("no chats yet")
        else:
            self.chat_count.setText(f"{n} of {self.chats.count()} chosen")

    def _add_files(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(
            self,
            "Text or chats to train on",
            str(Path.home()),
            "Text and chat JSONL (*.txt *.md *.rst *.html *.jsonl);;All (*)",
        )
        for path in chosen:
            self.add_data(path)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of text", str(Path.home()))
        if folder:
            self.add_data(folder)

    def add_data(self, path: str | os.PathLike[str]) -> None:
        text = str(path)
        if not self.files.findItems(text, Qt.MatchFlag.MatchExactly):
            self.files.addItem(text)

    def _remove_files(self) -> None:
        for item in self.files.selectedItems():
            self.files.takeItem(self.files.row(item))

    def _preset_changed(self, preset: str) -> None:
        values = FINETUNE_PRESETS[preset]
        self.rank.blockSignals(True)
        self.rank.setValue(int(values["rank"]))
        self.rank.blockSignals(False)
        self._rank = int(values["rank"])
        self.alpha.setValue(values["alpha"])
        self.epochs.setValue(values["epochs"])
        self.lr.setText(_number(values["lr"]))
        self._show_preset()

    def _show_preset(self, _value: object = None) -> None:
        """The preset in words, and what the advanced settings change of it."""
        preset = self.preset.currentText()
        values = FINETUNE_PRESETS[preset]
        changes = []
        if self.rank.value() != values["rank"]:
            changes.append(f"rank {self.rank.value()}")
        if abs(self.alpha.value() - values["alpha"]) > 1e-9:
            changes.append(f"alpha {_number(self.alpha.value())}")
        if self.steps.value():
            changes.append(f"{self.steps.value():,} steps")
        elif abs(self.epochs.value() - values["epochs"]) > 1e-9:
            changes.append(f"{_number(self.epochs.value())} epochs")
        try:
            if abs(float(self.lr.text()) - values["lr"]) > 1e-12:
                changes.append(f"learning rate {self.lr.text()}")
        except ValueError:
            changes.append("learning rate ?")
        text = PRESET_NOTES[preset]
        if changes:
            text += " Changed: " + ", ".join(changes) + "."
        self.preset_note.setText(text)

    def _rank_changed(self, rank: int) -> None:
        # Alpha follows the rank (twice it, as in the presets) unless set apart.
        if abs(self.alpha.value() - 2.0 * self._rank) < 1e-6:
            self.alpha.setValue(2.0 * rank)
        self._rank = rank

    def _show_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def _base_changed(self, _index: int = -1) -> None:
        base = self.base.currentData()
        if not base:
            return
        if not self.name.text() or self.name.text() == self._auto_name:
            self._auto_name = self.default_name(Path(base))
            self.name.setText(self._auto_name)

    @staticmethod
    def default_name(base: Path) -> str:
        """The base's name and today's date; -2, -3... when an adapter has it."""
        stem = safe_name(base.stem, "adapter")
        stem = re.sub(r"(?i)[-.]?(q\d\w*|f16|f32|bf16)$", "", stem) or stem
        name = f"{stem}-{date.today().isoformat()}"
        folder, n, candidate = adapters.adapters_dir(), 1, name
        while (folder / f"{candidate}.gguf").exists():
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def output(self) -> Path:
        return adapters.adapters_dir() / f"{safe_name(self.name.text(), 'adapter')}.gguf"

    def resumable(self) -> bool:
        """A stopped run of this name is saved (its checkpoint newer than any adapter)."""
        out = self.output()
        checkpoint = out.with_suffix(".ckpt")
        if not checkpoint.exists():
            return False
        return not out.exists() or checkpoint.stat().st_mtime > out.stat().st_mtime

    def _name_changed(self, _text: str = "") -> None:
        out = self.output()
        where = f"Saved in {out.parent}"
        if self.resumable():
            note = "A stopped run of this name is saved: Start goes on from it."
        elif out.exists():
            note = "An adapter of this name exists: Start trains a new one in its place."
        else:
            note = where
        self.name_note.setText(note)
        self.name_note.setToolTip(str(out))
        self.fresh_button.setVisible(self.resumable() and not self.running())

    # -- the run ----------------------------------------------------------------------------

    def starting_text(self) -> str:
        return "Reading the base model and the data…"

    def arguments(self, fresh: bool) -> list[str] | None:
        base = self.base.currentData()
        if not base:
            self.status.setText("No model to fine-tune: download one in Models… first.")
            return None
        data = [self.files.item(i).text() for i in range(self.files.count())]
        chats = self.chosen_chats()
        if not data and not chats:
            self.status.setText("Add files or a folder, or tick some of your chats, to learn from.")
            return None
        if chats:
            exported = self._export_chats(chats)
            if exported is None:
                return None
            data.append(str(exported))
        preset = self.preset.currentText()
        values = FINETUNE_PRESETS[preset]
        try:
            lr = float(self.lr.text())
        except ValueError:
            self.status.setText("The learning rate is a number, such as 2e-4.")
            return None
        out = self.output()
        args = ["train", "lora", "--json", "--base", base, "--data", *data, "--out", str(out)]
        args += ["--preset", preset]
        if self.rank.value() != values["rank"]:
            args += ["--rank", str(self.rank.value())]
        if abs(self.alpha.value() - values["alpha"]) > 1e-9:
            args += ["--alpha", _number(self.alpha.value())]
        if self.steps.value():
            args += ["--steps", str(self.steps.value())]
        elif abs(self.epochs.value() - values["epochs"]) > 1e-9:
            args += ["--epochs", _number(self.epochs.value())]
        if abs(lr - values["lr"]) > 1e-12:
            args += ["--lr", _number(lr)]
        args += ["--ctx", str(self.ctx.value()), "--batch", str(self.batch.value())]
        if fresh or (out.exists() and not self.resumable()):
            args.append("--restart")
        self.result_frame.hide()
        self.details.setText("")
        self.fresh_button.hide()
        return args

    def _export_chats(self, chat_ids: list[int]) -> Path | None:
        """The ticked chats as chat JSONL, in a folder of the run's own."""
        assert self.store is not None
        conversations = chat_data.from_store(self.store, chat_ids)
        if not conversations:
            self.status.setText(
                "Those chats have no finished replies to learn from: tick others, or add files."
            )
            return None
        if self._chats_dir is None:
            self._chats_dir = tempfile.TemporaryDirectory(prefix="localchat-chats-")
        return chat_data.write_jsonl(conversations, Path(self._chats_dir.name) / "my-chats.jsonl")

    def _info(self, line: str) -> None:
        # What the trainer says before it starts (memory, data, resuming): kept in
        # view under the progress line.
        lines = [ln for ln in self.details.text().split("\n") if ln]
        self.details.setText("\n".join([*lines, line[:1].upper() + line[1:]][-3:]))

    def finished_ok(self, result: dict[str, Any]) -> None:
        adapter, base = str(result["adapter"]), str(result["base"])
        self.trained_adapter = (base, adapter)
        before, after = result.get("perplexity_before"), result.get("perplexity_after")
        lines = []
        if isinstance(before, int | float) and isinstance(after, int | float):
            change = (after - before) / before if before else 0.0
            lines.append(
                f"Held-out perplexity: <b>{before:,.2f}</b> without the adapter → "
                f"<b>{after:,.2f}</b> with it ({change:+.0%})"
            )
        if result.get("stopped_early"):
            lines.append(
                f"Stopped early at step {result.get('steps', 0):,}: the held-out loss no "
                "longer improved (the best adapter is kept)."
            )
        self.outcome.setText("<br>".join(lines) or "The adapter is ready.")
        self.result_frame.show()
        self.status.setText(
            f"Done: {Path(adapter).stem} is saved, and listed under {Path(base).stem} in the "
            "model picker."
        )
        if self.name.text() == self._auto_name:  # the next run gets a name of its own
            self._auto_name = self.default_name(Path(base))
            self.name.setText(self._auto_name)
        self.adapter_trained.emit(adapter)

    def after_run(self) -> None:
        if self._chats_dir is not None:
            self._chats_dir.cleanup()
            self._chats_dir = None
        self._name_changed()

    def _chat_with_it(self) -> None:
        if self.trained_adapter is not None:
            self.chat_requested.emit(*self.trained_adapter)


def _caption(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def _note(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(placeholder-text)")
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def _number(value: float) -> str:
    """A float as a person writes it: 2e-4, 2.5e-5, 0.5, 16."""
    if value and abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}"


class TrainWindow(QWidget):
    """A window of its own, two pages: Fine-tune (LoRA on a model you have)
    and Train from scratch. Emits :attr:`trained` with a new model's path,
    :attr:`adapter_trained` with a new adapter's, and :attr:`chat_requested`
    (base, adapter) for "Chat with it". One training runs at a time."""

    trained = Signal(str)
    adapter_trained = Signal(str)
    chat_requested = Signal(str, str)

    def __init__(self, store: ChatStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Train — LocalChat")
        self.resize(1080, 700)
        self.finetune = FinetunePage(store)
        self.scratch = ScratchPage()
        self.finetune.adapter_trained.connect(self.adapter_trained)
        self.finetune.chat_requested.connect(self.chat_requested)
        self.scratch.trained.connect(self.trained)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.finetune, "Fine-tune a model")
        self.tabs.addTab(self.scratch, "Train from scratch")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)

    def pages(self) -> tuple[RunPage, ...]:
        return (self.finetune, self.scratch)

    def running(self) -> bool:
        return any(page.running() for page in self.pages())

    def update_blocking(self) -> None:
        """Two trainings at once would halve each other's speed: while one runs,
        the other page's Start says so."""
        for page in self.pages():
            others = [p for p in self.pages() if p is not page and p.running()]
            kind = "fine-tune" if self.finetune in others else "training"
            page.blocked = ""
            if others:
                page.blocked = f"A {kind} is running on the other page: stop it first."

    def show_page(self, kind: str, base: str | None = None) -> None:
        """``kind``: 'finetune' (with ``base`` chosen, when given) or 'scratch'."""
        page = self.finetune if kind == "finetune" else self.scratch
        self.tabs.setCurrentWidget(page)
        if page is self.finetune and not self.finetune.running():
            self.finetune.refresh(prefer=base)

    def closeEvent(self, event: Any) -> None:
        for page in self.pages():
            page.close_run()  # a run stops, its checkpoint kept
        super().closeEvent(event)
