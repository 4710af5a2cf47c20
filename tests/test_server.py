"""``localchat serve`` with the real OpenAI and Ollama clients: a server
process on a free port over tiny random-weight models."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import ollama
import openai
import pytest

from localchat.testing.tiny_models import write_bert_gguf, write_llama_gguf, write_lora_gguf
from tests.server_helpers import Server, install

HI = [{"role": "user", "content": "hello there"}]
TEXT_OR_NULL = {"type": ["string", "null"]}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "additionalProperties": False,
            "properties": {
                "message": {"type": "string", "minLength": 1},
                "type": {"type": "string"},
                "param": TEXT_OR_NULL,
                "code": TEXT_OR_NULL,
            },
        }
    },
}
CHUNK_SCHEMA = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "object": {"const": "chat.completion.chunk"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "delta", "finish_reason"],
                "properties": {
                    "delta": {"type": "object"},
                    "finish_reason": {"enum": [None, "stop", "length"]},
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def server_home(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, slow_model: Path, r1_model: Path
) -> Path:
    home = tmp_path_factory.mktemp("server-home")
    install(home, tiny_model, "tiny.gguf")
    install(home, slow_model, "slow.gguf")
    install(home, r1_model, "r1-distill-tiny.gguf")
    made = tmp_path_factory.mktemp("accents")
    write_bert_gguf(home / "models" / "bert.gguf")
    (home / "adapters").mkdir()
    write_lora_gguf(home / "adapters" / "tiny-lora.gguf", tiny_model, base_file="tiny.gguf")
    install(
        home, write_llama_gguf(made / "accents.gguf", tensor_hook=writes_e_acute), "accents.gguf"
    )
    return home


@pytest.fixture(scope="module")
def server(server_home: Path) -> Iterator[Server]:
    s = Server(server_home, "-m", "tiny").wait()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, **kw: Any) -> Any:
    args: dict[str, Any] = {"model": "tiny", "messages": HI, "max_tokens": 8, "seed": 7}
    return client.chat.completions.create(**{**args, **kw})


def streamed(client: openai.OpenAI, **kw: Any) -> list[Any]:
    return list(ask(client, stream=True, **kw))


def post(server: Server, path: str, body: Any, **kw: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}{path}", content=content, **{"timeout": 60, **kw})


def assert_openai_error(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    jsonschema.validate(r.json(), ERROR_SCHEMA)
    error = r.json()["error"]
    assert "\n" not in error["message"] and "Traceback" not in r.text
    for w in words:
        assert w in error["message"], error
    return error


def writes_e_acute(name: str, array: Any) -> Any:
    """A model that writes "é" over and over, a byte token at a time (0xC3,
    then 0xA9): what it writes depends only on the token it reads (one
    dimension of the embeddings dominates for 0xC3, another for the rest)."""
    lead, trail = FIRST_BYTE + 0xC3, FIRST_BYTE + 0xA9
    if name == "token_embd.weight":
        array[:, 2] = 30.0
        array[lead, 2], array[lead, 1] = 0.0, 60.0
    if name == "output.weight":
        array[trail, 1] = 200.0  # after 0xC3
        array[lead, 2] = 200.0  # after anything else
    return array


FIRST_BYTE = 5
"""The byte vocabulary's <0x00> (after <unk>, <s>, </s> and ChatML's two)."""


# -- OpenAI ------------------------------------------------------------------


def test_models_are_the_installed_ones(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert {m.id for m in models} == {
        "tiny",
        "slow",
        "r1-distill-tiny",
        "accents",
        "bert",
        "tiny+tiny-lora",
    }
    assert all(m.object == "model" and m.owned_by == "localchat" for m in models)


def test_a_model_with_its_adapter_is_a_model_of_its_own(client: openai.OpenAI) -> None:
    """``model+adapter`` loads the model with the adapter (and back without)."""
    greedy: dict[str, Any] = {"temperature": 0.0, "max_tokens": 12}
    plain = ask(client, **greedy)
    tuned = ask(client, model="tiny+tiny-lora", **greedy)
    assert tuned.model == "tiny+tiny-lora"
    assert tuned.choices[0].message.content != plain.choices[0].message.content
    again = ask(client, **greedy)
    assert again.model == "tiny"
    assert again.choices[0].message.content == plain.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        ask(client, model="tiny+nope")


def test_the_same_seed_gives_the_same_reply_streamed_and_not(client: openai.OpenAI) -> None:
    whole = ask(client, temperature=1.0, seed=11)
    chunks = streamed(client, temperature=1.0, seed=11)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason == "length"
    other = ask(client, temperature=1.0, seed=12)
    assert other.choices[0].message.content != text  # the seed matters


def test_usage_is_the_engines_count(client: openai.OpenAI, server_home: Path) -> None:
    reply = ask(client, temperature=0, max_tokens=6)
    cli = subprocess.run(
        [sys.executable, "-m", "localchat", "chat", "-m", "tiny", "--json", "--prompt",
         HI[0]["content"], "--temperature", "0", "--max-tokens", "6"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "LOCALCHAT_HOME": str(server_home)},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    turn = json.loads(cli.stdout)
    assert reply.choices[0].message.content == turn["reply"]
    u = reply.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens) == (turn["prompt_tokens"], 6)
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    # Asked again, the prompt comes from the cache: OpenAI's cached tokens.
    again = ask(client, temperature=0, max_tokens=6).usage
    assert again is not None and again.prompt_tokens_details is not None
    assert 0 < again.prompt_tokens_details.cached_tokens < again.prompt_tokens


def test_include_usage_adds_a_last_chunk(client: openai.OpenAI) -> None:
    chunks = streamed(client, max_tokens=5, stream_options={"include_usage": True})
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    plain = streamed(client, max_tokens=5)
    assert all(c.usage is None for c in plain)


def test_stop_strings_end_the_reply(client: openai.OpenAI) -> None:
    full = ask(client, temperature=0, max_tokens=24).choices[0].message.content
    assert full and len(full) > 8
    stop = full[4:7]
    expected = full[: full.index(stop)]
    for value in (stop, [stop, "never-written"]):
        reply = ask(client, temperature=0, max_tokens=24, stop=value)
        assert reply.choices[0].message.content == expected
        assert reply.choices[0].finish_reason == "stop"
    chunks = streamed(client, temperature=0, max_tokens=24, stop=stop)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected


def test_logprobs_are_sorted_and_consistent(client: openai.OpenAI) -> None:
    reply = ask(client, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == 8
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for t in content:
        tops = [c.logprob for c in t.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert t.logprob <= 0 and t.bytes == list(t.token.encode())
        # Greedy: the token is the most likely one.
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob)
    chunks = streamed(client, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    streamed_tokens = [t for c in chunks if c.choices and c.choices[0].logprobs for t in
                       c.choices[0].logprobs.content]  # fmt: skip
    assert [t.token for t in streamed_tokens] == [t.token for t in content]
    assert [t.top_logprobs[0].token for t in streamed_tokens] == [
        t.top_logprobs[0].token for t in content
    ]
    # Each chunk carries its own tokens' log-probabilities, as it goes.
    carrying = [c for c in chunks if c.choices and c.choices[0].logprobs]
    assert len(carrying) > 1
    for c in carrying:
        tokens = "".join(t.token for t in c.choices[0].logprobs.content)
        assert tokens == (c.choices[0].delta.content or "") or c.choices[0].finish_reason
    # The same for text completions, in their shape.
    text_chunks = [
        c
        for c in client.completions.create(
            model="tiny", prompt="hello", max_tokens=8, seed=7, stream=True, logprobs=2
        )
        if c.choices and c.choices[0].logprobs
    ]
    assert len(text_chunks) > 1
    offsets = [o for c in text_chunks for o in c.choices[0].logprobs.text_offset]
    tokens = [t for c in text_chunks for t in c.choices[0].logprobs.tokens]
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    bad = ask
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        bad(client, logprobs=True, top_logprobs=21)


def test_a_reasoning_model_streams_reasoning_content(server: Server) -> None:
    body = {
        "model": "r1-distill-tiny",
        "messages": HI,
        "max_tokens": 10,
        "seed": 1,
        "thinking": "on",
    }
    reply = post(server, "/v1/chat/completions", body).json()
    message = reply["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"] == ""
    assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] == 10
    r = post(server, "/v1/chat/completions", {**body, "stream": True})
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    for chunk in chunks:
        jsonschema.validate(chunk, CHUNK_SCHEMA)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    thought = "".join(d.get("reasoning_content", "") for d in deltas)
    assert thought == message["reasoning_content"]
    assert "".join(d.get("content", "") for d in deltas) == ""
    assert "data: [DONE]" in r.text


# -- errors ------------------------------------------------------------------


def test_errors_have_openais_shape_and_status(server: Server) -> None:
    chat = "/v1/chat/completions"
    assert_openai_error(post(server, chat, b"{not json"), 400, "not valid JSON")
    error = assert_openai_error(post(server, chat, {"model": "tiny"}), 400, "messages")
    assert error["param"] == "messages"
    error = assert_openai_error(
        post(server, chat, {"model": "tiny", "messages": HI, "temperature": 3}),
        400,
        "temperature must be between 0 and 2",
    )
    assert error["param"] == "temperature"
    assert_openai_error(
        post(server, chat, {"model": "tiny", "messages": HI, "top_k": -1}), 400, "top_k", "1000"
    )
    assert_openai_error(
        post(server, chat, {"model": "tiny", "messages": HI, "n": 2}), 400, "n must be 1"
    )
    error = assert_openai_error(
        post(server, chat, {"model": "gpt-4", "messages": HI}), 404, "gpt-4"
    )
    assert error["code"] == "model_not_found"
    huge = b'{"model": "tiny", "messages": [{"role": "user", "content": "' + b"a" * 5_000_000
    assert_openai_error(post(server, chat, huge + b'"}]}'), 413)
    error = assert_openai_error(
        post(server, "/v1/completions", {"model": "tiny", "prompt": ["a", "b"]}), 400, "one text"
    )
    assert error["param"] == "prompt"
    assert_openai_error(
        post(server, "/v1/completions", {"model": "tiny", "prompt": "a", "suffix": "z"}), 400
    )


def test_a_text_completion_continues_the_prompt_as_it_is(
    client: openai.OpenAI, server: Server
) -> None:
    """/v1/completions: no chat template (the prompt's tokens are the text's),
    the chat's samplers, streamed the same as whole, logprobs in the legacy
    shape, echo, and the prompt cache across a growing text."""
    prompt = "Once upon a time"
    kw: dict[str, Any] = {"model": "tiny", "prompt": prompt, "max_tokens": 12, "seed": 5}
    whole = client.completions.create(**kw)
    choice = whole.choices[0]
    assert whole.object == "text_completion" and choice.finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens <= 12
    chat_prompt = ask(client, messages=[{"role": "user", "content": prompt}], max_tokens=1)
    assert whole.usage.prompt_tokens < chat_prompt.usage.prompt_tokens  # no template
    chunks = list(client.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert chunks[-1].choices[0].finish_reason == choice.finish_reason
    # Log-probabilities: each token's, its top candidates', where it starts.
    probed = client.completions.create(**kw, logprobs=3).choices[0]
    assert probed.text == choice.text
    lp = probed.logprobs
    assert lp is not None and "".join(lp.tokens or []) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) <= 3 and logprob <= 0
        assert max(top.values()) >= logprob - 1e-4 or token not in top
    # echo says the prompt first.
    echoed = client.completions.create(**kw, echo=True).choices[0]
    assert echoed.text == prompt + choice.text
    # The text grows as a client's does: only the new part is evaluated.
    grown = client.completions.create(**{**kw, "prompt": prompt + choice.text + " and"})
    details = grown.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens >= whole.usage.prompt_tokens - 1
    assert_openai_error(
        post(server, "/v1/completions", {"model": "tiny", "prompt": "word " * 6000}),
        400,
        "the prompt needs",
    )


def test_a_character_split_across_tokens_reaches_the_client_whole(server: Server) -> None:
    """Each byte of "é" is a token of its own: every chunk, OpenAI's and
    Ollama's, carries whole characters, and so do the log-probabilities."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    chunks = list(
        ask(client, model="accents", stream=True, max_tokens=8, logprobs=True, top_logprobs=2)
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == "é" * 4
    assert all(set(p) == {"é"} for p in pieces)  # never half of one
    assert chunks[-1].choices[0].finish_reason == "length"
    whole = ask(client, model="accents", max_tokens=8, logprobs=True)
    assert whole.choices[0].message.content == "é" * 4
    assert "".join(t.token for t in whole.choices[0].logprobs.content) == "é" * 4
    lines = httpx.post(
        f"{server.url}/api/generate",
        json={"model": "accents", "prompt": "hi", "options": {"num_predict": 8}},
        timeout=60,
    ).text.splitlines()
    texts = [json.loads(line)["response"] for line in lines]
    assert "".join(texts) == "é" * 4 and "\ufffd" not in "".join(texts)


