"""The API server's cost: streaming through ``localchat serve`` with the
openai client against the engine called directly, and a conversation
resent turn by turn against llama-cpp-python's own server.

Run from the repository root::

    .venv/bin/python benchmarks/server.py               # TinyLlama-1.1B shape, Q4_0
    .venv/bin/python benchmarks/server.py --quick       # a small model, to try the script
    .venv/bin/python benchmarks/server.py --template Mistral-Small-3.2-24B-Instruct-2506
    .venv/bin/python benchmarks/server.py --rounds 9 --conversations 5 --llama-cache

The model is a random-weight Q4_0 llama of TinyLlama-1.1B's shape (Llama 2's
32,000-token vocabulary), written once into ``benchmarks/.cache`` as
``benchmarks/engine.py`` does: by default the file without a chat template
(both servers then use ChatML, whose markers are plain text in this
vocabulary), with ``--template`` one carrying a template from the shared
fixtures (Mistral's: a reply ends with ``</s>``, a control token, as in a
real Mistral 7B Instruct GGUF); ``--model`` takes any GGUF instead. Both
servers run as processes of their own, as a user starts them: ours from a
temporary LocalChat home with the model hard-linked into its models folder
and the settings below stored app-wide, llama-cpp-python's as
``python -m llama_cpp.server`` with the same context, threads (generation
and batch), batch size and chat format (the GGUF's template; ChatML, what
both fall back to differently, for a file without one) and its other
options as they come (no prompt cache unless ``--llama-cache``). Sampling is
greedy (temperature 0, repeat penalty 1, fixed seed) on every side.

1. **Streaming.** The same prompt, ``--tokens`` tokens, in alternating
   rounds (which side goes first alternates too) through our server with the
   ``openai`` client (``stream=True``, usage included) and through an
   :class:`Engine` in this process. Both are timed here, the same way: time
   to first token from the call (``create`` / ``Engine.chat``) to the first
   piece of text, tokens/s as (tokens - 1) / (first to last piece of text),
   the tokens counted by the reply's usage / result. The prompt is cached
   on both sides after an untimed warm-up, so the time to first token is one
   decode plus what each path adds. Goals: tokens/s ratio >= 0.95, time to
   first token at most 20 ms more than the engine's.
2. **A conversation resent each turn.** ``--turns`` turns (10) of a system
   message and ~``--words``-word user messages; each turn sends the whole
   conversation so far plus the next user message, as chat clients do, and
   appends the reply's text as received. Ours and llama-cpp-python's server
   take the turns in alternation (each its own conversation, the same
   messages), ``--conversations`` times with different messages, which side
   goes first alternating; per turn it prints the medians of the prompt's
   tokens, the tokens evaluated for it and the time to first token. Ours come
   from the usage (``prompt_tokens - cached_tokens``: the tokens evaluated
   ahead, between turns, count as evaluated); llama-cpp-python's streamed
   replies carry no usage, so they are read from its verbose log
   (``Llama.generate: N prefix-match hit, remaining M prompt tokens to eval``).

The servers and the engine each have a worker with every thread busy while
they compute, so no two ever compute at once: the requests go one at a time,
``--pause`` seconds apart (our engine evaluates the next prompt's start
after each reply, which must not overlap the other side's request). Nothing
passes or fails on a timing: compare the ratios, on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localchat.core.engine.client import Engine  # noqa: E402
from localchat.core.engine.gguf_info import read_model_info  # noqa: E402
from localchat.core.engine.protocol import Message  # noqa: E402
from localchat.core.hardware import physical_cores  # noqa: E402
from localchat.core.params import GenerationSettings  # noqa: E402
from localchat.core.settings import AppSettings  # noqa: E402

TOKS_GOAL = 0.95
TTFT_GOAL_MS = 20.0
CTX = 2048
SEED = 1234
SYSTEM = "You are a patient assistant. Answer briefly and plainly, and ask when unsure."
PROMPT: list[Message] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Write a short story about a lighthouse keeper."},
]
_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright stars light the "
    "quiet valley river under old stone bridges where travellers rest and talk about "
    "distant cities markets music weather harvest stories of kings and clever merchants"
).split()


def _engine_bench() -> Any:
    """benchmarks/engine.py, for its cached random-weight models."""
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "benchmarks" / "engine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# The two servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A server process, its output in a log file, answering on ``url``; stopped
    (Ctrl+C, then killed) on leaving the ``with`` block, however it is left."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv, self.env, self.log_path = argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._read = 0

    def __enter__(self) -> Process:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT
            )
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait(self, timeout: float = 180) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    self.new_output()  # the start-up's lines are not a request's
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer in {timeout:.0f} s:\n{self.tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def port(self) -> str:
        return self.argv[self.argv.index("--port") + 1]

    def cpu_seconds(self) -> float:
        """The process's CPU time so far (its own, not its children's; Linux)."""
        assert self.proc is not None
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return 0.0
        utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def new_output(self) -> str:
        """What it printed since the last call."""
        with self.log_path.open("rb") as f:
            f.seek(self._read)
            data = f.read()
        self._read += len(data)
        return data.decode("utf-8", "replace")

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ours(model: Path, home: Path, s: GenerationSettings) -> Process:
    """``localchat serve -m MODEL`` from ``home``, with ``model`` installed
    there and ``s`` stored as the app-wide settings."""
    target = home / "models" / model.name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(model, target)
    except OSError:  # another file system
        import shutil

        shutil.copy(model, target)
    AppSettings(home / "settings.json").set_generation(None, **s.to_dict())
    env = {**os.environ, "LOCALCHAT_HOME": str(home), "LOCALCHAT_CHECKOUT_MODELS": "0"}
    argv = [sys.executable, "-m", "localchat", "serve", "--port", str(free_port())]
    return Process("localchat serve", [*argv, "-m", model.stem], env, home / "serve.log")


def theirs(
    model: Path, folder: Path, s: GenerationSettings, threads: int, cache: bool, chatml: bool
) -> Process:
    """``python -m llama_cpp.server`` on ``model`` with our context, threads and
    batch, its other options as they come (``cache``: its prompt cache on)."""
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    argv += ["--host", "127.0.0.1", "--port", str(free_port()), "--n_ctx", str(s.ctx)]
    argv += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    argv += ["--n_batch", "512", "--n_ubatch", "512", "--n_gpu_layers", "0"]
    if chatml:
        argv += ["--chat_format", "chatml"]
    if cache:
        argv += ["--cache", "true"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return Process("llama_cpp.server", argv, env, folder / "llama_cpp_server.log")


def llama_cpp_server_missing() -> str | None:
    """Why ``llama_cpp.server`` cannot run here (None: it can)."""
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        return f"{exc} (pip install -e '.[dev]' installs its packages)"
    return None


# ---------------------------------------------------------------------------------------------
# One streamed reply, timed here


@dataclass
class Reply:
    text: str
    ttft_ms: float
    tokens: int
    """Completion tokens (usage / result); -1 when the side does not say."""
    tokens_per_s: float
    """(tokens - 1) / (first to last piece of text), timed here."""
    prompt_tokens: int = -1
    evaluated: int = -1
    worker_tokens_per_s: float = 0.0


def _speed(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def via_engine(engine: Engine, messages: Sequence[Message], s: GenerationSettings) -> Reply:
    t0 = time.perf_counter()
    stream = engine.chat(messages, s)
    first = last = 0.0
    parts = []
    for piece in stream.pieces():
        if piece.text:
            last = time.perf_counter()
            first = first or last
            parts.append(piece.text)
    r = stream.result
    assert r is not None
    return Reply(
        "".join(parts),
        (first - t0) * 1000,
        r.completion_tokens,
        _speed(r.completion_tokens, first, last),
        r.prompt_tokens,
        r.evaluated_tokens,
        r.tokens_per_s,
    )


def via_api(
    client: openai.OpenAI, model: str, messages: Sequence[Message], s: GenerationSettings
) -> Reply:
    wire: list[Any] = [dict(m) for m in messages]
    t0 = time.perf_counter()
    chunks = client.chat.completions.create(
        model=model,
        messages=wire,
        stream=True,
        stream_options={"include_usage": True},
        temperature=s.temperature,
        seed=s.seed,
        max_tokens=s.max_tokens,
        extra_body={"repeat_penalty": s.repeat_penalty},
    )
    first = last = 0.0
    parts = []
    usage = None
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    if usage is None:  # llama-cpp-python's server: no usage in a stream
        return Reply("".join(parts), (first - t0) * 1000, -1, 0.0)
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    n = usage.completion_tokens
    return Reply(
        "".join(parts),
        (first - t0) * 1000,
        n,
        _speed(n, first, last),
        usage.prompt_tokens,
        usage.prompt_tokens - cached,
    )


PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")
PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")
EVAL_RUNS = re.compile(r"^\S+:\s+eval time =\s*[\d.]+ ms /\s*(\d+) runs", re.MULTILINE)


def read_llama_log(server: Process, reply: Reply) -> None:
    """Fill in ``reply``'s prompt, evaluated and completion tokens from what
    llama-cpp-python's server printed for it (verbose, its default)."""
    out = ""
    deadline = time.monotonic() + 2
    while "total time" not in out and time.monotonic() < deadline:
        out += server.new_output()
        time.sleep(0.01)
    if m := PREFIX_HIT.search(out):
        reply.prompt_tokens = int(m[1]) + int(m[2])
        reply.evaluated = int(m[2])
    elif "full prompt already cached" in out:
        reply.evaluated = 0
    elif m := PROMPT_EVAL.search(out):  # nothing cached: the whole prompt
        reply.prompt_tokens = reply.evaluated = int(m[1])
    if m := EVAL_RUNS.search(out):
        reply.tokens = int(m[1]) + 1  # the first token comes from the prompt's decode


