"""The engine: a worker process that streams replies, reuses its cache, stops on
request and survives nothing worse than its own death."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localchat.core.engine.client import Engine
from localchat.core.engine.gguf_info import read_model_info
from localchat.core.engine.protocol import FLAG_BYTES, Flag, Message, Unload
from localchat.core.errors import EngineCrashed, EngineError, ModelFileError, ModelLoadError
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import (
    fixture_template,
    fixture_vocab,
    write_llama_gguf,
    write_lora_gguf,
)

GREEDY = GenerationSettings(temperature=0.0, max_tokens=24, repeat_penalty=1.0)


def user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def test_a_script_without_a_main_guard_can_use_the_engine(tiny_model: Path, tmp_path: Path) -> None:
    """The worker starts without the caller's main script: a tinkerer's
    top-level script (no ``if __name__ == "__main__"``) is not run again in it."""
    script = tmp_path / "chat_once.py"
    marker = tmp_path / "runs.txt"
    script.write_text(
        "from pathlib import Path\n"
        "from localchat.core.engine.client import Engine\n"
        "from localchat.core.params import GenerationSettings\n"
        f"with Path({str(marker)!r}).open('a') as f:\n"
        "    f.write('run\\n')\n"
        "with Engine() as engine:\n"
        f"    engine.load({str(tiny_model)!r}, GenerationSettings())\n"
        "    stream = engine.chat([{'role': 'user', 'content': 'hi'}], "
        "GenerationSettings(max_tokens=4, seed=1))\n"
        "    stream.text()\n"
        "    print('tokens', stream.result.completion_tokens)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "tokens" in proc.stdout
    assert marker.read_text() == "run\n"  # once: the worker did not run it again


def test_reply_streams_in_pieces_that_add_up(engine: Engine, tiny_model: Path) -> None:
    assert engine.info() is None
    loaded = engine.load(tiny_model, GREEDY)
    assert loaded.n_ctx == 4096 and loaded.template_source == "gguf"
    assert engine.info() == loaded
    stream = engine.chat(user("Hello there"), GREEDY)
    pieces = list(stream)
    result = stream.result
    assert result is not None
    assert len(pieces) > 1
    assert "".join(pieces) == result.reply
    assert result.completion_tokens == 24 and result.finish_reason == "length"
    assert result.prompt_tokens == result.evaluated_tokens > 0
    assert result.context_used == result.prompt_tokens + result.completion_tokens
    assert result.context_size == 4096
    assert result.ttft_ms > 0 and result.tokens_per_s > 0
    engine.unload()
    assert engine.info() is None
    with pytest.raises(EngineError, match="no model is loaded"):
        engine.chat(user("Hi"), GREEDY).text()


def test_same_seed_same_reply_in_a_fresh_process(tiny_model: Path) -> None:
    s = GenerationSettings(temperature=0.9, seed=1234, max_tokens=30)
    replies = []
    for _ in range(2):
        with Engine() as e:
            e.load(tiny_model, s)
            replies.append(e.chat(user("Tell me a story"), s).text())
    assert replies[0] == replies[1]
    with Engine() as e:
        e.load(tiny_model, s)
        other = e.chat(user("Tell me a story"), s.replace(seed=99)).text()
    assert other != replies[0]


def test_sampling_settings_reach_llama_cpp(engine: Engine, tiny_model: Path) -> None:
    """top_k=1 is greedy whatever the temperature: proof the value is passed on."""
    engine.load(tiny_model)
    greedy = engine.chat(user("Hi"), GREEDY).text()
    hot = GenerationSettings(temperature=2.0, top_k=1, seed=5, max_tokens=24, repeat_penalty=1.0)
    assert engine.chat(user("Hi"), hot).text() == greedy
    wild = hot.replace(top_k=0, top_p=1.0, min_p=0.0)
    assert engine.chat(user("Hi"), wild).text() != greedy


@pytest.mark.parametrize("model", ["phi3_model", "llama3_model"])
def test_follow_up_turns_evaluate_only_the_new_tokens(
    model: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(model)
    s = GREEDY.replace(system_prompt="You are a test.")
    with Engine() as e:
        e.load(path, s)
        messages = user("What is the capital of France?")
        results = []
        for follow_up in ("And of Spain?", "And of Italy?", "Thanks!"):
            stream = e.chat(messages, s)
            reply = stream.text()
            assert stream.result is not None
            results.append(stream.result)
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": follow_up},
            ]
        for before, after in itertools.pairwise(results):
            new_tokens = after.prompt_tokens - before.context_used
            # Only the new tokens, plus the last reply token (sampled, never evaluated).
            assert after.evaluated_tokens == new_tokens + 1
            assert new_tokens < 30


def test_between_turns_the_start_of_the_next_prompt_is_evaluated_ahead(llama3_model: Path) -> None:
    """While the user reads a reply and types, the engine evaluates the start of
    the next prompt: the reply as the next prompt shows it (here a stop string
    cut it, so the tokens generated do not spell it) and the header of the
    user's next message. The next turn then computes only the user's text and
    what follows it; it counts the work done ahead among its evaluated tokens
    (the same count had the user sent at once), and answers as a fresh
    evaluation of the same prompt does."""
    s = GREEDY.replace(max_tokens=32)
    first = user("Tell me a story about a lighthouse.")
    with Engine() as probe:
        probe.load(llama3_model, s)
        whole = probe.chat(first, s).text()
    # A stop string two thirds in, found there first.
    k = next(
        k for k in range(len(whole) * 2 // 3, len(whole) - 3) if whole.find(whole[k : k + 3]) == k
    )
    stop = whole[k : k + 3]

    def conversation(engine: Engine, pause: float) -> tuple[list[Message], str, Any]:
        stream = engine.chat(first, s, stop=[stop])
        reply = stream.text()
        assert stream.result is not None and stream.result.finish_reason == "stop"
        assert reply == whole[:k]
        then: list[Message] = [
            *first,
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "And then?"},
        ]
        engine.plan(then, s)  # the context meter asks meanwhile; the work resumes after it
        time.sleep(pause)
        stream = engine.chat(then, s)
        return then, stream.text(), stream.result

    with Engine() as e:
        e.load(llama3_model, s)
        then, reply, paused = conversation(e, 1.0)
        text = e.render(then).text
        header_end = text.rindex("<|end_header_id|>", 0, text.rindex("And then?")) + 17
        head = len(e.tokenize(text[:header_end], add_bos=False, special=True))
    with Engine() as e:
        e.load(llama3_model, s)
        _, reply_at_once, at_once = conversation(e, 0.0)
    with Engine() as fresh:
        fresh.load(llama3_model, s)
        assert fresh.chat(then, s).text() == reply == reply_at_once

    assert paused.evaluated_tokens == at_once.evaluated_tokens
    assert paused.evaluated_tokens - paused.ahead_tokens == paused.prompt_tokens - head
    assert paused.ahead_tokens >= 4 + 1  # the header's 4 tokens, and from the reply on
    assert at_once.ahead_tokens <= paused.ahead_tokens


class _Pipe:
    """Stands in for the worker's pipe: takes what it sends, and can have a
    request arrive at the n-th look (``flagged``: the parent has set the
    request-waiting flag, as it does before sending; else the request is
    readable in the pipe)."""

    def __init__(self, flag: Any) -> None:
        self.flag = flag
        self.looks = 0
        self.arrives_at: int | None = None
        self.flagged = False

    def send(self, _message: object) -> None:
        pass

    def poll(self) -> bool:
        self.looks += 1
        if self.looks != self.arrives_at:
            return False
        if self.flagged:
            self.flag[Flag.REQUEST_WAITING] = 1
            return False
        return True


def _in_process_worker(
    path: Path, *, n_ctx_train: int = 4096, vocab_only: bool = False
) -> tuple[Any, _Pipe]:
    """A worker in this process, through its public seams, with the model loaded."""
    import multiprocessing

    from localchat.core.engine.protocol import Load
    from localchat.core.engine.worker.server import Worker

    flag = multiprocessing.RawArray("b", FLAG_BYTES)
    pipe = _Pipe(flag)
    w = Worker(pipe, flag)  # type: ignore[arg-type]
    w.handle(
        Load(
            str(path),
            n_ctx_train=n_ctx_train,
            n_ctx=2048,
            gpu_layers=0,
            threads=1,
            vocab_only=vocab_only,
        )
    )
    return w, pipe


def test_evaluating_ahead_gives_way_to_a_request_and_resumes_after(llama3_model: Path) -> None:
    """Evaluating ahead stops for a request: between chunks when one is in the
    pipe, mid-decode when the parent flags one (llama.cpp's abort callback
    reads the byte); the cache keeps only whole chunks, the work resumes once
    the request is served, and the next turn answers as a fresh evaluation
    does. A cancelled reply is not followed by such work."""
    from localchat.core.engine.protocol import Chat

    s = GREEDY.replace(max_tokens=160)
    first = (*user("Tell me a long story."),)
    w, pipe = _in_process_worker(llama3_model)
    whole = w.handle(Chat(first, s, ()), 1).reply
    k = next(
        k for k in range(len(whole) * 4 // 5, len(whole) - 3) if whole.find(whole[k : k + 3]) == k
    )
    cut = w.handle(Chat(first, s, (whole[k : k + 3],)), 2)  # the stop string respells the reply
    assert cut.reply == whole[:k]
    held = w.model.llm.n_tokens

    pipe.looks, pipe.arrives_at = 0, 3  # a request in the pipe after the first chunk
    w.evaluate_ahead()
    after_one = w.model.llm.n_tokens
    start = after_one - 64  # where the cache and the next prompt part (within the reply)
    assert w.ahead.pending and start <= held
    pipe.looks, pipe.arrives_at, pipe.flagged = 0, 2, True  # flagged just as a chunk starts
    w.evaluate_ahead()
    assert w.ahead.pending and w.model.llm.n_tokens == after_one  # nothing half-kept
    w.flags.received()  # the worker got that request
    pipe.arrives_at = None
    w.evaluate_ahead()
    assert not w.ahead.pending and w.model.llm.n_tokens > after_one
    ahead = w.model.llm.n_tokens - start
    then = (*first, {"role": "assistant", "content": cut.reply}, *user("More, please"))
    r = w.handle(Chat(then, s, ()), 3)
    assert r.ahead_tokens == ahead and r.evaluated_tokens == r.prompt_tokens - start

    # handle() stops any work ahead on receiving a chat, as serve() does.
    pipe.flag[Flag.CANCEL] = 1  # the user stops the next reply at once
    assert w.handle(Chat(then, s, ()), 4).finish_reason == "cancelled"
    assert not w.ahead.pending
    w.handle(Unload())

    fresh, _ = _in_process_worker(llama3_model)
    expected = fresh.handle(Chat(then, s, ()), 1)
    fresh.handle(Unload())
    assert r.reply == expected.reply


def test_evaluating_ahead_leaves_a_cache_that_holds_the_next_prompts_start(tmp_path: Path) -> None:
    """With a template whose turns hold no control token, the next prompt's
    known start is just the BOS: the cache already holds it, so it is left
    alone (cutting it back to that would lose the whole conversation)."""
    from localchat.core.engine.protocol import Chat

    plain = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    w, _ = _in_process_worker(write_llama_gguf(tmp_path / "plain.gguf", chat_template=plain))
    first = (*user("Hello there"),)
    r1 = w.handle(Chat(first, GREEDY, ()), 1)
    held = w.model.llm.n_tokens
    w.evaluate_ahead()
    assert not w.ahead.pending and w.model.llm.n_tokens == held
    then = (*first, {"role": "assistant", "content": r1.reply}, *user("And then?"))
    r2 = w.handle(Chat(then, GREEDY, ()), 2)
    w.handle(Unload())
    # The first prompt stayed in the cache (the reply, re-spelled by a tokenizer
    # that has no control token to start from, is evaluated again).
    assert r2.evaluated_tokens <= r2.prompt_tokens - r1.prompt_tokens + 2


def test_reusing_the_cache_gives_the_reply_a_fresh_start_gives(slow_model: Path) -> None:
    """Same tokens, evaluated partly from the cache or all afresh: same reply."""
    s = GenerationSettings(temperature=0.0, max_tokens=24, repeat_penalty=1.0)
    first = user("Tell me about the weather in Paris and in Rome, please.")
    second = user("Tell me about the weather in Paris and in Berlin, please.")
    with Engine() as e:
        e.load(slow_model, s)
        e.chat(first, s).text()
        stream = e.chat(second, s)
        reused = stream.text()
        assert stream.result is not None
        assert 0 < stream.result.evaluated_tokens < stream.result.prompt_tokens
    with Engine() as fresh:
        fresh.load(slow_model, s)
        stream = fresh.chat(second, s)
        assert stream.text() == reused
        assert stream.result is not None
        assert stream.result.evaluated_tokens == stream.result.prompt_tokens


def test_multibyte_characters_are_never_split(tmp_path: Path) -> None:
    """A model that only emits the byte tokens of 'é' (0xC3 0xA9) and 'x', in
    random order: every 'é' arrives whole, broken sequences become U+FFFD."""
    c3, a9, x = 5 + 0xC3, 5 + 0xA9, 261 + ord("x") - 33

    def only_bytes(name: str, w: np.ndarray) -> np.ndarray:
        # Layers add nothing, so the last hidden state is the embedding, whose
        # dimension 0 is a large constant; the output reads only that dimension.
        if name.endswith(("attn_output.weight", "ffn_down.weight")):
            return np.zeros_like(w)
        if name == "token_embd.weight":
            w = w * 0.1
            w[:, 0] = 10.0
            return w
        if name == "output.weight":
            out = np.zeros_like(w)
            out[:, 0] = -1.0
            out[[c3, a9, x], 0] = 1.0
            return out
        return w

    path = write_llama_gguf(tmp_path / "bytes.gguf", tensor_hook=only_bytes)
    s = GenerationSettings(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=3, max_tokens=300)
    with Engine() as e:
        e.load(path, s)
        stream = e.chat(user("go"), s)
        pieces = list(stream)
    reply = "".join(pieces)
    assert stream.result is not None and stream.result.completion_tokens == 300
    assert set(reply) <= {"é", "x", "\ufffd"}
    assert reply.count("é") > 20
    assert all(p for p in pieces)


def test_stop_strings_end_the_reply_and_are_not_shown(engine: Engine, tiny_model: Path) -> None:
    engine.load(tiny_model)
    full = engine.chat(user("Hello"), GREEDY.replace(max_tokens=60)).text()
    stop = full[20:23]
    start = full.index(stop)
    stream = engine.chat(user("Hello"), GREEDY.replace(max_tokens=60), stop=[stop])
    assert stream.text() == full[:start]
    assert stream.result is not None and stream.result.finish_reason == "stop"


def test_context_size_is_rounded_and_capped(engine: Engine, tmp_path: Path) -> None:
    short = write_llama_gguf(tmp_path / "short.gguf", context_length=1000)
    assert engine.load(short, GenerationSettings(ctx=8192)).n_ctx == 768
    assert engine.load(short, GenerationSettings(ctx=600)).n_ctx == 512
    long = write_llama_gguf(tmp_path / "long.gguf", context_length=32768)
    loaded = engine.load(long, GenerationSettings(ctx=3000))
    assert (loaded.n_ctx, loaded.n_ctx_train) == (2816, 32768)


def test_a_reply_stops_when_the_context_is_full(engine: Engine, tiny_model: Path) -> None:
    engine.load(tiny_model, GenerationSettings(ctx=256))
    stream = engine.chat(user("Hi"), GREEDY.replace(max_tokens=5000))
    stream.text()
    r = stream.result
    assert r is not None and r.finish_reason == "context" and r.context_used == 256
    # Too long for the context: 'stop' refuses with the exact excess...
    with pytest.raises(EngineError, match=r"tokens over the 256-token context"):
        engine.chat(user("word " * 400), GREEDY.replace(overflow="stop")).text()
    # ...the default cuts the message, with a notice, and answers.
    stream = engine.chat(user("word " * 400), GREEDY)
    assert stream.text()
    assert stream.result is not None and stream.result.prompt_tokens <= 256 - 24


def test_cancel_during_generation_keeps_what_was_generated(
    engine: Engine, slow_model: Path
) -> None:
    # CPU only: the test needs generation slower than the cancel.
    s = GenerationSettings(temperature=0.0, max_tokens=4000, ctx=4096, gpu_layers=0)
    engine.load(slow_model, s)
    stream = engine.chat(user("Count to a million"), s)
    pieces = []
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 10:
            engine.cancel()
    r = stream.result
    assert r is not None and r.finish_reason == "cancelled"
    assert 10 <= r.completion_tokens < 100
    assert r.reply == "".join(pieces)
    # The next request is not affected by the old cancel.
    assert engine.chat(user("Again"), s.replace(max_tokens=8)).result is None
    follow = engine.chat(user("Again"), s.replace(max_tokens=8))
    follow.text()
    assert follow.result is not None and follow.result.finish_reason == "length"


def test_cancel_during_prompt_evaluation(engine: Engine, slow_model: Path) -> None:
    s = GenerationSettings(
        temperature=0.0, max_tokens=16, ctx=4096, repeat_penalty=1.0, gpu_layers=0
    )
    engine.load(slow_model, s)
    # How long a whole evaluation of such a prompt takes on this machine.
    warm = engine.chat(user("consectetur adipiscing elit " * 120), s)
    warm.text()
    assert warm.result is not None
    full_eval_s = warm.result.ttft_ms / 1000

    prompt = user("lorem ipsum dolor sit amet " * 120)
    stream = engine.chat(prompt, s)
    timer = threading.Timer(0.4 * full_eval_s, engine.cancel)  # a few 512-token batches in
    t0 = time.perf_counter()
    timer.start()
    assert stream.text() == ""
    elapsed = time.perf_counter() - t0
    r = stream.result
    assert r is not None and r.finish_reason == "cancelled" and r.completion_tokens == 0
    assert r.prompt_tokens > 2000
    # It stopped early: well before a whole evaluation would have ended.
    assert elapsed < 0.75 * full_eval_s
    # Batches finished before the cancel were kept and reused.
    again = engine.chat(prompt, s)
    reply = again.text()
    assert again.result is not None
    assert again.result.evaluated_tokens < again.result.prompt_tokens
    with Engine() as fresh:
        fresh.load(slow_model, s)
        assert fresh.chat(prompt, s).text() == reply


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_dead_worker_is_an_error_at_once_and_the_next_request_recovers(
    engine: Engine, slow_model: Path, sig: signal.Signals
) -> None:
    s = GenerationSettings(temperature=0.0, max_tokens=4000)
    engine.load(slow_model, s)
    pid = engine.worker_pid
    assert pid is not None
    stream = engine.chat(user("Go on forever"), s)
    got = []
    with pytest.raises(EngineCrashed) as err:
        for piece in stream:
            got.append(piece)
            if len(got) == 5:
                os.kill(pid, sig)
    assert sig.name in str(err.value) and "\n" not in str(err.value)
    assert len(got) >= 5
    # The next request starts a fresh worker with the same model.
    assert engine.chat(user("Hello"), s.replace(max_tokens=5)).text()
    assert engine.worker_pid not in (None, pid)
    assert engine.loaded is not None and engine.loaded.path == str(slow_model)


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX scheduling priority")
def test_the_worker_gives_the_window_the_cpu_first(engine: Engine, tiny_model: Path) -> None:
    """The model's threads run at a lower priority than the app, so a window
    (or anything else the user does) gets a busy core first."""
    from localchat.core.engine.entry import WORKER_NICENESS

    engine.load(tiny_model)
    pid = engine.worker_pid
    assert pid is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + WORKER_NICENESS)
    # Threads llama.cpp starts inherit it.
    for task in Path(f"/proc/{pid}/task").iterdir():
        assert os.getpriority(os.PRIO_PROCESS, int(task.name)) == min(19, ours + WORKER_NICENESS)


def test_a_crash_inside_llama_cpp_is_contained(
    engine: Engine, tmp_path: Path, tiny_model: Path
) -> None:
    """An F64 embedding passes llama.cpp's loader but aborts the first decode,
    which is the load's warm-up: the load fails with the crash, said in one
    line, and the next load works."""
    bad = write_llama_gguf(tmp_path / "f64.gguf", store_as={"token_embd.weight": np.float64})
    with pytest.raises(EngineCrashed) as err:
        engine.load(bad)
    message = str(err.value)
    assert "SIGABRT" in message and "fatal error" in message and "\n" not in message
    assert engine.worker_pid is None and engine.loaded is None
    engine.load(tiny_model)
    assert engine.chat(user("hi"), GREEDY).text()


def test_bad_model_files_are_one_line_errors(
    engine: Engine, tmp_path: Path, tiny_model: Path
) -> None:
    whole = tiny_model.read_bytes()
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "text.gguf").write_text("not a model")
    (tmp_path / "head.gguf").write_bytes(whole[:100])
    (tmp_path / "body.gguf").write_bytes(whole[:-4096])
    for name, reason in [
        ("missing.gguf", "no such file"),
        ("empty.gguf", "empty"),
        ("text.gguf", "not a GGUF"),
        ("head.gguf", "header ends early"),
        ("body.gguf", "truncated"),
    ]:
        with pytest.raises(ModelFileError, match=reason):
            engine.load(tmp_path / name)
    alien = write_llama_gguf(tmp_path / "alien.gguf", architecture="notallama")
    with pytest.raises(ModelLoadError) as err:
        engine.load(alien)
    assert "unknown model architecture: 'notallama'" in str(err.value)
    assert engine.load(tiny_model).n_vocab > 0  # the same worker still serves


def test_lora_adapters_apply_and_bad_ones_are_refused(
    engine: Engine, tmp_path: Path, tiny_model: Path
) -> None:
    engine.load(tiny_model)
    base = engine.chat(user("Hi"), GREEDY).text()
    lora = write_lora_gguf(tmp_path / "good.gguf", tiny_model)
    loaded = engine.load(tiny_model, GREEDY.replace(lora_scale=4.0), lora=lora)
    assert loaded.lora == str(lora)
    tuned = engine.chat(user("Hi"), GREEDY).text()
    assert tuned != base
    off = engine.load(tiny_model, GREEDY.replace(lora_scale=0.0), lora=lora)
    assert off.lora and engine.chat(user("Hi"), GREEDY).text() == base

    broken = write_lora_gguf(tmp_path / "broken.gguf", tiny_model, shape_ok=False)
    with pytest.raises(ModelLoadError, match=r"cannot load adapter broken\.gguf"):
        engine.load(tiny_model, lora=broken)
    with pytest.raises(ModelFileError, match="not a LoRA adapter"):
        engine.load(tiny_model, lora=tiny_model)
    with pytest.raises(ModelFileError, match="is a LoRA adapter, not a model"):
        engine.load(lora)
    # Nothing crashed: the worker still serves.
    engine.load(tiny_model)
    assert engine.chat(user("Hi"), GREEDY).text() == base


def test_an_escaping_chat_template_is_refused(engine: Engine, tmp_path: Path) -> None:
    evil = write_llama_gguf(
        tmp_path / "evil.gguf",
        chat_template="{{ cycler.__init__.__globals__.os.system('touch /tmp/pwned') }}",
    )
    engine.load(evil)
    with pytest.raises((ModelLoadError, EngineError)) as err:
        engine.chat(user("Hi"), GREEDY).text()
    assert "\n" not in str(err.value)
    assert engine.chat is not None


def test_model_without_template_uses_the_fallback(engine: Engine, tmp_path: Path) -> None:
    plain = write_llama_gguf(tmp_path / "plain.gguf", chat_template=None)
    assert engine.load(plain).template_source == "fallback"
    rendered = engine.render(user("Hi"))
    assert rendered.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert rendered.n_tokens == len(engine.tokenize(rendered.text, add_bos=True))


def test_gpu_offload_and_the_backend_are_reported(engine: Engine, tiny_model: Path) -> None:
    loaded = engine.load(tiny_model, GenerationSettings(gpu_layers=-1))
    if not loaded.gpu_offload_supported:
        assert loaded.gpu_layers == 0 and loaded.notice is None
        assert loaded.backend == "CPU"
    else:
        assert loaded.gpu_layers != 0 or loaded.notice
        assert loaded.backend != "CPU" or loaded.gpu_layers == 0
    assert engine.load(tiny_model, GenerationSettings(gpu_layers=0)).backend == "CPU"


def test_the_backend_is_named_from_ggml_s_device_registry() -> None:
    from localchat.core.engine.worker.devices import compute_devices, describe_backend

    devices = compute_devices()  # this build's own: the CPU at least
    assert ("CPU", False) in {(backend, gpu) for backend, _, gpu in devices}
    cuda = [("CUDA", "NVIDIA GeForce RTX 4090", True), ("CPU", "AMD EPYC", False)]
    assert describe_backend(cuda, 33) == "CUDA · NVIDIA GeForce RTX 4090"
    assert describe_backend(cuda, 0) == "CPU"
    two = [("CUDA", "NVIDIA A100", True), ("CUDA", "NVIDIA A100", True), ("CPU", "x", False)]
    assert describe_backend(two, -1) == "CUDA · NVIDIA A100"
    assert describe_backend([("Metal", "Apple M2", True)], -1) == "Metal · Apple M2"
    assert describe_backend([("CPU", "AMD EPYC", False)], -1) == "CPU"


def test_gpu_offload_failure_falls_back_to_the_cpu_and_says_so() -> None:
    from localchat.core.engine.worker.devices import load_with_gpu_fallback

    calls: list[int] = []

    def construct(layers: int) -> str:
        calls.append(layers)
        if layers:
            raise ModelLoadError("cudaMalloc failed: out of memory")
        return "model"

    model, layers, notice = load_with_gpu_fallback(construct, -1)
    assert (model, layers, calls) == ("model", 0, [-1, 0])
    assert notice and "out of memory" in notice and "running on the CPU" in notice
    calls.clear()
    assert load_with_gpu_fallback(construct, 0) == ("model", 0, None)

    def broken(layers: int) -> str:
        raise ModelLoadError("not a model")

    with pytest.raises(ModelLoadError, match="not a model"):
        load_with_gpu_fallback(broken, 0)
    with pytest.raises(ModelLoadError, match="not a model"):  # the CPU retry fails too
        load_with_gpu_fallback(broken, 10)


def test_a_long_conversation_rolls_and_keeps_the_system_prompt(
    engine: Engine, tiny_model: Path
) -> None:
    """60 turns at n_ctx 2048: never 'exceeds the context', and the system
    prompt stays in view while old turns drop out."""
    s = GenerationSettings(temperature=0.0, max_tokens=40, ctx=2048, system_prompt="SYSTEM RULES")
    engine.load(tiny_model, s)
    messages: list[Message] = []
    trimmed, shifted, evaluated = [], [], []
    for turn in range(60):
        messages.append({"role": "user", "content": f"turn {turn}: " + "tell me more " * 10})
        stream = engine.chat(messages, s)
        reply = stream.text()
        r = stream.result
        assert r is not None and r.finish_reason in ("length", "stop")
        assert r.prompt_tokens + 40 <= 2048
        trimmed.append(r.trimmed_messages)
        shifted.append(r.shifted_tokens)
        evaluated.append(r.evaluated_tokens)
        if r.trimmed_messages:
            # The window is full, and a turn still costs what turn 2 did (give or
            # take the turn number's digits): the cache moves, nothing is re-evaluated.
            assert r.evaluated_tokens <= evaluated[1] + 2
        messages.append({"role": "assistant", "content": reply})
    assert trimmed[0] == 0 and trimmed[-1] > 0
    assert trimmed == sorted(trimmed)  # once out of view, a message stays out
    # In chunks: the cache moved on some turns, not every one.
    assert 0 < sum(1 for n in shifted if n) < sum(1 for n in trimmed if n) * 0.75
    seen = engine.render([{"role": "system", "content": "SYSTEM RULES"}, *messages[-3:]])
    assert "SYSTEM RULES" in seen.text


ASCII_TOKENS = range(261, 261 + 94)  # the byte vocabulary's single characters "!" to "~"


def ascii_only(name: str, array: np.ndarray) -> np.ndarray:
    """Let the model write only single printable characters: its replies then
    tokenize back into the very tokens it generated."""
    if name == "output.weight":
        keep = np.zeros(len(array), dtype=bool)
        keep[list(ASCII_TOKENS)] = True
        array = np.where(keep[:, None], array, 0.0)
    return array


@pytest.mark.parametrize("policy", ["rolling", "keep-start"])
def test_after_a_shift_the_reply_is_what_a_fresh_evaluation_gives(
    policy: str, tmp_path: Path
) -> None:
    """When old turns drop out, the cache drops them in place and moves the rest
    down; the model then answers as if the trimmed prompt had been evaluated
    from scratch: at every step of its greedy reply it picks what a fresh
    evaluation of the trimmed prompt (and the reply so far) ranks first.

    One layer, because only there is a shift exact: a deeper layer's cached keys
    and values of a kept token were computed attending to the dropped ones, and
    keep that trace after the shift (llama.cpp's context shift is an
    approximation in real models). With one layer, any slip in the positions,
    the ranges moved or the tokens kept changes the model's scores by about
    the gap between its first and second choices (~7 here), far over the
    tolerance. What the tolerance allows is the rounding of keys rotated in
    place (F16) against keys computed at their new positions: on some CPUs
    that flips a near-tie, and comparing reply texts failed there."""
    model = write_llama_gguf(
        tmp_path / "ascii.gguf", n_embd=128, n_layer=1, logit_scale=40.0, tensor_hook=ascii_only
    )
    # Greedy means the top score: no repeat penalty, whose divided scores tie often.
    s = GenerationSettings(
        temperature=0.0,
        max_tokens=30,
        ctx=1024,
        system_prompt="RULES",
        overflow=policy,
        repeat_penalty=1.0,
    )
    checked = 0
    evaluated: list[int] = []
    with Engine() as e, Engine() as fresh:
        e.load(model, s)
        fresh.load(model, s)
        messages: list[Message] = []
        for turn in range(40):
            messages.append({"role": "user", "content": f"turn {turn} " + "go on " * 12})
            stream = e.chat(messages, s)
            reply = stream.text()
            r = stream.result
            assert r is not None
            evaluated.append(r.evaluated_tokens)
            if r.shifted_tokens:
                assert r.evaluated_tokens <= evaluated[1] + 2  # only the new turn
                again = fresh.chat(messages, s)
                again.text()
                assert again.result is not None
                assert again.result.prompt_tokens == r.prompt_tokens
                assert again.result.dropped == r.dropped
                # The trimmed prompt and the reply, scored from scratch.
                seen = [m for i, m in enumerate(messages) if i not in r.dropped]
                text = fresh.render([{"role": "system", "content": "RULES"}, *seen]).text
                prompt = fresh.tokenize(text, add_bos=True)
                assert len(prompt) == r.prompt_tokens
                chosen = [ASCII_TOKENS[ord(c) - ord("!")] for c in reply]  # one a character
                scores = fresh.logits(prompt + chosen)[len(prompt) - 1 : -1]
                behind_best = scores.max(axis=1) - scores[np.arange(len(chosen)), chosen]
                assert behind_best.max() < 0.05, (turn, behind_best.round(3).tolist())
                fresh.unload()  # the next check starts from nothing again
                fresh.load(model, s)
                checked += 1
            messages.append({"role": "assistant", "content": reply})
    assert checked >= 3


def test_without_a_shift_a_trimmed_prompt_is_evaluated_again(
    engine: Engine, mistral_model: Path
) -> None:
    """Mistral's template moves the system prompt to the last user turn, so no
    run of cached tokens can simply drop out: the prompt is evaluated anew,
    correctly, and nothing is shifted."""
    s = GenerationSettings(temperature=0.0, max_tokens=20, ctx=512, system_prompt="RULES")
    engine.load(mistral_model, s)
    messages: list[Message] = []
    for turn in range(14):
        messages.append({"role": "user", "content": f"turn {turn} " + "go on " * 12})
        stream = engine.chat(messages, s)
        reply = stream.text()
        r = stream.result
        assert r is not None and r.shifted_tokens == 0
        messages.append({"role": "assistant", "content": reply})
    assert r.trimmed_messages > 0


def test_a_reply_the_template_trims_still_shifts_and_reuses(engine: Engine, tmp_path: Path) -> None:
    """Llama 3's template trims each message, so a reply that starts with a
    space reads differently in the next prompt than it was generated. The cache
    still moves when old turns drop out, reusing all but that reply."""
    tokens = read_model_info(fixture_vocab("llama-bpe"), full_arrays=("tokenizer.",)).metadata[
        "tokenizer.ggml.tokens"
    ]
    # " the" (the space part of the token) and "re": replies like " the re re
    # the", which start with a space and which a fresh tokenizer spells
    # differently (" there" is one token).
    allowed = [tokens.index("Ġthe"), tokens.index("re")]

    def only_the(name: str, array: np.ndarray) -> np.ndarray:
        if name == "output.weight":
            keep = np.zeros(len(array), dtype=bool)
            keep[allowed] = True
            array = np.where(keep[:, None], array * 20, 0.0)
        return array

    model = write_llama_gguf(
        tmp_path / "the.gguf",
        vocab="llama-bpe",
        chat_template=fixture_template("meta-llama-Llama-3.1-8B-Instruct"),
        tensor_hook=only_the,
    )
    s = GenerationSettings(temperature=0.0, max_tokens=20, ctx=1024, system_prompt="RULES")
    engine.load(model, s)
    messages: list[Message] = []
    shifted = []
    for turn in range(30):
        messages.append({"role": "user", "content": f"turn {turn} " + "go on " * 20})
        stream = engine.chat(messages, s)
        reply = stream.text()
        r = stream.result
        assert r is not None and set(reply.split()) <= {"the", "re", "there"}
        if turn > 0:  # the new message and the last reply, never the whole window
            assert r.evaluated_tokens < 100 < r.prompt_tokens
        shifted.append(r.shifted_tokens)
        messages.append({"role": "assistant", "content": reply})
    assert any(shifted)


def test_old_replies_keep_their_own_tokens_when_the_last_one_cannot(llama3_model: Path) -> None:
    """A reply the next prompt spells differently (a stop string cut it, or the
    template trimmed it) is re-read; the older replies keep the tokens the
    model generated, which a fresh tokenizer would spell differently (" the" +
    "re" is " there" to it) and so lose the cache from the first of them on."""
    w, _ = _in_process_worker(llama3_model)
    cache = w.cache
    the, re_ = cache.tokenize_prompt(" the")[-1], cache.tokenize_prompt("re")[-1]
    a: Message = {"role": "user", "content": "Where?"}
    reply: Message = {"role": "assistant", "content": "there"}
    first = w.model.render((a,))
    # The reply's tokens, not how it tokenizes:
    cache.remember(first, cache.prompt_tokens(first)[0], "there", [the, re_])
    assert cache.tokenize_prompt(first + "there")[-1] != re_
    b: Message = {"role": "user", "content": "And then?"}
    second = w.model.render((a, reply, b))
    tokens2, _ = cache.prompt_tokens(second)
    cache.remember(second, tokens2, "", [])  # its reply was cut by a stop string
    third = w.model.render((a, reply, b, {"role": "assistant", "content": "later"}, a))
    tokens3, _ = cache.prompt_tokens(third)
    kept = next(
        (i for i, (x, y) in enumerate(zip(tokens2, tokens3, strict=False)) if x != y), len(tokens2)
    )
    assert kept >= len(tokens2) - 5  # all but the last header's few tokens
    assert tokens3[len(cache.prompt_tokens(first)[0]) :][:2] == [the, re_]
    w.handle(Unload())


@pytest.mark.parametrize("model", ["tiny_model", "phi3_model", "llama3_model", "mistral_model"])
def test_a_prompt_tokenized_a_segment_at_a_time_gets_the_tokenizers_own_tokens(
    model: str, request: pytest.FixtureRequest
) -> None:
    """A prompt's tail is tokenized one segment at a time, each from a control
    token to the next and remembered (so a long chat's old messages are not
    tokenized again for every prompt the overflow policy weighs). The tokens
    are the tokenizer's own for the whole text, awkward text included."""
    path = request.getfixturevalue(model)
    w, _ = _in_process_worker(path, n_ctx_train=2048, vocab_only=True)
    messages: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  leading spaces, a trailing newline\n"},
        {"role": "assistant", "content": "Ünïcödé 😀, <b>markup</b>, tabs\tand [INST] brackets"},
        {"role": "user", "content": "text like a token: <|eot_id|> </s> <|end|>, then more"},
        {"role": "assistant", "content": "\n\nblank lines first\n"},
        {"role": "user", "content": "last"},
    ]
    llm = w.model.llm
    text = w.model.render(tuple(messages))
    first = w.cache.control_pattern().search(text)
    assert first is not None
    rest = text[first.start() :]
    expected = llm.tokenize(rest.encode(), add_bos=False, special=True)
    assert w.cache.tail_tokens(rest) == expected
    assert w.cache.tail_tokens(rest) == expected  # from the remembered segments
    assert w.cache.tokenize_prompt(text)[-len(expected) :] == expected
    w.handle(Unload())


