"""Issue 22, the token X-ray: each reply's tokens kept in the chat store
(compactly, exactly enough), exported, and "continue with this instead"."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from localchat.core.chat import token_codec
from localchat.core.chat.chat_export import token_json
from localchat.core.chat.session import ChatSession
from localchat.core.chat.store import MIGRATIONS, SCHEMA_VERSION, ChatStore
from localchat.core.engine.client import ChatStream, Engine
from localchat.core.engine.protocol import TokenLogprob
from localchat.core.errors import LocalChatError, SettingError
from localchat.core.params import GenerationSettings

S = GenerationSettings(temperature=0.0, max_tokens=24, repeat_penalty=1.0)
STEP = 0.0005  # the quantization's largest error, in nats


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def close_enough(a: float, b: float) -> bool:
    """A logprob as decoded against the original: to 1/1000 nat down to
    -65.5, float32 beyond (and infinities as they were)."""
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= STEP + 1e-12 or a == f32(b)


def assert_same(decoded: Sequence[TokenLogprob], original: Sequence[TokenLogprob]) -> None:
    assert len(decoded) == len(original)
    for d, o in zip(decoded, original, strict=True):
        assert (d.id, d.text, d.reasoning, d.forced) == (o.id, o.text, o.reasoning, o.forced)
        assert close_enough(d.logprob, o.logprob), (d.logprob, o.logprob)
        assert d.lse == f32(o.lse)
        assert [(i, t) for i, t, _ in d.top] == [(i, t) for i, t, _ in o.top]
        for (_, _, a), (_, _, b) in zip(d.top, o.top, strict=True):
            assert close_enough(a, b), (a, b)
    # Joined, the texts are byte for byte what the model wrote.
    joined = "".join(t.text for t in decoded).encode("utf-8", "surrogatepass")
    assert joined == "".join(t.text for t in original).encode("utf-8", "surrogatepass")


def as_json(tokens: Sequence[TokenLogprob]) -> str:
    return json.dumps([token_json(t) for t in tokens])


# -- the codec -------------------------------------------------------------------


def test_the_codec_round_trips_every_kind_of_token() -> None:
    twenty = tuple((1000 + i, f"c{i}é", -0.05 - i * 0.731) for i in range(20))
    tokens = [
        # A first token writes "and" where the same id as a candidate is " and".
        TokenLogprob(358, "and", -2.3731, ((358, " and", -2.3731), (213, "\ufffd", -2.9))),
        TokenLogprob(216, "", -1.9214, ((216, "\ufffd", -1.9214),), lse=12.345678),  # a byte
        TokenLogprob(252, "日本", -1.78, ((252, "\ufffd", -1.78), (7, "", -3.0)), lse=-3.5),
        TokenLogprob(9, "🙂 naïve\n\t", -0.0004, (), reasoning=True, lse=40.25),  # no candidates
        TokenLogprob(10, "</think>", 0.0, (), reasoning=True, forced=True),
        TokenLogprob(11, " x", -59.9996, twenty, lse=1e-9),
        TokenLogprob(12, "\ud800", -65.6, ((12, "\ud800", -65.6), (13, "y", -1000.0))),
        TokenLogprob(14, " end", -math.inf, ((14, " end", 3e-7), (15, "z", -0.0)), lse=7.0),
        # The same id with another text elsewhere (another model's?) stays apart.
        TokenLogprob(7, "q", -1.0, ((7, "q", -1.0), (358, "and", -1.5))),
    ]
    blob = token_codec.encode(tokens)
    assert blob[:5] == token_codec.MAGIC + bytes((token_codec.VERSION,))
    back = token_codec.decode(blob)
    assert_same(back, tokens)
    assert all(isinstance(t, TokenLogprob) for t in back)
    assert back[3].top == () and len(back[5].top) == 20
    assert back[6].logprob == f32(-65.6) and back[6].top[1][2] == -1000.0  # kept, not capped
    assert back[4].logprob == 0.0 and math.copysign(1, back[4].logprob) == 1  # not -0.0
    assert token_codec.decode(token_codec.encode([])) == ()
    assert token_codec.decode(token_codec.encode(back)) == back  # stable once quantized


def test_random_tokens_round_trip_within_the_quantization() -> None:
    rng = random.Random(5)
    alphabet = "abc é日🙂\ufffd"
    tokens = [
        TokenLogprob(
            rng.randrange(2**31),
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(4))),
            -rng.random() * 60,
            tuple(
                (rng.randrange(150_000), rng.choice(["", " the", "é", "x"]), -rng.random() * 60)
                for _ in range(rng.choice([0, 1, 5, 20]))
            ),
            rng.random() < 0.3,
            rng.random() < 0.1,
            rng.uniform(-50, 50),
        )
        for _ in range(3000)
    ]
    assert_same(token_codec.decode(token_codec.encode(tokens)), tokens)


def test_the_blob_is_far_smaller_than_json() -> None:
    """Realistic-ish: 1000 tokens from a vocabulary of words, 20 candidates each."""
    rng = random.Random(1)
    words = [
        " " + "".join(rng.choice("etaoinshrdlu") for _ in range(rng.randrange(1, 8)))
        for _ in range(3000)
    ]
    tokens = []
    for _ in range(1000):
        ids = rng.sample(range(len(words)), 20)
        lps = sorted((-rng.expovariate(0.4) for _ in range(20)), reverse=True)
        top = tuple((i, words[i], lp) for i, lp in zip(ids, lps, strict=True))
        tokens.append(TokenLogprob(ids[0], words[ids[0]], lps[0], top, lse=rng.uniform(5, 30)))
    blob = token_codec.encode(tokens)
    assert len(blob) < len(as_json(tokens)) / 3, (len(blob), len(as_json(tokens)))
    assert token_codec.size_per_1000(tokens) == len(blob)


def test_a_newer_or_damaged_blob_is_a_clear_error() -> None:
    blob = token_codec.encode([TokenLogprob(1, "a", -1.0, ((1, "a", -1.0),))])
    newer = token_codec.MAGIC + bytes((token_codec.VERSION + 1,)) + blob[5:]
    with pytest.raises(token_codec.TokenCodecError, match="upgrade LocalChat"):
        token_codec.decode(newer)
    with pytest.raises(token_codec.TokenCodecError, match="not token data"):
        token_codec.decode(b"hello")
    with pytest.raises(token_codec.TokenCodecError, match="damaged"):
        token_codec.decode(blob[:-3])
    payload = zlib.decompress(blob[5:])
    with pytest.raises(token_codec.TokenCodecError, match="damaged"):
        token_codec.decode(blob[:5] + zlib.compress(payload[:-1]))
    assert issubclass(token_codec.TokenCodecError, LocalChatError)


# -- the store ---------------------------------------------------------------------


SAMPLE = (
    TokenLogprob(5, "Hé", -0.25, ((5, "Hé", -0.25), (6, "Ho", -1.75)), lse=3.5),
    TokenLogprob(7, "", -2.0, ((7, "\ufffd", -2.0),), lse=1.0),
    TokenLogprob(8, "🙂", -0.5, (), forced=True),
)


def test_a_reply_keeps_its_tokens_and_reads_them_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with ChatStore(path) as s:
        chat = s.create_chat("t")
        user = s.add_message(chat, "user", "Hi")
        r = s.begin_reply(chat)
        r.append("Hé🙂")
        r.finish("done", {"completion_tokens": 3}, SAMPLE)
        plain = s.begin_reply(chat, parent_id=user)
        plain.append("Hey")
        plain.finish()
        assert s.message(plain.message_id).tokens == ()
        assert s.message(plain.message_id).token_blob is None
    with ChatStore(path) as s:  # after a restart
        thread = s.thread(chat)  # the newest version: no tokens
        assert [m.has_tokens for m in thread] == [False, False]
        s.select(r.message_id)
        _, reply = s.thread(chat)
        assert reply.has_tokens and "tokens" not in vars(reply)  # not decoded yet
        assert_same(reply.tokens, SAMPLE)
        assert reply.tokens is reply.tokens  # decoded once
        assert reply.content == "Hé🙂" and reply.stats == {"completion_tokens": 3}


def test_a_version_3_database_is_migrated_and_keeps_its_chats(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == 5
    path = tmp_path / "v3.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + MIGRATIONS[1] + MIGRATIONS[2])
    db.execute("INSERT INTO chats (id, title, created_at, updated_at) VALUES (1, 'v3', 1, 1)")
    db.execute(
        "INSERT INTO messages (id, chat_id, parent_id, role, content, created_at)"
        " VALUES (1, 1, NULL, 'user', 'Hi', 1)"
    )
    db.execute(
        "INSERT INTO messages (id, chat_id, parent_id, role, content, reasoning, model,"
        " created_at) VALUES (2, 1, 1, 'assistant', 'Hello', 'hmm', 'm', 2)"
    )
    db.execute("UPDATE chats SET current_leaf = 2 WHERE id = 1")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with ChatStore(path) as s:
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == 5
        [chat] = s.list_chats()
        user, reply = s.thread(chat.id)
        assert (user.content, reply.content, reply.reasoning) == ("Hi", "Hello", "hmm")
        assert reply.sources is None  # not grounded: it was written before documents
        assert reply.tokens == () and not reply.has_tokens
        assert "tokens" not in s.export_json(chat.id)["messages"][1]
        r = s.begin_reply(chat.id, parent_id=1)
        r.append("Hé🙂")
        r.finish("done", None, SAMPLE)
        assert_same(s.message(r.message_id).tokens, SAMPLE)


# -- the session -----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    with ChatStore(tmp_path / "chats.sqlite3") as s:
        yield s


@pytest.fixture
def tiny_engine(engine: Engine, tiny_model: Path) -> Engine:
    engine.load(str(tiny_model), GenerationSettings(ctx=512))
    return engine


class Recorder:
    """The streams a session starts, to compare what it stored with the engine's."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.streams: list[ChatStream] = []
        self.calls: list[dict[str, object]] = []
        chat = engine.chat

        def recording(*args: object, **kwargs: object) -> ChatStream:
            self.calls.append(kwargs)
            stream = chat(*args, **kwargs)  # type: ignore[arg-type]
            self.streams.append(stream)
            return stream

        monkeypatch.setattr(engine, "chat", recording)

    def tokens(self) -> tuple[TokenLogprob, ...]:
        result = self.streams[-1].result
        assert result is not None
        return result.tokens


