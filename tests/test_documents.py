"""Document collections: passages found for questions that do not repeat
their wording (English, Korean, Turkish; recall@5 measured), updates that
redo only what changed, an indexer killed and resumed, bad files skipped
with their reason, and the ``localchat docs`` commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from localchat.core.documents import grounding, indexer, search
from localchat.core.documents.chunking import chunk, estimate_tokens, sentences
from localchat.core.documents.extract import Block
from localchat.core.documents.indexer import Control
from localchat.core.documents.store import DocumentStore
from localchat.testing.tiny_models import write_llama_gguf

CORPUS = Path(__file__).parent / "fixtures" / "documents"
QUESTIONS: list[dict[str, str]] = json.loads((CORPUS / "questions.json").read_text())
RECALL_AT_5 = {"en": 0.9, "ko": 0.85, "tr": 0.9}
"""What keyword search alone must reach (measured: 0.975, 0.94, 1.0)."""


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.md") if p.name != "README.md")


@pytest.fixture
def store(tmp_path: Path) -> DocumentStore:
    return DocumentStore(tmp_path / "documents.sqlite")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the corpus to change."""
    target = tmp_path / "docs"
    target.mkdir()
    for f in corpus_files():
        shutil.copy(f, target / f.name)
    return target


def test_questions_find_their_passages_in_three_languages(store: DocumentStore) -> None:
    report = indexer.add(store, "corpus", corpus_files())
    assert len(report.indexed) == len(corpus_files()) and not report.skipped
    found: dict[str, list[bool]] = {}
    for q in QUESTIONS:
        hits = search.search(store, ["corpus"], q["question"], top=5)
        assert len(hits) <= 5
        good = any(q["answer"] in h.text and Path(h.path).name == q["file"] for h in hits)
        found.setdefault(q["lang"], []).append(good)
    recall = {lang: sum(v) / len(v) for lang, v in found.items()}
    print("recall@5:", recall)
    for lang, goal in RECALL_AT_5.items():
        assert recall[lang] >= goal, recall


def test_any_text_is_a_valid_search(store: DocumentStore) -> None:
    indexer.add(store, "corpus", corpus_files()[:2])
    for odd in ['"', "AND (", "NEAR/3 *", "-", "x:y", "^start", "   ", "ab", "서"]:
        search.search(store, ["corpus"], odd)  # never an FTS5 syntax error


def test_a_passage_says_where_it_is(store: DocumentStore, folder: Path) -> None:
    indexer.add(store, "corpus", [folder])
    hit = search.search(store, ["corpus"], "lighthouse keeper diary storm", top=1)[0]
    assert hit.lines is not None and hit.location.startswith("line")
    lines = Path(hit.path).read_text().splitlines()[hit.lines[0] - 1 : hit.lines[1]]
    first_words = hit.text.split()[:4]
    assert " ".join(first_words) in " ".join(" ".join(lines).split())
    assert hit.headings  # the section it is in


def test_an_update_redoes_only_what_changed(store: DocumentStore, folder: Path) -> None:
    first = indexer.add(store, "docs", [folder])
    assert len(first.indexed) == len(corpus_files())
    again = indexer.update(store, "docs")
    assert again.indexed == [] and again.unchanged == len(corpus_files())
    # Touched, not changed: its time is noted, nothing is redone.
    touched = folder / "en-water-mill.md"
    os.utime(touched, (time.time() + 5, time.time() + 5))
    # Changed: redone; removed: gone from the index; new: indexed.
    changed = folder / "en-observatory.md"
    changed.write_text(changed.read_text() + "\n\nThe zanzibarite meteorite is kept in room 9.\n")
    (folder / "tr-hali-koyu.md").unlink()
    (folder / "new.txt").write_text("A quokka visited the observatory at midnight.\n")
    report = indexer.update(store, "docs")
    assert sorted(Path(p).name for p in report.indexed) == ["en-observatory.md", "new.txt"]
    assert [Path(p).name for p in report.removed] == ["tr-hali-koyu.md"]
    assert report.unchanged == len(corpus_files()) - 2
    assert search.search(store, ["docs"], "zanzibarite meteorite")[0].path == str(changed)
    assert all("tr-hali-koyu" not in h.path for h in search.search(store, ["docs"], "halı"))
    assert indexer.update(store, "docs").indexed == []


