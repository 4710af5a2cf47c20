"""What both kinds of training share: Start and Stop, the loss plot, the
progress bar and line, and the run itself; a page says what to run and what
a finished run means."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget

from localchat.core.errors import EXIT_INTERRUPTED
from localchat.core.trainer.progress import Progress
from localchat.core.units import clock
from localchat.ui.train.loss_plot import LossPlot, legend
from localchat.ui.train.process import TrainRun


class RunPage(QWidget):
    """What both kinds of training share: Start and Stop, the loss plot, the
    progress bar and line, and the run itself. A page says what to run
    (:meth:`arguments`) and what a finished run means (:meth:`finished_ok`).
    :attr:`running_toggled` tells the window a run started or ended."""

    running_toggled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = TrainRun(self)
        self.run.info.connect(self._info)
        self.run.progress.connect(self._progress)
        self.run.done.connect(self._done)
        self.run.ended.connect(self._ended)
        self.last: Progress | None = None
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
        self.legend = legend()
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

    def hint(self) -> str:
        """What to do next, from what is chosen now (the status line between runs)."""
        return ""

    def failure_text(self, message: str) -> str:
        """A failed run's one-line message, as the page shows it."""
        return message

    def show_hint(self) -> None:
        """The inputs changed: the status line says what to do next (not during a run)."""
        text = self.hint()
        if text and not self.running():
            self.status.setText(text)

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
        self.running_toggled.emit()

    def stop(self) -> None:
        if self.running():
            self.run.stop()
            self.status.setText("Stopping after this step (the checkpoint is kept)…")

    def _info(self, line: str) -> None:
        self.status.setText(line[:1].upper() + line[1:])

    def _progress(self, event: Progress) -> None:
        self.last = event
        step, steps, loss, held = event.step, event.steps, event.loss, event.heldout_loss
        self.plot.steps = max(steps, 1)
        self.plot.add(step, loss, held)
        if held is not None:
            self._held = held
        self.bar.setRange(0, max(steps, 1))
        self.bar.setValue(step)
        if math.isnan(loss):  # step 0: the held-out loss before training
            self.status.setText(f"Held-out loss before training: {held:.3f} · training…")
            return
        held_text = f" · held-out {self._held:.3f}" if self._held is not None else ""
        self.status.setText(
            f"Step {step:,} of {steps:,} · loss {loss:.3f}{held_text} · "
            f"{event.tokens_per_s:,.0f} tokens/s · {clock(event.eta_s)} left"
        )

    def _done(self, summary: dict[str, Any]) -> None:
        self.result = summary

    def _ended(self, code: int, message: str) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.bar.hide()
        if code == 0 and self.result is not None:
            self.finished_ok(self.result)
        elif code == EXIT_INTERRUPTED:
            self._stopped = True
            step = self.last.step if self.last else 0
            self.status.setText(
                f"Stopped at step {step:,} — Start again to resume (the checkpoint is kept)."
            )
        else:
            message = self.failure_text(
                message or f"Training stopped unexpectedly (exit status {code})."
            )
            self.status.setText(message[:1].upper() + message[1:])
        self.after_run()
        self.running_toggled.emit()

    def close_run(self) -> None:
        self.run.close()
