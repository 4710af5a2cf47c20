"""Editors made from the trainer's option declarations
(:mod:`localchat.core.trainer.options`): a spin box's range, step, special
value, starting value and tooltip, a combo box's choices, a caption's label.
The form never states them again."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLabel, QLineEdit, QSpinBox, QWidget

from localchat.core.trainer.options import Option

_INT_LIMIT = 2**31 - 1
"""A QSpinBox's largest value, for an option declared without a bound."""
_TEXT_DECIMALS = 8
"""What a number typed as text (2e-4) may carry: finer than any declared minimum."""


def tooltip(option: Option) -> str:
    """The option's declared help, as a sentence starts."""
    text = option.spec.help
    return text[:1].upper() + text[1:]


def label_for(option: Option, editor: QWidget) -> QLabel:
    """``Label:`` for ``editor``, with the same tooltip."""
    label = QLabel(option.spec.label + ":")
    label.setBuddy(editor)
    label.setToolTip(editor.toolTip())
    return label


def int_box(option: Option, value: int | None = None) -> QSpinBox:
    """A spin box over the declared range, moving by the declared step; the
    minimum shows its special text (``from the epochs``) where one is declared.
    It starts at ``value``, else the default."""
    s = option.spec
    box = QSpinBox()
    low = int(s.minimum) if s.minimum is not None else -_INT_LIMIT
    box.setRange(low, int(s.maximum) if s.maximum is not None else _INT_LIMIT)
    if s.step:
        box.setSingleStep(int(s.step))
    if low in s.special:
        box.setSpecialValueText(s.special[low])
    box.setValue(int(option.default if value is None else value))
    box.setToolTip(tooltip(option))
    return box


def float_box(option: Option, value: float | None = None) -> QDoubleSpinBox:
    """A spin box over the declared range, moving by the declared step, with
    one decimal or as many as the step needs (the minimum rounded up to what
    it shows)."""
    s = option.spec
    box = QDoubleSpinBox()
    decimals = max(1, _decimals(s.step or 1.0))
    box.setDecimals(decimals)
    low = -math.inf if s.minimum is None else math.ceil(s.minimum * 10**decimals) / 10**decimals
    box.setRange(low, math.inf if s.maximum is None else s.maximum)
    if s.step:
        box.setSingleStep(s.step)
    box.setValue(float(option.default if value is None else value))
    box.setToolTip(tooltip(option))
    return box


def number_edit(option: Option) -> QLineEdit:
    """A number typed as a person writes it (2e-4), within the declared range:
    for a float declared without a step, which spans orders of magnitude."""
    s = option.spec
    edit = QLineEdit()
    validator = QDoubleValidator(
        -math.inf if s.minimum is None else s.minimum,
        math.inf if s.maximum is None else s.maximum,
        _TEXT_DECIMALS,
        edit,
    )
    validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
    edit.setValidator(validator)
    edit.setToolTip(tooltip(option))
    return edit


def choice_box(option: Option, value: str | None = None) -> QComboBox:
    """The declared choices, ``value`` (else the default) chosen."""
    box = QComboBox()
    box.addItems(list(option.spec.choices))
    box.setCurrentText(str(option.default if value is None else value))
    box.setToolTip(tooltip(option))
    return box


def value_of(editor: QWidget) -> Any:
    """What an editor from here holds (a text field's number: ValueError if it is none)."""
    if isinstance(editor, QSpinBox | QDoubleSpinBox):
        return editor.value()
    if isinstance(editor, QLineEdit):
        return float(editor.text())
    if isinstance(editor, QComboBox):
        return editor.currentText()
    raise TypeError(f"not an editor from here: {type(editor).__name__}")


def _decimals(step: float) -> int:
    """How many decimals ``step`` has (0.5: 1, 0.01: 2, 1.0: 0)."""
    text = f"{step:.10f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0