def test_a_stopped_update_goes_on_next_time(store: DocumentStore, folder: Path) -> None:
    control = Control()
    seen: list[int] = []

    def progress(p: indexer.Progress) -> None:
        seen.append(p.files_done)
        if p.files_done == 3:
            control.stop()

    report = indexer.add(store, "docs", [folder], progress=progress, control=control)
    assert report.stopped and len(report.indexed) == 3
    assert store.collection("docs").updating
    rest = indexer.update(store, "docs")
    assert not rest.stopped and len(rest.indexed) == len(corpus_files()) - 3
    assert not store.collection("docs").updating


def test_a_killed_indexer_resumes_and_no_file_is_half_indexed(tmp_path: Path, folder: Path) -> None:
    for i in range(40):  # enough work to be killed in the middle of
        shutil.copy(corpus_files()[i % len(corpus_files())], folder / f"copy-{i}.md")
    db = tmp_path / "killed.sqlite"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from localchat.core.documents import indexer\n"
        "from localchat.core.documents.store import DocumentStore\n"
        "def slow(p):\n"
        "    print(p.files_done, flush=True)\n"
        "    time.sleep(0.05)\n"
        f"indexer.add(DocumentStore(Path({str(db)!r})), 'docs', [Path({str(folder)!r})], "
        "progress=slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if int(line) >= 10:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = DocumentStore(db)
    state = killed.collection("docs")
    assert state.updating and 0 < state.files < len(list(folder.iterdir()))
    report = indexer.update(killed, "docs")
    assert not report.stopped and report.unchanged == state.files
    clean = DocumentStore(tmp_path / "clean.sqlite")
    indexer.add(clean, "docs", [folder])
    for a, b in ((killed, clean),):
        ca, cb = a.collection("docs"), b.collection("docs")
        assert (ca.files, ca.chunks, ca.updating) == (cb.files, cb.chunks, False)


def test_bad_files_are_skipped_with_their_reason_and_the_rest_indexed(
    store: DocumentStore, folder: Path
) -> None:
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n%garbage that is not a pdf")
    (folder / "latin.txt").write_bytes("Çok güzel bir gün, İstanbul'da.".encode("cp1254") * 20)
    report = indexer.add(store, "docs", [folder])
    reasons = {Path(p).name: r for p, r in report.skipped}
    assert set(reasons) == {"empty.txt", "binary.txt", "broken.pdf"}
    assert all(r and "\n" not in r for r in reasons.values())
    assert "latin.txt" in {Path(p).name for p in report.indexed}
    assert search.search(store, ["docs"], "İstanbul güzel")[0].path.endswith("latin.txt")
    assert store.collection("docs").skipped == 3
    # Skipped files stay skipped, said again, until they change.
    again = indexer.update(store, "docs")
    assert {Path(p).name for p, _ in again.skipped} == set(reasons)
    (folder / "empty.txt").write_text("Now it has words about quokkas.")
    assert [Path(p).name for p in indexer.update(store, "docs").indexed] == ["empty.txt"]


# -- chunking -----------------------------------------------------------------------


def test_passages_stay_in_budget_and_in_their_section() -> None:
    prose = " ".join(f"Sentence number {i} says something about the harbour." for i in range(200))
    blocks = [
        Block("Chapter 1", headings=(), kind="heading"),
        Block(prose, lines=(2, 2), headings=("Chapter 1",)),
        Block("Chapter 2", headings=(), kind="heading"),
        Block("A short one.", lines=(4, 4), headings=("Chapter 2",)),
    ]
    passages = chunk(blocks, budget=120, overlap=20)
    assert all(p.tokens <= 120 for p in passages)
    assert {p.headings for p in passages} == {("Chapter 1",), ("Chapter 2",)}
    assert passages[-1].text == "A short one." and passages[-1].lines == (4, 4)
    first, second = passages[0], passages[1]
    assert first.text.split(". ")[-1] in second.text  # the overlap repeats the last sentence


