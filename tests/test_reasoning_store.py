"""A reasoning model's thinking in the chat store: kept apart from the answer
while streaming, across a kill, in exports, and when sent back to the model."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from localchat.core.chat.session import ChatSession, as_messages, sent_to_model
from localchat.core.chat.store import ChatStore, ReplyWriter
from localchat.core.engine.client import Engine
from localchat.core.engine.protocol import ChatResult, Message, Piece
from localchat.core.errors import EngineCrashed
from localchat.core.params import GenerationSettings
from tests.test_store import stream_and_kill

S = GenerationSettings(temperature=0.0, max_tokens=20)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    with ChatStore(tmp_path / "chats.sqlite3") as s:
        yield s


def test_interleaved_thinking_and_answer_are_stored_apart(store: ChatStore) -> None:
    chat = store.create_chat()
    store.add_message(chat, "user", "2+2?")
    reply = store.begin_reply(chat, model="thinker")
    for text, thinking in [("Two ", True), ("4", False), ("and two.", True), (".", False)]:
        reply.append(text, reasoning=thinking)
    reply.finish()
    stored = store.message(reply.message_id)
    assert stored.content == "4." and stored.reasoning == "Two and two."
    assert store.message(stored.parent_id or 0).reasoning == ""  # the user's message


def test_a_flush_then_a_kill_keeps_both_apart(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ReplyWriter, "FLUSH_SECONDS", 3600.0)  # only the piece count flushes
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as s:
        chat = s.create_chat()
        s.add_message(chat, "user", "q")
        reply = s.begin_reply(chat)
        for i in range(ReplyWriter.FLUSH_PIECES):  # thinking and answer count together
            reply.append(f"t{i} ", reasoning=i % 2 == 0)
        mid = s.message(reply.message_id)
        assert mid.reasoning == "t0 t2 t4 t6 " and mid.content == "t1 t3 t5 t7 "
        reply.append("lost ", reasoning=True)
        reply.append("more", reasoning=True)
        reply.flush()  # then the app dies: no finish
    with ChatStore(path) as s:
        [_, stored] = s.thread(chat)
        assert stored.status == "interrupted"
        assert stored.reasoning == "t0 t2 t4 t6 lost more"
        assert stored.content == "t1 t3 t5 t7 "


STREAMER = """
import sys, time
from localchat.core.chat.store import ChatStore
store = ChatStore(sys.argv[1])
chat = store.create_chat("thinking")
store.add_message(chat, "user", "Think hard")
reply = store.begin_reply(chat, model="thinker")
print(chat, flush=True)
i = 0
while True:
    reply.append(f"r{i} " if i % 3 else f"a{i} ", reasoning=bool(i % 3))
    print(i, flush=True)
    i += 1
    time.sleep(0.0005)
