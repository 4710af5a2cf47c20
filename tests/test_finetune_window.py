"""Fine-tuning from the window: the Train window's Fine-tune page runs a real
(tiny) LoRA fine-tune, shows the curves and the before/after perplexity, and
"Chat with it" loads base and adapter; adapters sit under their model in the
picker, each chat keeps its own adapter choice, and an adapter for another
model is refused while the model stays usable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from localchat.core.chat.store import ChatStore
from localchat.core.errors import EXIT_INTERRUPTED
from localchat.core.trainer import options
from localchat.testing.tiny_models import write_llama_gguf
from localchat.ui.main_window import ADAPTER_ROLE, CLOSED_ROLE, MainWindow
from localchat.ui.train.finetune_page import FinetunePage
from localchat.ui.train.lora_form import LoraForm
from localchat.ui.train.scratch_page import ScratchPage
from tests.test_window import open_window, wait_ready

TIMEOUT = 60_000
TRAINING = 240_000  # a tiny fine-tune takes seconds, but this box may be busy


def install_model(home: Path, name: str, seed: int = 0) -> Path:
    folder = home / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return write_llama_gguf(folder / name, seed=seed)


def write_adapter(path: Path, base: Path, name: str, rank: int = 4) -> Path:
    """A small LoRA adapter for ``base`` (a tiny test model), written with the
    gguf package as ``train lora`` writes its own: no PyTorch needed."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 2.0 * rank)
    writer.add_name(name)
    writer.add_string("localchat.lora.base.file", base.name)
    writer.add_string("localchat.lora.base.sha256", hashlib.sha256(base.read_bytes()).hexdigest())
    writer.add_uint32("localchat.lora.rank", rank)
    rng = np.random.default_rng(0)
    for layer in range(2):
        a = (rng.standard_normal((rank, 64)) * 0.05).astype(np.float32)
        b = (rng.standard_normal((64, rank)) * 0.05).astype(np.float32)
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_a", a)
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def adapter_row(window: MainWindow, adapter: Path) -> int:
    box = window.model_box
    for i in range(box.count()):
        if box.itemData(i, ADAPTER_ROLE) == str(adapter):
            return i
    return -1


def choose_row(qtbot, window: MainWindow, row: int) -> None:
    window.model_box.setCurrentIndex(row)
    window._model_chosen(row)  # what the picker's activated signal calls
    wait_ready(qtbot, window)


def chat_jsonl(path: Path, n: int = 40) -> Path:
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"What comes after {i}?"},
                    {"role": "assistant", "content": f"After {i} comes {i + 1}."},
                ]
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def open_finetune(qtbot, window: MainWindow) -> FinetunePage:
    window.open_trainer()
    assert window.trainer is not None
    qtbot.addWidget(window.trainer)
    return window.trainer.finetune


# -- the Train window's Fine-tune page (a real fine-tune: needs PyTorch) -------------------------


def test_the_form_offers_exactly_the_declared_presets(qtbot) -> None:
    form = LoraForm()
    qtbot.addWidget(form.advanced)
    box = form.preset
    assert [box.itemText(i) for i in range(box.count())] == list(options.LORA_PRESETS)
    assert box.currentText() == options.DEFAULT_LORA_PRESET
    for name, preset in options.LORA_PRESETS.items():
        box.setCurrentText(name)
        shown = {
            "rank": form.rank.value(),
            "alpha": form.alpha.value(),
            "epochs": form.epochs.value(),
            "lr": float(form.lr.text()),
        }
        assert shown == preset.values()
        assert form.preset_note.text() == preset.description
        # Nothing changed: the command line says the preset, nothing of what it sets.
        values = {"base": "m.gguf", "data": ["x.txt"], "out": "a.gguf", **form.values()}
        args = options.command_line("lora", values)
        assert not {"--rank", "--alpha", "--epochs", "--lr"} & set(args)


