"""The one engine behind the server: requests take it in turn, in arrival
order (an asyncio lock, which wakes its waiters first come, first served),
and each engine call runs in a worker thread, never on the event loop.

A request's model is loaded on demand when it is not the one loaded. A
:class:`Generation` holds the engine from its start until it is closed:
closing it (the response sent, or the client gone) cancels what is still
being generated and waits for the engine to be free before the next request
starts.

The window runs the same service over its own engine (the "Local server"
switch): its replies take a :meth:`EngineService.turn` from their thread,
in the same arrival order, and a model the server loads is announced to the
``on_load`` listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import (
    ChatResult,
    LoadedModel,
    Message,
    Piece,
    Tool,
)
from localchat.core.engine.tools.formats import FORMATS, ToolFormat
from localchat.core.engine.tools.grammar import call_grammar
from localchat.core.errors import (
    EngineCrashed,
    EngineError,
    LocalChatError,
    ModelFileError,
    ModelLoadError,
    SettingError,
)
from localchat.core.params import GenerationSettings
from localchat.core.settings import AppSettings
from localchat.server.errors import ApiError
from localchat.server.requests import ChatRequest
from localchat.server.targets import Target, find

log = logging.getLogger("localchat.server")

DISCONNECT_POLL_S = 0.05
"""How often a whole reply's client is checked for having gone."""

Event = tuple[str, Any]
"""("piece", Piece), ("done", ChatResult) or ("error", an exception)."""


def find_model(name: str) -> Path:
    """The installed model ``name`` names (its adapter, if any, aside)."""
    return find(name).model


