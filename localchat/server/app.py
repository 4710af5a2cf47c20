"""The server's Starlette app: the OpenAI and Ollama routes over one
:class:`EngineService`, behind the Host/key guard (and CORS only when asked),
a catch-all that answers a bug with one line (the traceback goes to the
``localchat.server`` log), and one log line per request, also handed as a
:class:`RequestRecord` to ``app.state.request_listeners`` (the window's log
pane)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localchat.server import ollama_routes, openai_routes
from localchat.server.errors import ApiError, error_response
from localchat.server.security import Guard, ServerConfig
from localchat.server.service import EngineService

log = logging.getLogger("localchat.server")


def create_app(service: EngineService, config: ServerConfig) -> Starlette:
    listeners: list[RequestListener] = []
    middleware = [Middleware(RequestLog, listeners=listeners), Middleware(CatchAll)]
    if config.cors_origin:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=[config.cors_origin],
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    middleware.append(Middleware(Guard, config=config))

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(request.url.path, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        words = {404: "no such endpoint", 405: "method not allowed"}
        return error_response(
            request.url.path, ApiError(status, f"{words.get(status, 'error')}: {request.url.path}")
        )

    app = Starlette(
        routes=[*openai_routes.ROUTES, *ollama_routes.ROUTES],
        middleware=middleware,
        exception_handlers={ApiError: api_error, 404: http_error, 405: http_error},
    )
    app.state.service = service
    app.state.request_listeners = listeners  # each called with a RequestRecord
    return app


class CatchAll:
    """A bug answers 500 in one line; its traceback goes to the log only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("error serving %s %s", scope.get("method"), scope.get("path"))
            if not started:
                error = ApiError(500, "internal server error (see the server's log)")
                await error_response(scope.get("path", ""), error)(scope, receive, send)


@dataclass(frozen=True)
class RequestRecord:
    """What a request's log line says, as values: for a listener that shows
    the requests (the window's log pane). ``status`` 0: the client left before
    an answer; ``tokens``, ``tokens_per_s`` and ``finish`` only for a reply."""

    time: float
    """When it arrived (seconds since the epoch)."""
    client: str
    method: str
    path: str
    model: str | None
    status: int
    tokens: int | None
    tokens_per_s: float | None
    finish: str | None
    ms: float


RequestListener = Callable[[RequestRecord], None]


class RequestLog:
    """One line per request: client, method and path, model, status, reply
    tokens and speed, time taken. Never a prompt or a reply. Each request's
    :class:`RequestRecord` goes to the ``listeners`` too (called on the
    server's event loop: a listener hands it on, it does not work there)."""

    def __init__(self, app: ASGIApp, listeners: list[RequestListener] | None = None) -> None:
        self.app = app
        self.listeners = listeners if listeners is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        t0 = time.perf_counter()
        status = 0

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            state = scope.get("state") or {}
            client = scope.get("client") or ("-", 0)
            ms = (time.perf_counter() - t0) * 1000
            parts = [
                f"{client[0]}",
                f"{scope.get('method')} {scope.get('path')}",
                f"model={state.get('model', '-')}",
                f"status={status or 'disconnected'}",
            ]
            if "tokens" in state:
                parts.append(f"tokens={state['tokens']} ({state['tokens_per_s']:.1f} tok/s)")
                parts.append(f"finish={state['finish']}")
            parts.append(f"{ms:.0f} ms")
            log.info(" ".join(parts))
            if self.listeners:
                self._tell(
                    RequestRecord(
                        time=arrived,
                        client=str(client[0]),
                        method=str(scope.get("method", "")),
                        path=str(scope.get("path", "")),
                        model=state.get("model"),
                        status=status,
                        tokens=state.get("tokens"),
                        tokens_per_s=state.get("tokens_per_s"),
                        finish=state.get("finish"),
                        ms=ms,
                    )
                )

    def _tell(self, record: RequestRecord) -> None:
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:  # a listener's bug must not fail the request
                log.exception("a request listener failed")
