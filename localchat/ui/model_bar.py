"""The model bar above the conversation: the model picker (each model with
the adapters that fit it listed under it), the adapter's strength, what the
model is doing (one state: loading it, writing a reply at so many tokens a
second, or ready), and the button that reloads it to apply new settings. It
draws ``ModelState``; the survey of the listed models runs on a job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QToolTip,
    QWidget,
)

from localchat.core import params
from localchat.core.models import library
from localchat.core.models.adapters import AdapterInfo
from localchat.core.models.matching import Survey, survey
from localchat.ui.bridge import LatestJobs
from localchat.ui.state import ModelState

ADAPTER_ROLE = Qt.ItemDataRole.UserRole + 1
"""On an adapter's row of the model picker: the adapter's path (its base's is the data)."""
CLOSED_ROLE = Qt.ItemDataRole.UserRole + 2
"""What the closed picker shows for that row: the model and the adapter."""

DEMO_LABEL = "Tiny demo model (trained on Python's docs) — get a real one in Models"
DEMO_TIP = (
    "A 1.8M-parameter GPT that LocalChat trained from scratch on Python's documentation, so "
    "that a fresh install chats offline. Open Models (Ctrl+Shift+M) for real models."
)


def adapter_tip(adapter: AdapterInfo) -> str:
    made = f"trained on {adapter.base_file}" if adapter.base_file else "made elsewhere"
    lines = [f"LoRA adapter {adapter.name}: rank {adapter.rank}, {made}"]
    if adapter.data:
        lines.append(f"Data: {adapter.data}")
    if adapter.loss_before is not None and adapter.loss_after is not None:
        lines.append(
            f"Held-out loss {adapter.loss_before:.3f} → {adapter.loss_after:.3f} "
            f"({adapter.steps:,} steps)"
        )
    lines.append("Its strength is in the settings (Adapter strength) and beside the picker.")
    lines.append(str(adapter.path))
    return "\n".join(lines)


FIGURES = "  ·  "
"""Between a model's name and its figures in a picker row (see ``model_label``)."""


def fitted(text: str, metrics: QFontMetrics, width: int) -> str:
    """``text`` as it fits ``width`` pixels: a model's figures (parameters,
    quantization, size) are kept and its name is shortened in the middle,
    where a long file name says least ("Meta-Llama-3…Instruct"); a text
    without figures is shortened at its end."""
    if metrics.horizontalAdvance(text) <= width:
        return text
    name, sep, figures = text.partition(FIGURES)
    if sep:
        room = width - metrics.horizontalAdvance(sep + figures)
        if room >= metrics.horizontalAdvance("M" * 6):
            return metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, room) + sep + figures
    return metrics.elidedText(text, Qt.TextElideMode.ElideRight, width)