def test_embeddings_for_openai_and_ollama_clients(client: openai.OpenAI, server: Server) -> None:
    """/v1/embeddings and /api/embed: an installed embedding model loaded
    beside the chat model; vectors of length 1, the same one by one or
    together, as floats or base64; the chat model still answers."""
    texts = ["The mill's wheel turns.", "서울에서 부산까지", "Kadıköy vapuru"]
    together = client.embeddings.create(model="bert", input=texts)
    assert [d.index for d in together.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in together.data])
    assert vectors.shape == (3, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = client.embeddings.create(model="bert", input=texts[1]).data[0].embedding
    assert np.allclose(alone, vectors[1], atol=1e-5)
    assert together.usage.prompt_tokens > 3
    b64 = {"model": "bert", "input": texts[0], "encoding_format": "base64"}
    packed = post(server, "/v1/embeddings", b64).json()
    raw = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(raw, vectors[0], atol=1e-6)
    ollama_vectors = ollama.Client(host=server.url).embed(model="bert", input=texts).embeddings
    assert np.allclose(np.array(ollama_vectors), vectors, atol=1e-5)
    assert ask(client, max_tokens=2).usage.completion_tokens == 2
    assert_openai_error(post(server, "/v1/embeddings", {"model": "bert", "input": []}), 400,
                        "non-empty")  # fmt: skip
    assert_openai_error(post(server, "/v1/embeddings", {"model": "nope", "input": "x"}), 404)


def test_a_prompt_over_the_context_says_by_how_much(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 6000}]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, messages=long, max_tokens=10)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    excess = int(error["message"].split(" tokens too many")[0].rsplit(" ", 1)[1])
    assert excess > 0
    # The server keeps serving.
    assert ask(client, max_tokens=2).usage.completion_tokens == 2