# ---------------------------------------------------------------------------------------------
# The conversation


def user_text(rng: random.Random, turn: int, words: int) -> str:
    return f"Question {turn}: " + " ".join(rng.choice(_WORDS) for _ in range(words)) + "?"


def conversation_turns(k: int, turns: int, words: int) -> list[str]:
    rng = random.Random(k)
    return [user_text(rng, t, words + rng.randint(-5, 5)) for t in range(1, turns + 1)]


@dataclass
class Turn:
    prompt: int
    evaluated: int
    ttft_ms: float
    tokens: int


def _med(values: Sequence[float]) -> float:
    known = [v for v in values if v >= 0]
    return statistics.median(known) if known else -1


def _n(value: float) -> str:
    return f"{value:.0f}" if value >= 0 else "?"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF model (default: TinyLlama-1.1B shape)")
    parser.add_argument("--quick", action="store_true", help="a small model")
    parser.add_argument("--rounds", type=int, help="streaming rounds (7; --quick 3)")
    parser.add_argument("--tokens", type=int, help="tokens per streamed reply (128; --quick 64)")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--conversations", type=int, help="conversations (3; --quick 1)")
    parser.add_argument("--words", type=int, default=40, help="words per user message (40)")
    parser.add_argument("--reply-tokens", type=int, default=48, help="tokens per reply (48)")
    parser.add_argument("--pause", type=float, help="seconds between requests (1; --quick 0.2)")
    parser.add_argument(
        "--template",
        metavar="STEM",
        help="write the model with this chat template from the shared fixtures "
        "(e.g. Mistral-Small-3.2-24B-Instruct-2506); default: none (ChatML on both sides)",
    )
    parser.add_argument("--threads", type=int, default=0, help="0: one per physical core")
    parser.add_argument(
        "--llama-cache", action="store_true", help="llama_cpp.server with --cache true"
    )
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    n_tokens = args.tokens or (64 if args.quick else 128)
    conversations = args.conversations or (1 if args.quick else 3)
    pause = args.pause if args.pause is not None else (0.2 if args.quick else 1.0)
    threads = args.threads or physical_cores()
    bench = _engine_bench()
    shape = bench.QUICK_SHAPE if args.quick else bench.TINYLLAMA_SHAPE
    if args.template:
        shape = {**shape, "chat_template": args.template}
    model = args.model or bench.cached_model(shape)
    s = GenerationSettings(
        temperature=0.0,
        repeat_penalty=1.0,
        seed=SEED,
        max_tokens=n_tokens,
        ctx=CTX,
        threads=threads,
        gpu_layers=0,
        overflow="stop",  # what the server runs with
    )
    chatml = not read_model_info(model).has_chat_template
    print(f"model    {model.name} ({model.stat().st_size / 2**20:.0f} MiB)")
    print(
        f"settings ctx {CTX}, {threads} threads, CPU only, greedy, "
        f"{'ChatML (no template in the file)' if chatml else 'the GGUF chat template'}, "
        f"{pause:g} s between requests"
    )
    print(f"load     {os.getloadavg()[0]:.2f} (1 min average)", flush=True)
    started = time.monotonic()
    missing = llama_cpp_server_missing()
    with tempfile.TemporaryDirectory(prefix="localchat-server-bench-") as tmp:
        folder = Path(tmp)
        with ours(model, folder / "home", s) as server:
            client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
            print(f"our server started in {time.monotonic() - started:.0f} s", flush=True)
            streaming(server, client, model, s, rounds, pause)
            if missing:
                print(f"\nllama_cpp.server cannot be imported, its side is skipped: {missing}")
            conversation_table(
                server,
                client,
                model,
                s.replace(max_tokens=args.reply_tokens),
                None if missing else theirs(model, folder, s, threads, args.llama_cache, chatml),
                args.llama_cache,
                turns=args.turns,
                words=args.words,
                conversations=conversations,
                pause=pause,
            )
    print(
        f"load     {os.getloadavg()[0]:.2f} (1 min average); "
        f"{time.monotonic() - started:.0f} s in all"
    )
    return 0


