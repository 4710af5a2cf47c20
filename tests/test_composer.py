"""The composer (issue 20): a rounded box whose text grows with what is
typed, and a round send button inside it that stops a reply."""

from __future__ import annotations

from PySide6.QtCore import Qt

from localchat.ui.composer import MAX_LINES, MIN_LINES, ComposerBox


def box_for(qtbot) -> ComposerBox:
    box = ComposerBox()
    qtbot.addWidget(box)
    box.resize(600, box.sizeHint().height())
    box.show()
    qtbot.waitExposed(box)
    return box


def test_the_text_grows_with_its_lines_then_scrolls(qtbot) -> None:
    box = box_for(qtbot)
    composer = box.composer
    line = composer.fontMetrics().lineSpacing()
    empty = composer.height()
    assert MIN_LINES * line <= empty < (MIN_LINES + 1) * line + 16
    composer.setPlainText("\n".join(f"line {i}" for i in range(5)))
    qtbot.waitUntil(lambda: composer.height() > empty)
    assert composer.height() >= 5 * line
    assert composer.verticalScrollBar().maximum() == 0  # every line in view
    assert not composer.verticalScrollBar().isVisible()
    composer.setPlainText("\n".join(f"line {i}" for i in range(40)))
    qtbot.waitUntil(lambda: composer.height() >= MAX_LINES * line)
    assert composer.height() < (MAX_LINES + 1) * line + 16  # no taller: it scrolls
    assert composer.verticalScrollBar().maximum() > 0 and composer.verticalScrollBar().isVisible()
    composer.clear()
    qtbot.waitUntil(lambda: composer.height() == empty)  # back once sent


def test_the_send_button_sends_what_is_written_and_stops_a_reply(qtbot) -> None:
    box = box_for(qtbot)
    button = box.send_button
    assert not button.isEnabled() and button.text() == "Send"  # nothing to send
    box.composer.setPlainText("   ")
    assert not button.isEnabled()
    box.composer.clear()
    sent: list[str] = []
    box.composer.submitted.connect(sent.append)
    qtbot.keyClicks(box.composer, "Hello")
    assert button.isEnabled() and button.accessibleName() == "Send"
    qtbot.keyClick(box.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(box.composer, "there")
    assert box.composer.toPlainText() == "Hello\nthere" and sent == []
    qtbot.keyClick(box.composer, Qt.Key.Key_Return)
    assert sent == ["Hello\nthere"]
    box.composer.clear()
    box.set_replying(True)  # a reply is written: the button stops it
    assert button.isEnabled() and button.text() == "Stop" and "Esc" in button.toolTip()
    stops: list[bool] = []
    box.composer.stop_requested.connect(lambda: stops.append(True))
    qtbot.keyClick(box.composer, Qt.Key.Key_Escape)
    assert stops == [True]
    box.set_replying(False)
    assert not button.isEnabled() and button.text() == "Send"