def test_the_host_header_must_name_this_server(server: Server) -> None:
    r = httpx.get(f"{server.url}/v1/models", headers={"Host": "evil.example"})
    assert_openai_error(r, 403, "evil.example")
    r = httpx.get(f"{server.url}/api/tags", headers={"Host": f"evil.example:{server.port}"})
    assert r.status_code == 403 and "evil.example" in r.json()["error"]
    r = httpx.get(f"{server.url}/v1/models", headers={"Host": f"localhost:{server.port}"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers  # no CORS unless asked


def test_a_key_is_required_when_set(server_home: Path) -> None:
    s = Server(server_home, "--api-key", "sesame", "--cors-origin", "http://app.test")
    try:
        s.wait(headers={"Authorization": "Bearer sesame"})
        good = openai.OpenAI(base_url=f"{s.url}/v1", api_key="sesame", max_retries=0)
        assert {m.id for m in good.models.list().data} >= {"tiny"}
        bad = openai.OpenAI(base_url=f"{s.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        assert_openai_error(httpx.get(f"{s.url}/v1/models"), 401, "API key")
        r = httpx.get(
            f"{s.url}/v1/models",
            headers={"Authorization": "Bearer sesame", "Origin": "http://app.test"},
        )
        assert r.headers["access-control-allow-origin"] == "http://app.test"
        # Ctrl+C in the middle of a reply: it stops, cleanly and soon.
        body = {"model": "slow", "messages": HI, "max_tokens": 3000, "stream": True}
        headers = {"Authorization": "Bearer sesame"}
        with httpx.stream(
            "POST", f"{s.url}/v1/chat/completions", json=body, headers=headers, timeout=60
        ) as r:
            next(r.iter_lines())
            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGINT)
            s.proc.wait(15)
        assert time.monotonic() - t0 < 5
        assert s.proc.returncode == 130  # EXIT_INTERRUPTED, as every command after Ctrl+C
        assert "Traceback" not in s.stderr()
    finally:
        s.stop()


def test_a_non_loopback_bind_without_a_key_is_refused(server_home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "localchat", "serve", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "LOCALCHAT_HOME": str(server_home)},
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--api-key" in lines[0]


# -- one engine, many clients ----------------------------------------------------


def test_four_clients_at_once_are_all_served(client: openai.OpenAI) -> None:
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        if i % 2:
            chunks = streamed(client, seed=i, max_tokens=6)
            results[i] = "".join(c.choices[0].delta.content or "" for c in chunks)
        else:
            results[i] = ask(client, seed=i, max_tokens=6).choices[0].message.content

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 1, 2, 3]
    for i, text in results.items():  # each its own reply, as if alone
        alone = ask(client, seed=i, max_tokens=6).choices[0].message.content
        assert text == alone


def test_a_client_that_disconnects_cancels_its_reply(server: Server) -> None:
    body = {"model": "slow", "messages": HI, "max_tokens": 3000, "stream": True}
    t0 = time.monotonic()
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # generating
    streamed_ms = (time.monotonic() - t0) * 1000
    quick = {"model": "slow", "messages": HI, "max_tokens": 2}
    reply = post(server, "/v1/chat/completions", quick).json()
    assert reply["usage"]["completion_tokens"] == 2  # served, after the engine was freed
    deadline = time.monotonic() + 10
    while server.stderr().count("model=slow") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = next(ln for ln in server.stderr().splitlines() if "model=slow" in ln)
    assert "finish=cancelled" in first
    tokens = int(first.split("tokens=")[1].split()[0])
    assert tokens < 3000
    # It ended soon after the client went: its time is the stream's, plus little.
    took_ms = float(first.rsplit(" ", 2)[1])
    assert took_ms < streamed_ms + 1000, (took_ms, streamed_ms)


def test_a_client_that_gives_up_on_a_whole_reply_cancels_it(server: Server) -> None:
    """Not streamed: the client's timeout closes the connection; the reply
    is cancelled, not generated to its end for no one."""
    body = {"model": "slow", "messages": HI, "max_tokens": 3000, "seed": 11}
    before = server.stderr().count("model=slow")
    with pytest.raises(httpx.TimeoutException):
        post(server, "/v1/chat/completions", body, timeout=1.5)
    quick = {"model": "slow", "messages": HI, "max_tokens": 2}
    t0 = time.monotonic()
    reply = post(server, "/v1/chat/completions", quick).json()
    assert reply["usage"]["completion_tokens"] == 2
    assert time.monotonic() - t0 < 5  # not after 3,000 tokens
    lines = [ln for ln in server.stderr().splitlines() if "model=slow" in ln][before:]
    assert "finish=cancelled" in lines[0], lines


def test_a_crash_mid_reply_is_a_500_and_the_server_goes_on(server: Server) -> None:
    body = {"model": "slow", "messages": HI, "max_tokens": 3000}
    answer: dict[str, httpx.Response] = {}
    t = threading.Thread(
        target=lambda: answer.setdefault("r", post(server, "/v1/chat/completions", body))
    )
    t.start()
    time.sleep(1.0)
    pids = server.worker_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    t.join(60)
    error = assert_openai_error(answer["r"], 500, "crashed")
    assert error["code"] == "model_crashed"
    again = post(server, "/v1/chat/completions", {**body, "max_tokens": 2})
    assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] == 2