def test_the_fields_are_the_declared_options(qtbot) -> None:
    form = LoraForm()
    qtbot.addWidget(form.advanced)
    assert list(form.fields) == ["rank", "alpha", "epochs", "steps", "lr", "ctx", "batch"]
    labels = {label.buddy(): label.text() for label in form.advanced.findChildren(QLabel)}
    for name, editor in form.fields.items():
        spec = options.option("lora", name).spec
        assert labels[editor] == spec.label + ":"
        assert editor.toolTip().lower() == spec.help.lower()
        if name != "lr":
            assert editor.maximum() == spec.maximum
            assert spec.minimum <= editor.minimum() < spec.minimum + 0.1
    assert (form.ctx.value(), form.batch.value()) == (options.DEFAULT_CTX, options.DEFAULT_BATCH)
    assert form.steps.specialValueText() == options.option("lora", "steps").spec.special[0]
    form.steps.setValue(10)
    assert not form.epochs.isEnabled()  # the steps make the epochs moot
    form.rank.setValue(5)
    assert form.alpha.value() == options.alpha_for(5)
    scratch = ScratchPage()
    qtbot.addWidget(scratch)
    sizes = [scratch.preset.itemText(i) for i in range(scratch.preset.count())]
    assert sizes == list(options.MODEL_PRESETS)
    steps = options.option("scratch", "steps").spec
    assert (scratch.steps.minimum(), scratch.steps.maximum()) == (steps.minimum, steps.maximum)


def test_fine_tune_end_to_end_then_chat_with_it(qtbot, home: Path, parts, tmp_path) -> None:
    pytest.importorskip("torch")
    base = install_model(home, "tiny-chat.gguf")
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    page = open_finetune(qtbot, window)
    assert page.base.currentData() == str(base)  # the model in use comes first
    assert page.name.text().startswith("tiny-chat-")
    form = page.form
    assert form.preset.currentText() == "balanced" and form.rank.value() == 16
    page.add_data(chat_jsonl(tmp_path / "counting.jsonl"))
    form.advanced_button.click()
    assert form.advanced.isVisibleTo(page)
    form.preset.setCurrentText("quick")
    assert (form.rank.value(), form.alpha.value(), form.lr.text()) == (8, 16.0, "3e-4")
    assert "Changed" not in form.preset_note.text()
    form.rank.setValue(4)
    assert form.alpha.value() == 8.0  # follows the rank
    form.steps.setValue(30)
    assert form.preset_note.text().endswith("Changed: rank 4, alpha 8, 30 steps.")
    assert not form.epochs.isEnabled()  # steps instead
    form.ctx.setValue(128)
    page.name.setText("counting")
    with qtbot.waitSignal(page.adapter_trained, timeout=TRAINING) as trained:
        page.start_button.click()
        assert page.running() and page.stop_button.isEnabled()
        assert page.run.process is not None
        args = page.run.process.arguments()
        assert args[:4] == ["-m", "localchat", "train", "lora"]
        for flag, value in (("--rank", "4"), ("--steps", "30"), ("--ctx", "128")):
            assert args[args.index(flag) + 1] == value
        assert "--restart" not in args and "--epochs" not in args
    adapter = home / "adapters" / "counting.gguf"
    assert Path(trained.args[0]) == adapter and adapter.exists()
    # The curves: held-out from step 0 (before training), training from step 1.
    assert page.plot.heldout[0][0] == 0 and page.plot.heldout[-1][0] == 30
    assert [s for s, _ in page.plot.train] == list(range(1, 31))
    assert "Data: " in page.details.text()  # the trainer's own summary lines
    outcome = page.outcome.text()
    assert "without the adapter →" in outcome and "with it" in outcome
    assert page.result_frame.isVisibleTo(page) and page.chat_button.isEnabled()
    assert "listed under tiny-chat" in page.status.text()
    assert "exists" in page.name_note.text()  # Start again would replace it
    page.grab()

    # "Chat with it": the base model and the adapter, in the main window.
    page.chat_button.click()
    qtbot.waitUntil(
        lambda: window.loaded is not None and window.loaded.lora is not None, timeout=TIMEOUT
    )
    assert window.loaded.lora == str(adapter.resolve()) and window.model_path == base
    assert "adapter" in window.model_state.text()
    qtbot.waitUntil(lambda: adapter_row(window, adapter) >= 0, timeout=TIMEOUT)
    assert window.model_box.currentIndex() == adapter_row(window, adapter)
    assert window.adapter_scale.isVisibleTo(window)
    window.panel.editors["max_tokens"].setValue(5)
    window.composer.setPlainText("What comes after 3?")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    chat = window.chat_id
    assert chat is not None
    assert parts[0].thread(chat)[-1].model == "tiny-chat + counting"  # who replied
    # The new chat keeps the adapter.
    qtbot.waitUntil(
        lambda: parts[0].chat_settings(chat).get("adapter") == str(adapter), timeout=TIMEOUT
    )


