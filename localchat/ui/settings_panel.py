"""The generation settings form, built from the declaration in ``params.py``.

Nothing here names a setting: each field of ``GenerationSettings`` becomes a
labelled widget (a spin box for numbers, with the declared range, step, help
as tooltip and the special value, e.g. "random" for seed -1, shown as text; a
text box for text), grouped by the declaration's group. Adding a setting to
the declaration adds it here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from localchat.core import params
from localchat.core.params import GenerationSettings, Spec
from localchat.ui import theme

GROUP_TITLES = {
    "sampling": "Sampling",
    "model": "Model (applied when the model is next loaded)",
    "prompt": "Prompt",
    "conversation": "Conversation",
}
INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int


class SettingsPanel(QWidget):
    """Emits :attr:`changed` with the new settings whenever the user edits one."""

    changed = Signal(object)  # GenerationSettings

    def __init__(self, settings: GenerationSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.editors: dict[str, QWidget] = {}
        self.notes: dict[str, QLabel] = {}
        self._loading = False
        layout = QVBoxLayout(self)
        groups: dict[str, QFormLayout] = {}
        for name, spec in params.specs():
            form = groups.get(spec.group)
            if form is None:
                box = QGroupBox(GROUP_TITLES.get(spec.group, spec.group.title()))
                form = groups[spec.group] = QFormLayout(box)
                layout.addWidget(box)
            editor = self._editor(name, spec)
            editor.setObjectName(name)
            editor.setToolTip(spec.help)
            label = QLabel(spec.label)
            label.setToolTip(spec.help)
            label.setBuddy(editor)
            form.addRow(label, editor)
            self.editors[name] = editor
            note = QLabel()
            note.setObjectName(f"{name}-note")
            note.setWordWrap(True)
            theme.secondary(note)
            note.hide()
            form.addRow(note)
            self.notes[name] = note
        reset = QPushButton("Reset to defaults")
        reset.clicked.connect(lambda: self._user_set(GenerationSettings()))
        layout.addWidget(reset)
        layout.addStretch(1)
        self.set_values(settings or GenerationSettings())

    def _editor(self, name: str, spec: Spec) -> QWidget:
        kind = type(params.default(name))
        if spec.choices:
            combo = QComboBox()
            combo.addItems(list(spec.choices))
            combo.currentTextChanged.connect(self._emit)
            return combo
        if kind is str:
            text = QPlainTextEdit()
            text.setPlaceholderText(spec.help)
            text.setFixedHeight(80)
            text.textChanged.connect(self._emit)
            return text
        box: QSpinBox | QDoubleSpinBox
        if kind is float:
            box = QDoubleSpinBox()
            box.setDecimals(2)
            box.setSingleStep(spec.step or 0.01)
        else:
            box = QSpinBox()
            box.setSingleStep(int(spec.step or 1))
        low = spec.minimum if spec.minimum is not None else -INT_LIMIT
        high = spec.maximum if spec.maximum is not None else INT_LIMIT
        box.setRange(max(low, -INT_LIMIT), min(high, INT_LIMIT))  # type: ignore[arg-type]
        if spec.minimum is not None and spec.minimum in spec.special:
            box.setSpecialValueText(spec.special[spec.minimum])
        box.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToNearestValue)
        box.setKeyboardTracking(False)
        box.valueChanged.connect(self._emit)
        return box

    def values(self) -> GenerationSettings:
        data: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QComboBox):
                data[name] = editor.currentText()
            elif isinstance(editor, QPlainTextEdit):
                data[name] = editor.toPlainText()
            elif isinstance(editor, QDoubleSpinBox):
                data[name] = round(editor.value(), editor.decimals())
            elif isinstance(editor, QSpinBox):
                data[name] = editor.value()
        return GenerationSettings.from_dict(data)

    def set_values(self, settings: GenerationSettings) -> None:
        """Show ``settings`` (does not emit :attr:`changed`)."""
        self._loading = True
        try:
            for f in dataclasses.fields(settings):
                editor = self.editors[f.name]
                value = getattr(settings, f.name)
                if isinstance(editor, QComboBox):
                    editor.setCurrentText(value)
                elif isinstance(editor, QPlainTextEdit):
                    if editor.toPlainText() != value:
                        editor.setPlainText(value)
                elif isinstance(editor, QSpinBox | QDoubleSpinBox):
                    editor.setValue(value)
        finally:
            self._loading = False

    def set_note(self, name: str, text: str, *, warn: bool = False) -> None:
        """A line under a setting's field (e.g. what a value costs); empty hides it."""
        note = self.notes[name]
        note.setText(text)
        note.setStyleSheet("color: palette(mid)" if not warn else "color: #c0392b")
        note.setVisible(bool(text))

    def _user_set(self, settings: GenerationSettings) -> None:
        self.set_values(settings)
        self._emit()

    def _emit(self) -> None:
        if not self._loading:
            self.changed.emit(self.values())
