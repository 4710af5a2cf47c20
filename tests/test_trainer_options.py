"""The trainer's options declared once: settings, CLI flags, command lines, progress lines."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import pytest

from localchat.core.trainer import options, settings
from localchat.core.trainer.progress import Done, Info, Progress, done_line, info_line, parse_line
from localchat.core.trainer.settings import (
    AdapterError,
    FinetuneSettings,
    LoRASettings,
    TrainError,
    TrainSettings,
)


def parse(command: options.Command, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    options.add_cli_arguments(parser, command)
    return parser.parse_args(list(argv))


def test_the_settings_are_checked_against_their_specs() -> None:
    assert TrainSettings().steps == 1000 and FinetuneSettings().ctx == options.DEFAULT_CTX
    assert LoRASettings(alpha=8).alpha == 8.0  # a whole number for a float is made one
    with pytest.raises(TrainError, match="the training context must be at least 16, got 8"):
        FinetuneSettings(ctx=8)
    with pytest.raises(TrainError, match="--steps must be at least 1"):
        TrainSettings(steps=0)
    with pytest.raises(TrainError, match="--dtype must be one of auto, float32, bfloat16"):
        FinetuneSettings(dtype="float16")
    with pytest.raises(AdapterError, match="the LoRA rank must be at least 1"):
        LoRASettings(rank=0)
    with pytest.raises(AdapterError, match=r"LoRA targets are some of .* \(not lm_head\)"):
        LoRASettings(targets=("q", "lm_head"))
    with pytest.raises(TrainError, match="must be a whole number"):
        FinetuneSettings(batch=2.5)  # type: ignore[arg-type]


def test_every_option_has_a_spec_a_form_can_use() -> None:
    for command in options.COMMANDS:
        names = [o.name for o in options.options(command)]
        assert len(names) == len(set(names))
        for o in options.options(command):
            assert o.spec.label and o.spec.help and command in o.spec.commands
            if o.kind in (int, float):
                assert o.spec.minimum is not None and o.spec.maximum is not None
                assert o.spec.minimum <= o.default_for() <= o.spec.maximum
            if o.spec.choices and o.kind is str and o.default is not None:
                assert o.default in o.spec.choices
    assert options.option("lora", "epochs").spec.overridden_by == "steps"
    with pytest.raises(KeyError):
        options.option("scratch", "rank")


def test_the_presets() -> None:
    from_scratch = options.option("scratch", "preset")
    assert (
        from_scratch.spec.choices
        == tuple(options.MODEL_PRESETS)
        == ("tiny", "mini", "small", "base")
    )
    lora = options.option("lora", "preset")
    assert lora.spec.choices == ("quick", "balanced", "thorough") and lora.default == "balanced"
    for name, preset in options.LORA_PRESETS.items():
        assert preset.alpha == options.alpha_for(preset.rank) and preset.description
        adapter, run = options.lora_settings({"preset": name})
        assert (adapter.rank, adapter.alpha, run.epochs, run.lr) == (
            preset.rank,
            preset.alpha,
            preset.epochs,
            preset.lr,
        )
    # the dataclasses' defaults are the default preset's
    balanced = options.LORA_PRESETS["balanced"]
    assert (LoRASettings().rank, FinetuneSettings().lr) == (balanced.rank, balanced.lr)


def test_the_cli_flags_derive_from_the_declarations() -> None:
    args = parse("lora", "--base", "m", "--out", "a.gguf", "--rank", "8", "--targets", "q,v")
    adapter, run = options.lora_settings(vars(args))
    assert (adapter.rank, adapter.alpha, adapter.targets) == (
        8,
        16.0,
        ("q", "v"),
    )  # alpha: 2 x rank
    assert (run.epochs, run.lr, run.eval_every, run.batch) == (2.0, 2e-4, 25, 4)
    args = parse("lora", "--base", "m", "--out", "a", "--preset", "quick", "--eval-every", "0")
    adapter, run = options.lora_settings(vars(args))
    assert (adapter.rank, run.epochs, run.lr, run.eval_every) == (8, 1.0, 3e-4, 25)
    args = parse("lora", "--base", "m", "--out", "a", "--rank", "8", "--alpha", "4")
    assert options.lora_settings(vars(args))[0].alpha == 4.0
    settings = options.scratch_settings(vars(parse("scratch", "--data", "t", "--out", "m.gguf")))
    assert (settings.steps, settings.batch, settings.lr, settings.warmup) == (1000, 16, 3e-3, 50)
    assert settings.eval_every == settings.checkpoint_every == 100
    with pytest.raises(TrainError, match="--batch must be at least 1, got 0"):
        options.scratch_settings({"batch": 0})


def test_the_help_shows_ranges_and_defaults() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "localchat", "train", "lora", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    assert "--rank RANK the adapter's rank" in text and "(1..512; default: the preset's)" in text
    assert "(16..131072; default 512)" in text
    scratch = subprocess.run(
        [sys.executable, "-m", "localchat", "train", "scratch", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "optimiser steps (1..10000000; default 1000)" in " ".join(scratch.stdout.split())


def test_the_command_line_for_a_run() -> None:
    values = {
        "base": "m.gguf",
        "data": ["notes", Path("chats.jsonl")],
        "out": Path("out.gguf"),
        "preset": "quick",
        "rank": 4,
        "alpha": 8.0,
        "epochs": 1.0,
        "steps": 30,
        "lr": 3e-4,
        "ctx": 128,
        "batch": 4,
        "restart": False,
    }
    args = options.command_line("lora", values)
    assert args == [
        "train", "lora", "--json", "--base", "m.gguf", "--data", "notes", "chats.jsonl",
        "--out", "out.gguf", "--preset", "quick", "--rank", "4", "--alpha", "8",
        "--ctx", "128", "--steps", "30",
    ]  # fmt: skip
    args = options.command_line("lora", {**values, "steps": 0, "epochs": 1.5, "lr": 2.5e-5})
    assert args[args.index("--epochs") + 1] == "1.5" and args[args.index("--lr") + 1] == "2.5e-5"
    assert "--steps" not in args
    assert options.command_line("lora", {**values, "restart": True})[-1] == "--restart"
    # what the command line says is what the trainer runs with
    parsed = parse("lora", *options.command_line("lora", values)[2:])
    adapter, run = options.lora_settings(vars(parsed))
    assert (adapter.rank, adapter.alpha, run.steps, run.ctx, run.lr) == (4, 8.0, 30, 128, 3e-4)
    # the preset's alpha with another rank is said: left out, the rank's would be used
    quick_alpha = options.LORA_PRESETS["quick"].alpha
    parsed = parse("lora", *options.command_line("lora", {**values, "alpha": quick_alpha})[2:])
    adapter, run = options.lora_settings(vars(parsed))
    assert (adapter.rank, adapter.alpha) == (4, quick_alpha) != (4, options.alpha_for(4))
    scratch = {"data": ["a.txt"], "out": "m.gguf", "preset": "tiny", "steps": 500}
    assert options.command_line("scratch", scratch) == [
        "train", "scratch", "--json", "--data", "a.txt", "--out", "m.gguf",
        "--preset", "tiny", "--steps", "500",
    ]  # fmt: skip
    with pytest.raises(TrainError, match="train lora needs --base"):
        options.command_line("lora", {"out": "a.gguf"})
    with pytest.raises(AdapterError, match="the LoRA rank must be at most 512"):
        options.command_line("lora", {**values, "rank": 1000})
    with pytest.raises(TrainError, match="no option 'colour'"):
        options.command_line("scratch", {**scratch, "colour": "blue"})
    assert options.format_number(2e-4) == "2e-4" and options.format_number(16.0) == "16"


def test_progress_lines_round_trip() -> None:
    step = Progress(3, 10, 2.5, 1e-3, 1234.5, 6.0, None)
    back = parse_line(step.to_json())
    assert isinstance(back, Progress) and back == step
    before = Progress(0, 10, math.nan, 0.0, 0.0, 0.0, 3.25)
    assert before.to_dict()["loss"] is None
    parsed = parse_line(before.to_json())
    assert isinstance(parsed, Progress) and math.isnan(parsed.loss) and parsed.heldout_loss == 3.25
    assert parse_line(info_line("data: 3 files")) == Info("data: 3 files")
    assert parse_line(done_line({"model": "m.gguf"})) == Done({"model": "m.gguf"})
    for junk in ("", "not json", "[1, 2]", '{"other": 1}', '{"step": "x", "steps": 2}'):
        assert parse_line(junk) is None


def test_the_options_need_no_pytorch() -> None:
    code = (
        "import sys; import localchat.core.trainer.options, localchat.core.trainer.progress, "
        "localchat.cli.train, localchat.cli.finetune; print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr


def test_the_trainers_use_the_declarations() -> None:
    pytest.importorskip("torch")
    from localchat.core.trainer import finetune, lora, model, train

    assert model.PRESETS is options.MODEL_PRESETS
    assert train.TrainSettings is TrainSettings and finetune.FinetuneSettings is FinetuneSettings
    assert lora.LoRASettings is LoRASettings and lora.TARGETS is settings.TARGETS
    for name, (adapter, run) in finetune.PRESETS.items():
        assert options.LORA_PRESETS[name].values() == {
            "rank": adapter.rank,
            "alpha": adapter.alpha,
            "epochs": run["epochs"],
            "lr": run["lr"],
        }
