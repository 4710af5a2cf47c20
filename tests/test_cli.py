"""The CLI contract, run as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import itertools
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localchat.cli.chat import JSON_FIELDS
from localchat.testing.tiny_models import write_llama_gguf

FAST = ["--temperature", "0", "--max-tokens", "12"]


def run(
    *args: str, home: Path, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "localchat", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and text in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_version(home: Path) -> None:
    proc = run("--version", home=home)
    assert proc.returncode == 0 and proc.stdout.startswith("localchat ")


def test_one_prompt_streams_the_reply(home: Path, tiny_model: Path) -> None:
    proc = run("chat", "-m", str(tiny_model), "--prompt", "Hello", *FAST, home=home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n") and len(proc.stdout.strip()) > 0
    assert proc.stderr == ""


def test_json_turns_from_stdin_share_one_conversation(home: Path, phi3_model: Path) -> None:
    proc = run(
        "chat",
        "-m",
        str(phi3_model),
        "--json",
        "--system",
        "Be brief.",
        *FAST,
        home=home,
        stdin="What is two plus two?\n\nAnd three plus three?\nThanks\n",
    )
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(turns) == 3  # the empty line is not a turn
    for t in turns:
        assert tuple(t) == (*JSON_FIELDS, "backend")
        assert t["backend"] == "CPU"  # what this machine's build runs on
        assert t["completion_tokens"] == 12 and t["finish_reason"] == "length"
        assert t["context_size"] == 4096
        assert t["context_used"] == t["prompt_tokens"] + t["completion_tokens"]
    assert turns[0]["evaluated_tokens"] == turns[0]["prompt_tokens"]
    for before, after in itertools.pairwise(turns):
        assert after["prompt_tokens"] > before["context_used"]
        assert after["evaluated_tokens"] == after["prompt_tokens"] - before["context_used"] + 1


def test_installed_models_by_name(home: Path, tiny_model: Path) -> None:
    proc = run("chat", "--prompt", "hi", home=home)
    assert_one_line_error(proc, 1, "no model installed")
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model, models / "My-Model.Q4.gguf")
    for name in ([], ["-m", "My-Model.Q4"], ["-m", "my-model.q4.gguf"], ["-m", "model"]):
        proc = run("chat", *name, "--prompt", "hi", *FAST, home=home)
        assert proc.returncode == 0, (name, proc.stderr)
    shutil.copy(tiny_model, models / "other.gguf")
    assert_one_line_error(run("chat", "--prompt", "hi", home=home), 1, "choose one with -m")
    assert_one_line_error(
        run("chat", "-m", "nope", "--prompt", "hi", home=home), 1, "no model named"
    )


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["chat", "--temperature", "hot"], "invalid float value"),
        (["chat", "--temperature", "5"], "temperature must be at most 2"),
        (["chat", "--ctx", "64"], "ctx must be at least 256"),
        (["chat", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(home: Path, args: list[str], text: str) -> None:
    assert_one_line_error(run(*args, home=home), 2, text)


def test_bad_model_files_exit_1(home: Path, tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "zero.gguf").write_bytes(b"")
    (tmp_path / "cut.gguf").write_bytes(tiny_model.read_bytes()[:-5000])
    (tmp_path / "notes.gguf").write_text("hello")
    alien = write_llama_gguf(tmp_path / "alien.gguf", architecture="notallama")
    evil = write_llama_gguf(
        tmp_path / "evil.gguf", chat_template="{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    cases = [
        (["-m", str(tmp_path / "missing.gguf")], "no such file"),
        (["-m", str(tmp_path / "zero.gguf")], "empty"),
        (["-m", str(tmp_path / "cut.gguf")], "truncated"),
        (["-m", str(tmp_path / "notes.gguf")], "not a GGUF model file"),
        (["-m", str(alien)], "unknown model architecture"),
        (["-m", str(evil)], "chat template"),
        (["-m", str(tiny_model), "--lora", str(tiny_model)], "not a LoRA adapter"),
        (["-m", str(tiny_model), "--lora", str(tmp_path / "nope.gguf")], "no such file"),
    ]
    for args, text in cases:
        assert_one_line_error(run("chat", *args, "--prompt", "hi", home=home), 1, text)


def test_ctrl_c_stops_the_reply_and_keeps_it(home: Path, slow_model: Path) -> None:
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "localchat", "chat", "-m", str(slow_model)),
            *("--prompt", "go", "--max-tokens", "100000", "--ctx", "8192"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    got = proc.stdout.read(20)  # wait until the reply streams
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert len(got + out) > 20
    assert b"Traceback" not in err


def test_interactive_chat_in_a_terminal(home: Path, tiny_model: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.environ["LOCALCHAT_HOME"] = str(home)
        os.execv(
            sys.executable,
            [sys.executable, "-m", "localchat", "chat", "-m", str(tiny_model), *FAST],
        )
    screen = b""

    def read_until(marker: bytes, count: int) -> None:
        nonlocal screen
        deadline = time.monotonic() + 60
        while screen.count(marker) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    screen += os.read(fd, 4096)
                except OSError:
                    break

    read_until(b">>> ", 1)
    assert b"Chatting with tiny" in screen
    os.write(fd, b"Hello there\r")
    read_until(b">>> ", 2)
    os.write(fd, b"/exit\r")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    reply = screen.split(b"Hello there", 1)[1].split(b">>> ")[0]
    assert len(reply.strip()) > 0
    assert b"Traceback" not in screen


def test_info_describes_a_model_without_loading_it(home: Path, phi3_model: Path) -> None:
    proc = run("info", str(phi3_model), "--json", "--ctx", "3000", home=home)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["architecture"] == "llama" and facts["kind"] == "model"
    assert facts["quantization"] == "F32" and facts["has_chat_template"] is True
    assert facts["trained_context"] == 4096 and facts["context"] == 2816
    assert facts["file_size"] == phi3_model.stat().st_size
    assert facts["ram_estimate"] > facts["ram_weights"] + facts["ram_kv_cache"]
    text = run("info", str(phi3_model), home=home)
    assert text.returncode == 0 and "memory at 4,096" in text.stdout
    assert_one_line_error(run("info", str(home / "none.gguf"), home=home), 1, "no such file")


def test_no_arguments_opens_the_window(home: Path) -> None:
    env = {**os.environ, "LOCALCHAT_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "localchat"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=4)  # still running: the window is up
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"Traceback" not in err


def test_overflow_policy_from_the_command_line(home: Path, tiny_model: Path) -> None:
    long = "word " * 600
    proc = run(
        "chat",
        "-m",
        str(tiny_model),
        "--ctx",
        "256",
        "--overflow",
        "stop",
        "--prompt",
        long,
        *FAST,
        home=home,
    )
    assert_one_line_error(proc, 1, "tokens over the 256-token context")
    proc = run(
        "chat",
        "-m",
        str(tiny_model),
        "--ctx",
        "512",
        "--json",
        *FAST,
        home=home,
        stdin="".join(f"question {i}: " + "tell me more " * 6 + "\n" for i in range(8)),
    )
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    assert turns[0]["trimmed_messages"] == 0 and turns[-1]["trimmed_messages"] > 0
    # Old turns left the cache in place: a turn costs the same before and after.
    assert any(t["shifted_tokens"] > 0 for t in turns)
    assert {t["evaluated_tokens"] for t in turns[1:]} == {turns[1]["evaluated_tokens"]}
    assert_one_line_error(
        run("chat", "--overflow", "sometimes", home=home), 2, "invalid choice: 'sometimes'"
    )


def test_models_import_list_and_remove(home: Path, tmp_path: Path, tiny_model: Path) -> None:
    empty = run("models", "list", home=home)
    assert empty.returncode == 0 and "No models installed" in empty.stdout
    source = tmp_path / "My Model.Q8_0.gguf"
    source.write_bytes(tiny_model.read_bytes())
    added = run("models", "import", str(source), home=home)
    assert added.returncode == 0, added.stderr
    assert (home / "models" / "My Model.Q8_0.gguf").read_bytes() == source.read_bytes()
    assert not list((home / "models").glob("*.part"))
    again = run("models", "import", str(source), home=home)
    assert_one_line_error(again, 1, "already installed")
    (tmp_path / "cut.gguf").write_bytes(tiny_model.read_bytes()[:-100])
    assert_one_line_error(
        run("models", "import", str(tmp_path / "cut.gguf"), home=home), 1, "truncated"
    )
    assert not (home / "models" / "cut.gguf").exists()

    listing = run("models", "list", "--json", home=home)
    (entry,) = json.loads(listing.stdout)
    assert entry["name"] == "My Model.Q8_0" and entry["architecture"] == "llama"
    assert entry["file_size"] == source.stat().st_size and entry["trained_context"] == 4096
    text = run("models", "list", home=home)
    assert "My Model.Q8_0" in text.stdout and "F32" in text.stdout

    # It works as a model by name; then it goes (chats in the store keep their text).
    assert run("chat", "-m", "My Model", "--prompt", "hi", *FAST, home=home).returncode == 0
    removed = run("models", "rm", "my model", home=home)
    assert removed.returncode == 0 and not (home / "models" / "My Model.Q8_0.gguf").exists()
    assert source.exists()  # the original is untouched
    assert_one_line_error(run("models", "rm", "my model", home=home), 1, "no model named")
    assert_one_line_error(
        run("models", "rm", str(source), home=home), 1, "not in the models folder"
    )
    assert_one_line_error(run("models", home=home), 2, "required: ACTION")