class EngineService:
    """The engine, a request at a time, and the model it has loaded."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.model: Path | None = None
        self.adapter: Path | None = None
        self.base = GenerationSettings()
        """The loaded model's own settings (the window's choices for it)."""
        self.on_load: list[Callable[[Path], None]] = []
        """Called (from a worker thread) with each model the server loads."""

    def attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Serve on ``loop`` (None: no longer serving): :meth:`turn` then
        waits there for the engine."""
        self._loop = loop

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the engine from another thread than the server's (the
        window's reply): wait, in arrival order with the requests, for the one
        in progress to end; the requests that come meanwhile wait for this
        turn. Without a server running, it holds nothing."""
        loop = self._loop
        if loop is None or not loop.is_running():
            yield
            return
        asyncio.run_coroutine_threadsafe(self._lock.acquire(), loop).result()
        try:
            yield
        finally:
            loop.call_soon_threadsafe(self._lock.release)

    def _needs_load(self, target: Target) -> bool:
        loaded = self.engine.loaded
        lora = str(target.adapter.resolve()) if target.adapter else None
        if loaded is None or Path(loaded.path) != target.model.resolve() or loaded.lora != lora:
            return True
        if (self.model, self.adapter) != (target.model, target.adapter):
            # Loaded by the window: take its settings.
            self.model, self.adapter = target.model, target.adapter
            self.base = _server_settings(target.model)
        return False

    @property
    def name(self) -> str:
        """The loaded model's id (``model+adapter`` with an adapter)."""
        return Target(self.model, self.adapter).name if self.model else ""

    def load(self, path: Path, adapter: Path | None = None) -> LoadedModel:
        """Load ``path``, with ``adapter`` (blocking: from a thread, or before
        serving)."""
        base = _server_settings(path)
        if self.engine.loaded is not None:
            # Free the old model first: never two in memory at once (and a
            # model loaded over another in the same worker generated ~100x
            # slower in tests; unloading first avoids it).
            self.engine.unload()
        self.model = self.adapter = None
        loaded = self.engine.load(path, base, lora=adapter)
        self.model, self.adapter, self.base = path, adapter, base
        for listener in self.on_load:
            listener(path)
        return loaded

    async def start(self, req: ChatRequest) -> Generation:
        """Wait for the engine, load the request's model if need be and start
        the reply. Its tools' ``tool_choice`` "required" or a function's name
        is enforced by a grammar in the loaded model's format. Failures before
        its first piece are :class:`ApiError`; the returned generation holds
        the engine until it is closed."""
        target = find(req.model)
        path = target.model
        await self._lock.acquire()
        generation: Generation | None = None
        try:
            if self._needs_load(target):
                try:
                    await run_in_threadpool(self.load, path, target.adapter)
                except (ModelFileError, ModelLoadError) as exc:
                    # With an adapter, most likely one for another model: the request's.
                    status = 400 if target.adapter else 500
                    raise ApiError(status, f"could not load {target.name}: {exc}") from None
                except EngineCrashed as exc:
                    raise ApiError(500, str(exc), code="model_crashed") from None
            try:
                settings = self.base.replace(**req.settings)
            except SettingError as exc:
                raise ApiError(400, str(exc)) from None
            grammar = req.grammar
            if req.tools and req.tool_choice not in ("auto", "none"):
                name = None if req.tool_choice == "required" else req.tool_choice
                try:
                    grammar = call_grammar(
                        self.tool_format(), req.tools, name, several=req.parallel
                    )
                except SettingError as exc:
                    raise ApiError(400, str(exc), param="tools") from None
            generation = Generation(self, req, settings, grammar)
            await generation.begin()
            return generation
        except BaseException:
            if generation is not None:
                await generation.close()  # releases the lock
            else:
                self._lock.release()
            raise

    async def embed(self, model: str, texts: Sequence[str]) -> tuple[Any, tuple[int, ...]]:
        """Vectors for ``texts`` from the installed embedding model ``model``,
        loaded beside the chat model (in turn with the other requests);
        each text's token count."""
        path = find(model).model
        async with self._lock:

            def run() -> tuple[Any, tuple[int, ...]]:
                loaded = self.engine.embedder
                if loaded is None or Path(loaded.path) != path.resolve():
                    self.engine.load_embedder(path)
                result = self.engine.embeddings(texts)
                return result.vectors, result.tokens

            try:
                return await run_in_threadpool(run)
            except (ModelFileError, ModelLoadError) as exc:
                raise ApiError(400, f"{model} cannot embed: {exc}", param="model") from None
            except EngineCrashed as exc:
                raise ApiError(500, str(exc), code="model_crashed") from None
            except EngineError as exc:
                raise ApiError(400, str(exc)) from None

    def tool_format(self) -> ToolFormat:
        """How the loaded model writes tool calls."""
        loaded = self.engine.loaded
        return FORMATS.get(loaded.tool_format if loaded else "", FORMATS["generic"])

    def context_error(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings,
        exc: EngineError,
        tools: Sequence[Tool] = (),
    ) -> ApiError:
        """Why the engine refused ``messages``: counted exactly (the engine's
        plan under the "stop" policy), else its own words."""
        report = self.engine.plan(messages, settings, tools=tools)
        if report.excess > 0:
            free = report.n_ctx - report.reserve
            return ApiError(
                400,
                f"the messages need {report.prompt_tokens} tokens but {free}"
                f" are free ({report.n_ctx}-token context, {report.reserve} kept for the reply):"
                f" {report.excess} tokens too many; shorten them or lower max_tokens",
                param="messages",
                code="context_length_exceeded",
            )
        return ApiError(400, str(exc))

    def _release(self) -> None:
        self._lock.release()


def _server_settings(path: Path) -> GenerationSettings:
    """The model's own settings, as the window keeps them; but OpenAI's API
    drops nothing from a conversation: one too long is refused."""
    return AppSettings().generation(str(path)).replace(overflow="stop")


