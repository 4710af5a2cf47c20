"""The chat store: branches, search, export, migrations, and no lost messages."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from localchat.core.chat.store import SCHEMA_VERSION, ChatStore, ReplyWriter, StoreError


@pytest.fixture
def store(tmp_path: Path):
    with ChatStore(tmp_path / "chats.sqlite3") as s:
        yield s


def test_chats_newest_first_rename_delete(store: ChatStore) -> None:
    a = store.create_chat("First")
    b = store.create_chat("Second")
    assert [c.id for c in store.list_chats()] == [b, a]
    store.add_message(a, "user", "bump")  # activity moves a chat to the top
    assert [c.id for c in store.list_chats()] == [a, b]
    store.rename_chat(b, "Renamed")
    assert store.chat(b).title == "Renamed"
    store.delete_chat(a)
    assert [c.id for c in store.list_chats()] == [b]
    with pytest.raises(StoreError, match=f"no chat {a}"):
        store.chat(a)


def test_a_conversation_with_model_and_settings_per_reply(store: ChatStore) -> None:
    chat = store.create_chat("c")
    store.add_message(chat, "system", "Be brief.")
    store.add_message(chat, "user", "Hi")
    reply = store.begin_reply(chat, model="mistral-7b.Q4_K_M", settings={"temperature": 0.2})
    for piece in ["Hel", "lo", "!"]:
        reply.append(piece)
    reply.finish("done", {"completion_tokens": 3, "finish_reason": "stop"})
    thread = store.thread(chat)
    assert [(m.role, m.content) for m in thread] == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
    ]
    last = thread[-1]
    assert last.status == "done" and last.model == "mistral-7b.Q4_K_M"
    assert last.settings == {"temperature": 0.2} and last.stats == {
        "completion_tokens": 3,
        "finish_reason": "stop",
    }


def test_edit_and_regenerate_keep_the_old_branches(store: ChatStore) -> None:
    chat = store.create_chat()
    q1 = store.add_message(chat, "user", "What is 2+2?")
    r1 = store.begin_reply(chat)
    r1.append("4")
    r1.finish()
    store.add_message(chat, "user", "And 3+3?")

    # Regenerate the first reply: a sibling with the same parent.
    r2 = store.begin_reply(chat, parent_id=q1)
    r2.append("Four.")
    r2.finish()
    thread = store.thread(chat)
    assert [m.content for m in thread] == ["What is 2+2?", "Four."]
    assert thread[-1].sibling_ids == (r1.message_id, r2.message_id)
    assert thread[-1].sibling_index == 1

    # Edit the question: a new branch; everything before stays.
    q2 = store.edit_message(q1, "What is 2+3?")
    assert [m.content for m in store.thread(chat)] == ["What is 2+3?"]
    assert store.message(q2).sibling_ids == (q1, q2)

    # Flip back to the first version: its newest branch, to the end.
    store.select(q1)
    assert [m.content for m in store.thread(chat)] == ["What is 2+2?", "Four."]
    store.select(r1.message_id)
    assert [m.content for m in store.thread(chat)] == ["What is 2+2?", "4", "And 3+3?"]


def test_search_titles_and_contents(store: ChatStore) -> None:
    a = store.create_chat("Holiday plans")
    b = store.create_chat("Work")
    store.add_message(b, "user", "Write a SQL query with 100% of rows_total")
    c = store.create_chat("Empty")
    assert [x.id for x in store.search("holiday")] == [a]
    assert [x.id for x in store.search("sql QUERY")] == [b]
    assert [x.id for x in store.search("100%")] == [b]
    assert [x.id for x in store.search("s_t")] == [b]  # '_' is literal: "rows_total"
    assert store.search("nothing like this") == []
    assert {x.id for x in store.search("")} == {a, b, c}  # an empty search shows all


def test_exports(store: ChatStore) -> None:
    chat = store.create_chat("Colours")
    store.add_message(chat, "user", "Name a colour")
    r = store.begin_reply(chat, model="tiny")
    r.append("**Blue**, like `code`.")
    r.finish()
    md = store.export_markdown(chat)
    assert md.startswith("# Colours\n")
    assert "## You\n\nName a colour\n" in md
    assert "## Assistant (tiny)\n\n**Blue**, like `code`.\n" in md
    data = json.loads(json.dumps(store.export_json(chat)))
    assert data["title"] == "Colours"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["model"] == "tiny"


def test_schema_is_versioned_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    ChatStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer LocalChat"):
        ChatStore(path)
    assert path.read_bytes() == before


def test_not_a_database_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    path.write_text("this is not sqlite" * 100)
    with pytest.raises(StoreError) as err:
        ChatStore(path)
    assert "cannot open the chat database" in str(err.value) and "\n" not in str(err.value)


def test_chats_outlive_their_models(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "gone.gguf"
    model.write_bytes(tiny_model.read_bytes())
    with ChatStore(tmp_path / "db") as s:
        chat = s.create_chat("kept")
        s.add_message(chat, "user", "hi")
        r = s.begin_reply(chat, model=str(model))
        r.append("hello")
        r.finish()
    model.unlink()
    with ChatStore(tmp_path / "db") as s:
        assert [m.content for m in s.thread(chat)] == ["hi", "hello"]
        assert s.thread(chat)[-1].model == str(model)


def test_writes_from_several_threads(store: ChatStore) -> None:
    chats = [store.create_chat(f"c{i}") for i in range(4)]

    def write(chat: int) -> None:
        for i in range(50):
            store.add_message(chat, "user", f"m{i}")

    threads = [threading.Thread(target=write, args=(c,)) for c in chats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in chats:
        assert [m.content for m in store.thread(c)] == [f"m{i}" for i in range(50)]
    assert store.integrity_ok()


STREAMER = """
import sys, time
from localchat.core.chat.store import ChatStore
store = ChatStore(sys.argv[1])
chat = store.create_chat("streaming")
store.add_message(chat, "user", "Tell me everything")
reply = store.begin_reply(chat, model="fast")
print(chat, flush=True)
i = 0
while True:
    reply.append(f"t{i} ")
    print(i, flush=True)
    i += 1
    time.sleep(0.0005)