def test_replies_keep_their_tokens_across_a_restart(
    tmp_path: Path, tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = Recorder(tiny_engine, monkeypatch)
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as store:
        chat = store.create_chat()
        session = ChatSession(store, tiny_engine, chat, model="tiny", top_logprobs=10)
        reply = session.send("Hello", S)
        engine_tokens = seen.tokens()
        assert seen.calls[-1]["top_logprobs"] == 10
        assert len(engine_tokens) == 24 and all(len(t.top) == 10 for t in engine_tokens)
        assert "".join(t.text for t in engine_tokens) == reply.content
        again = session.regenerate(reply.id, S.replace(temperature=1.0, seed=3))
        assert_same(again.tokens, seen.tokens())
        # Far smaller than the same tokens as JSON.
        assert len(again.token_blob or b"") < len(as_json(seen.tokens())) / 3
    with ChatStore(path) as store:
        stored = store.message(reply.id)
        assert_same(stored.tokens, engine_tokens)
        assert "".join(t.text for t in stored.tokens) == stored.content
        assert stored.stats and "tokens" not in stored.stats


def test_no_tokens_unless_asked(store: ChatStore, tiny_engine: Engine) -> None:
    session = ChatSession(store, tiny_engine, store.create_chat(), model="tiny")
    reply = session.send("Hello", S)
    assert not reply.has_tokens and reply.tokens == ()
    with pytest.raises(LocalChatError, match="tokens were not recorded"):
        session.continue_with(reply.id, 0, 1, S)
    with pytest.raises(SettingError, match="between 0 and 20"):
        ChatSession(store, tiny_engine, store.create_chat(), model="tiny", top_logprobs=21)


def plain(text: str) -> bool:
    return bool(text) and all(c.isascii() and (c.isalnum() or c == " ") for c in text)


def test_continue_with_another_candidate(
    store: ChatStore, tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = Recorder(tiny_engine, monkeypatch)
    chat = store.create_chat()
    session = ChatSession(store, tiny_engine, chat, model="tiny", top_logprobs=10)
    old = session.send("Hello", S)
    tokens = old.tokens
    # A position after a whole character, and a candidate there that writes
    # plain text of its own.
    position, (cid, ctext, clp) = next(
        (p, c)
        for p in range(len(tokens) // 2, len(tokens))
        if plain(tokens[p - 1].text)
        for c in tokens[p].top
        if c[0] != tokens[p].id and plain(c[1])
    )
    pieces: list[str] = []
    new = session.continue_with(old.id, position, cid, S, lambda p: pieces.append(p.text))
    assert seen.calls[-1]["prefix"] == (*(t.id for t in tokens[:position]), cid)
    assert seen.calls[-1]["top_logprobs"] == 10

    # Another version of the reply, shown now.
    assert new.parent_id == old.parent_id and new.sibling_ids == (old.id, new.id)
    assert store.thread(chat)[-1].id == new.id
    assert store.message(old.id).tokens == tokens  # the old version stays as it was
    # Its text: the old one's up to the position, byte for byte, then the candidate's.
    start = "".join(t.text for t in tokens[:position])
    assert old.content.encode().startswith(start.encode())
    assert new.content.encode().startswith((start + ctext).encode())
    assert "".join(pieces) == new.content
    # Its tokens: the old reply's before the position (sampled then), the
    # choice with the position's candidates, then the model's own.
    assert new.tokens[:position] == tokens[:position]
    chosen = new.tokens[position]
    assert (chosen.id, chosen.text, chosen.forced) == (cid, ctext, False)
    assert close_enough(chosen.logprob, clp) and chosen.top == tokens[position].top
    assert chosen.lse == tokens[position].lse
    rest = new.tokens[position + 1 :]
    assert rest and all(not t.forced and len(t.top) == 10 for t in rest)
    assert_same(rest, seen.tokens()[position + 1 :])
    assert "".join(t.text for t in new.tokens) == new.content
    assert new.stats and new.stats["continued"] == {
        "from": old.id,
        "position": position,
        "token": cid,
    }
    assert new.stats["completion_tokens"] == len(new.tokens) == S.max_tokens

    # A token that was not among the candidates: placed, marked so.
    outside = next(i for i in range(300, 500) if i not in {c[0] for c in tokens[1].top})
    other = session.continue_with(new.id, 1, outside, S)
    assert other.sibling_ids == (old.id, new.id, other.id)
    assert other.tokens[:1] == tokens[:1]
    assert other.tokens[1].forced and other.tokens[1].logprob == 0.0
    assert other.tokens[1].id == outside and other.tokens[1].top == tokens[1].top

    # What cannot be continued from.
    with pytest.raises(LocalChatError, match="placed, not chosen"):
        session.continue_with(other.id, 1, cid, S)
    for bad in (-1, len(tokens)):
        with pytest.raises(LocalChatError, match=f"has no token {bad}"):
            session.continue_with(old.id, bad, cid, S)
    with pytest.raises(LocalChatError, match="only a reply"):
        session.continue_with(old.parent_id or 0, 0, cid, S)
    with pytest.raises(SettingError, match="max tokens"):
        session.continue_with(old.id, 5, cid, S.replace(max_tokens=6))
    assert len(store.message(old.id).sibling_ids) == 3  # no failed version left behind


def test_the_json_export_lists_the_tokens(store: ChatStore, tiny_engine: Engine) -> None:
    chat = store.create_chat()
    session = ChatSession(store, tiny_engine, chat, model="tiny", top_logprobs=3)
    reply = session.send("Hello", S)
    markdown = store.export_markdown(chat)
    exported = json.loads(json.dumps(store.export_json(chat)))
    user, said = exported["messages"]
    assert "tokens" not in user
    assert len(said["tokens"]) == len(reply.tokens) == 24
    assert "".join(t["text"] for t in said["tokens"]) == said["content"]
    for t, stored in zip(said["tokens"], reply.tokens, strict=True):
        assert set(t) == {"id", "text", "logprob", "top"}  # reasoning/forced only where true
        assert t["id"] == stored.id and t["logprob"] == round(stored.logprob, 6)
        assert [c["id"] for c in t["top"]] == [c[0] for c in stored.top] and len(t["top"]) == 3
        assert set(t["top"][0]) == {"id", "text", "logprob"}
    # "forced" shows where a token was placed.
    outside = next(i for i in range(300, 500) if i not in {c[0] for c in reply.tokens[2].top})
    session.continue_with(reply.id, 2, outside, S)
    again = store.export_json(chat)["messages"][1]["tokens"]
    assert again[2]["forced"] is True and not any("forced" in t for t in again[3:])
    # The Markdown is as it was: no tokens in it.
    title = store.chat(chat).title
    assert markdown == f"# {title}\n\n## You\n\nHello\n\n## Assistant (tiny)\n\n{reply.content}\n"


def test_the_distribution_drawn_from_round_trips_and_old_blobs_still_read() -> None:
    """Format 2 keeps each token's recorded distribution (to 1/65535);
    a format-1 blob, written before it, reads as it was (none recorded)."""
    import struct
    import zlib

    from localchat.core.chat import token_codec
    from localchat.core.engine.protocol import TokenLogprob

    tokens = (
        TokenLogprob(5, "a", -0.1, ((5, "a", -0.1), (7, "b", -2.5)), lse=3.0,
                     sampled=((5, 0.91), (7, 0.09))),
        TokenLogprob(9, "", 0.0, (), forced=True),
        TokenLogprob(7, "b", -1.0, ((7, "b", -1.0),), lse=2.0, sampled=((7, 1.0),)),
    )  # fmt: skip
    back = token_codec.decode(token_codec.encode(tokens))
    for a, b in zip(tokens, back, strict=True):
        assert [i for i, _ in a.sampled] == [i for i, _ in b.sampled]
        for (_, p), (_, q) in zip(a.sampled, b.sampled, strict=True):
            assert abs(p - q) <= 1 / 65535
    # A version-1 blob: the same layout without the sampled columns.
    blob = token_codec.encode(tokens)
    payload = zlib.decompress(blob[5:])
    n = len(tokens)
    tail = 4 + n + 4 * 3 + 2 * 3  # s, counts, 3 ids, 3 probabilities
    old = token_codec.MAGIC + bytes((1,)) + zlib.compress(payload[:-tail])
    assert struct.unpack("<I", payload[-tail : -tail + 4]) == (3,)
    read = token_codec.decode(old)
    assert [t.id for t in read] == [5, 9, 7] and all(t.sampled == () for t in read)
    assert read[0].top == back[0].top
