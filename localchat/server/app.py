"""The server's Starlette app: the OpenAI and Ollama routes over one
:class:`EngineService`, behind the Host/key guard (and CORS only when asked),
a catch-all that answers a bug with one line (the traceback goes to the
``localchat.server`` log), and one log line per request."""

from __future__ import annotations

import logging
import time

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
    middleware = [Middleware(RequestLog), Middleware(CatchAll)]
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


class RequestLog:
    """One line per request: client, method and path, model, status, reply
    tokens and speed, time taken. Never a prompt or a reply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            parts = [
                f"{client[0]}",
                f"{scope.get('method')} {scope.get('path')}",
                f"model={state.get('model', '-')}",
                f"status={status or 'disconnected'}",
            ]
            if "tokens" in state:
                parts.append(f"tokens={state['tokens']} ({state['tokens_per_s']:.1f} tok/s)")
                parts.append(f"finish={state['finish']}")
            parts.append(f"{(time.perf_counter() - t0) * 1000:.0f} ms")
            log.info(" ".join(parts))