def test_fine_tune_on_chats_stop_and_resume(qtbot, home: Path, parts) -> None:
    pytest.importorskip("torch")
    install_model(home, "tiny-chat.gguf")
    store: ChatStore = parts[0]
    for i in range(30):
        chat = store.create_chat(f"Counting {i}")
        store.add_message(chat, "user", f"What comes after {i}?")
        store.add_message(chat, "assistant", f"After {i} comes {i + 1}.")
    empty = store.create_chat("Nothing answered")
    store.add_message(empty, "user", "Hello?")
    window = open_window(qtbot, parts)
    page = open_finetune(qtbot, window)
    assert page.data.chats.count() == 31 and page.data.chat_count.text() == "0 of 31 chosen"

    page.tick_chats([empty])
    page.start_button.click()
    assert not page.running() and "no finished replies" in page.status.text()
    assert "chat 'Nothing answered' gave nothing to learn: it has no replies" in page.status.text()

    page.form.advanced_button.click()
    page.data.all_chats_button.click()
    assert page.data.chat_count.text() == "31 of 31 chosen"
    page.tick_chats([c.id for c in store.list_chats() if c.id != empty])
    assert page.data.chat_count.text() == "30 of 31 chosen"
    page.form.rank.setValue(4)
    page.form.ctx.setValue(64)
    page.form.steps.setValue(5000)
    page.name.setText("my chats")
    page.start_button.click()
    assert page.run.process is not None
    args = page.run.process.arguments()
    assert Path(args[args.index("--data") + 1]).name == "my-chats.jsonl"
    qtbot.waitUntil(lambda: len(page.plot.train) >= 3, timeout=TRAINING)
    assert page.plot.heldout[0][0] == 0
    assert "tokens/s" in page.status.text() and "left" in page.status.text()
    assert "Data: " in page.details.text() and "held-out sequences" in page.details.text()
    page.stop_button.click()
    qtbot.waitUntil(lambda: not page.running(), timeout=TIMEOUT)
    stopped_at = page.plot.train[-1][0]
    assert page.status.text() == (
        f"Stopped at step {stopped_at:,} — Start again to resume (the checkpoint is kept)."
    )
    assert page.resumable() and page.fresh_button.isVisibleTo(page)
    assert "stopped run" in page.name_note.text()

    drawn = len(page.plot.train)
    page.start_button.click()  # goes on from the checkpoint: no --restart
    assert page.run.process is not None and "--restart" not in page.run.process.arguments()
    qtbot.waitUntil(lambda: len(page.plot.train) > drawn, timeout=TRAINING)
    assert page.plot.train[drawn][0] == stopped_at + 1
    assert page.plot.heldout[0][0] == 0  # the curve goes on
    with qtbot.waitSignal(page.run.ended, timeout=TIMEOUT) as ended:
        page.stop_button.click()
    assert ended.args[0] == EXIT_INTERRUPTED

    # Start over: a fresh run from step 1.
    page.fresh_button.click()
    assert page.run.process is not None and "--restart" in page.run.process.arguments()
    qtbot.waitUntil(lambda: len(page.plot.train) >= 1, timeout=TRAINING)
    assert page.plot.train[0][0] == 1
    window.trainer.close()  # stops the run, keeping its checkpoint
    assert not page.running()