class _CharTokenizer:
    """A tokenizer with no model, for the prompt cache: control tokens
    ``<|s|>``, ``<|u|>``, ``<|a|>`` and ``<|e|>`` (ids 0 to 3), "th" (4), and
    one token for each other character (256 + its code)."""

    CONTROLS = ("<|s|>", "<|u|>", "<|a|>", "<|e|>")

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        ids: list[int] = []
        for part in re.split(r"(<\|[suae]\|>)", text) if special else [text]:
            if part in self.CONTROLS:
                ids.append(self.CONTROLS.index(part))
                continue
            i = 0
            while i < len(part):
                if part.startswith("th", i):
                    ids.append(4)
                    i += 2
                else:
                    ids.append(256 + ord(part[i]))
                    i += 1
        return ids

    def piece(self, token: int, *, special: bool = False) -> bytes:
        if token < len(self.CONTROLS):
            return self.CONTROLS[token].encode() if special else b""
        return b"th" if token == 4 else chr(token - 256).encode()

    def is_control(self, token: int) -> bool:
        return token < len(self.CONTROLS)

    def n_vocab(self) -> int:
        return 256 + 128

    def adds_bos(self) -> bool:
        return False


def test_the_prompt_cache_reuses_the_model_s_own_tokens_and_finds_a_dropped_run() -> None:
    """The prompt cache needs a tokenizer and no model. A follow-up prompt
    reuses the reply's tokens as generated (a fresh tokenizer spells "the" as
    "th" + "e"); when the oldest exchange drops out, the cache finds the run
    of tokens it was, for the KV cache to drop in place, and reuses the rest."""
    from localchat.core.engine.worker.prompt_cache import PromptCache

    def render(*turns: tuple[str, str]) -> str:
        return "".join(f"<|{role}|>{text}<|e|>" for role, text in turns) + "<|a|>"

    chars = _CharTokenizer()
    cache = PromptCache(chars)
    system, question = ("s", "rules"), ("u", "the moth")
    first = render(system, question)
    tokens, shift = cache.prompt_tokens(first)
    assert shift is None and tokens == cache.tokenize_prompt(first)
    reply = [256 + ord(c) for c in "the"]  # as a model may write it
    cache.remember(first, tokens, "the", reply)

    second = render(system, question, ("a", "the"), ("u", "more"))
    tokens2, shift = cache.prompt_tokens(second)
    assert shift is None and tokens2[: len(tokens) + 3] == tokens + reply
    assert tokens2 == tokens + reply + chars.tokenize(
        second[len(first) + 3 :], add_bos=False, special=True
    )
    assert cache.tokenize_prompt(second) != tokens2  # afresh, "th" is one token
    ok = [256 + ord(c) for c in "ok"]
    cache.remember(second, tokens2, "ok", ok)

    third = render(system, ("u", "more"), ("a", "ok"), ("u", "again"))
    tokens3, shift = cache.prompt_tokens(third)
    i = len(chars.tokenize("<|s|>rules<|e|>", add_bos=False, special=True))
    j = len(tokens) + len(reply) + 1  # the first exchange, up to the reply's end of turn
    assert shift == (i, j)
    rest = chars.tokenize("<|e|><|u|>again<|e|><|a|>", add_bos=False, special=True)
    assert tokens3 == tokens2[:i] + tokens2[j:] + ok + rest


def test_an_ascii_only_tiny_model_writes_printable_text(tmp_path: Path) -> None:
    """benchmarks/ui.py streams prose-like text from such a model; the random
    byte tokens it suppresses would spell a dozen scripts."""
    path = write_llama_gguf(tmp_path / "text.gguf", suppress_special=True, ascii_only=True)
    s = GenerationSettings(temperature=1.0, seed=3, max_tokens=400)
    with Engine() as engine:
        engine.load(path, s)
        stream = engine.chat([{"role": "user", "content": "Go"}], s)
        text = "".join(stream)
    assert stream.result.completion_tokens == 400
    assert text.strip() and all(ch == "\n" or " " <= ch <= "~" for ch in text), repr(text)
