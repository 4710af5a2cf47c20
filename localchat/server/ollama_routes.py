"""Ollama's API: ``GET /api/version``, ``GET /api/tags``, ``POST /api/chat``,
``POST /api/generate`` (the prompt as one user message) and ``POST
/api/show``. Replies stream as JSON lines unless ``"stream": false``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from localchat import __version__
from localchat.core.engine.gguf_info import read_model_info
from localchat.core.engine.protocol import ChatResult, Piece
from localchat.core.errors import ModelFileError
from localchat.core.models import library
from localchat.server import requests
from localchat.server.errors import ApiError
from localchat.server.responses import Guarded, closing, note_result
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
            "capabilities": ["completion"],
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
    gen = await service.start(
        req.model, req.messages, req.settings, stop=req.stop, grammar=req.grammar
    )
    if not req.stream:
        try:
            pieces, result = await gen.collect()
        finally:
            await gen.close()
        note_result(request, result)
        text = "".join(p.text for p in pieces if not p.reasoning)
        thinking = "".join(p.text for p in pieces if p.reasoning)
        return JSONResponse(_line(gen.model, text, thinking, generate, result))
    lines = _lines(request, gen, generate)
    return Guarded(
        StreamingResponse(lines, media_type="application/x-ndjson"), closing(request, gen)
    )


async def _lines(request: Request, gen: Generation, generate: bool) -> AsyncIterator[str]:
    try:
        async for item in gen.events():
            if isinstance(item, Piece):
                text, thinking = ("", item.text) if item.reasoning else (item.text, "")
                yield json.dumps(_line(gen.model, text, thinking, generate)) + "\n"
    except ApiError as exc:
        yield json.dumps({"error": exc.message}) + "\n"
        return
    assert gen.result is not None
    note_result(request, gen.result)
    yield json.dumps(_line(gen.model, "", "", generate, gen.result)) + "\n"


def _line(
    model: str, text: str, thinking: str, generate: bool, result: ChatResult | None = None
) -> dict[str, Any]:
    """One line of a reply (the last, with ``result``: done, and the counts)."""
    line: dict[str, Any] = {"model": model, "created_at": _now()}
    if generate:
        line["response"] = text
        if thinking:
            line["thinking"] = thinking
    else:
        message = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
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


ROUTES = [
    Route("/api/version", version, methods=["GET"]),
    Route("/api/tags", tags, methods=["GET"]),
    Route("/api/show", show, methods=["POST"]),
    Route("/api/chat", chat, methods=["POST"]),
    Route("/api/generate", generate, methods=["POST"]),
]