def streaming(
    server: Process,
    client: openai.OpenAI,
    model: Path,
    s: GenerationSettings,
    rounds: int,
    pause: float,
) -> None:
    """Part 1: our server with the openai client against the engine directly."""
    replies: dict[str, list[Reply]] = {"engine": [], "server": []}
    # CPU seconds outside the workers, while streaming: this process's, the server's
    cpu: dict[str, list[float]] = {"engine": [0.0, 0.0], "server": [0.0, 0.0]}
    with Engine() as engine:
        loaded = engine.load(model, s)
        assert loaded.threads == s.threads, loaded.threads

        def run(side: str) -> Reply:
            time.sleep(pause)
            here, there = time.process_time(), server.cpu_seconds()
            if side == "engine":
                reply = via_engine(engine, PROMPT, s)
            else:
                reply = via_api(client, model.stem, PROMPT, s)
            cpu[side][0] += time.process_time() - here
            cpu[side][1] += server.cpu_seconds() - there
            return reply

        run("engine"), run("server")  # warm-up: the prompt is cached on both sides after
        cpu = {"engine": [0.0, 0.0], "server": [0.0, 0.0]}
        for r in range(rounds):
            for side in ("engine", "server") if r % 2 == 0 else ("server", "engine"):
                replies[side].append(run(side))
    e, v = replies["engine"], replies["server"]
    counts = {x.tokens for x in e + v}
    print(
        f"\nstreaming {s.max_tokens} tokens, the same (cached) prompt, median of {rounds} "
        f"alternating rounds ({loaded.backend}):"
    )
    print("                          engine direct    server + openai client")
    speed_e, speed_v = _med([x.tokens_per_s for x in e]), _med([x.tokens_per_s for x in v])
    print(
        f"  tok/s, timed here       {speed_e:10.2f}       {speed_v:10.2f}        "
        f"ratio {speed_v / speed_e:.3f} (goal >= {TOKS_GOAL})"
    )
    worker_e = _med([x.worker_tokens_per_s for x in e])
    print(f"  tok/s, the worker's     {worker_e:10.2f}")
    ttft_e, ttft_v = _med([x.ttft_ms for x in e]), _med([x.ttft_ms for x in v])
    print(
        f"  time to first token     {ttft_e:8.1f} ms      {ttft_v:8.1f} ms         "
        f"{ttft_v - ttft_e:+.1f} ms (goal <= +{TTFT_GOAL_MS:.0f} ms)"
    )
    per_round = ", ".join(
        f"{b.tokens_per_s / a.tokens_per_s:.3f}" for a, b in zip(e, v, strict=True)
    )
    print(f"  tok/s ratio per round: {per_round}")
    print(
        "  ttft difference per round (ms): "
        + ", ".join(f"{b.ttft_ms - a.ttft_ms:+.1f}" for a, b in zip(e, v, strict=True))
    )
    ms = {
        side: [1000 * c / sum(x.tokens for x in replies[side]) for c in cpu[side]] for side in cpu
    }
    print(
        f"  CPU a token outside the worker: engine direct {ms['engine'][0]:.2f} ms (this "
        f"process); server {ms['server'][1]:.2f} ms (its process) + {ms['server'][0]:.2f} ms "
        "(this process: the openai client)"
    )
    evaluated = sorted({x.evaluated for x in e}), sorted({x.evaluated for x in v})
    print(f"  prompt {e[0].prompt_tokens} tokens, evaluated {evaluated[0]} / {evaluated[1]}")
    if len(counts) != 1:
        print(f"  note: the replies' lengths differ ({sorted(counts)} tokens): tok/s per token")


