"""A conversation through the engine into the store: nothing lost, whatever happens."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from localchat.core.chat.session import ChatSession
from localchat.core.chat.store import ChatStore
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import Piece
from localchat.core.errors import EngineCrashed, LocalChatError
from localchat.core.params import GenerationSettings

S = GenerationSettings(temperature=0.0, max_tokens=20, repeat_penalty=1.0)


def answer(pieces: list[Piece]) -> str:
    """The answer's text among streamed pieces (the thinking left out)."""
    return "".join(p.text for p in pieces if not p.reasoning)


@pytest.fixture
def session(tmp_path: Path, phi3_model: Path):
    with ChatStore(tmp_path / "chats.sqlite3") as store, Engine() as engine:
        engine.load(phi3_model, S)
        yield ChatSession(store, engine, store.create_chat(), model="phi3-test")


def test_send_streams_into_the_store(session: ChatSession) -> None:
    pieces: list[Piece] = []
    reply = session.send("What is the capital of France and why?", S, pieces.append)
    assert reply.content == answer(pieces) and len(pieces) > 1
    assert reply.reasoning == "".join(p.text for p in pieces if p.reasoning)
    assert reply.status == "done" and reply.model == "phi3-test"
    assert reply.settings == S.to_dict()
    assert reply.stats and reply.stats["completion_tokens"] == 20
    title = session.store.chat(session.chat_id).title
    assert title == "What is the capital of France and why?"
    second = session.send("And of Spain?", S)
    assert second.stats and second.stats["evaluated_tokens"] < second.stats["prompt_tokens"]
    assert [m.role for m in session.store.thread(session.chat_id)] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_stop_keeps_the_text_so_far(session: ChatSession) -> None:
    long = S.replace(max_tokens=4000)
    seen: list[Piece] = []

    def on_piece(piece: Piece) -> None:
        seen.append(piece)
        if len(seen) == 5:
            session.stop()

    reply = session.send("Go on", long, on_piece)
    assert reply.status == "cancelled"
    assert reply.content == answer(seen) and reply.stats
    assert reply.stats["finish_reason"] == "cancelled"


def test_regenerate_and_edit_keep_alternatives(session: ChatSession) -> None:
    first = session.send("Hello", S)
    again = session.regenerate(first.id, S.replace(temperature=1.0, seed=5))
    assert again.sibling_ids == (first.id, again.id)
    assert [m.id for m in session.store.thread(session.chat_id)][-1] == again.id

    question = session.store.thread(session.chat_id)[0]
    edited = session.edit(question.id, "Hello there", S)
    thread = session.store.thread(session.chat_id)
    assert thread[0].content == "Hello there" and thread[-1].id == edited.id
    assert session.store.message(question.id).content == "Hello"  # the old version stays
    with pytest.raises(LocalChatError, match="only your own messages"):
        session.edit(edited.id, "x", S)


def test_a_worker_crash_mid_reply_keeps_the_chat(session: ChatSession) -> None:
    session.send("Hi", S)
    pid = session.engine.worker_pid
    assert pid is not None
    seen: list[Piece] = []

    def kill_after_three(piece: Piece) -> None:
        seen.append(piece)
        if len(seen) == 3:
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(EngineCrashed):
        session.send("Tell me more", S.replace(max_tokens=4000), kill_after_three)
    thread = session.store.thread(session.chat_id)
    assert [m.content for m in thread[:3]] == ["Hi", thread[1].content, "Tell me more"]
    failed = thread[-1]
    assert failed.status == "failed" and failed.stats and "crashed" in failed.stats["error"]
    assert failed.content.startswith(answer(seen[:2]))
    # The next message works: a fresh worker, the same chat.
    after = session.send("Still there?", S)
    assert after.status == "done" and session.engine.worker_pid not in (None, pid)
    assert session.store.integrity_ok()