# -- Ollama ------------------------------------------------------------------


def test_ollama_list_and_chat(server: Server) -> None:
    client = ollama.Client(host=server.url)
    assert {m.model for m in client.list().models} == {
        "tiny",
        "slow",
        "r1-distill-tiny",
        "accents",
        "bert",
    }
    assert httpx.get(f"{server.url}/api/version").json()["version"]
    options = {"seed": 5, "temperature": 0.8, "num_predict": 6}
    whole = client.chat(model="tiny", messages=HI, options=options, stream=False)
    assert whole.done and whole.eval_count == 6 and whole.done_reason == "length"
    parts = list(client.chat(model="tiny", messages=HI, options=options, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    generated = client.generate(model="tiny", prompt=HI[0]["content"], options=options)
    assert generated.response == whole.message.content  # one user message, the same prompt
    shown = client.show("tiny")
    assert shown.details is not None and shown.details.format == "gguf"
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="tiny", messages=HI, options={"temperature": 9})
    assert caught.value.status_code == 400 and "temperature" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="missing", messages=HI, stream=False)
    assert caught.value.status_code == 404


def person(length: int | None) -> dict[str, Any]:
    """A schema with nested objects, an enum and an array; its strings at
    most ``length`` characters (a random model rarely closes a string by
    itself: the bound makes the reply finish)."""
    text: dict[str, Any] = {"type": "string"}
    if length is not None:
        text = {**text, "maxLength": length}
    return {
        "type": "object",
        "properties": {
            "name": text,
            "mood": {"enum": ["happy", "sad", "calm"]},
            "pets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"kind": text, "age": {"type": "integer"}},
                    "required": ["kind", "age"],
                },
                "maxItems": 2,
            },
        },
        "required": ["name", "mood", "pets"],
        "additionalProperties": False,
    }


