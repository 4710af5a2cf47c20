"""The worker process: the only place that imports llama_cpp.

It serves one request at a time from the parent (see ``protocol.py``). A crash
in here (a bad file, out of memory, a driver) ends this process only; the
parent notices at once and reports it.

Prefix reuse. llama-cpp-python keeps the tokens whose keys and values are in
the KV cache; a new prompt evaluates only what follows the longest common
prefix. Re-tokenizing a whole conversation each turn can split the previous
reply into different tokens than the ones the model generated, which would
break that match in the middle of the reply. So the worker remembers the last
prompt's tokens and the reply's tokens, and when the new prompt's text starts
with that prompt and reply, it reuses those very tokens and tokenizes only the
remainder (when the remainder starts with a special token, where tokenizing
separately is exact).

Cancellation. The parent writes a byte into shared memory. llama.cpp's abort
callback is libc's ``strlen`` on that memory: 0 (keep going) until the byte is
set, with no Python and no GIL in llama.cpp's compute loop. It stops prompt
evaluation and a token's decode mid-graph; the loop also checks it per token.

Evaluating ahead. Once a reply is in, the start of the next prompt is known:
the conversation so far and the header of the user's next message. While the
user reads and types, the worker evaluates what of it the cache lacks (the
reply's end-of-turn and the header; the whole reply where the template
rewrites it, trimming its whitespace or dropping its reasoning, or a stop
string cut it), a chunk at a time. A request preempts it: the parent sets a
second byte before sending one (and the worker clears it on receiving it),
which the abort callback reads while evaluating ahead and the loop between
chunks. The work resumes after requests that leave the cache alone (the
context meter's).
"""

from __future__ import annotations

import array
import collections
import ctypes
import ctypes.util
import functools
import itertools
import os
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import llama_cpp
import numpy as np

from localchat.core.chat.context import ContextOverflow, ContextPlan, plan
from localchat.core.engine import cpu_layout, layouts
from localchat.core.engine.protocol import (
    Chat,
    ChatResult,
    ContextReport,
    Envelope,
    Failed,
    FailureKind,
    FinishReason,
    Info,
    Load,
    LoadedModel,
    LoadStage,
    Logits,
    LogitsReport,
    Message,
    Ok,
    Perplexity,
    PerplexityReport,
    Piece,
    PlanContext,
    RenderChat,
    Rendered,
    Reply,
    Score,
    Shutdown,
    Tokenize,
    Tokens,
    Unload,
)
from localchat.core.engine.streaming import StopMatcher, Utf8Assembler
from localchat.core.engine.template import ChatTemplate
from localchat.core.errors import EngineError, LocalChatError, ModelFileError, ModelLoadError
from localchat.core.hardware import physical_cores
from localchat.core.params import GenerationSettings, effective_ctx

LOG_LIMIT = 5 * 2**20
T = TypeVar("T")
Prompt = tuple[str, list[int], tuple[int, int] | None]
"""A rendered prompt, its tokens, and the run of cached tokens it leaves out."""
AHEAD_CHUNK = 64
"""Tokens evaluated ahead per decode: what a preempted evaluation loses at most."""
SEGMENT_CHARS_KEPT = 4_000_000
"""Prompt segments whose tokens are remembered, in characters (~20 MB with
their tokens): then they are forgotten and start again."""
_KEEP_AHEAD = (PlanContext, Info, Tokenize, RenderChat)
"""Requests that leave the KV cache alone: evaluating ahead resumes after them."""


def main(conn: Connection, cancel_flag: Any, log_path: str | None) -> None:
    """Entry point of the worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle
    # On abort ggml would attach gdb to print a backtrace: slow, and noise.
    os.environ["GGML_NO_BACKTRACE"] = "1"
    if log_path:
        _redirect_output(log_path)
    Worker(conn, cancel_flag).serve()


def _redirect_output(log_path: str) -> None:
    """llama.cpp and ggml write aborts straight to stderr: keep them (and any
    stray stdout) in the log, where the parent can quote the last line if this
    process dies. The terminal stays the parent's."""
    try:
        path = Path(log_path)
        if path.exists() and path.stat().st_size > LOG_LIMIT:
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    except OSError:
        pass


_BUFFER_LINES = {
    # "llama_kv_cache:        CPU KV buffer size =    44.00 MiB"
    "kv": re.compile(r"KV buffer size =\s*([\d.]+) MiB"),
    # "sched_reserve:        CPU compute buffer size =   153.01 MiB"
    "compute": re.compile(r"compute buffer size =\s*([\d.]+) MiB"),
}
# "load_tensors:   CPU_REPACK model buffer size =     0.63 MiB": where weights are
_WEIGHT_BUFFER = re.compile(r"(\S+) model buffer size =\s*([\d.]+) MiB")