class Generation:
    """One reply being generated in a worker thread, its events handed to the
    event loop as they come."""

    def __init__(
        self,
        service: EngineService,
        req: ChatRequest,
        settings: GenerationSettings,
        grammar: str | None,
    ) -> None:
        self.service = service
        self.req = req
        self.settings = settings
        """The request's settings over the model's own."""
        self.grammar = grammar
        """The request's, or the one its required tool call is held to."""
        self.model = service.name
        self.tool_format = service.tool_format()
        """The format the reply's calls are read in."""
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._thread: asyncio.Future[None] | None = None
        self._first: Event | None = None
        self._closed = False
        self.result: ChatResult | None = None
        self.finished: ChatResult | None = None
        """How the reply ended, read or not (a cancelled one too), once closed."""

    async def begin(self) -> None:
        """Start generating; wait for the first event (an error then is raised)."""
        loop = asyncio.get_running_loop()

        def put(event: Event) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                loop.call_soon_threadsafe(self._queue.put_nowait, event)

        self._thread = asyncio.ensure_future(run_in_threadpool(self._produce, put))
        first = await self._queue.get()
        if first[0] == "error":
            raise self._api_error(first[1])
        self._first = first

    def _produce(self, put: Any) -> None:
        req = self.req
        try:
            stream = self.service.engine.chat(
                req.messages,
                self.settings,
                stop=req.stop,
                logprobs=req.logprobs,
                top_logprobs=req.top_logprobs,
                grammar=self.grammar,
                tools=req.tools,
                raw=req.raw,
                # A client that streams log-probabilities gets them chunk by chunk.
                stream_logprobs=req.stream and req.logprobs,
            )
            if self._cancelled.is_set():
                stream.cancel()
            for piece in stream.pieces():
                put(("piece", piece))
            self.finished = stream.result
            put(("done", stream.result))
        except EngineCrashed as exc:
            put(("error", exc))
        except EngineError as exc:
            if req.raw is not None:  # no messages to count
                put(("error", ApiError(400, str(exc), param="prompt")))
                return
            try:
                put(
                    (
                        "error",
                        self.service.context_error(req.messages, self.settings, exc, req.tools),
                    )
                )
            except LocalChatError:
                put(("error", exc))
        except BaseException as exc:
            put(("error", exc))

    async def events(self) -> AsyncIterator[Piece | ChatResult]:
        """The pieces, then the result; a failure is raised as :class:`ApiError`."""
        event = self._first
        self._first = None
        while True:
            if event is None:
                event = await self._queue.get()
            kind, value = event
            event = None
            if kind == "error":
                raise self._api_error(value)
            yield value
            if kind == "done":
                self.result = value
                return

    async def collect(self, gone: Callable[[], Awaitable[bool]] | None = None) -> ChatResult:
        """The whole reply (its answer and thinking are the result's); ``gone``:
        whether the client has disconnected, asked every
        :data:`DISCONNECT_POLL_S` meanwhile: then the reply is cancelled (it
        ends "cancelled", for no one) and the engine freed."""

        async def read() -> None:
            async for _item in self.events():
                pass

        task = asyncio.ensure_future(read())
        try:
            while gone is not None and not task.done():
                await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
                if not task.done() and await gone():
                    self._cancelled.set()
                    self.service.engine.cancel()
                    break
            await task
        finally:
            task.cancel()
        assert self.result is not None
        return self.result

    async def close(self) -> None:
        """Stop generating (if it still is), wait for the engine, let the next
        request have it. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._cancelled.set()
        self.service.engine.cancel()
        interrupted = False
        try:
            while self._thread is not None and not self._thread.done():
                try:
                    await asyncio.shield(self._thread)
                except asyncio.CancelledError:
                    interrupted = True  # still wait: the engine is not free yet
                except Exception:  # its failure was the response's to report
                    break
        finally:
            self.service._release()
        if interrupted:
            raise asyncio.CancelledError

    def _api_error(self, exc: BaseException) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, EngineCrashed):
            return ApiError(500, str(exc), code="model_crashed")
        if isinstance(exc, LocalChatError):
            return ApiError(400, str(exc))
        log.error("generation failed", exc_info=exc)
        return ApiError(500, "internal error (see the server's log)")
