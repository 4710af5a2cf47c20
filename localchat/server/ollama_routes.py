"""Ollama's API: ``GET /api/version``, ``GET /api/tags``, ``POST /api/chat``
(with tools), ``POST /api/generate`` (the prompt as one user message, or
as it is with ``"raw": true``) and ``POST /api/show``. Replies stream as
JSON lines unless ``"stream": false``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from localchat import __version__
from localchat.core.engine.gguf_info import read_model_info
from localchat.core.engine.protocol import ChatResult, Piece, Tool
from localchat.core.engine.tools.calls import ToolCall
from localchat.core.engine.tools.formats import parse
from localchat.core.engine.tools.stream import ToolStream
from localchat.core.errors import ModelFileError
from localchat.core.models import library
from localchat.server import requests
from localchat.server.errors import ApiError
from localchat.server.responses import Guarded, closing, note_result, whole
from localchat.server.service import EngineService, Generation, find_model

DONE_REASON = {"stop": "stop", "cancelled": "stop", "length": "length", "context": "length"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _modified(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat().replace("+00:00", "Z")


def _details(path: Path) -> dict[str, Any]:
    try:
        info = read_model_info(path)
    except ModelFileError:
        return {"format": "gguf"}
    billions = info.parameter_count / 1e9
    size = f"{billions:.1f}B" if billions >= 0.1 else f"{info.parameter_count / 1e6:.1f}M"
    return {
        "format": "gguf",
        "family": info.architecture,
        "families": [info.architecture],
        "parameter_size": size,
        "quantization_level": info.quantization,
    }


async def version(request: Request) -> Response:
    return JSONResponse({"version": __version__})


async def tags(request: Request) -> Response:
    def listing() -> list[dict[str, Any]]:
        return [
            {
                "name": p.stem,
                "model": p.stem,
                "modified_at": _modified(p),
                "size": p.stat().st_size,
                "digest": "",
                "details": _details(p),
            }
            for p in library.installed()
        ]

    return JSONResponse({"models": await run_in_threadpool(listing)})


async def show(request: Request) -> Response:
    body = await requests.read_json(request)
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "model is required", param="model")
    path = find_model(name)
    try:
        info = await run_in_threadpool(read_model_info, path)
    except ModelFileError as exc:
        raise ApiError(500, str(exc)) from None
    return JSONResponse(
        {
            "modelfile": "",
            "parameters": "",
            "template": info.chat_template or "",
            "details": _details(path),
            "model_info": {
                "general.architecture": info.architecture,
                "general.parameter_count": info.parameter_count,
                f"{info.architecture}.context_length": info.context_length,
            },
            # Every model takes tools: through its template, or our prompt.
            "capabilities": ["completion", "tools"],
            "modified_at": _modified(path),
        }
    )


async def chat(request: Request) -> Response:
    return await _reply(request, generate=False)


async def generate(request: Request) -> Response:
    return await _reply(request, generate=True)


async def _reply(request: Request, *, generate: bool) -> Response:
    service: EngineService = request.app.state.service
    req = requests.ollama_chat(await requests.read_json(request), generate=generate)
    request.scope.setdefault("state", {})["model"] = req.model
    gen = await service.start(req)
    if not req.stream:
        result = await whole(request, gen)
        text, thinking = result.reply, result.reasoning
        calls: list[ToolCall] = []
        if req.tools:
            text, calls = parse(gen.tool_format, text, req.tools)
        return JSONResponse(_line(gen.model, text, thinking, generate, result, calls))
    lines = _lines(request, gen, generate, req.tools)
    return Guarded(
        StreamingResponse(lines, media_type="application/x-ndjson"), closing(request, gen)
    )


async def _lines(
    request: Request, gen: Generation, generate: bool, tools: tuple[Tool, ...]
) -> AsyncIterator[str]:
    calls = ToolStream(gen.tool_format, tools) if tools else None

    def answer(events: list[str | ToolCall]) -> Iterator[str]:
        for event in events:
            if isinstance(event, str):
                yield json.dumps(_line(gen.model, event, "", generate)) + "\n"
            else:  # a call, whole, on its line
                yield json.dumps(_line(gen.model, "", "", generate, calls=[event])) + "\n"

    try:
        async for item in gen.events():
            if not isinstance(item, Piece):
                continue
            if item.reasoning:
                yield json.dumps(_line(gen.model, "", item.text, generate)) + "\n"
            elif calls is not None:
                for line in answer(calls.feed(item.text)):
                    yield line
            else:
                yield json.dumps(_line(gen.model, item.text, "", generate)) + "\n"
    except ApiError as exc:
        yield json.dumps({"error": exc.message}) + "\n"
        return
    if calls is not None:
        for line in answer(calls.finish()):
            yield line
    assert gen.result is not None
    note_result(request, gen.result)
    yield json.dumps(_line(gen.model, "", "", generate, gen.result)) + "\n"


def _line(
    model: str,
    text: str,
    thinking: str,
    generate: bool,
    result: ChatResult | None = None,
    calls: Sequence[ToolCall] = (),
) -> dict[str, Any]:
    """One line of a reply (the last, with ``result``: done, and the counts;
    ``calls``: tool calls, arguments as objects as Ollama gives them)."""
    line: dict[str, Any] = {"model": model, "created_at": _now()}
    if generate:
        line["response"] = text
        if thinking:
            line["thinking"] = thinking
    else:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = [
                {"id": c.id, "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                for c in calls
            ]
        line["message"] = message
    line["done"] = result is not None
    if result is not None:
        generating_s = result.completion_tokens / result.tokens_per_s if result.tokens_per_s else 0
        line.update(
            done_reason=DONE_REASON[result.finish_reason],
            total_duration=int((result.ttft_ms / 1000 + generating_s) * 1e9),
            prompt_eval_count=result.prompt_tokens,
            prompt_eval_duration=int(result.ttft_ms * 1e6),
            eval_count=result.completion_tokens,
            eval_duration=int(generating_s * 1e9),
        )
    return line


async def embed(request: Request) -> Response:
    """Ollama's ``/api/embed``: ``input`` a text or a list of texts."""
    service: EngineService = request.app.state.service
    body = await requests.read_json(request)
    texts = requests.embedding_input(body.get("input"))
    model = requests.text_field(body, "model")
    request.scope.setdefault("state", {})["model"] = model
    vectors, counts = await service.embed(model, texts)
    return JSONResponse(
        {
            "model": model,
            "embeddings": [[float(x) for x in row] for row in vectors],
            "prompt_eval_count": sum(counts),
        }
    )


ROUTES = [
    Route("/api/version", version, methods=["GET"]),
    Route("/api/tags", tags, methods=["GET"]),
    Route("/api/show", show, methods=["POST"]),
    Route("/api/chat", chat, methods=["POST"]),
    Route("/api/generate", generate, methods=["POST"]),
    Route("/api/embed", embed, methods=["POST"]),
]