"""


def stream_and_kill(streamer: str, path: Path, pieces: int) -> tuple[int, int]:
    """Run ``streamer`` (a script that prints its chat's id, then each piece's
    number once appended) on the store at ``path`` and kill -9 it once at
    least ``pieces`` were appended: (the chat, the last number printed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", streamer, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    chat = int(proc.stdout.readline())
    appended = -1
    while appended < pieces:
        appended = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return chat, appended


def test_kill_9_while_streaming_loses_at_most_a_few_tokens(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    chat, appended = stream_and_kill(STREAMER, path, 1500)
    # Everything appended before the kill was printed first: at least that much was sent.
    with ChatStore(path) as store:
        assert store.integrity_ok()
        user, reply = store.thread(chat)
        assert user.content == "Tell me everything"
        assert reply.status == "interrupted"
        words = reply.content.split()
        assert words == [f"t{i}" for i in range(len(words))]  # a clean prefix
        assert len(words) >= appended + 1 - ReplyWriter.FLUSH_PIECES


def test_per_chat_settings_are_kept(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "db") as s:
        chat = s.create_chat()
        assert s.chat_settings(chat) == {}
        s.set_chat_settings(chat, {"temperature": 0.3, "system_prompt": "Be brief."})
    with ChatStore(tmp_path / "db") as s:
        assert s.chat_settings(chat) == {"temperature": 0.3, "system_prompt": "Be brief."}


def test_a_version_1_database_is_migrated_and_keeps_its_chats(tmp_path: Path) -> None:
    from localchat.core.chat.store import MIGRATIONS

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO chats (title, created_at, updated_at) VALUES ('old', 1, 1)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with ChatStore(path) as s:
        [old] = s.list_chats()
        assert old.title == "old" and s.draft(old.id) == ""
        version = s._db.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION


def test_a_version_2_database_is_migrated_and_keeps_its_chats(tmp_path: Path) -> None:
    from localchat.core.chat.store import MIGRATIONS

    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    db.execute(
        "INSERT INTO chats (id, title, created_at, updated_at, draft) VALUES (1, 'v2', 1, 1, 'd')"
    )
    db.execute(
        "INSERT INTO messages (id, chat_id, parent_id, role, content, created_at)"
        " VALUES (1, 1, NULL, 'user', 'Hi', 1)"
    )
    db.execute(
        "INSERT INTO messages (id, chat_id, parent_id, role, content, model, stats, created_at)"
        " VALUES (2, 1, 1, 'assistant', 'Hello', 'm', '{\"completion_tokens\": 1}', 2)"
    )
    db.execute("UPDATE chats SET current_leaf = 2 WHERE id = 1")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with ChatStore(path) as s:
        [chat] = s.list_chats()
        assert chat.title == "v2" and s.draft(chat.id) == "d"
        user, reply = s.thread(chat.id)
        assert (user.content, reply.content, reply.model) == ("Hi", "Hello", "m")
        assert reply.stats == {"completion_tokens": 1}
        assert user.reasoning == reply.reasoning == ""
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # The new column takes thinking from now on.
        r = s.begin_reply(chat.id, parent_id=1)
        r.append("hmm", reasoning=True)
        r.append("Hey")
        r.finish()
        assert (s.message(r.message_id).reasoning, s.message(r.message_id).content) == (
            "hmm",
            "Hey",
        )


def test_a_deleted_chat_waits_in_the_trash_and_comes_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with ChatStore(path) as s:
        chat = s.create_chat("Trip")
        question = s.add_message(chat, "user", "Where to?")
        s.begin_reply(chat, model="m").finish("done")
        s.edit_message(question, "Where to go?")  # a second version
        s.set_chat_settings(chat, {"lora_scale": 0.5})
        s.set_draft(chat, "and when?")
        before = s.thread(chat)
        s.delete_chat(chat)
        assert s.list_chats() == [] and s.search("Trip") == []
        with pytest.raises(StoreError):
            s.chat(chat)
        s.restore_chat(chat)
        assert [c.id for c in s.list_chats()] == [chat]
        assert s.thread(chat) == before and len(s.message(question).sibling_ids) == 2
        assert s.chat_settings(chat) == {"lora_scale": 0.5} and s.draft(chat) == "and when?"
        s.delete_chat(chat)
        other = s.create_chat("Other")
        s.delete_chat(other)
        s.purge_deleted(other)  # the undo window is over: for good
        assert s._db.execute("SELECT COUNT(*) FROM chats").fetchone()[0] == 1
    with ChatStore(path) as s:  # the next start empties the trash
        assert s._db.execute("SELECT COUNT(*) FROM chats").fetchone()[0] == 0
        assert s._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_only_a_chat_with_nothing_in_it_is_discarded(store: ChatStore) -> None:
    empty, titled, drafted, talked = (store.create_chat(t) for t in ("", "Named", "", ""))
    store.set_draft(drafted, "half a thought")
    store.add_message(talked, "user", "hi")
    assert [store.discard_if_empty(c) for c in (empty, titled, drafted, talked)] == [
        True,
        False,
        False,
        False,
    ]
    assert {c.id for c in store.list_chats()} == {titled, drafted, talked}


def test_drafts_and_the_last_replys_model(store: ChatStore) -> None:
    chat = store.create_chat()
    assert store.draft(chat) == "" and store.last_model(chat) is None
    before = store.chat(chat).updated_at
    store.set_draft(chat, "unsent")
    assert store.draft(chat) == "unsent" and store.chat(chat).updated_at == before
    store.add_message(chat, "user", "q")
    store.begin_reply(chat, model="first").finish("done")
    store.begin_reply(chat, model="second + style").finish("done")
    assert store.last_model(chat) == "second + style"