def conversation_table(
    server: Process,
    client: openai.OpenAI,
    model: Path,
    s: GenerationSettings,
    other: Process | None,
    cache: bool,
    *,
    turns: int,
    words: int,
    conversations: int,
    pause: float,
) -> None:
    """Part 2: a conversation resent each turn, ours beside llama_cpp.server's."""
    rows: dict[str, list[list[Turn]]] = {"ours": [], "theirs": []}
    with other if other is not None else contextlib.nullcontext() as theirs_server:
        sides: dict[str, tuple[openai.OpenAI, Process]] = {"ours": (client, server)}
        if theirs_server is not None:
            sides["theirs"] = (
                openai.OpenAI(base_url=theirs_server.url, api_key="x", max_retries=0),
                theirs_server,
            )
            # warm-up: its first decode, and a cache that holds something else
            time.sleep(pause)
            warm = via_api(sides["theirs"][0], model.stem, PROMPT, s)
            read_llama_log(theirs_server, warm)
        for k in range(conversations):
            users = conversation_turns(k, turns, words)
            chats: dict[str, list[Message]] = {
                side: [{"role": "system", "content": SYSTEM}] for side in sides
            }
            per: dict[str, list[Turn]] = {side: [] for side in sides}
            order = list(sides) if k % 2 == 0 else list(reversed(sides))
            for t in range(turns):
                for side in order:
                    api, proc = sides[side]
                    chats[side].append({"role": "user", "content": users[t]})
                    time.sleep(pause)
                    reply = via_api(api, model.stem, chats[side], s)
                    if side == "theirs":
                        read_llama_log(proc, reply)
                    chats[side].append({"role": "assistant", "content": reply.text})
                    per[side].append(
                        Turn(reply.prompt_tokens, reply.evaluated, reply.ttft_ms, reply.tokens)
                    )
            for side in sides:
                rows[side].append(per[side])
    name = "llama_cpp.server" + (" --cache true" if cache else " (defaults: no --cache)")
    print(
        f"\n{turns}-turn conversation resent each turn ({words}-word messages, replies of "
        f"{s.max_tokens} tokens), median of {conversations} conversation(s):"
    )
    has_theirs = bool(rows["theirs"])
    if has_theirs:
        print(f"  ours: localchat serve; theirs: {name}")
        print("  turn   prompt ours/theirs   evaluated ours/theirs   ttft ms ours/theirs   ratio")
    else:
        print("  turn   prompt   evaluated   ttft ms")
    totals: dict[str, list[float]] = {"ours": [0, 0], "theirs": [0, 0]}
    lengths: set[int] = set()
    for t in range(turns):
        cells: dict[str, tuple[float, float, float]] = {}
        for side in ("ours", "theirs") if has_theirs else ("ours",):
            at = [conv[t] for conv in rows[side]]
            lengths |= {x.tokens for x in at}
            cells[side] = (
                _med([x.prompt for x in at]),
                _med([x.evaluated for x in at]),
                _med([x.ttft_ms for x in at]),
            )
            totals[side][0] += max(cells[side][1], 0)
            totals[side][1] += cells[side][2]
        o = cells["ours"]
        if has_theirs:
            h = cells["theirs"]
            print(
                f"  {t + 1:4d}   {_n(o[0]):>6} / {_n(h[0]):<6}     {_n(o[1]):>6} / {_n(h[1]):<6}"
                f"         {o[2]:7.0f} / {h[2]:<7.0f}     {o[2] / h[2]:.2f}"
            )
        else:
            print(f"  {t + 1:4d}   {_n(o[0]):>6}   {_n(o[1]):>9}   {o[2]:7.0f}")
    o_tot = totals["ours"]
    if has_theirs:
        h_tot = totals["theirs"]
        print(
            f"  total  evaluated {o_tot[0]:.0f} / {h_tot[0]:.0f}, time to first token "
            f"{o_tot[1] / 1000:.2f} / {h_tot[1] / 1000:.2f} s "
            f"(ratio {o_tot[1] / h_tot[1]:.2f})"
        )
    else:
        print(f"  total  evaluated {o_tot[0]:.0f}, time to first token {o_tot[1] / 1000:.2f} s")
    if len(lengths - {-1}) > 1:
        print(f"  note: replies of {sorted(lengths - {-1})} tokens (some ended early)")


if __name__ == "__main__":
    sys.exit(main())
