"""The fine-tune's settings: a preset said in words, and the advanced fields
(rank, alpha, epochs or steps, learning rate, context, batch) one click away;
what differs from the preset is said under it. Every field, the presets and
the alpha rule come from the trainer's declaration (``options``)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QGridLayout, QSpinBox, QToolButton, QWidget

from localchat.core.trainer import options
from localchat.ui.train.fields import (
    choice_box,
    float_box,
    int_box,
    label_for,
    number_edit,
    value_of,
)
from localchat.ui.train.widgets import note


def _option(name: str) -> options.Option:
    return options.option("lora", name)


class LoraForm(QObject):
    """The preset box, its note, the Advanced settings button and the
    :attr:`advanced` fields, for the page to place in its form; alpha follows
    the rank (:func:`~localchat.core.trainer.options.alpha_for`) unless set
    apart, and a field another one makes moot (epochs, when steps are set) is
    greyed."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rank = 0
        self.preset = choice_box(_option("preset"))
        self.preset_note = note("")
        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced settings")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.toggled.connect(self._show_advanced)
        self.rank = int_box(_option("rank"))
        self.rank.valueChanged.connect(self._rank_changed)
        self.alpha = float_box(_option("alpha"))
        self.epochs = float_box(_option("epochs"))
        self.steps = int_box(_option("steps"))
        self.lr = number_edit(_option("lr"))
        self.ctx = int_box(_option("ctx"))
        self.batch = int_box(_option("batch"))
        self.fields: dict[str, QWidget] = {
            "rank": self.rank,
            "alpha": self.alpha,
            "epochs": self.epochs,
            "steps": self.steps,
            "lr": self.lr,
            "ctx": self.ctx,
            "batch": self.batch,
        }
        """The advanced fields by option name, in the grid's order (two a row)."""
        self.advanced = QWidget()
        grid = QGridLayout(self.advanced)
        grid.setContentsMargins(18, 0, 0, 0)
        for i, (name, editor) in enumerate(self.fields.items()):
            row, col = divmod(i, 2)
            grid.addWidget(label_for(_option(name), editor), row, col * 2)
            grid.addWidget(editor, row, col * 2 + 1)
            moot_by = _option(name).spec.overridden_by
            overriding = self.fields.get(moot_by or "")
            if isinstance(overriding, QSpinBox):
                overriding.valueChanged.connect(lambda v, e=editor: e.setEnabled(v == 0))
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.advanced.hide()
        self.preset.currentTextChanged.connect(self._preset_changed)
        self._preset_changed(self.preset.currentText())
        for box in (self.rank, self.alpha, self.epochs, self.steps):
            box.valueChanged.connect(self._show_preset)
        self.lr.textChanged.connect(self._show_preset)

    def values(self) -> dict[str, Any]:
        """The preset and the advanced fields, by option name, for
        :func:`~localchat.core.trainer.options.command_line` (which leaves out
        what the preset gives anyway); ValueError when the learning rate is
        not a number."""
        return {
            "preset": self.preset.currentText(),
            **{name: value_of(editor) for name, editor in self.fields.items()},
        }

    def _preset_changed(self, preset: str) -> None:
        chosen = options.LORA_PRESETS[preset]
        self.rank.blockSignals(True)
        self.rank.setValue(chosen.rank)
        self.rank.blockSignals(False)
        self._rank = chosen.rank
        self.alpha.setValue(chosen.alpha)
        self.epochs.setValue(chosen.epochs)
        self.lr.setText(options.format_number(chosen.lr))
        self._show_preset()

    def _show_preset(self, _value: object = None) -> None:
        """The preset in words, and what the advanced settings change of it."""
        chosen = options.LORA_PRESETS[self.preset.currentText()]
        changes = []
        if self.rank.value() != chosen.rank:
            changes.append(f"rank {self.rank.value()}")
        if abs(self.alpha.value() - chosen.alpha) > 1e-9:
            changes.append(f"alpha {options.format_number(self.alpha.value())}")
        if self.steps.value():
            changes.append(f"{self.steps.value():,} steps")
        elif abs(self.epochs.value() - chosen.epochs) > 1e-9:
            changes.append(f"{options.format_number(self.epochs.value())} epochs")
        try:
            if abs(float(self.lr.text()) - chosen.lr) > 1e-12:
                changes.append(f"learning rate {self.lr.text()}")
        except ValueError:
            changes.append("learning rate ?")
        text = chosen.description
        if changes:
            text += " Changed: " + ", ".join(changes) + "."
        self.preset_note.setText(text)

    def _rank_changed(self, rank: int) -> None:
        # Alpha follows the rank (as in the presets) unless set apart.
        if abs(self.alpha.value() - options.alpha_for(self._rank)) < 1e-6:
            self.alpha.setValue(options.alpha_for(rank))
        self._rank = rank

    def _show_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