def reusable_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many of ``tokens`` the KV cache already holds: the common prefix,
    less one when it is the whole prompt (a token is evaluated for fresh logits)."""
    return min(_held(cached, tokens), len(tokens) - 1)


def _held(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """Length of the common prefix of two token lists."""
    prefix = 0
    for a, b in zip(cached, tokens, strict=False):
        if a != b:
            break
        prefix += 1
    return prefix


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings (slice compares, not a loop
    over characters: prompts run to tens of thousands of them)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def load_with_gpu_fallback(
    construct: Callable[[int], T], gpu_layers: int
) -> tuple[T, int, str | None]:
    """``construct(gpu_layers)``; if offloading fails, ``construct(0)`` (the CPU)
    and a notice saying so. Returns the result, the layers used and the notice."""
    try:
        return construct(gpu_layers), gpu_layers, None
    except ModelLoadError as exc:
        if gpu_layers == 0:
            raise
        notice = f"the GPU could not take the model ({exc}); running on the CPU instead"
        return construct(0), 0, notice


@functools.cache
def compute_devices() -> tuple[tuple[str, str, bool], ...]:
    """The devices this llama.cpp build can compute on, from ggml's registry:
    (backend, description, is a GPU), e.g. ("CUDA", "NVIDIA GeForce RTX 4090",
    True), ("Metal", "Apple M2", True), ("CPU", "AMD EPYC", False). Read once
    per process: the registry is fixed when ggml loads."""
    lib = cpu_layout.ggml()
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for name in ("ggml_backend_dev_description", "ggml_backend_reg_name"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        backend = lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(dev)).decode()
        description = (lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace")
        kind = lib.ggml_backend_dev_type(dev)  # 0 CPU, 1 GPU, 2 integrated GPU, 3 accelerator
        devices.append((backend, description.strip(), kind in (1, 2)))
    return tuple(devices)


def describe_backend(devices: Sequence[tuple[str, str, bool]], gpu_layers: int) -> str:
    """What the model runs on, in words: "CPU", or the GPU backend and device
    ("CUDA · NVIDIA GeForce RTX 4090") when layers are offloaded."""
    gpus = [(b, d) for b, d, gpu in devices if gpu]
    if gpu_layers == 0 or not gpus:  # -1: all layers
        return "CPU"
    backend = gpus[0][0]
    names = ", ".join(dict.fromkeys(d for b, d in gpus if b == backend and d))
    return f"{backend} · {names}" if names else backend


def _failure_kind(exc: LocalChatError) -> FailureKind:
    if isinstance(exc, ModelFileError):
        return "file"
    if isinstance(exc, ModelLoadError):
        return "load"
    return "request"


def _strlen() -> Any:
    if sys.platform == "win32":
        return ctypes.cdll.msvcrt.strlen
    return ctypes.CDLL(ctypes.util.find_library("c") or None).strlen


class Worker:
    def __init__(self, conn: Connection, cancel_flag: Any) -> None:
        self.conn = conn
        self.flag = cancel_flag
        self.llm: llama_cpp.Llama | None = None
        self.loaded: LoadedModel | None = None
        self.template: ChatTemplate | None = None
        self.lora: Any = None
        self.add_space_prefix = False
        # Control tokens' texts (a pattern matching any), and the tokens of text
        # segments that each start with one: a prompt's tail is tokenized a
        # segment at a time, and a long chat's old messages only once.
        self._controls: re.Pattern[str] | None = None
        self._segments: dict[str, array.array[int]] = {}
        self._segment_chars = 0
        self.vocab_only = False
        # The last turn, for prefix reuse: its text (prompt and reply) and
        # tokens, and how much of each is the prompt.
        self.last_text = ""
        self.last_tokens: list[int] = []
        self.last_prompt_chars = self.last_prompt_len = 0
        self._marks: list[tuple[int, int]] | None = None
        # Between turns: the conversation whose next prompt to start evaluating
        # (see _evaluate_ahead), and the cache positions evaluated so, not yet
        # counted in a turn's evaluated tokens.
        self._ahead: tuple[Message, ...] | None = None
        self._ahead_head: tuple[str, list[int]] | None = None  # its text and tokens
        self._ahead_at = self._ahead_end = 0
        self._quiet = False  # llama.cpp's complaints are not logged (a preempted decode)
        self.log_lines: collections.deque[str] = collections.deque(maxlen=20)
        self._log_partial = ""
        self._log_level = 2
        self.buffers: dict[str, int] = {}  # llama.cpp's allocations, from its load report
        self.weight_buffers: dict[str, int] = {}  # bytes of weights per buffer type
        self._capturing = False
        self._log_cb = llama_cpp.llama_log_callback(self._on_log)
        llama_cpp.llama_log_set(self._log_cb, ctypes.c_void_p(0))
        self.cpu_variant = ""  # which CPU build ggml picked, where it ships several
        cpu_layout.load_backends()  # before anything asks ggml for a device
        strlen = _strlen()
        self._abort_cb = llama_cpp.ggml_abort_callback(
            ctypes.cast(strlen, ctypes.c_void_p).value or 0
        )
        self._flag_addr = ctypes.c_void_p(ctypes.addressof(cancel_flag))
        # Byte 2: the parent sets it before sending a request (byte 3 stays 0).
        self._waiting_addr = ctypes.c_void_p(ctypes.addressof(cancel_flag) + 2)

    # -- plumbing --------------------------------------------------------------

    def serve(self) -> None:
        while True:
            if self._ahead is not None:
                try:
                    self._evaluate_ahead()
                except Exception:  # a bug: the next turn evaluates it all
                    self._ahead = None
                    print("evaluating ahead failed:", file=sys.stderr)
                    traceback.print_exc()  # to the engine log
            try:
                env: Envelope = self.conn.recv()
            except (EOFError, OSError):
                return
            self.flag[2] = 0  # the request the parent flagged is in hand
            req = env.request
            if not isinstance(req, _KEEP_AHEAD):
                self._ahead = None
            try:
                if isinstance(req, Shutdown):
                    self._unload()
                    self._send(env.id, Ok())
                    return
                self._send(env.id, self._handle(env.id, req))
            except LocalChatError as exc:
                self._send(env.id, Failed(_failure_kind(exc), str(exc)))
            except Exception as exc:  # a bug; report it rather than die
                traceback.print_exc()  # to the engine log
                self._send(env.id, Failed("internal", f"{type(exc).__name__}: {exc}"))

    def _send(self, rid: int, body: Any) -> None:
        self.conn.send(Reply(rid, body))

    def _handle(self, rid: int, req: Any) -> Any:
        if isinstance(req, Load):
            return self._load(rid, req)
        if isinstance(req, Unload):
            self._unload()
            return Ok()
        if isinstance(req, Info):
            return self.loaded or Ok()
        if isinstance(req, Tokenize):
            llm = self._model()
            return Tokens(tuple(llm.tokenize(req.text.encode(), req.add_bos, req.special)))
        if isinstance(req, RenderChat):
            text = self._render(req.messages, req.add_generation_prompt)
            return Rendered(text, len(self._tokenize_prompt(text)))
        if isinstance(req, Chat):
            return self._chat(rid, req)
        if isinstance(req, PlanContext):
            return self._plan(req)
        if isinstance(req, Perplexity):
            return self._perplexity(req)
        if isinstance(req, Score):
            return self._score(req)
        if isinstance(req, Logits):
            return LogitsReport(self._logits(req))
        raise EngineError(f"unknown request {type(req).__name__}")

    def _on_log(self, level: int, text: bytes, _user: Any) -> None:
        # ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continues the last line.
        if level == 5:
            level = self._log_level
        self._log_level = level
        msg = self._log_partial + text.decode("utf-8", errors="replace")
        if not msg.endswith("\n"):
            self._log_partial = msg
            return
        self._log_partial = ""
        variant = cpu_layout.VARIANT_LINE.search(msg) if level == 2 else None
        if variant:
            self.cpu_variant = variant[1]
        if level == 2 and self._capturing:
            for key, pattern in _BUFFER_LINES.items():
                m = pattern.search(msg)
                if m:
                    self.buffers[key] = self.buffers.get(key, 0) + int(float(m[1]) * 2**20)
            m = _WEIGHT_BUFFER.search(msg)
            if m:
                size = int(float(m[2]) * 2**20)
                self.weight_buffers[m[1]] = self.weight_buffers.get(m[1], 0) + size
        if level >= 3 and msg.strip() and not self._quiet:
            self.log_lines.append(msg.strip())
            print(msg, end="", file=sys.stderr)

    def _last_error(self) -> str:
        """The most telling recent llama.cpp complaint, without its function prefix."""
        lines = list(self.log_lines)
        for line in reversed(lines):
            if "error loading model: " in line:
                # "llama_model_load: error loading model: error loading model
                # architecture: unknown model architecture: 'x'" -> the last part
                return line.split("error loading model: ")[-1]
        for line in reversed(lines):
            if "error" in line.lower() or "failed" in line.lower():
                return line.split(": ", 1)[-1] if line.startswith("llama") else line
        return ""

    def _model(self) -> llama_cpp.Llama:
        if self.llm is None:
            raise EngineError("no model is loaded")
        return self.llm

    # -- loading -----------------------------------------------------------------

    def _load(self, rid: int, req: Load) -> LoadedModel:
        """Load a model the parent has checked (see ``Engine.load``), and warm
        it up with a first decode (see ``layouts.py``)."""
        self._unload()
        n_ctx = effective_ctx(req.n_ctx, req.n_ctx_train)
        threads = req.threads or physical_cores()
        offload = bool(llama_cpp.llama_supports_gpu_offload())
        layers = req.gpu_layers if offload else 0
        key = cpu_layout.platform_key()
        extras = tuple(cpu_layout.extra_buffer_types())
        off, why = req.layouts_off, req.layouts_reason
        if off is None:  # what this CPU and build need, if it is known
            known = layouts.LayoutMemory().get(key)
            off, why = (known.off, known.reason) if known else ((), "")
            off = tuple(name for name in off if name in extras)
        if off:  # llama.cpp places weights as our overrides say: say so first
            self._send(rid, LoadStage(key, extras, off, (), decoding=False))
        llm, layers, notice = load_with_gpu_fallback(
            lambda n: self._construct(req, n_ctx, threads, n, off), layers
        )
        self.llm, self.vocab_only = llm, req.vocab_only
        used = tuple(name for name in extras if name in self.weight_buffers)
        try:
            meta = llm.metadata
            bos, eos = llm.token_bos(), llm.token_eos()
            vocab = llm._model
            self.template = ChatTemplate(
                meta.get("tokenizer.chat_template"),
                bos_token=vocab.token_get_text(bos) if bos >= 0 else "",
                eos_token=vocab.token_get_text(eos) if eos >= 0 else "",
            )
            self.add_space_prefix = (
                meta.get("tokenizer.ggml.model") == "llama"
                and meta.get("tokenizer.ggml.add_space_prefix", "true") == "true"
            )
            if not req.vocab_only:
                llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, self._flag_addr)
            self._control_pattern()  # here, not in the first prompt's time (~70 ms for 128k)
            if req.lora:
                self._apply_lora(req.lora, req.lora_scale)
            if not req.vocab_only:
                self._send(rid, LoadStage(key, extras, off, used, decoding=True))
                self._warm_up(llm, used)
        except BaseException:
            self._unload()
            raise
        backend = describe_backend(self._devices(), layers)
        if backend == "CPU" and self.cpu_variant:
            backend += f" · {self.cpu_variant}"
        if off:
            backend += f" ({layouts.describe(off, why or 'turned off')})"
        self.loaded = LoadedModel(
            path=req.path,
            n_ctx=llm.n_ctx(),
            n_ctx_train=req.n_ctx_train,
            n_vocab=llm.n_vocab(),
            gpu_layers=layers,
            gpu_offload_supported=offload,
            threads=threads,
            template_source="gguf" if self.template.from_model else "fallback",
            kv_cache_bytes=self.buffers.get("kv", 0),
            compute_bytes=self.buffers.get("compute", 0),
            lora=req.lora,
            notice=notice,
            backend=backend,
            layouts_used=used,
            layouts_off=off,
            weight_bytes=tuple(self.weight_buffers.items()),
            cpu_variant=self.cpu_variant,
        )
        return self.loaded

    def _warm_up(self, llm: llama_cpp.Llama, used: tuple[str, ...]) -> None:
        """The model's first decodes, as llama.cpp's tools warm a model up: a
        batch of eight tokens (the matrix kernels) and one token (the vector
        kernels), then an empty cache. A weight layout that crashes on this CPU
        crashes here, where the parent knows what to turn off."""
        model = llm._model.model
        if llama_cpp.llama_model_has_encoder(model) or not llama_cpp.llama_model_has_decoder(model):
            return  # an encoder (embeddings, T5) is not decoded on its own
        crash = os.environ.get(layouts.CRASH_ENV)
        if crash and (crash in used or crash == "any"):  # fault injection (tests)
            os.kill(os.getpid(), signal.SIGSEGV)
        bos, eos = llm.token_bos(), llm.token_eos()
        first = bos if bos >= 0 else 0
        try:
            # 8: CPU_REPACK's matrix kernel starts at 4 rows, AMX's tiles at 2.
            llm.eval([first] + [eos if eos >= 0 else first] * 7)
            llm.eval([first])
        except RuntimeError as exc:
            raise ModelLoadError(f"llama.cpp could not run the model: {exc}") from None
        finally:
            self._forget_cache(llm)

    def _devices(self) -> tuple[tuple[str, str, bool], ...]:
        try:
            return compute_devices()
        except (OSError, AttributeError):  # a build without ggml's registry API
            return ()

    def _construct(
        self, req: Load, n_ctx: int, threads: int, layers: int, off: tuple[str, ...]
    ) -> llama_cpp.Llama:
        self.log_lines.clear()
        self.buffers.clear()
        self.weight_buffers.clear()
        self._capturing = True
        n_batch = min(512, n_ctx)
        try:
            with cpu_layout.turned_off(req.path, off, layers):
                return llama_cpp.Llama(
                    model_path=req.path,
                    vocab_only=req.vocab_only,
                    n_ctx=n_ctx,
                    n_batch=n_batch,
                    n_ubatch=n_batch,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=layers,
                    use_mmap=True,
                    use_mlock=False,
                    logits_all=False,
                    embedding=False,
                    offload_kqv=True,
                    flash_attn=False,
                    last_n_tokens_size=64,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            reason = self._last_error() or str(exc)
            raise ModelLoadError(
                f"llama.cpp could not load {Path(req.path).name}: {reason}"
            ) from None
        finally:
            self._capturing = False

    def _apply_lora(self, path: str, scale: float) -> None:
        """Load and apply a LoRA adapter, checking what llama.cpp returns (a NULL
        adapter used anyway crashes at the first decode)."""
        assert self.llm is not None
        name = Path(path).name
        self.log_lines.clear()
        adapter = llama_cpp.llama_adapter_lora_init(self.llm._model.model, path.encode())
        if not adapter:
            reason = self._last_error() or "llama.cpp rejected it"
            raise ModelLoadError(f"cannot load adapter {name}: {reason}")
        self.lora = adapter
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(scale)
        if llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, adapters, 1, scales):
            raise ModelLoadError(f"cannot apply adapter {name}")

    def _unload(self) -> None:
        if self.lora is not None:
            llama_cpp.llama_adapter_lora_free(self.lora)
            self.lora = None
        if self.llm is not None:
            self.llm.close()
        self.llm = self.loaded = self.template = None
        self._forget_chat()
        self._controls, self._segments, self._segment_chars = None, {}, 0

    # -- prompts -----------------------------------------------------------------

    def _render(self, messages: tuple[Message, ...], add_generation_prompt: bool = True) -> str:
        self._model()
        assert self.template is not None
        return self.template.render(messages, add_generation_prompt=add_generation_prompt)

    def _tokenize_prompt(self, text: str) -> list[int]:
        llm = self._model()
        bos_text = self.template.bos_token if self.template else ""
        add_bos = llm._model.add_bos_token() and not (bos_text and text.startswith(bos_text))
        return llm.tokenize(text.encode(), add_bos=add_bos, special=True)

    def _prompt_tokens(self, text: str) -> tuple[list[int], tuple[int, int] | None]:
        """Tokens for a prompt, reusing the last turn's tokens where exact.

        Returns the tokens and, when the prompt is the last turn's with a run of
        its tokens ``[i, j)`` left out (older messages dropped by the overflow
        policy), that run, so the KV cache can drop it in place."""
        last, last_tokens = self.last_text, self.last_tokens
        if last_tokens and last and text.startswith(last):
            rest = text[len(last) :]
            if not rest:
                return list(last_tokens), None
            tail = self._tail_tokens(rest)
            if tail is not None:
                return last_tokens + tail, None
        elif last_tokens and last:
            shifted = self._shifted_tokens(text)
            if shifted is not None:
                return shifted
        if last_tokens and last:
            # Keep the cached tokens up to the last control token both texts
            # share: re-tokenizing all would re-spell old replies (the model's
            # own tokens) and lose the cache from the first of them on.
            common = _common_prefix(last, text)
            for k, at in reversed(self._control_marks()):
                if at <= common:
                    tail = self._tail_tokens(text[at:])
                    if tail is not None:
                        return last_tokens[:k] + tail, None
        return self._tokenize_prompt(text), None

    def _tail_tokens(self, rest: str) -> list[int] | None:
        """``rest`` tokenized on its own, when that is exact: it starts with a
        control token (tokenizers split the text at those first). So is each
        segment of it from one control token to the next, and each is
        tokenized once: the prompts the overflow policy weighs share most."""
        starts = [m.start() for m in self._control_pattern().finditer(rest)]
        if not starts or starts[0] != 0:
            return None
        tail: list[int] = []
        for a, b in itertools.pairwise([*starts, len(rest)]):
            tokens = self._segment_tokens(rest[a:b])
            if tokens is None:
                return None
            tail += tokens
        return tail

    def _segment_tokens(self, segment: str) -> Sequence[int] | None:
        """Tokens of text starting with a control token (None if the tokenizer
        does not start it with that token), remembered."""
        known = self._segments.get(segment)
        if known is not None:
            return known
        assert self.llm is not None
        tokens = self.llm.tokenize(segment.encode(), add_bos=False, special=True)
        first = tokens[0] if tokens else -1
        vocab = self.llm._model.vocab
        control = first >= 0 and llama_cpp.llama_vocab_is_control(vocab, first)
        if not (control and segment.encode().startswith(self._piece(first, special=True))):
            return None
        if self._segment_chars + len(segment) > SEGMENT_CHARS_KEPT:
            self._segments.clear()
            self._segment_chars = 0
        self._segments[segment] = array.array("i", tokens)
        self._segment_chars += len(segment)
        return tokens

    def _control_pattern(self) -> re.Pattern[str]:
        """A pattern matching the text of any of the model's control tokens."""
        if self._controls is None:
            assert self.llm is not None
            vocab = self.llm._model.vocab
            texts = {
                self._piece(t, special=True).decode("utf-8", errors="replace")
                for t in range(self.llm.n_vocab())
                if llama_cpp.llama_vocab_is_control(vocab, t)
            }
            texts.discard("")
            alternatives = "|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True))
            self._controls = re.compile(alternatives or "(?!)")
        return self._controls

    def _shifted_tokens(self, text: str) -> tuple[list[int], tuple[int, int]] | None:
        """The last turn's text is ``head + dropped + kept...`` and ``text`` is
        ``head + kept + rest``, each part starting at a control token: reuse the
        tokens of ``head`` and ``kept`` (the reply's own tokens among them when
        all of it is kept; else up to the last control token that matches) and
        tokenize the rest."""
        last, last_tokens = self.last_text, self.last_tokens
        marks = self._control_marks()
        common = _common_prefix(last, text)
        heads = [(i, at) for i, at in marks if at <= common]
        if not heads:
            return None
        i, head = heads[-1]
        best: tuple[int, int, int] | None = None  # (matched chars, j, offset of j)
        probe = text[head : head + 64]  # most candidates differ early: check cheaply first
        for j, at in marks:
            if at <= head or not last.startswith(probe[:16], at):
                continue
            matched = _common_prefix(last[at:], text[head:])
            if best is None or matched > best[0]:
                best = (matched, j, at)
        if best is None:
            return None
        matched, j, at = best
        if matched == len(last) - at:  # all of it, the last reply included
            tail = self._tail_tokens(text[head + matched :]) if text[head + matched :] else None
            if tail is not None:
                return last_tokens[:i] + last_tokens[j:] + tail, (i, j)
        for k, end in reversed(marks):  # else up to a control token inside the match
            if k <= j or end - at > matched:
                continue
            tail = self._tail_tokens(text[head + end - at :])
            if tail is not None:
                return last_tokens[:i] + last_tokens[j:k] + tail, (i, j)
        return None

    def _control_marks(self) -> list[tuple[int, int]]:
        """(token index, text offset) of each control token in the last prompt,
        in order; a BOS the tokenizer added (not in the text) has none."""
        if self._marks is not None:
            return self._marks
        assert self.llm is not None
        vocab = self.llm._model.vocab
        text = self.last_text[: self.last_prompt_chars]
        marks: list[tuple[int, int]] = []
        pos = 0
        for index, token in enumerate(self.last_tokens[: self.last_prompt_len]):
            if not llama_cpp.llama_vocab_is_control(vocab, token):
                continue
            piece = self._piece(token, special=True).decode("utf-8", errors="replace")
            at = text.find(piece, pos) if piece else -1
            if at < 0:
                continue
            marks.append((index, at))
            pos = at + len(piece)
        self._marks = marks
        return marks

    def _piece(self, token: int, *, special: bool = False, lstrip: int = 0) -> bytes:
        assert self.llm is not None
        vocab = self.llm._model.vocab
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, lstrip, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    # -- chat ----------------------------------------------------------------------

    def _window(
        self, messages: Sequence[Message], s: GenerationSettings
    ) -> tuple[ContextPlan, int, Callable[[Sequence[Message]], Prompt]]:
        """Apply the chat's overflow policy: what the model sees of
        ``messages``, counted with the very tokens that will be evaluated, room
        kept for the reply. Returns the plan, how many messages were put in
        front (the settings' system prompt), and the memoized prompt builder."""
        llm = self._model()
        msgs = list(messages)
        added = 0
        if s.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": s.system_prompt})
            added = 1
        n_ctx = llm.n_ctx()
        reserve = min(s.max_tokens, n_ctx // 2)
        # Each candidate is rendered and tokenized once, the chosen one included.
        prompts: dict[tuple[tuple[str, str], ...], Prompt] = {}

        def prompt(candidate: Sequence[Message]) -> Prompt:
            key = tuple((m["role"], m["content"]) for m in candidate)
            if key not in prompts:
                rendered = self._render(tuple(candidate))
                prompts[key] = (rendered, *self._prompt_tokens(rendered))
            return prompts[key]

        window = plan(
            msgs,
            lambda m: len(prompt(m)[1]),
            n_ctx=n_ctx,
            reserve=reserve,
            policy=s.overflow,  # type: ignore[arg-type]  # validated by its declaration
            chunk=(n_ctx - reserve) // 4,
            # The same every turn: spelled afresh, not with cached tokens.
            measure=lambda m: len(self._tokenize_prompt(self._render(tuple(m)))),
        )
        return window, added, prompt

    def _plan(self, req: PlanContext) -> ContextReport:
        try:
            window, added, _ = self._window(req.messages, req.settings)
        except ContextOverflow as exc:  # the "stop" policy: nothing dropped, the excess said
            return ContextReport(
                prompt_tokens=exc.n_ctx - exc.reserve + exc.excess,
                n_ctx=exc.n_ctx,
                reserve=exc.reserve,
                excess=exc.excess,
            )
        return ContextReport(
            prompt_tokens=window.prompt_tokens,
            n_ctx=window.n_ctx,
            reserve=window.reserve,
            dropped=tuple(i - added for i in window.dropped),
            cut=None if window.cut is None else window.cut - added,
        )

    def _scoring_model(self, ids: Sequence[int]) -> llama_cpp.Llama:
        llm = self._model()
        if self.vocab_only:
            raise EngineError("this model was loaded for its tokenizer only; load it fully")
        n_vocab = llm.n_vocab()
        if any(not 0 <= t < n_vocab for t in ids):
            raise EngineError("a token id is outside the model's vocabulary")
        return llm

    def _window_logits(self, llm: llama_cpp.Llama, ids: Sequence[int]) -> Iterator[np.ndarray]:
        """The logits at every position of ``ids`` (evaluated from an empty
        cache), a batch of at most ``n_batch`` rows at a time."""
        llm._ctx.kv_cache_clear()
        n_vocab = llm.n_vocab()
        for start in range(0, len(ids), llm.n_batch):
            part = list(ids[start : start + llm.n_batch])
            llm._batch.set_batch(part, n_past=start, logits_all=True)
            try:
                llm._ctx.decode(llm._batch)
            except RuntimeError:
                if self.flag[0]:  # the abort callback stopped it
                    raise EngineError("cancelled") from None
                raise
            ptr = llama_cpp.llama_get_logits(llm._ctx.ctx)
            yield np.ctypeslib.as_array(ptr, shape=(len(part), n_vocab)).copy()

    def _forget_cache(self, llm: llama_cpp.Llama) -> None:
        """After scoring: the cache holds no chat, so the next turn starts afresh."""
        llm._ctx.kv_cache_clear()
        llm.reset()
        self._forget_chat()

    def _forget_chat(self) -> None:
        """No last turn to reuse, and nothing evaluated ahead."""
        self._remember("", [], "", [])
        self._ahead_at = self._ahead_end = 0

    def _logits(self, req: Logits) -> np.ndarray:
        llm = self._scoring_model(req.tokens)
        if not 0 < len(req.tokens) <= llm.n_ctx():
            raise EngineError(f"give between 1 and {llm.n_ctx()} tokens")
        try:
            return np.concatenate(list(self._window_logits(llm, req.tokens)))
        finally:
            self._forget_cache(llm)

    def _perplexity(self, req: Perplexity) -> PerplexityReport:
        """Score windows of the text with logits for every position."""
        llm = self._model()
        if req.tokens is not None:
            ids = list(req.tokens)
        else:
            ids = llm.tokenize((req.text or "").encode(), add_bos=False, special=False)
        llm = self._scoring_model(ids)
        window = min(req.window or llm.n_ctx(), llm.n_ctx())
        count = (len(ids) - 1) // window
        if req.max_windows:
            count = min(count, req.max_windows)
        if count < 1:
            raise EngineError(
                f"the text is {len(ids):,} tokens: at least {window + 1:,} are needed "
                "for one window"
            )
        nll, right = 0.0, 0
        try:
            for w in range(count):
                chunk = ids[w * window : w * window + window + 1]
                done = 0
                for batch in self._window_logits(llm, chunk[:-1]):
                    targets = np.array(chunk[done + 1 : done + 1 + len(batch)])
                    loss, hits = _nll(batch, targets)
                    nll, right, done = nll + loss, right + hits, done + len(batch)
        finally:
            self._forget_cache(llm)
        scored = count * window
        return PerplexityReport(count, scored, nll / scored, right / scored)

    def _score(self, req: Score) -> PerplexityReport:
        """Each sequence from an empty cache; only the marked tokens count."""
        llm = self._scoring_model([t for seq in req.sequences for t in seq])
        nll, right, scored = 0.0, 0, 0
        try:
            for ids, learn in zip(req.sequences, req.learn, strict=True):
                if len(ids) > llm.n_ctx():
                    raise EngineError(
                        f"a sequence of {len(ids):,} tokens is longer than the context "
                        f"({llm.n_ctx():,})"
                    )
                done = 0
                for batch in self._window_logits(llm, ids[:-1]):
                    targets = np.array(ids[done + 1 : done + 1 + len(batch)])
                    keep = np.array(learn[done + 1 : done + 1 + len(batch)], dtype=bool)
                    done += len(batch)
                    if not keep.any():
                        continue
                    loss, hits = _nll(batch[keep], targets[keep])
                    nll, right, scored = nll + loss, right + hits, scored + int(keep.sum())
        finally:
            self._forget_cache(llm)
        if not scored:
            raise EngineError("no token was marked to score")
        return PerplexityReport(len(req.sequences), scored, nll / scored, right / scored)

    def _shift(self, i: int, j: int) -> int:
        """Drop cached tokens ``[i, j)`` and move the rest down, in place
        (llama.cpp re-rotates the moved keys). Returns the tokens dropped, or 0
        where it cannot: memory that cannot shift, or a cache that does not hold
        those tokens."""
        llm = self._model()
        n = min(llm.n_tokens, len(self.last_tokens))  # past the reply a stop string cut
        memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
        if j > n or not llama_cpp.llama_memory_can_shift(memory):
            return 0
        if llm.input_ids[:n].tolist() != self.last_tokens[:n]:
            return 0
        if not llama_cpp.llama_memory_seq_rm(memory, 0, n, -1):
            return 0
        if not llama_cpp.llama_memory_seq_rm(memory, 0, i, j):
            return 0
        llama_cpp.llama_memory_seq_add(memory, 0, j, n, i - j)
        llm.input_ids[i : n - (j - i)] = llm.input_ids[j:n]
        llm.n_tokens = n - (j - i)
        return j - i

    def _chat(self, rid: int, req: Chat) -> ChatResult:
        t0 = time.perf_counter()
        llm = self._model()
        if self.vocab_only:
            raise EngineError("this model was loaded for its tokenizer only; load it fully to chat")
        s = req.settings
        window, added, prompt = self._window(req.messages, s)
        n_ctx = llm.n_ctx()
        text, tokens, shift = prompt(window.messages)
        if len(tokens) >= n_ctx:
            raise EngineError(
                f"the conversation needs {len(tokens)} tokens but the context holds {n_ctx}; "
                "start a new chat or raise the context size"
            )
        room = n_ctx - len(tokens)
        max_new = min(s.max_tokens, room)

        shifted = self._shift(*shift) if shift else 0
        prefix = reusable_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        if prefix and not llm._ctx.kv_cache_seq_rm(-1, prefix, -1):
            prefix = 0
        if prefix == 0:
            llm.reset()
        llm.n_tokens = prefix
        # Tokens evaluated ahead, between turns, count as this turn's: the
        # count is the same whether the user took a minute or sent at once.
        at, end = self._ahead_at, self._ahead_end
        if shifted:  # those past the dropped run moved down with the rest
            i = shift[0] if shift else 0
            at, end = (p if p < i else max(i, p - shifted) for p in (at, end))
        ahead = max(0, min(prefix, end) - at)
        self._ahead_at = self._ahead_end = 0
        evaluated = len(tokens) - prefix + ahead

        llm.set_seed(s.seed if s.seed >= 0 else random.randrange(2**32 - 1))
        args = s.llama_args("sampling")
        args.pop("seed", None)
        gen = llm.generate(
            tokens[prefix:],
            reset=False,
            typical_p=1.0,
            frequency_penalty=0.0,
            presence_penalty=0.0,
            tfs_z=1.0,
            mirostat_mode=0,
            mirostat_tau=5.0,
            mirostat_eta=0.1,
            penalize_nl=True,
            **args,
        )
        vocab = llm._model.vocab
        utf8 = Utf8Assembler()
        stops = StopMatcher(req.stop)
        reply: list[str] = []
        reply_tokens: list[int] = []
        finish: FinishReason = "length"
        hit_stop_string = False
        t_first = t_last = 0.0
        try:
            while True:
                try:
                    token = next(gen)
                except StopIteration:
                    finish = "stop"
                    break
                except RuntimeError:
                    if self.flag[0]:
                        finish = "cancelled"
                        break
                    raise EngineError(
                        f"llama.cpp failed to evaluate: {self._last_error()}"
                    ) from None
                t_last = time.perf_counter()
                if not t_first:
                    t_first = t_last
                if self.flag[0]:
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                reply_tokens.append(token)
                lstrip = 1 if len(reply_tokens) == 1 and self.add_space_prefix else 0
                out, hit_stop_string = stops.feed(utf8.feed(self._piece(token, lstrip=lstrip)))
                if out:
                    reply.append(out)
                    self._send(rid, Piece(out))
                if hit_stop_string:
                    finish = "stop"
                    break
                if len(reply_tokens) >= max_new:
                    finish = "length" if max_new == s.max_tokens else "context"
                    break
        finally:
            gen.close()
        if not hit_stop_string:
            out, hit_stop_string = stops.feed(utf8.flush())
            tail = out if hit_stop_string else out + stops.flush()
            if tail:
                reply.append(tail)
                self._send(rid, Piece(tail))

        # Remember this turn for the next prompt's prefix reuse. After a stop
        # string the reply text no longer matches its tokens.
        reply_text = "".join(reply)
        if hit_stop_string:
            self._remember(text, tokens, "", [])
        else:
            self._remember(
                text, tokens, *self._as_rendered(window.messages, text, reply_text, reply_tokens)
            )
        if finish != "cancelled":  # else the user wants the machine back
            self._ahead = (*window.messages, {"role": "assistant", "content": reply_text})
            self._ahead_head = None
        now = time.perf_counter()
        n = len(reply_tokens)
        return ChatResult(
            reply=reply_text,
            finish_reason=finish,
            prompt_tokens=len(tokens),
            evaluated_tokens=evaluated,
            ahead_tokens=ahead,
            completion_tokens=n,
            ttft_ms=((t_first or now) - t0) * 1000,
            tokens_per_s=(n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else 0.0,
            context_size=n_ctx,
            context_used=len(tokens) + n,
            trimmed_messages=len(window.dropped),
            dropped=tuple(i - added for i in window.dropped),
            shifted_tokens=shifted,
        )

    def _as_rendered(
        self, messages: Sequence[Message], text: str, reply: str, reply_tokens: list[int]
    ) -> tuple[str, list[int]]:
        """The reply as the next prompt will show it, and its tokens. Many
        templates trim messages (Llama 3's do): a reply that starts or ends with
        whitespace then reads differently next turn, and its whitespace tokens
        must go for the cached tokens to match. Where they cannot (the space is
        part of a bigger token, or the template rewrites old replies), only the
        prompt is remembered and the reply is evaluated again next turn."""
        if not reply or reply == reply.strip():
            return reply, reply_tokens
        rendered = self._render((*messages, {"role": "assistant", "content": reply}), False)
        if not rendered.startswith(text):
            return "", []
        shown = rendered[len(text) :]
        for kept in (reply, reply.strip(), reply.lstrip(), reply.rstrip()):
            if shown.startswith(kept) and kept:
                lead = reply[: reply.index(kept)]
                trail = reply[len(lead) + len(kept) :]
                stripped = self._strip_tokens(reply_tokens, lead.encode(), trail.encode())
                return (kept, stripped) if stripped is not None else ("", [])
        return "", []

    def _strip_tokens(self, tokens: list[int], lead: bytes, trail: bytes) -> list[int] | None:
        """``tokens`` without the whole tokens that spell ``lead`` and ``trail``
        (None when a token straddles the edge)."""
        lstrip = 1 if self.add_space_prefix else 0
        pieces = [self._piece(t, lstrip=lstrip if k == 0 else 0) for k, t in enumerate(tokens)]
        start = got = 0
        while got < len(lead) and start < len(pieces):
            got += len(pieces[start])
            start += 1
        end, cut = len(pieces), 0
        while cut < len(trail) and end > start:
            end -= 1
            cut += len(pieces[end])
        if got != len(lead) or cut != len(trail):
            return None
        return tokens[start:end]

    def _evaluate_ahead(self) -> None:
        """Evaluate the start of the next prompt (see the module's docstring)
        until done or a request comes; a later call resumes."""
        assert self._ahead is not None
        llm = self.llm
        if self.flag[2] or self.conn.poll():
            return  # a request first
        if llm is None or self.vocab_only:
            self._ahead = None
            return
        if self._ahead_head is None:
            try:
                text = self._next_head(self._ahead)
            except LocalChatError:  # the next turn will say what the template refused
                text = ""
            tokens, shift = self._prompt_tokens(text) if text else ([], None)
            if not tokens or shift or len(tokens) >= llm.n_ctx():
                self._ahead = None
                return
            self._ahead_head = text, tokens
        text, tokens = self._ahead_head
        held = _held(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        if held == len(tokens):  # all there: leave the cache (and what it remembers) be
            self._ahead = None
            return
        # Keep what the next prompt shares with the cache (a regenerated
        # reply's prompt is among it), drop the rest, and remember the head.
        if held < llm.n_tokens:
            if not llm._ctx.kv_cache_seq_rm(-1, held, -1):
                self._ahead = None
                return
            llm.n_tokens = held
        self._remember(text, tokens, "", [])
        if self._ahead_at <= held <= self._ahead_end:
            self._ahead_end = held  # resumed: the tokens evaluated so far stay
        else:
            self._ahead_at = self._ahead_end = held
        ctx = llm._ctx.ctx
        llama_cpp.llama_set_abort_callback(ctx, self._abort_cb, self._waiting_addr)
        self._quiet = True  # a preempted decode is not an error worth logging
        try:
            for start in range(held, len(tokens), AHEAD_CHUNK):
                if self.flag[2] or self.conn.poll():
                    return
                llm.eval(tokens[start : start + AHEAD_CHUNK])
                self._ahead_end = llm.n_tokens
        except RuntimeError:  # preempted (or failed: the next turn evaluates it)
            llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
            self._ahead_end = llm.n_tokens
            if not self.flag[2]:
                self._ahead = None
            return
        finally:
            self._quiet = False
            llama_cpp.llama_set_abort_callback(ctx, self._abort_cb, self._flag_addr)
        self._ahead = None

    def _next_head(self, messages: tuple[Message, ...]) -> str:
        """The start of the prompt after ``messages`` that does not depend on
        the user's next message: up to the end of the last control token before
        its text (tokenizers split there first, so its tokens begin the next
        prompt's)."""
        a, b = (self._render((*messages, {"role": "user", "content": c})) for c in "ab")
        common = a[: _common_prefix(a, b)]
        controls = list(self._control_pattern().finditer(common))
        return common[: controls[-1].end()] if controls else ""

    def _remember(
        self, text: str, tokens: list[int], reply_text: str, reply_tokens: list[int]
    ) -> None:
        """Keep this turn for the next prompt's reuse."""
        self.last_prompt_chars, self.last_prompt_len = len(text), len(tokens)
        self.last_text, self.last_tokens = text + reply_text, tokens + reply_tokens
        self._marks = None


def _nll(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """Summed negative log-likelihood of ``targets`` under each row of
    ``logits`` (a stable log-softmax in float64), and how many were the top choice."""
    values = logits.astype(np.float64)
    top = values.max(axis=1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(values - top).sum(axis=1))
    nll = float((logz - values[np.arange(len(values)), targets]).sum())
    return nll, int((values.argmax(axis=1) == targets).sum())
