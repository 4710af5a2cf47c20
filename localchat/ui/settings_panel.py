"""The generation settings form, built from the declaration in ``params.py``.

Nothing here names a setting: each field of ``GenerationSettings`` becomes a
labelled widget (a spin box for numbers, with the declared range, step, help
as tooltip and the special value, e.g. "random" for seed -1, shown as text; a
text box for text, a combo box worded by the declaration for a choice),
grouped by the declaration's group, under a heading naming the model they are
for. Adding a setting to the declaration adds it here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import QSize, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from localchat.core import params
from localchat.core.params import GenerationSettings, Spec
from localchat.ui import theme

GROUP_TITLES = {
    "sampling": "Sampling",
    "model": "Model (applies on reload)",
    "prompt": "Prompt",
    "conversation": "Conversation",
    "thinking": "Thinking",
}
INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int
WIDTH = 320
"""The width the panel asks for (the dock can be dragged wider or narrower)."""


class SpinBox(QSpinBox):
    """A whole-number field that can show words instead of its value while it
    does not apply (``shown_as``, e.g. "none (no GPU)"), the value kept."""

    shown_as: str | None = None

    def textFromValue(self, value: int) -> str:
        return self.shown_as if self.shown_as is not None else super().textFromValue(value)


class SettingsPanel(QScrollArea):
    """Emits :attr:`changed` with the new settings whenever the user edits one.
    Scrolls when the window is shorter than the form."""

    changed = Signal(object)  # GenerationSettings
    reset_requested = Signal()
    """The user asked for the defaults (the owner knows whose: the model's)."""

    def __init__(self, settings: GenerationSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.editors: dict[str, QWidget] = {}
        self.notes: dict[str, QLabel] = {}
        self._loading = False
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumWidth(240)
        form_widget = QWidget()
        self.setWidget(form_widget)
        layout = QVBoxLayout(form_widget)
        self.heading = QLabel("Settings for new chats")
        self.heading.setObjectName("settings-heading")
        self.heading.setWordWrap(True)
        font = self.heading.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.heading.setFont(font)
        layout.addWidget(self.heading)
        groups: dict[str, QFormLayout] = {}
        self.boxes: dict[str, QGroupBox] = {}
        for name, spec in params.specs():
            form = groups.get(spec.group)
            if form is None:
                box = self.boxes[spec.group] = QGroupBox(
                    GROUP_TITLES.get(spec.group, spec.group.title())
                )
                form = groups[spec.group] = QFormLayout(box)
                # Labels above their fields when narrow, so nothing is cut.
                form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
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
        reset.setObjectName("reset")
        reset.setToolTip("Forget your choices for this model: back to its recommended settings")
        reset.clicked.connect(self.reset_requested)
        layout.addWidget(reset)
        layout.addStretch(1)
        self._layout = layout
        self.set_values(settings or GenerationSettings())
        self.offer(())  # a model's own controls come with it (``offer``)

    def add_section(self, widget: QWidget) -> None:
        """Another part of the settings, below the model's (the local server's)."""
        self._layout.insertWidget(self._layout.count() - 1, widget)

    def _editor(self, name: str, spec: Spec) -> QWidget:
        kind = type(params.default(name))
        if spec.choices:
            combo = QComboBox()
            # Narrow enough for the dock; the open list shows the words whole.
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(14)
            for value in spec.choices:  # the words shown, the value stored
                combo.addItem(params.choice_label(name, value), value)
            combo.currentIndexChanged.connect(self._emit)
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
            box = SpinBox()
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
                data[name] = editor.currentData()
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
                    editor.setCurrentIndex(editor.findData(value))
                elif isinstance(editor, QPlainTextEdit):
                    if editor.toPlainText() != value:
                        editor.setPlainText(value)
                elif isinstance(editor, QSpinBox | QDoubleSpinBox):
                    editor.setValue(value)
        finally:
            self._loading = False

    def sizeHint(self) -> QSize:
        return QSize(WIDTH, super().sizeHint().height())

    def set_heading(self, model: str | None) -> None:
        """Name the model these settings are for (None: no model yet)."""
        self.heading.setText(f"Settings for {model}" if model else "Settings for new chats")
        self.heading.setToolTip(
            "Each model keeps its own settings: these apply to this model, in every chat"
            if model
            else ""
        )

    def limit(self, name: str, maximum: int | None) -> None:
        """Cap a number's field (None: back to the declared maximum); a value
        above the cap is shown as the cap. Not an edit: nothing is emitted."""
        editor = self.editors[name]
        assert isinstance(editor, QSpinBox)
        declared = params.spec(name).maximum
        top = maximum if maximum is not None else declared
        self._loading = True
        try:
            editor.setMaximum(int(min(top if top is not None else INT_LIMIT, INT_LIMIT)))
        finally:
            self._loading = False

    def set_unavailable(self, name: str, shown_as: str | None, why: str = "") -> None:
        """Disable a number's field, showing ``shown_as`` in it and ``why`` as its
        tooltip, e.g. GPU layers without a GPU (None: enabled again). The value
        stays what it was, so nothing changes when it applies again."""
        editor = self.editors[name]
        assert isinstance(editor, SpinBox)
        editor.shown_as = shown_as
        special = params.spec(name).special.get(params.spec(name).minimum, "")
        # Redraws the text too (the words, or the value again).
        editor.setSpecialValueText(shown_as if shown_as is not None else special)
        editor.setEnabled(shown_as is None)
        editor.setToolTip(why or params.spec(name).help)

    def offer(self, capabilities: tuple[str, ...]) -> None:
        """Show the settings that apply to a model with these capabilities
        (see ``Spec.only_for``: the thinking controls only for a reasoning
        model whose template has them); a group left empty goes too."""
        shown: dict[str, bool] = {}
        for name, spec in params.specs():
            visible = spec.only_for is None or spec.only_for in capabilities
            editor = self.editors[name]
            form = self.boxes[spec.group].layout()
            assert isinstance(form, QFormLayout)
            form.setRowVisible(editor, visible)
            if not visible:
                form.setRowVisible(self.notes[name], False)
            shown[spec.group] = shown.get(spec.group, False) or visible
        for group, box in self.boxes.items():
            box.setVisible(shown.get(group, False))

    def offered(self, name: str) -> bool:
        """Whether the setting ``name`` is shown for the model in use."""
        return (
            self.boxes[params.spec(name).group].isVisibleTo(self)
            and not self.editors[name].isHidden()
        )

    def set_note(self, name: str, text: str, *, warn: bool = False) -> None:
        """A line under a setting's field (e.g. what a value costs); empty hides it."""
        note = self.notes[name]
        note.setText(text)
        note.setStyleSheet("color: #c0392b" if warn else "")  # else the secondary tone
        theme.secondary(note)
        note.setVisible(bool(text))

    def _emit(self) -> None:
        if not self._loading:
            self.changed.emit(self.values())