PERSON = person(6)
SHAPE = person(None)
"""What the replies are checked against: everything but the strings' length
(a byte-level model's stray bytes decode to several U+FFFD: see json_grammar)."""


def test_structured_output_always_parses_and_validates(
    client: openai.OpenAI, server: Server
) -> None:
    """response_format json_schema and json_object, and Ollama's format, are
    enforced by a grammar: a random model writes JSON that validates."""
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    for seed in (1, 2, 3):
        reply = ask(client, response_format=fmt, temperature=1.0, seed=seed, max_tokens=300)
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        data = json.loads(choice.message.content)
        jsonschema.validate(data, SHAPE)
        assert not any(ord(c) < 0x20 for c in choice.message.content if c not in "\t\n\r ")
    reply = ask(client, response_format={"type": "json_object"}, seed=4, max_tokens=300)
    if reply.choices[0].finish_reason == "stop":  # an open object may run past max_tokens
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    assert reply.choices[0].message.content.lstrip().startswith("{")
    chunks = streamed(client, response_format=fmt, temperature=1.0, seed=5, max_tokens=300)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), SHAPE)
    # A schema part the grammar cannot enforce is refused, named.
    bad = {
        "type": "json_schema",
        "json_schema": {
            "name": "x",
            "schema": {
                "type": "object",
                "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}},
            },
        },
    }
    error = assert_openai_error(
        post(server, "/v1/chat/completions", {"model": "tiny", "messages": HI,
                                              "response_format": bad}),
        400,
        "pattern",
    )  # fmt: skip
    assert error["param"] == "response_format.json_schema.schema"
    # Ollama's format: "json" or a schema.
    ollama_client = ollama.Client(host=server.url)
    answer = ollama_client.chat(
        model="tiny", messages=HI, format=PERSON, options={"seed": 6, "num_predict": 300}
    )
    jsonschema.validate(json.loads(answer.message.content), SHAPE)
