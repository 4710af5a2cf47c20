"""The worker's request loop: one request at a time from the parent (see
``protocol.py``), each to its handler by its type, every failure a reply;
between requests, the next prompt's start is evaluated ahead."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from localchat.core.engine import cpu_layout
from localchat.core.engine.protocol import (
    Chat,
    ChatResult,
    ContextReport,
    Embed,
    EmbedderLoaded,
    Embeddings,
    Envelope,
    Failed,
    FailureKind,
    Info,
    Load,
    LoadedModel,
    LoadEmbedder,
    Logits,
    LogitsReport,
    Ok,
    Perplexity,
    PerplexityReport,
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
    Unload,
)
from localchat.core.engine.worker import generation, scoring
from localchat.core.engine.worker.ahead import EvaluationAhead
from localchat.core.engine.worker.embedder import Embedder
from localchat.core.engine.worker.flags import Flags
from localchat.core.engine.worker.llama_log import LlamaLog
from localchat.core.engine.worker.loader import Loader, Model
from localchat.core.engine.worker.prompt_cache import PromptCache
from localchat.core.engine.worker.window import plan_context, show_prompt
from localchat.core.errors import EngineError, LocalChatError, ModelFileError, ModelLoadError

KEEP_AHEAD = (PlanContext, Info, Tokenize, RenderChat, ShowPrompt, Embed, LoadEmbedder)
"""Requests that leave the KV cache alone: evaluating ahead resumes after them."""

Answer = (
    LoadedModel
    | Tokens
    | Rendered
    | ChatResult
    | ContextReport
    | PromptShown
    | PerplexityReport
    | LogitsReport
    | EmbedderLoaded
    | Embeddings
    | Ok
)
"""A request's final reply, but a failure."""


def _failure_kind(exc: LocalChatError) -> FailureKind:
    if isinstance(exc, ModelFileError):
        return "file"
    if isinstance(exc, ModelLoadError):
        return "load"
    return "request"


class Worker:
    """Serves the parent's requests over ``conn``; ``flag_memory``: the
    shared flags (see :class:`~localchat.core.engine.protocol.Flag`)."""

    def __init__(self, conn: Connection, flag_memory: Any) -> None:
        self.conn = conn
        self.log = LlamaLog()
        cpu_layout.load_backends()  # before anything asks ggml for a device
        self.flags = Flags(flag_memory)
        self.loader = Loader(self.log, self.flags)
        self.ahead = EvaluationAhead(self.flags, self.log, conn.poll)
        self.loaded: LoadedModel | None = None
        self._model: Model | None = None
        self.embedder: Embedder | None = None
        # Each request type's handler: (request, its id) -> the answer.
        self._handlers: dict[type, Callable[[Any, int], Answer]] = {
            Load: self.load,
            Unload: lambda _req, _rid: self.unload(),
            Shutdown: lambda _req, _rid: self.unload(),
            Info: lambda _req, _rid: self.loaded or Ok(),
            Tokenize: lambda req, _rid: self._tokenize(req),
            RenderChat: lambda req, _rid: self._render(req),
            Chat: self._chat,
            PlanContext: lambda req, _rid: plan_context(self.model, req),
            ShowPrompt: lambda req, _rid: show_prompt(self.model, req),
            Perplexity: lambda req, _rid: scoring.perplexity(self.model, self.flags, req),
            Score: lambda req, _rid: scoring.score(self.model, self.flags, req),
            Logits: lambda req, _rid: LogitsReport(scoring.logits(self.model, self.flags, req)),
            LoadEmbedder: lambda req, _rid: self._load_embedder(req),
            Embed: lambda req, _rid: self._embed(req),
        }

    @property
    def model(self) -> Model:
        """The loaded model (an error to the parent when there is none)."""
        if self._model is None:
            raise EngineError("no model is loaded")
        return self._model

    @property
    def cache(self) -> PromptCache:
        """The loaded model's prompt cache."""
        return self.model.cache

    def serve(self) -> None:
        """Serve requests until the parent shuts the worker down or goes away."""
        while True:
            if self.ahead.pending:
                try:
                    self.evaluate_ahead()
                except Exception:  # a bug: the next turn evaluates it all
                    self.ahead.stop()
                    print("evaluating ahead failed:", file=sys.stderr)
                    traceback.print_exc()  # to the engine log
            try:
                env: Envelope = self.conn.recv()
            except (EOFError, OSError):
                return
            self.flags.received()
            try:
                self._send(env.id, self.handle(env.request, env.id))
                if isinstance(env.request, Shutdown):
                    return
            except LocalChatError as exc:
                self._send(env.id, Failed(_failure_kind(exc), str(exc)))
            except Exception as exc:  # a bug; report it rather than die
                traceback.print_exc()  # to the engine log
                self._send(env.id, Failed("internal", f"{type(exc).__name__}: {exc}"))

    def handle(self, request: Request, rid: int = 0) -> Answer:
        """Serve one request (``rid``: its id, for the messages sent before
        the answer); errors are raised, for :meth:`serve` to reply with."""
        if not isinstance(request, KEEP_AHEAD):
            self.ahead.stop()
        handler = self._handlers.get(type(request))
        if handler is None:
            raise EngineError(f"unknown request {type(request).__name__}")
        return handler(request, rid)

    def evaluate_ahead(self) -> None:
        """Evaluate the start of the next prompt, as between requests, until
        done or a request comes (see ``ahead.py``)."""
        self.ahead.run(self._model)

    def load(self, req: Load, rid: int = 0) -> LoadedModel:
        """Load a model in place of any loaded one (``rid``: the request's id,
        for the stages reached, sent before the answer)."""
        self.unload()
        self._model, self.loaded = self.loader.load(req, lambda stage: self._send(rid, stage))
        return self.loaded

    def _load_embedder(self, req: LoadEmbedder) -> EmbedderLoaded:
        if self.embedder is not None:
            if self.embedder.path == req.path and self.embedder.llm.n_ctx() == req.n_ctx:
                return self.embedder.info()
            self.embedder.close()
            self.embedder = None
        self.embedder = Embedder.load(req, self.log)
        return self.embedder.info()

    def _embed(self, req: Embed) -> Embeddings:
        if self.embedder is None:
            raise EngineError("no embedding model is loaded")
        return self.embedder.embed(req)

    def unload(self) -> Ok:
        """Let go of the loaded model, if any."""
        model, self._model, self.loaded = self._model, None, None
        if model is not None:
            model.close()
        return Ok()

    def _send(self, rid: int, body: Any) -> None:
        self.conn.send(Reply(rid, body))

    def _tokenize(self, req: Tokenize) -> Tokens:
        tokenizer = self.model.tokenizer
        return Tokens(tuple(tokenizer.tokenize(req.text, add_bos=req.add_bos, special=req.special)))

    def _render(self, req: RenderChat) -> Rendered:
        text = self.model.render(req.messages, req.add_generation_prompt)
        return Rendered(text, len(self.cache.tokenize_prompt(text)))

    def _chat(self, req: Chat, rid: int) -> ChatResult:
        result, conversation = generation.chat(
            self.model, req, self.flags, self.log, lambda piece: self._send(rid, piece)
        )
        if conversation is not None:
            self.ahead.start(conversation)
        return result