def test_sentences_are_cut_in_any_script() -> None:
    assert sentences("Bir. İki! Üç?") == ["Bir. ", "İki! ", "Üç?"]
    assert sentences("비가 왔다. 바람이 불었다.") == ["비가 왔다. ", "바람이 불었다."]
    assert sentences("雨が降った。風が吹いた。") == ["雨が降った。", "風が吹いた。"]
    assert estimate_tokens("서울에서") == 4 and estimate_tokens("the harbour") == 3


# -- the CLI ---------------------------------------------------------------------------


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "localchat", "docs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_docs_commands(tmp_path: Path, folder: Path) -> None:
    home = tmp_path / "home"
    (folder / "empty.txt").write_bytes(b"")
    added = cli(home, "add", "notes", str(folder), "--json")
    assert added.returncode == 0, added.stderr
    data: dict[str, Any] = json.loads(added.stdout)
    assert len(data["indexed"]) == len(corpus_files())
    assert data["skipped"] == [{"path": str(folder / "empty.txt"), "reason": "empty file"}]
    listed = json.loads(cli(home, "list", "--json").stdout)
    assert listed[0]["name"] == "notes" and listed[0]["files"] == len(corpus_files())
    found = json.loads(cli(home, "search", "notes", "Ashford bridge flood", "--top", "3",
                           "--json").stdout)  # fmt: skip
    assert 1 <= len(found) <= 3
    assert set(found[0]) >= {"path", "location", "text", "score"}
    people = cli(home, "search", "notes", "Ashford bridge flood").stdout
    assert people.startswith("1. ")
    assert json.loads(cli(home, "update", "notes", "--json").stdout)["indexed"] == []
    missing = cli(home, "search", "nope", "x")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no collection")
    assert "Traceback" not in missing.stderr
    assert cli(home, "rm", "notes").returncode == 0
    assert json.loads(cli(home, "list", "--json").stdout) == []
    assert folder.exists() and any(folder.iterdir())  # the files stay


# -- grounding a turn ----------------------------------------------------------------

UNRELATED = [
    "What is the capital of Peru?",
    "Who won the football world cup in 1998?",
    "페루의 수도는 어디인가요?",
    "Fransa'nın başkenti neresidir?",
]


def test_a_turn_is_given_the_passages_that_answer_it_or_told_there_are_none(
    store: DocumentStore,
) -> None:
    indexer.add(store, "corpus", corpus_files())
    given = [
        any(q["answer"] in p.text for p in grounding.retrieve(store, ["corpus"], q["question"]))
        for q in QUESTIONS
    ]
    share = sum(given) / len(given)
    print("answer among the passages given:", share)
    assert share >= 0.85  # measured 0.94 (keyword search alone)
    for question in UNRELATED:
        assert grounding.retrieve(store, ["corpus"], question) == ()
        assert grounding.NOTHING in grounding.ground(store, ["corpus"], question).message
    q = QUESTIONS[0]
    g = grounding.ground(store, ["corpus"], q["question"])
    assert g.message.endswith(f"Question: {q['question']}")
    assert "[1] " in g.message and q["answer"] in g.message
    used = sum(estimate_tokens(p.text) for p in g.passages)
    assert used <= grounding.BUDGET


def test_a_small_file_is_given_whole(store: DocumentStore, tmp_path: Path) -> None:
    small = tmp_path / "recipe.md"
    small.write_text(
        "# Quokka pancakes\n\nMix two cups of flour with one egg.\n\n"
        "## Cooking\n\nFry each quokka pancake for two minutes a side.\n"
    )
    indexer.add(store, "r", [small])
    passages = grounding.retrieve(
        store, ["r"], "What goes into quokka pancakes, and how to fry them?"
    )
    assert [p.text for p in passages] == [
        "Mix two cups of flour with one egg.",
        "Fry each quokka pancake for two minutes a side.",
    ]


