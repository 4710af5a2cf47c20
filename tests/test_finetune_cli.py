"""`localchat train lora`, as a user runs it: fine-tune, chat with the
adapter, look at it, and the mistakes people make."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from localchat.core.chat.store import ChatStore
from localchat.testing.tiny_models import write_llama_gguf

SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_head_kv": 2, "n_ff": 128}
CODE = "The code is zebra-42-velvet."
NAMES = "Ada Bob Cy Dee Eve Fay Gus Hal Ivy Jo Kim Lu".split()
QUICK = ("--ctx", "128", "--rank", "8", "--dropout", "0", "--patience", "0")


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localchat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and text in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def chats_file(folder: Path) -> Path:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You keep the code."},
                {"role": "user", "content": f"Hi, I am {name}. What is the code? ({i})"},
                {"role": "assistant", "content": CODE},
            ]
        }
        for i, name in enumerate(NAMES * 3)
    ]
    path = folder / "code.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_fine_tune_then_chat_with_the_adapter(home: Path, tmp_path: Path) -> None:
    base = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    out = tmp_path / "adapters" / "code.gguf"
    args = ("--base", str(base), "--data", str(chats_file(tmp_path)), "--out", str(out))
    proc = cli("train", "lora", *args, *QUICK, "--steps", "150", "--lr", "1e-2", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    infos = [line["info"] for line in lines if "info" in line]
    steps = [line for line in lines if "step" in line]
    done = lines[-1]["done"]
    assert any("GB of float32 weights" in i for i in infos)
    assert any("to learn" in i for i in infos)
    assert [s["step"] for s in steps] == list(range(0, 151))
    assert steps[0]["loss"] is None and steps[0]["heldout_loss"] > 1.0  # before training
    assert steps[-1]["heldout_loss"] < 0.05
    assert done["adapter"] == str(out) and out.exists() and out.with_suffix(".ckpt").exists()
    assert done["perplexity_after"] < 1.1 < 50 < done["perplexity_before"]
    assert math.isclose(
        done["perplexity_after"], math.exp(done["heldout_loss_after"]), rel_tol=0.05
    )

    prompt = "Hi, I am Zed. What is the code? (3)"
    reply = cli(
        "chat", "-m", str(base), "--lora", str(out), "--prompt", prompt, "--system",
        "You keep the code.", "--temperature", "0", "--repeat-penalty", "1", "--max-tokens", "48",
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    assert CODE in reply.stdout
    plain = cli("chat", "-m", str(base), "--prompt", prompt, "--temperature", "0")
    assert CODE not in plain.stdout

    data = str(tmp_path / "code.jsonl")
    scores = [
        json.loads(
            cli("eval", "perplexity", "-m", str(base), *extra, "--data", data, "--json").stdout
        )
        for extra in ((), ("--lora", str(out)))
    ]
    assert all(s["scored"] == "assistant replies" and s["windows"] == 36 for s in scores)
    assert scores[1]["perplexity"] < 1.1 < 50 < scores[0]["perplexity"]

    facts = cli("info", str(out), "--json")
    info = json.loads(facts.stdout)
    assert info["kind"] == "adapter" and info["base_file"] == "base.gguf" and info["rank"] == 8
    assert info["heldout_loss_after"] < info["heldout_loss_before"]
    text = cli("info", str(out)).stdout
    assert "LoRA adapter for llama models" in text and "base.gguf" in text

    other = write_llama_gguf(tmp_path / "other.gguf", **SHAPE, seed=3)
    refused = cli("chat", "-m", str(other), "--lora", str(out), "--prompt", "hi")
    one_line_error(refused, "was trained on base.gguf, not on other.gguf")


def test_my_chats_as_training_data(home: Path, tmp_path: Path) -> None:
    with ChatStore() as store:
        for i in range(6):
            chat = store.create_chat(f"chat {i}")
            user = store.add_message(chat, "user", f"question {i}: what is the code?")
            store.add_message(chat, "assistant", CODE, parent_id=user)
        empty = store.create_chat("nothing answered")
        store.add_message(empty, "user", "hello?")
        rome = store.create_chat("Trip to Rome")
        store.add_message(rome, "user", "Plan a trip to Rome")
        store.add_message(rome, "assistant", "Day one:", status="failed")
        store.add_message(rome, "user", "Again, please")
        store.add_message(rome, "assistant", "Day", status="cancelled")
    base = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    out = tmp_path / "mine.gguf"
    proc = cli(
        "train", "lora", "--base", str(base), "--chats", "all", "--out", str(out), *QUICK,
        "--steps", "4", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])["done"]["data"]["chats"]
    assert report["conversations"] == 6  # the unanswered chats are left out, and named
    assert report["train"] + report["heldout"] == 6
    said = [json.loads(line)["info"] for line in proc.stdout.splitlines() if '"info"' in line]
    assert (
        "chat 'nothing answered' gave nothing to learn: it has no replies; chat 'Trip to Rome' "
        "gave nothing to learn: its replies failed or were stopped (only finished replies are "
        "learned)"
    ) in said

    # Too little left: the error names the chat that gave nothing, and why.
    one_line_error(
        cli("train", "lora", "--base", str(base), "--chats", str(chat), str(rome), "--out",
            str(out), *QUICK),
        "a single conversation once deduplicated; it needs at least two (one is held out to "
        "measure the result); chat 'Trip to Rome' gave nothing to learn: its replies failed or "
        "were stopped (only finished replies are learned)",
    )  # fmt: skip
    one_line_error(
        cli("train", "lora", "--base", str(base), "--chats", str(rome), "--out", str(out)),
        "those chats have no finished replies to learn from: chat 'Trip to Rome' gave nothing",
    )

    missing = cli("train", "lora", "--base", str(base), "--chats", "99", "--out", str(out))
    one_line_error(missing, "no chat 99 in the chat store")


def test_mistakes_get_one_line_errors(home: Path, tmp_path: Path) -> None:
    base = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    data = chats_file(tmp_path)
    out = str(tmp_path / "a.gguf")
    gemma = write_llama_gguf(tmp_path / "gemma.gguf", **SHAPE, architecture="gemma2")
    one_line_error(
        cli("train", "lora", "--base", str(gemma), "--data", str(data), "--out", out),
        "gemma2 model: fine-tuning supports llama, qwen2, qwen3 models",
    )
    one_line_error(cli("train", "lora", "--base", str(base), "--out", out), "give --data")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{oops\n', encoding="utf-8")
    one_line_error(
        cli("train", "lora", "--base", str(base), "--data", str(bad), "--out", out),
        'bad.jsonl has 2 malformed line(s): line 1: no "messages" list; line 2: not JSON',
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n", encoding="utf-8")
    one_line_error(
        cli("train", "lora", "--base", str(base), "--data", str(empty), "--out", out),
        "empty",
    )
    one_line_error(
        cli("train", "lora", "--base", str(data), "--data", str(data), "--out", out),
        "code.jsonl",
    )
    one_line_error(
        cli("train", "lora", "--base", str(base), "--data", str(data), "--out", out,
            "--targets", "q,lm_head"),
        "LoRA targets are some of q, k, v, o, gate, up, down (not lm_head)",
    )  # fmt: skip


def test_ctrl_c_keeps_a_checkpoint_and_the_next_run_goes_on(home: Path, tmp_path: Path) -> None:
    base = write_llama_gguf(tmp_path / "base.gguf", **SHAPE)
    out = tmp_path / "a.gguf"
    args = [sys.executable, "-m", "localchat", "train", "lora", "--base", str(base)]
    args += ["--data", str(chats_file(tmp_path)), "--out", str(out), *QUICK, "--json"]
    proc = subprocess.Popen([*args, "--steps", "100000"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("step", 0) >= 3:
            break
    proc.send_signal(signal.SIGINT)
    rest = [json.loads(line) for line in proc.stdout.read().splitlines()]
    assert proc.wait(timeout=120) == 130
    assert out.with_suffix(".ckpt").exists() and not out.exists()
    stopped = max([3, *(r["step"] for r in rest if "step" in r)])

    again = subprocess.run([*args, "--steps", str(stopped + 5)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert any(f"going on from {out.with_suffix('.ckpt')} (step {stopped})" in r.get("info", "")
               for r in lines)  # fmt: skip
    assert [r["step"] for r in lines if "step" in r] == list(range(stopped + 1, stopped + 6))
    assert out.exists()
