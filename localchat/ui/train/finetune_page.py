"""The Fine-tune page: LoRA on a model you have (``localchat train lora``),
its base model, data, settings and adapter name, and what came of the run
("Chat with it")."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from localchat.core.chat.store import ChatStore
from localchat.core.errors import LocalChatError
from localchat.core.models import adapters, library
from localchat.core.trainer import options
from localchat.ui.train.data_picker import DataPicker
from localchat.ui.train.lora_form import LoraForm
from localchat.ui.train.run_page import RunPage
from localchat.ui.train.widgets import note, safe_name


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
    the model picker; "Chat with it" loads the two. The settings are
    :attr:`form`, the data :attr:`data`."""

    adapter_trained = Signal(str)
    chat_requested = Signal(str, str)  # base model, adapter

    def __init__(self, store: ChatStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.trained_adapter: tuple[str, str] | None = None  # (base, adapter) of the last run
        self._auto_name = ""
        self._skipped = ""  # the run's chats that gave nothing to learn, and why

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
        self.data = DataPicker(store)
        self.data.changed.connect(self.show_hint)
        # How: a preset, the details one click away.
        self.form = LoraForm(self)

        self.name = QLineEdit()
        self.name.textChanged.connect(self._name_changed)
        self.name_note = note("")
        self.fresh_button = QPushButton("Start over")
        self.fresh_button.setToolTip("Forget the stopped run of this name and train anew")
        self.fresh_button.clicked.connect(lambda: self.start(fresh=True))
        self.fresh_button.hide()

        fields = QFormLayout()
        fields.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        fields.addRow("Base model:", self.base)
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.form.preset)
        preset_row.addWidget(self.form.advanced_button)
        preset_row.addStretch(1)
        fields.addRow("Preset:", preset_row)
        fields.addRow("", self.form.preset_note)
        fields.addRow(self.form.advanced)
        fields.addRow("Adapter name:", self.name)
        fields.addRow("", self.name_note)

        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.start_button)
        run_buttons.addWidget(self.stop_button)
        run_buttons.addWidget(self.fresh_button)
        run_buttons.addStretch(1)

        left = QVBoxLayout()
        left.addWidget(intro)
        left.addLayout(fields)
        left.addWidget(self.data, 1)
        left.addLayout(run_buttons)

        # Right: the run as it goes, and what came of it.
        self.details = note("")
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
        self.refresh()
        self.show_hint()

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
        self.data.refresh_chats()

    def tick_chats(self, chat_ids: list[int]) -> None:
        """Tick these chats (and only these) as the data."""
        self.data.tick_chats(chat_ids)

    def add_data(self, path: str | Path) -> None:
        """A file or folder to learn from (listed once)."""
        self.data.add_data(path)

    def hint(self) -> str:
        if not self.base.currentData():
            return "No model to fine-tune: download one in Models… first."
        chosen = self.data.summary()
        if not chosen:
            return "Choose some data (files, a folder or your chats), then Start."
        return f"{chosen[:1].upper()}{chosen[1:]}: press Start."

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
            text = "A stopped run of this name is saved: Start goes on from it."
        elif out.exists():
            text = "An adapter of this name exists: Start trains a new one in its place."
        else:
            text = where
        self.name_note.setText(text)
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
        data = self.data.paths()
        chats = self.data.chosen_chats()
        if not data and not chats:
            self.status.setText("Add files or a folder, or tick some of your chats, to learn from.")
            return None
        self._skipped = ""
        if chats:
            exported, found = self.data.export_chats(chats)
            note = found.note
            if exported is None:
                why = f" ({note})" if note else ""
                self.status.setText(
                    f"Those chats have no finished replies to learn from{why}: tick others, "
                    "or add files."
                )
                return None
            if not data and found.distinct < 2:  # the run would refuse it: say so now
                self.data.forget_export()
                why = f"; {note}" if note else ""
                self.status.setText(
                    "Too little to learn from: the chats give a single conversation, and a "
                    f"fine-tune needs at least two (one is held out to measure the result){why}."
                )
                return None
            self._skipped = note
            data.append(str(exported))
        try:
            settings = self.form.values()
        except ValueError:
            self.status.setText("The learning rate is a number, such as 2e-4.")
            return None
        out = self.output()
        restart = fresh or (out.exists() and not self.resumable())
        values = {"base": base, "data": data, "out": str(out), **settings, "restart": restart}
        try:
            args = options.command_line("lora", values)
        except LocalChatError as err:  # a value the editors let through out of range
            self.status.setText(str(err))
            return None
        self.result_frame.hide()
        self.details.setText("")
        if self._skipped:  # said with the trainer's lines: what the run learns from
            self._info(self._skipped)
        self.fresh_button.hide()
        return args

    def _info(self, line: str) -> None:
        # What the trainer says before it starts (memory, data, resuming): kept in
        # view under the progress line.
        lines = [ln for ln in self.details.text().split("\n") if ln]
        self.details.setText("\n".join([*lines, line[:1].upper() + line[1:]][-4:]))

    def failure_text(self, message: str) -> str:
        # The trainer reads the chats as a file: a data error names the chats
        # that gave nothing here (what it said is about too little data).
        if self._skipped and ("conversation" in message or "data" in message):
            return f"{message}; {self._skipped}"
        return message

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
        self.data.forget_export()
        self._name_changed()

    def _chat_with_it(self) -> None:
        if self.trained_adapter is not None:
            self.chat_requested.emit(*self.trained_adapter)