def test_bad_fine_tune_input_is_one_line(qtbot, home: Path, parts, tmp_path) -> None:
    pytest.importorskip("torch")
    install_model(home, "tiny-chat.gguf")
    window = open_window(qtbot, parts)
    page = open_finetune(qtbot, window)
    page.start_button.click()
    assert "tick some of your chats" in page.status.text() and not page.running()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": "no"}\nnot json\n', encoding="utf-8")
    page.add_data(broken)
    page.add_data(broken)  # listed once
    assert page.data.files.count() == 1
    page.form.steps.setValue(5)
    page.start_button.click()
    qtbot.waitUntil(lambda: not page.running(), timeout=TRAINING)
    text = page.status.text()
    assert "malformed" in text and "\n" not in text, text


# -- adapters in the main window's model picker (no PyTorch needed) ----------------------------


def test_adapters_sit_under_their_model_and_each_chat_keeps_its_choice(
    qtbot, home: Path, parts
) -> None:
    alpha = install_model(home, "alpha.gguf")
    beta = install_model(home, "beta.gguf", seed=1)
    style = write_adapter(home / "adapters" / "alpha-style.gguf", alpha, "alpha-style")
    elsewhere = write_llama_gguf(home / "gone.gguf", seed=5)  # not installed
    lost = write_adapter(home / "adapters" / "lost.gguf", elsewhere, "lost")
    store: ChatStore = parts[0]
    first, second = store.create_chat("With the adapter"), store.create_chat("Without")
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    qtbot.waitUntil(lambda: adapter_row(window, style) >= 0, timeout=TIMEOUT)
    box = window.model_box
    row = adapter_row(window, style)
    assert box.itemData(row - 1, ADAPTER_ROLE) is None and box.itemData(row - 1) == str(alpha)
    assert box.itemData(row) == str(alpha) and "↳" in box.itemText(row)
    assert "alpha-style" in box.itemText(row)
    assert adapter_row(window, lost) == -1  # listed at the end, greyed, saying why
    needs = [i for i in range(box.count()) if "needs gone.gguf" in box.itemText(i)]
    assert len(needs) == 1 and not box.model().item(needs[0]).isEnabled()
    assert box.itemData(box.findData(str(beta)) + 1, ADAPTER_ROLE) is None

    window.select_chat(first)
    choose_row(qtbot, window, row)
    assert window.loaded is not None and window.loaded.lora == str(style.resolve())
    assert window.adapter == style and window.adapter_scale.isVisibleTo(window)
    qtbot.waitUntil(
        lambda: store.chat_settings(first).get("adapter") == str(style), timeout=TIMEOUT
    )
    # Its strength: beside the picker and in the settings, applied on reloading.
    window.adapter_scale.setValue(0.5)
    assert window.panel.values().lora_scale == 0.5
    assert not window.reload_button.isHidden()
    qtbot.mouseClick(window.reload_button, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert window.loaded.lora is not None and window._loaded_with["lora_scale"] == 0.5
    assert window.reload_button.isHidden()
    qtbot.waitUntil(lambda: store.chat_settings(first).get("lora_scale") == 0.5, timeout=TIMEOUT)

    # Another chat: no adapter of its own, so the model reloads without it.
    window.select_chat(second)
    wait_ready(qtbot, window)
    assert window.loaded.lora is None and window.adapter is None
    assert box.currentIndex() == box.findData(str(alpha))
    assert window.adapter_scale.isHidden()
    # The adapter's strength means nothing without an adapter: no reload asked.
    window.panel.editors["lora_scale"].setValue(2.0)
    assert window.reload_button.isHidden()

    # Back: the chat's adapter and strength come back.
    window.select_chat(first)
    wait_ready(qtbot, window)
    assert window.loaded.lora == str(style.resolve())
    assert window._loaded_with["lora_scale"] == 0.5 and window.adapter_scale.value() == 0.5
    assert box.currentIndex() == adapter_row(window, style)
    assert box.currentData(CLOSED_ROLE) == "alpha  +  adapter alpha-style"
    box.grab()

    # Another model for this chat: its adapter goes off.
    choose_row(qtbot, window, box.findData(str(beta)))
    assert window.model_path == beta and window.loaded.lora is None
    qtbot.waitUntil(lambda: store.chat_settings(first).get("adapter") is None, timeout=TIMEOUT)

    # A new chat goes on with the adapter chosen when it is made.
    window.select_chat(first)
    choose_row(qtbot, window, adapter_row(window, style))
    store.add_message(first, "user", "Hello")  # New chat reuses an empty open chat
    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id not in (None, first), timeout=TIMEOUT)
    new = window.chat_id
    assert new is not None
    qtbot.waitUntil(lambda: store.chat_settings(new).get("adapter") == str(style), timeout=TIMEOUT)
    assert window.loaded is not None and window.loaded.lora is not None

    # The next start: the last chat, with its adapter (a chat with nothing in it goes).
    store.add_message(new, "user", "Hello")
    window.close()
    again = open_window(qtbot, parts)
    qtbot.waitUntil(
        lambda: again.loaded is not None and again.loaded.lora is not None, timeout=TIMEOUT
    )
    assert again.chat_id == new and again.model_path == alpha


