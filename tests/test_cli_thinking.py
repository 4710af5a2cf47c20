"""Issue 21 on the command line: ``localchat chat`` with a reasoning model.

Tiny random-weight models under DeepSeek-R1's template: its prompt opens
``<think>`` when thinking is on, and a random model never closes it, so
``--thinking-budget`` gives thinking and then an answer, and no budget a
reply that is all thinking. Temperature 0 makes every run the same, so the
text output can be checked against the ``--json`` output of another run."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from localchat.cli.chat import JSON_FIELDS, ReplyPrinter
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Message, Piece
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import fixture_template, write_llama_gguf
from tests.test_cli import run

R1 = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"
ON = ["--temperature", "0", "--max-tokens", "30", "--thinking", "on"]
BUDGET = [*ON, "--thinking-budget", "8"]
DIM, RESET = b"\x1b[2m", b"\x1b[0m"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="module")
def r1_keeps_thinking(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """R1's template, changed to show an earlier answer's thinking
    (``reasoning_content``) in the history: what the CLI sends back becomes
    visible in the next prompt's size."""
    answer = "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}"
    text = fixture_template(R1)
    assert answer in text
    text = text.replace(
        answer,
        "{{'<｜Assistant｜>'}}"
        "{%- if message.reasoning_content is defined and message.reasoning_content -%}"
        "{{'<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n'}}"
        "{%- endif -%}"
        "{{content + '<｜end▁of▁sentence｜>'}}",
    )
    path = tmp_path_factory.mktemp("r1") / "r1-keeps-thinking.gguf"
    return write_llama_gguf(path, chat_template=text, suppress_special=True, ascii_only=True)


