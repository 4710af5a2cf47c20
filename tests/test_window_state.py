"""Issue 20: the window says one true thing at a time. The model bar's state
(loading, writing a reply at its live speed, ready), the context meter in
words, figures cleared with their chat, the settings fitted to the model,
the menu bar, and the window's sizes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog, QLabel, QMenu

import localchat
from localchat.core import logs, paths
from localchat.core.params import GenerationSettings
from localchat.ui import menus
from localchat.ui.main_window import MainWindow
from localchat.ui.model_bar import FIGURES, ModelPicker
from localchat.ui.settings_link import gpu_unavailable
from tests.test_window import TIMEOUT, install, open_window, type_and_send, wait_ready


def test_status_says_loading_writing_with_speed_then_ready(
    qtbot, home: Path, parts, slow_model
) -> None:
    install(home, slow_model, "slow-one.gguf")
    parts[2].set_generation(None, max_tokens=1000, temperature=0.0)
    window = MainWindow(*parts)
    said: list[str] = []
    window.model.said.connect(lambda _: said.append(window.model_state.text()))
    qtbot.addWidget(window)
    window.show()
    wait_ready(qtbot, window)
    assert "Loading slow-one…" in said, said
    ready = window.model_state.text()
    assert ready.startswith("Ready · ") and window.loaded.backend in ready
    window.panel.editors["max_tokens"].setValue(1000)  # seconds of writing, then stopped
    type_and_send(qtbot, window, "Tell me a long story " * 20)
    qtbot.waitUntil(lambda: window.model_state.text().startswith("Writing a reply"))
    qtbot.waitUntil(lambda: "tok/s" in window.model_state.text(), timeout=TIMEOUT)
    speed = float(window.model_state.text().split("· ")[1].split(" tok/s")[0])
    assert speed > 0 and "tokens written so far" in window.model_state.toolTip()
    window.model.say("Something else")  # the model's news waits for the reply's end
    assert window.model_state.text().startswith("Writing a reply")
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        window.replies.stop()
    qtbot.waitUntil(lambda: not window.busy())
    assert window.model_state.text() == "Something else"


def test_figures_go_with_their_chat_and_the_meter_reads_in_words(
    qtbot, home: Path, parts, tiny_model
) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.panel.editors["max_tokens"].setValue(20)
    type_and_send(qtbot, window, "hello there")
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: window.context is not None and not window.meter.isHidden())
    report = window.context
    assert window.meter.text() == (
        f"{report.prompt_tokens:,} of {report.n_ctx:,} tokens used · 20 kept for the reply"
    )
    assert window.meter.label.text() == window.meter.text()
    assert not window.meter.bar.isTextVisible()  # no words drawn over the fill
    assert window.meter.maximum() == report.n_ctx == 4096
    assert "Kept for the reply: 20" in window.meter.toolTip()
    assert "whole chat is in the model's view" in window.meter.toolTip()
    assert "tok/s" in window.speed.text()

    chat = window.chat_id
    window.new_chat()  # an empty chat: no figures of the last one
    qtbot.waitUntil(lambda: window.chat_id != chat, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.meter.isHidden())
    assert window.speed.text() == "" and window.speed.toolTip() == ""

    window.select_chat(chat)
    qtbot.waitUntil(lambda: not window.meter.isHidden(), timeout=TIMEOUT)
    assert window.speed.text()
    window.delete_chat(chat)
    assert window.chat_id is None and window.meter.isHidden()
    assert window.speed.text() == "" and window.context is None


def test_the_settings_fit_the_loaded_model(qtbot, home: Path, parts, tiny_model) -> None:
    """The tiny model was trained on 4,096 tokens: 8,192 asked shows as 4,096
    (and is no reason to reload); the heading names the model; GPU layers say
    none where this engine cannot use a GPU."""
    model = install(home, tiny_model)
    parts[2].set_generation(str(model), ctx=8192)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    panel = window.panel
    assert panel.heading.text() == "Settings for tiny-chat"
    ctx = panel.editors["ctx"]
    assert ctx.maximum() == 4096 and ctx.value() == 4096
    assert "memory at 4,096 tokens" in panel.notes["ctx"].text()  # the size it runs at
    assert window.reload_button.isHidden()
    panel.editors["temperature"].setValue(0.3)  # an edit: still nothing to reload
    assert window.reload_button.isHidden()
    gpu = panel.editors["gpu_layers"]
    why = gpu_unavailable(window.loaded, -1)
    assert gpu.isEnabled() == (why is None)
    if why is not None:
        assert gpu.text() == "none (no GPU)" and gpu.toolTip() == why


def test_menus_shortcuts_about_and_quit(qtbot, home: Path, parts, tiny_model) -> None:
    install(home, tiny_model)
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    bar = window.menuBar()
    titles = [a.text().replace("&", "") for a in bar.actions()]
    assert titles == ["File", "View", "Help"]

    def items(name: str) -> list[tuple[str, str]]:
        menu = bar.findChild(QMenu, name)
        assert menu is not None
        return [(a.text(), a.shortcut().toString()) for a in menu.actions() if a.text()]

    assert items("file-menu") == [("New chat", "Ctrl+N"), ("Export chat…", ""), ("Quit", "Ctrl+Q")]
    assert items("view-menu") == [
        ("Settings", "Ctrl+,"),
        ("Models…", "Ctrl+Shift+M"),
        ("Train…", "Ctrl+Shift+T"),
        ("Documents…", "Ctrl+Shift+D"),
    ]
    assert items("help-menu") == [("Keyboard shortcuts", ""), ("About LocalChat", "")]

    menus.show_shortcuts(window)
    dialog = next(
        d for d in window.findChildren(QDialog) if d.windowTitle() == "Keyboard shortcuts"
    )
    text = dialog.findChild(QLabel, "body").text()
    for action in menus.all_actions(window):
        if not action.shortcut().isEmpty():
            assert action.text().rstrip("…") in text and action.shortcut().toString() in text
    assert "Ctrl+Q" in text and "Shift+Enter" in text
    dialog.close()

    menus.show_about(window)
    about = next(d for d in window.findChildren(QDialog) if d.windowTitle() == "About LocalChat")
    text = about.findChild(QLabel, "body").text()
    for part in (localchat.__version__, "MIT", "llama.cpp", window.loaded.backend):
        assert part in text
    assert str(paths.home()) in text and str(logs.log_file()) in text
    about.close()

    assert window.minimumWidth() >= 900 and window.model_box.minimumSizeHint().width() >= 200
    window.settings_dock.show()
    qtbot.waitUntil(lambda: window.settings_dock.width() >= 280)
    conversation = window.centralWidget().widget(1)  # right of the chat list
    assert conversation.width() >= 470  # the chat keeps its room beside the settings
    box = window.model_box
    qtbot.waitUntil(lambda: FIGURES in box.closed_text())  # the survey read the figures
    figures = box.closed_text().split(FIGURES, 1)[1]
    assert box.shown_text().endswith(figures)  # the figures stay beside the settings

    quit_action = next(a for a in menus.all_actions(window) if a.objectName() == "quit")
    assert quit_action not in window.actions()  # in the menu only
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Q
    qtbot.waitUntil(lambda: not window.isVisible())
    assert window.counter.closing  # closed the way closing the window does
    QApplication.processEvents()


def test_a_narrow_picker_shortens_the_name_and_keeps_the_figures(qtbot) -> None:
    """At ~1,100 px with the settings open the picker is narrow: the figures
    (size, quantization) tell models apart, so the name gives way, in its
    middle, and the whole row is in the tooltip."""
    picker = ModelPicker()
    qtbot.addWidget(picker)
    long = "Meta-Llama-3.1-8B-Instruct-abliterated-Q4_K_M"
    label = FIGURES.join([long, "8.0B", "Q4_K_M", "4.6 GB"])
    picker.addItem(label, "/models/x.gguf")
    picker.addItem("short  ·  1.0B  ·  Q8_0  ·  1.1 GB", "/models/y.gguf")
    picker.resize(300, picker.sizeHint().height())
    shown = picker.shown_text()
    assert shown != label and shown.endswith(FIGURES.join(["8.0B", "Q4_K_M", "4.6 GB"]))
    assert shown.startswith("Meta-") and "…" in shown and shown.split(FIGURES)[0].endswith("K_M")
    assert picker.closed_text() == label
    picker.resize(1200, picker.sizeHint().height())
    assert picker.shown_text() == label  # room enough: nothing shortened
    picker.setCurrentIndex(1)
    assert picker.shown_text() == "short  ·  1.0B  ·  Q8_0  ·  1.1 GB"
    picker.resize(60, picker.sizeHint().height())  # no room even for figures: the end goes
    assert picker.shown_text().endswith("…") and picker.shown_text().startswith("sh")


def test_reset_to_defaults_returns_to_the_models_own_settings(
    qtbot, home: Path, parts, tiny_model: Path, monkeypatch
) -> None:
    """The demo model chats at 0.2 by its own recommendation: "Reset to
    defaults" forgets the user's choices for it and returns there, not to
    the app's 0.7."""
    import shutil

    from PySide6.QtWidgets import QPushButton

    from localchat.core.settings import DEMO_SETTINGS

    demo = shutil.copy(tiny_model, home / "localchat-demo.gguf")
    monkeypatch.setenv(paths.DEMO_ENV, str(demo))
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    temperature = window.panel.editors["temperature"]
    assert temperature.value() == DEMO_SETTINGS["temperature"] != 0.7
    temperature.setValue(0.9)
    window.panel.editors["top_k"].setValue(7)
    settings = parts[2]
    assert settings.model_overrides(str(demo)) == {"temperature": 0.9, "top_k": 7}
    reset = window.panel.findChild(QPushButton, "reset")
    qtbot.mouseClick(reset, Qt.MouseButton.LeftButton)
    assert temperature.value() == DEMO_SETTINGS["temperature"]
    assert window.panel.editors["top_k"].value() == GenerationSettings().top_k
    assert settings.model_overrides(str(demo)) == {}
    assert window.reload_button.isHidden()  # nothing that applies on loading changed