"""


def test_kill_9_while_thinking_loses_at_most_a_few_pieces_of_either(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    chat, appended = stream_and_kill(STREAMER, path, 900)
    with ChatStore(path) as store:
        assert store.integrity_ok()
        _, reply = store.thread(chat)
        assert reply.status == "interrupted"
        answer, thinking = reply.content.split(), reply.reasoning.split()
        # Together, a clean prefix of what was streamed, each kind in its column.
        written = len(answer) + len(thinking)
        assert answer == [f"a{i}" for i in range(written) if i % 3 == 0]
        assert thinking == [f"r{i}" for i in range(written) if i % 3]
        assert written >= appended + 1 - ReplyWriter.FLUSH_PIECES


def test_exports_show_the_thinking_marked_as_such(store: ChatStore) -> None:
    chat = store.create_chat("Sums")
    store.add_message(chat, "user", "2+2?")
    r = store.begin_reply(chat, model="thinker")
    r.append("Add **two** and two.\n", reasoning=True)
    r.append("4")
    r.finish()
    store.add_message(chat, "user", "Thanks")
    r = store.begin_reply(chat, model="plain")
    r.append("You're welcome.")
    r.finish()

    md = store.export_markdown(chat)
    assert (
        "## Assistant (thinker)\n\n<details><summary>Thinking</summary>\n\n"
        "Add **two** and two.\n\n</details>\n\n4\n"
    ) in md
    assert "## Assistant (plain)\n\nYou're welcome.\n" in md
    assert md.count("<details>") == 1  # only the reply that thought

    data = json.loads(json.dumps(store.export_json(chat)))
    assert [(m["content"], m["reasoning"]) for m in data["messages"]] == [
        ("2+2?", ""),
        ("4", "Add **two** and two.\n"),
        ("Thanks", ""),
        ("You're welcome.", ""),
    ]


def test_thinking_cannot_close_the_markdown_block_early(store: ChatStore) -> None:
    chat = store.create_chat()
    r = store.begin_reply(chat)
    r.append("html: </details> done", reasoning=True)
    r.append("answer")
    r.finish()
    md = store.export_markdown(chat)
    assert md.count("</details>") == 1
    assert md.index("done") < md.index("</details>") < md.index("answer")


def test_the_model_is_sent_the_thinking_of_its_replies_only(store: ChatStore) -> None:
    chat = store.create_chat()
    store.add_message(chat, "system", "Be brief.")
    store.add_message(chat, "user", "q", reasoning="not a reply's")  # never sent as thinking
    store.add_message(chat, "assistant", "a", reasoning="thought")
    store.add_message(chat, "user", "q2")
    store.add_message(chat, "assistant", "a2")
    assert as_messages(store.thread(chat)) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning": "thought"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
    ]


def test_a_reply_that_failed_while_thinking_is_still_sent(store: ChatStore) -> None:
    chat = store.create_chat()
    store.add_message(chat, "user", "q")
    store.add_message(chat, "assistant", "", status="failed", reasoning="half a thought")
    store.add_message(chat, "user", "q2")
    store.add_message(chat, "assistant", "", status="failed")  # wrote nothing
    sent = sent_to_model(store.thread(chat))
    assert [(m.content, m.reasoning) for m in sent] == [
        ("q", ""),
        ("", "half a thought"),
        ("q2", ""),
    ]


# -- the session, with an engine that thinks on cue ---------------------------------


class FakeStream:
    def __init__(self, pieces: Sequence[Piece], fail: Exception | None) -> None:
        self._pieces, self._fail = pieces, fail
        self.result: ChatResult | None = None

    def pieces(self) -> Iterator[Piece]:
        yield from self._pieces
        if self._fail is not None:
            raise self._fail
        reply = "".join(p.text for p in self._pieces if not p.reasoning)
        thinking = "".join(p.text for p in self._pieces if p.reasoning)
        self.result = ChatResult(
            reply=reply,
            finish_reason="stop",
            prompt_tokens=10,
            evaluated_tokens=10,
            completion_tokens=len(self._pieces),
            ttft_ms=1.0,
            tokens_per_s=100.0,
            context_size=512,
            context_used=10 + len(self._pieces),
            reasoning=thinking,
            reasoning_tokens=sum(p.reasoning for p in self._pieces),
            content_tokens=sum(not p.reasoning for p in self._pieces),
            thinking_ms=12.5,
        )


class FakeEngine:
    """Streams the pieces it is given; records what each chat was sent."""

    def __init__(self) -> None:
        self.sent: list[list[Message]] = []
        self.next: list[Piece] = []
        self.fail: Exception | None = None

    def chat(self, messages: Sequence[Message], settings: Any, *, stop: Any = ()) -> FakeStream:
        self.sent.append(list(messages))
        return FakeStream(self.next, self.fail)

    def cancel(self) -> None:
        pass


def test_the_session_stores_thinking_apart_and_sends_it_back(store: ChatStore) -> None:
    engine = FakeEngine()
    session = ChatSession(store, cast(Engine, engine), store.create_chat(), model="thinker")
    engine.next = [
        Piece("Paris is ", reasoning=True),
        Piece("the capital.", reasoning=True),
        Piece("Paris"),
        Piece("."),
    ]
    seen: list[Piece] = []
    reply = session.send("Capital of France?", S, seen.append)
    assert seen == engine.next  # the caller sees every piece, with its kind
    assert reply.content == "Paris." and reply.reasoning == "Paris is the capital."
    assert reply.status == "done" and reply.stats is not None
    assert "reply" not in reply.stats and "reasoning" not in reply.stats
    assert reply.stats["reasoning_tokens"] == 2 and reply.stats["content_tokens"] == 2
    assert reply.stats["thinking_ms"] == 12.5

    engine.next = [Piece("Sure.")]
    session.send("Thanks", S)
    assert engine.sent[-1] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris.", "reasoning": "Paris is the capital."},
        {"role": "user", "content": "Thanks"},
    ]


def test_a_crash_while_thinking_keeps_the_thinking(store: ChatStore) -> None:
    engine = FakeEngine()
    session = ChatSession(store, cast(Engine, engine), store.create_chat(), model="thinker")
    engine.next = [Piece("Let me see", reasoning=True)]
    engine.fail = EngineCrashed("the engine crashed")
    with pytest.raises(EngineCrashed):
        session.send("Hard question", S)
    failed = store.thread(session.chat_id)[-1]
    assert failed.status == "failed" and failed.content == ""
    assert failed.reasoning == "Let me see"
    assert failed.stats and "crashed" in failed.stats["error"]