def chat(model: Path, *args: str, home: Path, stdin: str | None = None) -> str:
    proc = run("chat", "-m", str(model), *args, home=home, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def turns(model: Path, *args: str, home: Path, stdin: str | None = None) -> list[dict[str, Any]]:
    out = chat(model, "--json", *args, home=home, stdin=stdin)
    return [json.loads(line) for line in out.splitlines()]


def test_the_thinking_is_printed_before_the_answer(home: Path, r1_model: Path) -> None:
    (turn,) = turns(r1_model, "--prompt", "hello", *BUDGET, home=home)
    thinking, answer = turn["reasoning"].strip(), turn["reply"].strip()
    assert thinking and answer
    text = chat(r1_model, "--prompt", "hello", *BUDGET, home=home)
    assert text == f"Thinking...\n{thinking}\n...done thinking.\n\n{answer}\n"
    hidden = chat(r1_model, "--prompt", "hello", *BUDGET, "--hide-thinking", home=home)
    assert hidden == f"{answer}\n"
    # Hiding is for the eyes only: the JSON is the same (but for the timings).
    (hidden_turn,) = turns(r1_model, "--prompt", "hello", *BUDGET, "--hide-thinking", home=home)
    assert untimed(hidden_turn) == untimed(turn)


def untimed(turn: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in turn.items() if k not in ("ttft_ms", "tokens_per_s")}


def test_a_reply_that_ends_thinking_says_so(home: Path, r1_model: Path) -> None:
    (turn,) = turns(r1_model, "--prompt", "hello", *ON, home=home)
    assert turn["reply"] == "" and turn["reasoning"]
    assert turn["finish_reason"] == "length" and turn["content_tokens"] == 0
    text = chat(r1_model, "--prompt", "hello", *ON, home=home)
    assert text == f"Thinking...\n{turn['reasoning'].strip()}\n...done thinking.\n"
    assert chat(r1_model, "--prompt", "hello", *ON, "--hide-thinking", home=home) == "\n"


def test_json_splits_the_reply_into_thinking_and_answer(home: Path, r1_model: Path) -> None:
    assert JSON_FIELDS.index("reasoning") == JSON_FIELDS.index("reply") + 1
    (turn,) = turns(r1_model, "--prompt", "hello", *BUDGET, home=home)
    assert tuple(turn) == (*JSON_FIELDS, "backend")
    assert turn["reasoning"] and turn["reply"]
    assert turn["reasoning_tokens"] > 8 and turn["content_tokens"] > 0  # the budget, its marker
    assert turn["reasoning_tokens"] + turn["content_tokens"] == turn["completion_tokens"] == 30
    for marker in ("<think>", "</think>"):
        assert marker not in turn["reply"] and marker not in turn["reasoning"]


def test_thinking_off_gives_no_thinking(home: Path, r1_model: Path) -> None:
    (turn,) = turns(r1_model, "--prompt", "hello", *ON[:-1], "off", home=home)
    assert turn["reasoning"] == "" and turn["reasoning_tokens"] == 0 and turn["reply"]
    assert turn["content_tokens"] == turn["completion_tokens"]
    text = chat(r1_model, "--prompt", "hello", *ON[:-1], "off", home=home)
    assert text == turn["reply"] + "\n"
    # The template's own default ("auto") is off for R1.
    (auto,) = turns(r1_model, "--prompt", "hello", *ON[:-2], home=home)
    assert auto["reasoning"] == "" and auto["reply"] == turn["reply"]


def test_a_follow_up_sends_the_thinking_back(
    home: Path, r1_keeps_thinking: Path, engine: Engine
) -> None:
    first, second = turns(r1_keeps_thinking, *BUDGET, home=home, stdin="hello\nand then\n")
    assert first["reasoning"] and first["reply"]
    # The prompt the CLI sent for the second turn, counted exactly: with the
    # first turn's thinking apart from its answer, not without it.
    engine.load(str(r1_keeps_thinking), GenerationSettings(ctx=1024))
    engine.chat([{"role": "user", "content": "x"}], _on(max_tokens=1)).text()  # thinking on
    answer: Message = {"role": "assistant", "content": first["reply"]}
    history: list[Message] = [
        {"role": "user", "content": "hello"},
        answer,
        {"role": "user", "content": "and then"},
    ]
    assert engine.render(history[:1]).n_tokens == first["prompt_tokens"]
    without = engine.render(history).n_tokens
    answer["reasoning"] = first["reasoning"]
    shown = engine.render(history)
    assert first["reasoning"] in shown.text and "<think>" + first["reply"] not in shown.text
    assert second["prompt_tokens"] == shown.n_tokens > without


def _on(**changes: Any) -> GenerationSettings:
    return GenerationSettings(**{"temperature": 0.0, "thinking": "on", **changes})


def _terminal(args: list[str], env: dict[str, str]) -> bytes:
    """What the CLI writes to a terminal, run with ``args`` until it exits."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "localchat", *args], env)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child has gone
                break
            if not chunk:
                break
            screen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, screen
    return screen.replace(b"\r\n", b"\n")


def test_a_terminal_shows_the_thinking_dimmed(home: Path, r1_model: Path) -> None:
    (turn,) = turns(r1_model, "--prompt", "hello", *BUDGET, home=home)
    thinking, answer = turn["reasoning"].strip().encode(), turn["reply"].strip().encode()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["LOCALCHAT_HOME"] = str(home)
    args = ["chat", "-m", str(r1_model), "--prompt", "hello", *BUDGET]
    screen = _terminal(args, env)
    assert screen == DIM + thinking + RESET + b"\n\n" + answer + b"\n"
    # NO_COLOR (any value): the plain text a pipe gets.
    plain = _terminal(args, {**env, "NO_COLOR": "1"})
    assert plain == b"Thinking...\n" + thinking + b"\n...done thinking.\n\n" + answer + b"\n"
    assert _terminal([*args, "--hide-thinking"], env) == answer + b"\n"


def test_ctrl_c_while_thinking_stops_the_reply_and_ends_the_block(
    home: Path, tmp_path: Path
) -> None:
    slow = write_llama_gguf(
        tmp_path / "slow-r1.gguf",
        n_embd=512,
        n_layer=8,
        n_head=8,
        n_head_kv=4,
        n_ff=1408,
        chat_template=fixture_template(R1),
        suppress_special=True,
        ascii_only=True,
    )
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "localchat", "chat", "-m", str(slow), "--thinking", "on"),
            *("--prompt", "go", "--max-tokens", "100000", "--ctx", "8192"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LOCALCHAT_HOME": str(home)},
    )
    assert proc.stdout is not None
    got = proc.stdout.read(30)  # wait until the thinking streams
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    text = (got + out).decode()
    assert text.startswith("Thinking...\n") and text.endswith("\n...done thinking.\n")
    assert len(text) >= len(got) + len("\n...done thinking.\n")  # what came is kept
    assert b"Traceback" not in err


# -- the printer on its own ------------------------------------------------------


def printed(pieces: list[Piece], **options: Any) -> str:
    out = io.StringIO()
    printer = ReplyPrinter(out, **options)
    for piece in pieces:
        printer.add(piece)
    printer.finish()
    return out.getvalue()


THOUGHT = [Piece("\n", True), Piece("Let me", True), Piece(" see.\n\n", True), Piece("\n", True)]
ANSWER = [Piece("\n\n", False), Piece("Four", False), Piece(".", False)]


def test_the_printer_trims_the_thinking_and_separates_it() -> None:
    assert printed([*THOUGHT, *ANSWER]) == "Thinking...\nLet me see.\n...done thinking.\n\nFour.\n"
    assert printed([*THOUGHT, *ANSWER], dim=True) == "\x1b[2mLet me see.\x1b[0m\n\nFour.\n"
    assert printed([*THOUGHT, *ANSWER], show_thinking=False) == "Four.\n"
    # Stopped while thinking: the block is closed (and the colour reset).
    assert printed(THOUGHT) == "Thinking...\nLet me see.\n...done thinking.\n"
    assert printed(THOUGHT, dim=True) == "\x1b[2mLet me see.\x1b[0m\n"
    assert printed(THOUGHT, show_thinking=False) == "\n"
    # Thinking that is only whitespace shows nothing.
    assert printed([Piece(" \n", True), *ANSWER]) == "Four.\n"


def test_a_reply_without_thinking_is_printed_as_it_comes() -> None:
    pieces = [Piece("\n  Hi", False), Piece(" there ", False)]
    for dim in (False, True):
        assert printed(pieces, dim=dim) == "\n  Hi there \n"


def test_thinking_after_some_answer_is_a_block_of_its_own() -> None:
    pieces = [Piece("A", False), Piece("hm", True), Piece(" B", False)]
    assert printed(pieces) == "A\n\nThinking...\nhm\n...done thinking.\n\n B\n"