def test_chat_with_docs_lists_its_sources(tmp_path: Path, folder: Path) -> None:
    home = tmp_path / "home"
    assert cli(home, "add", "notes", str(folder)).returncode == 0
    model = write_llama_gguf(tmp_path / "tiny.gguf")
    env = {**os.environ, "LOCALCHAT_HOME": str(home)}

    def chat(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "localchat", "chat", "-m", str(model), "--max-tokens", "4",
             "--temperature", "0", *args],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip

    q = QUESTIONS[0]
    grounded = chat("--docs", "notes", "--json", "--prompt", q["question"])
    assert grounded.returncode == 0, grounded.stderr
    turn = json.loads(grounded.stdout)
    assert turn["sources"] and set(turn["sources"][0]) == {"path", "location", "text"}
    assert any(q["answer"] in s["text"] for s in turn["sources"])
    plain = json.loads(chat("--json", "--prompt", q["question"]).stdout)
    assert "sources" not in plain
    assert turn["prompt_tokens"] > plain["prompt_tokens"] + 100  # the passages went in
    none = chat("--docs", "notes", "--prompt", UNRELATED[0])
    assert "(not found in your documents)" in none.stdout
    said = chat("--docs", "notes", "--prompt", q["question"]).stdout
    assert "Sources:" in said and "[1] " in said
    unknown = chat("--docs", "nope", "--prompt", "hi")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no collection")


def test_a_chat_grounded_in_a_collection_keeps_each_replys_sources(
    tmp_path: Path, folder: Path, tiny_model: Path
) -> None:
    """The window's path: a chat whose settings name collections; each reply
    is given the passages for its question and keeps them as they were, even
    after the files change; an unrelated question keeps [] (not found)."""
    from localchat.core.chat.session import DOCUMENTS, ChatSession
    from localchat.core.chat.store import ChatStore
    from localchat.core.engine.client import Engine
    from localchat.core.params import GenerationSettings

    documents = DocumentStore(tmp_path / "documents.sqlite")
    indexer.add(documents, "notes", [folder])
    settings = GenerationSettings(temperature=0.0, max_tokens=4)
    q = QUESTIONS[0]
    with ChatStore(tmp_path / "chats.sqlite3") as store, Engine() as engine:
        engine.load(tiny_model, settings)
        chat = store.create_chat()
        session = ChatSession(store, engine, chat, model="tiny", documents=documents)
        plain = session.send(q["question"], settings)
        assert plain.sources is None  # not grounded yet
        store.set_chat_settings(chat, {DOCUMENTS: ["notes", "removed-since"]})
        grounded = session.send(q["question"], settings)
        assert grounded.sources and any(q["answer"] in s["text"] for s in grounded.sources)
        assert set(grounded.sources[0]) == {"path", "location", "headings", "pages", "lines",
                                            "text"}  # fmt: skip
        assert grounded.stats is not None and plain.stats is not None
        assert grounded.stats["prompt_tokens"] > plain.stats["prompt_tokens"] + 100
        nothing = session.send(UNRELATED[0], settings)
        assert nothing.sources == ()
        # The passages stay what they were when the files change.
        (folder / q["file"]).write_text("All gone.\n")
        indexer.update(documents, "notes")
        kept = store.message(grounded.id)
        assert kept.sources == grounded.sources
        exported = store.export_markdown(chat)
        assert "Sources:" in exported and "Not found in your documents" in exported
        assert store.export_json(chat)["messages"][3]["sources"] == list(grounded.sources)


def test_a_broken_index_file_is_a_one_line_error(tmp_path: Path) -> None:
    from localchat.core.documents.store import DocumentsError

    broken = tmp_path / "documents.sqlite"
    broken.write_bytes(b"not a database at all " * 100)
    with pytest.raises(DocumentsError, match="cannot open the document index") as caught:
        DocumentStore(broken)
    assert "\n" not in str(caught.value)
