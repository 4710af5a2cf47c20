"""One ``localchat train ... --json`` in a process of its own (``QProcess``):
started, stopped with Ctrl+C (its checkpoint kept), and what it prints read
as JSON lines and passed on as signals."""

from __future__ import annotations

import codecs
import os
import signal
import sys

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from localchat.core.errors import EXIT_INTERRUPTED
from localchat.core.trainer.progress import Done, Info, Progress, parse_line


class TrainRun(QObject):
    """One ``python -m localchat train ... --json`` in a QProcess; what it
    prints (read with :func:`~localchat.core.trainer.progress.parse_line`)
    arrives as signals: :attr:`info` lines, :attr:`progress` per step,
    :attr:`done` with the summary, and :attr:`ended` with the exit status
    (``EXIT_INTERRUPTED`` after :meth:`stop`) and, for a failure, its one-line
    message."""

    info = Signal(str)
    progress = Signal(object)  # the step's Progress
    done = Signal(object)  # the summary's dict
    ended = Signal(int, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process: QProcess | None = None
        self._buffer = ""
        self._stderr = ""
        self._stopping = False
        self._decoders = _decoder(), _decoder()  # stdout, stderr

    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, args: list[str]) -> None:
        self._buffer, self._stderr, self._stopping = "", "", False
        self._decoders = _decoder(), _decoder()
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

    def feed(self, text: str) -> None:
        """What the trainer printed, as it came: whole lines are read, the
        rest waits for the next piece."""
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            event = parse_line(line)
            if isinstance(event, Done):
                self.done.emit(event.summary)
            elif isinstance(event, Info):
                self.info.emit(event.text)
            elif isinstance(event, Progress):
                self.progress.emit(event)

    def _read(self) -> None:
        assert self.process is not None
        self.feed(self._decoders[0].decode(bytes(self.process.readAllStandardOutput().data())))

    def _read_errors(self) -> None:
        assert self.process is not None
        self._stderr += self._decoders[1].decode(bytes(self.process.readAllStandardError().data()))

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.ended.emit(-1, f"could not start {sys.executable}")

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read()
        self._read_errors()
        crashed = status == QProcess.ExitStatus.CrashExit
        if self._stopping and (code == EXIT_INTERRUPTED or crashed):
            self.ended.emit(EXIT_INTERRUPTED, "")  # Ctrl+C, also before the trainer took it over
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


def _decoder() -> codecs.IncrementalDecoder:
    """UTF-8 read piece by piece: a character split between two reads is kept whole."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace")
