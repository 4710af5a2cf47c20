"""The parent side of the engine: what the window and the CLI use.

:class:`Engine` starts the worker process on first use and talks to it with the
messages in ``protocol.py``. Requests are served one at a time (a lock
serialises them), :meth:`Engine.cancel` may be called from any thread.

If the worker dies, whatever the reason, the waiting call raises
:class:`EngineCrashed` at once (it waits on the process as well as the pipe,
so it never hangs), and the next call starts a fresh worker and loads the
same model again.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from localchat.core import paths
from localchat.core.engine import layouts, loading
from localchat.core.engine.entry import worker_main
from localchat.core.engine.protocol import (
    FLAG_BYTES,
    MAX_TOP_LOGPROBS,
    Chat,
    ChatResult,
    ContextReport,
    Embed,
    EmbedderLoaded,
    Embeddings,
    Envelope,
    Failed,
    Flag,
    Info,
    Load,
    LoadedModel,
    LoadEmbedder,
    LoadStage,
    Logits,
    LogitsReport,
    Message,
    Ok,
    Perplexity,
    PerplexityReport,
    Piece,
    PlanContext,
    PromptShown,
    RenderChat,
    Rendered,
    Reply,
    Request,
    Score,
    ShowPrompt,
    Shutdown,
    Tokenize,
    Tokens,
    Tool,
    Unload,
)
from localchat.core.errors import (
    EngineCrashed,
    EngineError,
    ModelFileError,
    ModelLoadError,
    SettingError,
)
from localchat.core.params import GenerationSettings

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

SHUTDOWN_GRACE_S = 2.0


class Engine:
    """A handle on the worker process and the model it holds."""

    def __init__(self, *, log_path: Path | None = None) -> None:
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        # Flags shared with the worker (see protocol.Flag; the byte after each
        # stays 0: the abort callback is strlen). Made with the first worker,
        # as multiprocessing is imported then: the window's start-up does not
        # wait for it.
        self._flag: Any = None
        self._wait: Any = None  # multiprocessing.connection.wait, with the first worker
        self._lock = threading.RLock()
        self._next_id = 0
        self._active: ChatStream | None = None
        self._load_request: Load | None = None
        self._embedder_request: LoadEmbedder | None = None
        self.embedder: EmbedderLoaded | None = None
        """The embedding model loaded beside the chat model, if any."""
        self._log_path = log_path
        self._log_start = 0  # where the running worker's lines start in the log
        self._stage: LoadStage | None = None  # how far the load in flight got
        self._exit_code: int | None = None  # how the last worker that died ended
        self.loaded: LoadedModel | None = None

    # -- public API ------------------------------------------------------------

    def load(
        self,
        path: str | Path,
        settings: GenerationSettings | None = None,
        *,
        lora: str | Path | None = None,
        vocab_only: bool = False,
        layouts_off: tuple[str, ...] | None = None,
    ) -> LoadedModel:
        """Load a GGUF model (replacing any loaded one). Checks the file first, so
        a bad file is a one-line :class:`ModelFileError`, not a crash.

        ``layouts_off``: llama.cpp's weight layouts (extra buffer types, e.g.
        "AMX", "CPU_REPACK") to leave out; by default those this CPU and build
        are remembered to need off (see ``layouts.py``)."""
        req = loading.load_request(
            path,
            settings or GenerationSettings(),
            lora=lora,
            vocab_only=vocab_only,
            layouts_off=layouts_off,
        )
        with self._lock:
            self._load_request = None
            self.loaded = None
            req, result = loading.load_falling_back(req, self._try_load)
            self._load_request, self.loaded = req, result
            return result

    def unload(self) -> None:
        with self._lock:
            self._load_request = None
            self.loaded = None
            if self._proc is not None:
                self._call(Unload())

    def info(self) -> LoadedModel | None:
        """What the worker has loaded (None when nothing, or no worker yet)."""
        with self._lock:
            if self._proc is None:
                return None
            result = self._call(Info())
            return result if isinstance(result, LoadedModel) else None

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        result = self._call(Tokenize(text, add_bos, special))
        assert isinstance(result, Tokens)
        return list(result.ids)

    def render(self, messages: Sequence[Message]) -> Rendered:
        """The prompt the model would see for ``messages``, and its token count."""
        result = self._call(RenderChat(tuple(messages)))
        assert isinstance(result, Rendered)
        return result

    def prompt(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings | None = None,
        *,
        tools: Sequence[Tool] = (),
    ) -> PromptShown:
        """The exact prompt the model would read for ``messages`` now, token by
        token (the prompt X-ray)."""
        result = self._call(
            ShowPrompt(tuple(messages), settings or GenerationSettings(), tuple(tools))
        )
        assert isinstance(result, PromptShown)
        return result

    def plan(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings | None = None,
        *,
        tools: Sequence[Tool] = (),
    ) -> ContextReport:
        """What the model would see of ``messages`` if they were sent now (the
        overflow policy applied, counted exactly), without generating."""
        result = self._call(
            PlanContext(tuple(messages), settings or GenerationSettings(), tuple(tools))
        )
        assert isinstance(result, ContextReport)
        return result

    def perplexity(
        self,
        *,
        text: str | None = None,
        tokens: Sequence[int] | None = None,
        window: int = 0,
        max_windows: int = 0,
    ) -> PerplexityReport:
        """How well the loaded model predicts ``text`` (tokenized by the model,
        no BOS) or ``tokens``; see :class:`Perplexity`."""
        request = Perplexity(
            text, tuple(tokens) if tokens is not None else None, window, max_windows
        )
        result = self._call(request)
        assert isinstance(result, PerplexityReport)
        return result

    def score(
        self, sequences: Sequence[Sequence[int]], learn: Sequence[Sequence[bool]]
    ) -> PerplexityReport:
        """Perplexity of the loaded model over separate sequences, counting only
        the tokens marked in ``learn``; see :class:`Score`."""
        request = Score(tuple(tuple(s) for s in sequences), tuple(tuple(m) for m in learn))
        result = self._call(request)
        assert isinstance(result, PerplexityReport)
        return result

    def logits(self, tokens: Sequence[int]) -> Any:
        """The loaded model's scores for the next token at each position of
        ``tokens`` (at most the context), as a ``[len(tokens), n_vocab]``
        float32 numpy array."""
        result = self._call(Logits(tuple(tokens)))
        assert isinstance(result, LogitsReport)
        return result.values

    def chat(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings | None = None,
        *,
        stop: Sequence[str] = (),
        logprobs: bool = False,
        top_logprobs: int = 0,
        prefix: Sequence[int] = (),
        grammar: str | None = None,
        tools: Sequence[Tool] = (),
        raw: str | None = None,
        stream_logprobs: bool = False,
    ) -> ChatStream:
        """Start a reply; iterate the returned stream for its text as it comes.
        ``logprobs``: keep every token's log-probability, ``top_logprobs``:
        and this many candidates at each (``ChatResult.tokens``); ``prefix``:
        tokens the reply starts with, placed, not sampled (``Chat.prefix``);
        ``grammar``: GBNF the answer must follow (``Chat.grammar``; JSON's
        from ``json_grammar``); ``tools``: functions the model may call
        (``Chat.tools``); ``raw``: a text to complete in place of the
        messages (``Chat.raw``); ``stream_logprobs``: the log-probabilities
        with each piece too (``Chat.stream_logprobs``)."""
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise SettingError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
        request = Chat(
            tuple(messages),
            settings or GenerationSettings(),
            tuple(stop),
            logprobs or top_logprobs > 0,
            top_logprobs,
            tuple(prefix),
            grammar,
            raw=raw,
            tools=tuple(tools),
            stream_logprobs=stream_logprobs,
        )
        with self._lock:
            rid = self._send(request)
            self._active = ChatStream(self, rid)
            return self._active

    def load_embedder(
        self, path: str | Path, *, n_ctx: int = 512, threads: int | None = None
    ) -> EmbedderLoaded:
        """Load an embedding model beside the chat model (kept across a
        crash of the worker, like the chat model). ``n_ctx``: the longest
        text embedded, in tokens (a longer one is cut)."""
        from localchat.core.engine.gguf_info import read_model_info
        from localchat.core.hardware import physical_cores

        info = read_model_info(path)  # a bad file: one line, before the worker
        if info.file_kind != "model":
            raise ModelFileError(f"{info.path.name} is not a model")
        n_ctx = max(8, min(n_ctx, info.context_length or n_ctx))
        req = LoadEmbedder(str(info.path.resolve()), n_ctx, threads or physical_cores())
        with self._lock:
            self._embedder_request, self.embedder = None, None
            result = self._call(req)
            assert isinstance(result, EmbedderLoaded)
            self._embedder_request, self.embedder = req, result
            return result

    def embed(self, texts: Sequence[str]) -> Any:
        """Each text's vector, as the rows of a float32 numpy array (length
        1 each: a dot product is the cosine), from the embedding model
        loaded with :meth:`load_embedder`."""
        return self.embeddings(texts).vectors

    def embeddings(self, texts: Sequence[str]) -> Embeddings:
        """The vectors and each text's token count."""
        result = self._call(Embed(tuple(texts)))
        assert isinstance(result, Embeddings)
        return result

    def cancel(self) -> None:
        """Stop the reply being generated (from any thread). What was generated
        so far is kept; the stream ends with finish_reason "cancelled"."""
        flag = self._flag
        if flag is not None:  # else no worker yet, so nothing to stop
            flag[Flag.CANCEL] = 1

    def close(self) -> None:
        """Stop the worker process."""
        with self._lock:
            if self._active is not None:
                self._active.close()
            proc, conn = self._proc, self._conn
            self._proc = self._conn = None
            self.loaded = None
            self._load_request = None
        if proc is None or conn is None:
            return
        try:
            self._next_id += 1
            self._flag[Flag.REQUEST_WAITING] = 1
            conn.send(Envelope(self._next_id, Shutdown()))
            proc.join(SHUTDOWN_GRACE_S)
        except (OSError, EOFError, BrokenPipeError):
            pass
        if proc.is_alive():
            proc.kill()
            proc.join()
        conn.close()

    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------

    def _start(self) -> None:
        import ctypes
        import multiprocessing
        from multiprocessing.connection import wait

        self._wait = wait  # bound here, not imported per message in _next
        mp = multiprocessing.get_context("spawn")
        if self._flag is None:
            self._flag = mp.RawArray(ctypes.c_ubyte, FLAG_BYTES)
        parent, child = mp.Pipe(duplex=True)
        log_file = self._engine_log()
        try:
            self._log_start = log_file.stat().st_size
        except OSError:
            self._log_start = 0
        proc = mp.Process(
            target=worker_main,
            args=(child, self._flag, str(log_file)),
            name="localchat-engine",
            daemon=True,
        )
        with _bare_main():
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        if self._load_request is not None:
            # A fresh worker after a crash: bring the model back first.
            self._next_id += 1
            parent.send(Envelope(self._next_id, self._load_request))
            result = self._receive(self._next_id)
            if isinstance(result, LoadedModel):
                self.loaded = result
        if self._embedder_request is not None:
            self._next_id += 1
            parent.send(Envelope(self._next_id, self._embedder_request))
            found = self._receive(self._next_id)
            if isinstance(found, EmbedderLoaded):
                self.embedder = found

    def _send(self, request: Request) -> int:
        if self._active is not None:
            self._active.close()
        if self._proc is None or not self._proc.is_alive():
            self._discard_worker()
            self._start()
        assert self._conn is not None
        self._flag[Flag.CANCEL] = 0  # a cancel is for the request in flight, not the next one
        # Requests are one at a time: the worker cleared it for the last.
        self._flag[Flag.REQUEST_WAITING] = 1
        self._next_id += 1
        try:
            self._conn.send(Envelope(self._next_id, request))
        except (OSError, BrokenPipeError):
            self._crashed()
        return self._next_id

    def _try_load(self, req: Load) -> loading.Attempt:
        self._stage = None
        try:
            result = self._call(req)
        except EngineCrashed as exc:
            return loading.Attempt(None, self._stage, exc, self._exit_code)
        assert isinstance(result, LoadedModel)
        return loading.Attempt(result, self._stage)

    def _call(self, request: Request) -> Any:
        with self._lock:
            return self._receive(self._send(request))

    def _receive(self, rid: int) -> Any:
        """The final reply to request ``rid``; pieces of a chat are not expected here."""
        while True:
            body = self._next(rid)
            if isinstance(body, LoadStage):
                self._stage = body
            elif not isinstance(body, Piece):
                return body

    def _next(self, rid: int) -> Any:
        """The next message for request ``rid``: raises on failure or a dead worker."""
        assert self._conn is not None and self._proc is not None
        conn, proc, wait = self._conn, self._proc, self._wait
        while True:
            ready = wait([conn, proc.sentinel])
            if conn in ready:
                try:
                    reply: Reply = conn.recv()
                except (EOFError, OSError):
                    self._crashed()
            else:
                self._crashed()
            body = reply.body
            if reply.id != rid:
                continue  # the tail of an abandoned request
            if isinstance(body, Failed):
                if body.kind == "file":
                    raise ModelFileError(body.message)
                if body.kind == "load":
                    raise ModelLoadError(body.message)
                if body.kind == "internal":
                    raise EngineError(f"internal engine error: {body.message}")
                raise EngineError(body.message)
            if isinstance(
                body,
                Ok
                | Tokens
                | Rendered
                | LoadedModel
                | ChatResult
                | ContextReport
                | PromptShown
                | PerplexityReport
                | LogitsReport
                | EmbedderLoaded
                | Embeddings
                | Piece
                | LoadStage,
            ):
                return body
            raise EngineError(f"unexpected reply from the engine: {type(body).__name__}")

    def _crashed(self) -> NoReturn:
        proc = self._proc
        code = None
        if proc is not None:
            proc.join(1.0)
            code = proc.exitcode
        self._discard_worker()
        last = self._last_log_line()
        self._exit_code = code
        ended = layouts.describe_exit(code)
        detail = f"{ended}, last words: {last}" if last else ended
        raise EngineCrashed(
            f"the model process crashed ({detail}); the next request starts a fresh one"
        )

    def _discard_worker(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc = self._conn = None
        self._active = None
        self.loaded = None

    def _engine_log(self) -> Path:
        return self._log_path or paths.logs_dir() / "engine.log"

    def _last_log_line(self) -> str:
        """The last line the worker that died wrote to the log (none from an
        earlier worker: a note quotes only the crash it reports)."""
        log_file = self._engine_log()
        try:
            with open(log_file, "rb") as f:
                f.seek(0, 2)
                end = f.tell()
                if end < self._log_start:  # the log was started afresh
                    self._log_start = 0
                f.seek(max(self._log_start, end - 4096))
                lines = [
                    ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()
                ]
        except OSError:
            return ""
        if not lines:
            return ""
        # ".../llama.cpp/ggml/src/ggml-cpu/ops.cpp:5422: fatal error" -> "ggml-cpu/ops.cpp:..."
        return re.sub(r"\S*/(?=[^/\s]+/[^/\s]+:\d+)", "", lines[-1].strip())


_main_lock = threading.Lock()


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Start the worker without the caller's main script.

    A spawned child first runs the parent's ``__main__`` file again (as
    ``__mp_main__``), which fails for a script without an ``if __name__ ==
    "__main__"`` guard and costs every script's imports. The worker needs
    nothing from it, so for the moment of the start ``__main__`` is an empty
    module: the child has no main to run.
    """
    with _main_lock:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class ChatStream:
    """The reply being generated: iterate for the answer's text pieces (whole
    characters), or :meth:`pieces` for the thinking too; then read
    :attr:`result`."""

    def __init__(self, engine: Engine, rid: int) -> None:
        self._engine = engine
        self._rid = rid
        self.result: ChatResult | None = None
        self._done = False

    def pieces(self) -> Iterator[Piece]:
        """Every piece as it comes: the thinking (``reasoning``) and the answer."""
        while True:
            with self._engine._lock:
                if self._done:
                    return
                try:
                    body = self._engine._next(self._rid)
                except BaseException:
                    self._finish()
                    raise
                if isinstance(body, ChatResult):
                    self.result = body
                    self._finish()
                    return
            yield body

    def __iter__(self) -> Iterator[str]:
        """The answer's pieces (the thinking is read, not yielded)."""
        for piece in self.pieces():
            if not piece.reasoning:
                yield piece.text

    def text(self) -> str:
        """Run to the end and return the whole answer (without the thinking)."""
        return "".join(self)

    def cancel(self) -> None:
        self._engine.cancel()

    def close(self) -> None:
        """Stop generating and wait for the worker to finish this request."""
        if self._done:
            return
        self._engine.cancel()
        for _ in self.pieces():
            pass

    def _finish(self) -> None:
        self._done = True
        if self._engine._active is self:
            self._engine._active = None
