"""`localchat train scratch` and `localchat eval perplexity`, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from localchat.testing.texts import grammar_text


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localchat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TINY = ("--preset", "tiny", "--batch", "8", "--vocab", "300")


def one_line_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and text in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_train_chat_evaluate_and_go_on(tmp_path: Path) -> None:
    text = grammar_text(tmp_path / "grammar.txt")
    out = tmp_path / "grammar.gguf"
    proc = cli(
        "train", "scratch", "--data", str(text), "--out", str(out), *TINY, "--steps", "30", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    steps, done = lines[:-1], lines[-1]["done"]
    assert [s["step"] for s in steps] == list(range(1, 31))
    assert {"loss", "lr", "tokens_per_s", "eta_s", "heldout_loss"} <= set(steps[0])
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert done["model"] == str(out) and out.exists() and out.with_suffix(".ckpt").exists()
    assert done["heldout_perplexity"] < 30  # from ~300 (the vocabulary) at the start

    reply = cli("chat", "-m", str(out), "--prompt", "The small cat", "--max-tokens", "8", "--json")
    assert reply.returncode == 0, reply.stderr
    assert json.loads(reply.stdout)["completion_tokens"] > 0

    ppl = cli(
        "eval", "perplexity", "-m", str(out), "--data", str(text), "--window", "128", "--json"
    )
    assert ppl.returncode == 0, ppl.stderr
    measured = json.loads(ppl.stdout)
    assert measured["windows"] >= 10 and measured["tokens"] == measured["windows"] * 128
    assert measured["perplexity"] < 1.5 * done["heldout_perplexity"]  # the same text's kind

    again = cli(
        "train", "scratch", "--data", str(text), "--out", str(out), *TINY, "--steps", "40", "--json"
    )
    assert again.returncode == 0, again.stderr
    assert "going on from" in again.stderr
    more = [json.loads(line) for line in again.stdout.splitlines()][:-1]
    assert [s["step"] for s in more] == list(range(31, 41))


def test_ctrl_c_keeps_a_checkpoint_to_go_on_from(tmp_path: Path) -> None:
    text = grammar_text(tmp_path / "grammar.txt")
    out = tmp_path / "m.gguf"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localchat",
            "train",
            "scratch",
            "--data",
            str(text),
            "--out",
            str(out),
            *TINY,
            "--steps",
            "5000",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(20):  # some steps done
        assert json.loads(proc.stdout.readline())["step"] > 0
    os.kill(proc.pid, signal.SIGINT)
    _rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to go on" in err and "Traceback" not in err
    assert out.with_suffix(".ckpt").exists() and not out.exists()


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    small = tmp_path / "small.txt"
    small.write_text("Two short paragraphs.\n\nNot enough for one context.")
    out = str(tmp_path / "m.gguf")
    one_line_error(cli("train", "scratch", "--data", str(empty), "--out", out, *TINY), "empty")
    one_line_error(
        cli("train", "scratch", "--data", str(small), "--out", out, *TINY), "less than one context"
    )
    one_line_error(
        cli("train", "scratch", "--data", str(small), "--out", str(tmp_path / "m.txt")), ".gguf"
    )
    one_line_error(
        cli("train", "scratch", "--data", str(small), "--out", out, "--preset", "huge"),
        "no preset",
    )
    one_line_error(
        cli("train", "scratch", "--data", str(small), "--out", out,
            "--tokenizer-from", str(tmp_path / "none.gguf")),
        "none.gguf",
    )  # fmt: skip
    started = time.monotonic()
    one_line_error(cli("eval", "perplexity", "-m", out, "--data", str(small)), "m.gguf")
    assert time.monotonic() - started < 60
