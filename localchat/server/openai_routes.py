"""OpenAI's API: ``GET /v1/models``, ``POST /v1/chat/completions`` and
``POST /v1/completions`` (a text continued as it is), each whole or
streamed as server-sent events."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localchat.core.engine.protocol import ChatResult, Piece, TokenLogprob
from localchat.core.engine.tools.calls import ToolCall
from localchat.core.engine.tools.formats import parse
from localchat.core.engine.tools.stream import ToolStream
from localchat.server import requests, targets
from localchat.server.errors import ApiError, error_body
from localchat.server.responses import Guarded, closing, note_result, whole
from localchat.server.service import EngineService, Generation

FINISH = {"stop": "stop", "cancelled": "stop", "length": "length", "context": "length"}
"""The engine's finish reasons as OpenAI's."""


async def models(request: Request) -> Response:
    """The installed models, and each with each adapter made for it
    (``model+adapter``)."""

    def listing() -> list[dict[str, Any]]:
        return [
            {
                "id": t.name,
                "object": "model",
                "created": int((t.adapter or t.model).stat().st_mtime),
                "owned_by": "localchat",
            }
            for t in targets.pairs()
        ]

    return JSONResponse({"object": "list", "data": await run_in_threadpool(listing)})


async def completions(request: Request) -> Response:
    """A text completion: the prompt continued as it is, no chat template."""
    service: EngineService = request.app.state.service
    req = requests.openai_completion(await requests.read_json(request))
    request.scope.setdefault("state", {})["model"] = req.model
    gen = await service.start(req)
    reply_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def body(text: str, finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}
        return {
            "id": reply_id,
            "object": "text_completion",
            "created": created,
            "model": gen.model,
            "choices": [choice],
        }

    echo = req.raw if req.echo and req.raw else ""
    if not req.stream:
        result = await whole(request, gen)
        logprobs = (
            _text_logprobs(result.tokens, req.top_logprobs, len(echo)) if req.logprobs else None
        )
        reply = body(echo + result.reply, FINISH[result.finish_reason], logprobs)
        return JSONResponse({**reply, "usage": usage(result)})

    async def chunks() -> AsyncIterator[dict[str, str]]:
        if echo:
            yield {"data": json.dumps(body(echo, None), ensure_ascii=False)}
        sent, at = 0, len(echo)  # tokens whose log-probabilities went out; where the next starts
        try:
            async for item in gen.events():
                if isinstance(item, Piece) and (item.text or item.tokens):
                    logprobs = None
                    if item.tokens:
                        logprobs = _text_logprobs(item.tokens, req.top_logprobs, at)
                        sent += len(item.tokens)
                        at += sum(len(t.text) for t in item.tokens)
                    chunk = body(item.text, None, logprobs)
                    yield {"data": json.dumps(chunk, ensure_ascii=False)}
        except ApiError as exc:
            yield {"data": json.dumps(error_body(exc), ensure_ascii=False)}
            return
        result = gen.result
        assert result is not None
        note_result(request, result)
        logprobs = (
            _text_logprobs(result.tokens[sent:], req.top_logprobs, at) if req.logprobs else None
        )
        yield {
            "data": json.dumps(body("", FINISH[result.finish_reason], logprobs), ensure_ascii=False)
        }
        if req.include_usage:
            last = {**body("", None), "choices": [], "usage": usage(result)}
            yield {"data": json.dumps(last)}
        yield {"data": "[DONE]"}

    return Guarded(EventSourceResponse(chunks(), ping=15), closing(request, gen))


def _text_logprobs(tokens: tuple[TokenLogprob, ...], top: int, offset: int) -> dict[str, Any]:
    """The legacy completions' shape: tokens, their log-probabilities, the
    ``top`` candidates of each as text -> log-probability, where each starts."""
    texts, offsets, at = [], [], offset
    for t in tokens:
        texts.append(t.text)
        offsets.append(at)
        at += len(t.text)
    return {
        "tokens": texts,
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{text: lp for _, text, lp in t.top[:top]} for t in tokens],
        "text_offset": offsets,
    }


async def chat_completions(request: Request) -> Response:
    service: EngineService = request.app.state.service
    req = requests.openai_chat(await requests.read_json(request))
    request.scope.setdefault("state", {})["model"] = req.model
    gen = await service.start(req)
    reply_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not req.stream:
        result = await whole(request, gen)
        return JSONResponse(_completion(reply_id, created, gen, result, req))
    events = _chunks(request, gen, req, reply_id, created)
    return Guarded(EventSourceResponse(events, ping=15), closing(request, gen))


def _completion(
    reply_id: str,
    created: int,
    gen: Generation,
    result: ChatResult,
    req: requests.ChatRequest,
) -> dict[str, Any]:
    content, calls = result.reply, list[ToolCall]()
    if req.tools:
        content, calls = parse(gen.tool_format, result.reply, req.tools)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        # OpenAI's: no text beside the calls is null, not "".
        message["content"] = content.strip() or None
        message["tool_calls"] = [c.as_message_call() for c in calls]
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": _logprobs(result.tokens, req.top_logprobs) if req.logprobs else None,
        "finish_reason": "tool_calls" if calls else FINISH[result.finish_reason],
    }
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": created,
        "model": gen.model,
        "choices": [choice],
        "usage": usage(result),
    }


async def _chunks(
    request: Request,
    gen: Generation,
    req: requests.ChatRequest,
    reply_id: str,
    created: int,
) -> AsyncIterator[dict[str, str]]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, str]:
        body = {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": gen.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        body["choices"][0].update(extra)  # type: ignore[index]
        if req.include_usage:
            body["usage"] = None
        return {"data": json.dumps(body, ensure_ascii=False)}

    calls = ToolStream(gen.tool_format, req.tools) if req.tools else None

    def answer(events: list[str | ToolCall]) -> Iterator[dict[str, str]]:
        for event in events:
            if isinstance(event, str):
                yield chunk({"content": event})
                continue
            # A call, whole: its id and name, then its arguments.
            index = len(called)
            called.append(event)
            head = {"name": event.name, "arguments": ""}
            yield chunk(
                {
                    "tool_calls": [
                        {"index": index, "id": event.id, "type": "function", "function": head}
                    ]
                }
            )
            yield chunk(
                {"tool_calls": [{"index": index, "function": {"arguments": event.arguments}}]}
            )

    called: list[ToolCall] = []
    sent = 0  # the answer's tokens whose log-probabilities went out
    yield chunk({"role": "assistant", "content": ""})
    try:
        async for item in gen.events():
            if not isinstance(item, Piece):
                continue
            if item.reasoning:
                yield chunk({"reasoning_content": item.text})
            elif calls is not None:
                for out in answer(calls.feed(item.text)):
                    yield out
            elif item.tokens:
                sent += len(item.tokens)
                yield chunk(
                    {"content": item.text}, logprobs=_logprobs(item.tokens, req.top_logprobs)
                )
            else:
                yield chunk({"content": item.text})
    except ApiError as exc:
        yield {"data": json.dumps(error_body(exc), ensure_ascii=False)}
        return
    if calls is not None:
        for out in answer(calls.finish()):
            yield out
    result = gen.result
    assert result is not None
    note_result(request, result)
    # Each chunk had its tokens' log-probabilities; those of the text held
    # back to the end (a stop string's start, a last partial character)
    # come with the last chunk.
    logprobs: dict[str, Any] | None = None
    if req.logprobs:
        answer_tokens = tuple(t for t in result.tokens if not t.reasoning)
        logprobs = _logprobs(answer_tokens[sent:], req.top_logprobs)
    finish = "tool_calls" if called else FINISH[result.finish_reason]
    yield chunk({}, finish, logprobs=logprobs)
    if req.include_usage:
        last = {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": gen.model,
            "choices": [],
            "usage": usage(result),
        }
        yield {"data": json.dumps(last)}
    yield {"data": "[DONE]"}


def usage(result: ChatResult) -> dict[str, Any]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "prompt_tokens_details": {
            "cached_tokens": max(result.prompt_tokens - result.evaluated_tokens, 0)
        },
        "completion_tokens_details": {"reasoning_tokens": result.reasoning_tokens},
    }


def _logprobs(tokens: tuple[TokenLogprob, ...], top: int) -> dict[str, Any]:
    """The answer's tokens (not the thinking's) in OpenAI's shape."""

    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = [
        {
            **entry(t.text, t.logprob),
            "top_logprobs": [entry(text, lp) for _, text, lp in t.top[:top]],
        }
        for t in tokens
        if not t.reasoning
    ]
    return {"content": content, "refusal": None}


async def embeddings(request: Request) -> Response:
    """OpenAI's ``/v1/embeddings``: ``input`` a text or a list of texts,
    ``model`` an installed embedding model; vectors of length 1, as floats
    or base64 (``encoding_format``)."""
    service: EngineService = request.app.state.service
    body = await requests.read_json(request)
    texts = requests.embedding_input(body.get("input"))
    model = requests.text_field(body, "model")
    request.scope.setdefault("state", {})["model"] = model
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ApiError(400, 'encoding_format must be "float" or "base64"', param="encoding_format")
    if body.get("dimensions") is not None:
        raise ApiError(
            400, "dimensions is not supported: the model's own are used", param="dimensions"
        )
    vectors, counts = await service.embed(model, texts)

    def shown(row: Any) -> Any:
        if fmt == "base64":
            return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
        return [float(x) for x in row]

    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": shown(row)}
                for i, row in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
        }
    )


ROUTES = [
    Route("/v1/models", models, methods=["GET"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
]
