"""The Train from scratch page: a small GPT trained on your text files
(``localchat train scratch``), its name, size and steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from localchat.core import paths
from localchat.core.errors import LocalChatError
from localchat.core.trainer import options
from localchat.core.trainer.data import TEXT_SUFFIXES
from localchat.ui.train.fields import choice_box, int_box
from localchat.ui.train.files_survey import FilesSurvey
from localchat.ui.train.run_page import RunPage
from localchat.ui.train.widgets import safe_name

STARTING_SIZE, STARTING_STEPS = "tiny", 500
"""What the page starts with: a run of minutes (the command's own defaults,
a mini model and 1000 steps, take longer for a first try)."""


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
        self.survey = FilesSurvey(TEXT_SUFFIXES, self)
        self.survey.ready.connect(self.show_hint)
        self.files = QListWidget()
        self.files.setMaximumHeight(110)
        add = QPushButton("Add files…")
        add.clicked.connect(self._add_files)
        add_folder = QPushButton("Add a folder…")
        add_folder.clicked.connect(self._add_folder)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.files.clear)
        model = self.files.model()
        for changed in (model.rowsInserted, model.rowsRemoved, model.modelReset):
            changed.connect(self.show_hint)
        file_buttons = QHBoxLayout()
        for b in (add, add_folder, clear):
            file_buttons.addWidget(b)
        file_buttons.addStretch(1)
        self.name = QLineEdit("my-gpt")
        size, steps = options.option("scratch", "preset"), options.option("scratch", "steps")
        self.preset = choice_box(size, STARTING_SIZE)
        self.steps = int_box(steps, STARTING_STEPS)
        form = QFormLayout()
        form.addRow("Model name:", self.name)
        form.addRow(size.spec.label + ":", self.preset)
        form.addRow(steps.spec.label + ":", self.steps)
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.start_button)
        run_buttons.addWidget(self.stop_button)
        run_buttons.addStretch(1)
        self.show_hint()
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

    def listed(self) -> list[str]:
        """The files and folders listed, in order."""
        return [self.files.item(i).text() for i in range(self.files.count())]

    def hint(self) -> str:
        data = self.listed()
        if not data:
            return "Add text files, then Start."
        return f"{self.survey.summary(data)}: press Start."

    def output(self) -> Path:
        return paths.models_dir() / f"{safe_name(self.name.text(), 'my-gpt')}.gguf"

    def starting_text(self) -> str:
        return "Preparing the text and learning a tokenizer…"

    def arguments(self, fresh: bool) -> list[str] | None:
        data = self.listed()
        if not data:
            self.status.setText("Add some text files first.")
            return None
        values = {
            "data": data,
            "out": str(self.output()),
            "preset": self.preset.currentText(),
            "steps": self.steps.value(),
        }
        try:
            return options.command_line("scratch", values)
        except LocalChatError as err:
            self.status.setText(str(err))
            return None

    def finished_ok(self, result: dict[str, Any]) -> None:
        ppl = result.get("heldout_perplexity")
        self.status.setText(
            f"Done: {Path(result['model']).stem} is in the model picker "
            f"(held-out perplexity {ppl})."
        )
        self.trained.emit(result["model"])