class ModelPicker(QComboBox):
    """The model combo: each model, with the adapters trained on it listed
    under it (indented, "↳ name"); with an adapter chosen, the closed combo
    reads "model + adapter". When the window is narrow, the closed combo
    shortens the model's name and keeps its figures (see :func:`fitted`);
    the whole row is in its tooltip."""

    def closed_text(self) -> str:
        """What the closed picker says, before it is fitted to its width."""
        return self.currentData(CLOSED_ROLE) or self.currentText()

    def shown_text(self) -> str:
        """What the closed picker draws: :meth:`closed_text` fitted to its field."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox,
            option,
            QStyle.SubControl.SC_ComboBoxEditField,
            self,
        )
        return fitted(self.closed_text(), self.fontMetrics(), field.width() - 4)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and self.count():
            tip = self.currentData(Qt.ItemDataRole.ToolTipRole) or self.closed_text()
            QToolTip.showText(event.globalPos(), tip, self)  # type: ignore[attr-defined]
            return True
        return super().event(event)

    def paintEvent(self, _event: Any) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = self.shown_text()
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


class ModelBar(QWidget):
    """``box`` (the picker), ``scale`` (the adapter's strength, shown while an
    adapter is chosen: the same setting as "Adapter strength" in the settings,
    per chat), ``status`` (what the model is doing) and ``reload_button``."""

    def __init__(self, model: ModelState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.box = ModelPicker()
        # Wide enough for a model's name (the closed picker elides the rest).
        self.box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.box.setMinimumContentsLength(26)
        self.writing: str | None = None
        """While a reply is written: what the status says instead of the model's state."""
        self.scale = QDoubleSpinBox()
        self.scale.setPrefix("strength ")
        scale_spec = params.spec("lora_scale")
        self.scale.setRange(scale_spec.minimum or 0.0, scale_spec.maximum or 4.0)
        self.scale.setSingleStep(scale_spec.step or 0.05)
        self.scale.setDecimals(2)
        self.scale.setKeyboardTracking(False)
        self.scale.setToolTip(scale_spec.help + " Applies when the model is reloaded.")
        self.scale.hide()
        self.status = QLabel()
        # May shrink (full text in its tooltip), so the chats keep their room.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.reload_button = QPushButton("Reload model to apply")
        self.reload_button.setToolTip("Context size, GPU layers and threads apply on loading")
        self.reload_button.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)  # as a row of the window's layout
        layout.addWidget(QLabel("Model:"))
        layout.addWidget(self.box, 3)
        layout.addWidget(self.scale)
        layout.addWidget(self.status, 2)
        layout.addWidget(self.reload_button)
        # Only the latest survey counts (an older one may finish after it).
        self.surveys = LatestJobs(self)
        self.surveys.done.connect(self._surveyed)
        model.chosen.connect(lambda _: self._chosen())
        model.said.connect(lambda _: self._said())

    # -- the rows -----------------------------------------------------------------------

    def refresh(self, *, describe: bool) -> tuple[list[Path], Path | None]:
        """List the installed models (and the one in use, when it is from
        elsewhere: the Hugging Face cache), then the bundled demo model; the
        row that was current stays current. Returns the models and the demo."""
        box = self.box
        current = box.currentData()
        box.clear()
        models = library.installed()
        used = self.model.path
        if used is not None and used not in models and used.exists() and not library.is_demo(used):
            models.append(used)
        bundled = library.demo()
        for path in models:
            box.addItem(path.stem, str(path))
        if bundled is not None:  # last: any real model comes first
            box.addItem(DEMO_LABEL, str(bundled))
            box.setItemData(box.count() - 1, DEMO_TIP, Qt.ItemDataRole.ToolTipRole)
        box.setEnabled(box.count() > 0)
        if describe:
            self.describe()
        if box.count():
            index = box.findData(current) if current is not None else -1
            if index >= 0:
                box.setCurrentIndex(index)
            elif box.currentIndex() < 0:
                box.setCurrentIndex(0)
        return models, bundled

    def add_model(self, path: str) -> bool:
        """List a model not listed yet (True when it was added)."""
        if self.box.findData(path) >= 0:
            return False
        self.box.addItem(Path(path).stem, path)
        self.box.setEnabled(True)
        return True

    def model_rows(self) -> list[Path]:
        box = self.box
        return [
            Path(box.itemData(i))
            for i in range(box.count())
            if box.itemData(i) and not box.itemData(i, ADAPTER_ROLE)
        ]

    def describe(self) -> None:
        """Size, quantization and parameters come from each file's header, and
        the adapters that fit each model from the adapters folder: read off the
        GUI thread."""
        models = self.model_rows()
        self.surveys.request(lambda: lambda _emit: survey(models))

    def _surveyed(self, found: Survey) -> None:
        box = self.box
        for path, label in found.labels:
            index = box.findData(path)
            if index >= 0 and not library.is_demo(path):
                box.setItemText(index, label)
        # The adapters, afresh: under the model each fits, then those that fit none.
        for i in reversed(range(box.count())):
            if box.itemData(i, ADAPTER_ROLE) or not box.itemData(i):
                box.removeItem(i)
        bases: dict[str, str] = {}
        for base, fitting in found.fits.items():
            index = box.findData(base)
            if index < 0:
                continue
            stem = Path(base).stem
            for offset, adapter in enumerate(fitting, start=1):
                row = index + offset
                box.insertItem(row, f"      ↳  {adapter.name}", base)
                box.setItemData(row, str(adapter.path), ADAPTER_ROLE)
                box.setItemData(row, f"{stem}  +  adapter {adapter.name}", CLOSED_ROLE)
                box.setItemData(row, adapter_tip(adapter), Qt.ItemDataRole.ToolTipRole)
                bases[str(adapter.path)] = base
        self.model.adapter_bases = bases
        if found.orphans:
            box.insertSeparator(box.count())
            for adapter in found.orphans:
                needs = adapter.base_file or f"a {adapter.architecture} model"
                box.addItem(f"      ↳  {adapter.name}  —  needs {needs}", None)
                row = box.count() - 1
                box.setItemData(
                    row,
                    f"{adapter.name} was trained on {needs}, which is not installed (or is a "
                    "different file of that name). An adapter works only with the exact model "
                    f"it was trained on.\n{adapter.path}",
                    Qt.ItemDataRole.ToolTipRole,
                )
                item = box.model().item(row)  # type: ignore[attr-defined]
                item.setEnabled(False)
        self.sync()

    # -- drawing the state --------------------------------------------------------------

    def sync(self) -> None:
        """Show in the picker what is loaded (or loading): the model, or the
        model's row for the chosen adapter."""
        model = self.model
        if model.path is None:
            return
        box, want = self.box, str(model.adapter) if model.adapter else None
        for i in range(box.count()):
            if box.itemData(i) == str(model.path) and box.itemData(i, ADAPTER_ROLE) == want:
                box.setCurrentIndex(i)
                return
        index = box.findData(str(model.path))
        if index >= 0:
            box.setCurrentIndex(index)

    def set_scale(self, value: float) -> None:
        """Show the adapter's strength (without reporting it as an edit)."""
        self.scale.blockSignals(True)
        self.scale.setValue(value)
        self.scale.blockSignals(False)

    def _chosen(self) -> None:
        self.scale.setVisible(self.model.adapter is not None)
        self.sync()

    def show_writing(self, rate: float | None, tokens: int = 0, thinking: int = 0) -> None:
        """A reply is being written: the status says so ("Thinking" while a
        reasoning model's last piece was thinking), with its speed so far
        (None: before its second token)."""
        speed = f" · {rate:.1f} tok/s" if rate is not None else "…"
        doing = "Thinking" if thinking and thinking == tokens else "Writing a reply"
        self.writing = f"{doing}{speed}"
        tip = f"{tokens:,} tokens written so far" if tokens else "Reading the prompt"
        if thinking:
            tip += f", {thinking:,} of them thinking"
        self.status.setText(self.writing)
        self.status.setToolTip(f"{tip}. Esc or Stop ends the reply; what is written stays.")

    def show_ready(self) -> None:
        """The reply is over: the model's own state again."""
        self.writing = None
        self._said()

    def _said(self) -> None:
        if self.writing is not None:
            return  # the model's state shows again when the reply ends
        text, model = self.model.status, self.model.path
        if text.startswith("Loading") and model is not None:
            name = "the demo model" if library.is_demo(model) else model.stem
            text = f"Loading {name}{text.removeprefix('Loading')}"
        self.status.setText(text)
        self.status.setToolTip(self.model.tip if self.model.tip != self.model.status else text)