def test_an_adapter_for_another_model_is_refused_and_the_model_stays(
    qtbot, home: Path, parts
) -> None:
    alpha = install_model(home, "alpha.gguf")
    beta = install_model(home, "beta.gguf", seed=1)
    for_beta = write_adapter(home / "adapters" / "beta-style.gguf", beta, "beta-style")
    store: ChatStore = parts[0]
    window = open_window(qtbot, parts)
    wait_ready(qtbot, window)
    window.use_model(str(alpha))
    wait_ready(qtbot, window)
    qtbot.waitUntil(lambda: adapter_row(window, for_beta) >= 0, timeout=TIMEOUT)
    assert window.model_box.itemData(adapter_row(window, for_beta)) == str(beta)

    # Asked to use it with alpha (as a chat that remembered it might): refused.
    window.chat_with_adapter(str(alpha), str(for_beta))
    wait_ready(qtbot, window)
    message = window.statusBar().currentMessage()
    assert message.startswith("Adapter refused: beta-style.gguf was trained on beta.gguf")
    assert "not on alpha.gguf" in message
    assert window.loaded is not None and window.loaded.lora is None
    assert window.model_path == alpha and window.adapter is None
    assert "without the adapter" in window.model_state.text()
    assert window.model_box.currentIndex() == window.model_box.findData(str(alpha))
    assert window.adapter_scale.isHidden()
    # The model still answers.
    window.panel.editors["max_tokens"].setValue(4)
    window.send("still there?")
    assert window.job is not None
    with qtbot.waitSignal(window.job.done, timeout=TIMEOUT):
        pass
    assert store.thread(window.chat_id)[-1].status == "done"

    # A chat whose adapter's model is gone: said, and the chat goes on without it.
    chat = store.create_chat("Orphaned")
    store.set_chat_settings(
        chat, {"adapter": str(for_beta), "adapter_base": str(home / "models" / "gone.gguf")}
    )
    beta.unlink()
    window.refresh_models()
    qtbot.waitUntil(lambda: adapter_row(window, for_beta) == -1, timeout=TIMEOUT)
    window.select_chat(chat)
    assert "needs gone.gguf, which is not installed" in window.statusBar().currentMessage()
    assert window.loaded is not None and window.loaded.lora is None and window.model_path == alpha
