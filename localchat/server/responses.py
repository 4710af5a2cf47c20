"""Streamed responses that hold the engine: :class:`Guarded` runs a cleanup
(the generation's close) however the response ends, sent whole, failed, or
cut off by the client; and the figures a request's log line reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from localchat.core.engine.protocol import ChatResult


class Guarded(Response):
    """``response``, then ``cleanup`` whatever happened (a client that went
    away cancels the stream's task: the cleanup still runs)."""

    def __init__(self, response: Response, cleanup: Callable[[], Awaitable[None]]) -> None:
        self.response = response
        self.cleanup = cleanup
        self.status_code = response.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            await self.cleanup()


def note_result(request: Request, result: ChatResult) -> None:
    """What the request's log line says of the reply."""
    state = request.scope.setdefault("state", {})
    state["tokens"] = result.completion_tokens
    state["tokens_per_s"] = result.tokens_per_s
    state["finish"] = result.finish_reason


async def whole(request: Request, gen: Any) -> ChatResult:
    """A reply not streamed: read to its end (cancelled if the client goes
    away), the engine freed, and what the log line says of it noted."""
    try:
        result: ChatResult = await gen.collect(request.is_disconnected)
    finally:
        await gen.close()
    note_result(request, result)
    return result


def closing(request: Request, gen: Any) -> Callable[[], Awaitable[None]]:
    """The cleanup of a streamed reply: close the generation, and let the
    log line say how it ended (a client that went away: cancelled)."""

    async def cleanup() -> None:
        await gen.close()
        if gen.finished is not None:
            note_result(request, gen.finished)

    return cleanup
