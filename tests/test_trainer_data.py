"""Training data: cleaning, deduplication, the held-out split, bad inputs."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from localchat.core.trainer import data
from localchat.core.trainer.data import DataError

WORDS = (
    "river stone light garden window quiet morning letter bridge market winter song "
    "paper road cloud harbor lamp field tower glass silver forest candle mountain"
).split()


def sentence(rng: random.Random, n: int = 30) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def test_markup_is_stripped_and_whitespace_normalised(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><style>p { color: red }</style><script>var x = 1;</script></head>"
        "<body><h1>Title</h1><!-- hidden --><p>Fish &amp; chips,\tplease.</p>"
        "<p>Second   paragraph<br>on two lines.</p></body></html>"
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("  One \t line  \r\n\r\n\r\nThen <stdin> stays: a < b.\n")
    corpus = data.prepare([page, notes], heldout=0.5)
    everything = corpus.train + corpus.heldout
    assert sorted(everything) == sorted(
        [
            "Title",
            "Fish & chips, please.",
            "Second paragraph\non two lines.",
            "One line",
            "Then <stdin> stays: a < b.",  # plain text keeps its angle brackets
        ]
    )
    assert corpus.report.files == 2 and corpus.report.cleaned_away_chars > 50


def test_exact_and_near_duplicates_are_removed(tmp_path: Path) -> None:
    rng = random.Random(0)
    originals = [sentence(rng) for _ in range(200)]
    planted_exact = [originals[i].upper() for i in range(0, 40, 2)]  # case and spacing differ
    planted_near = []
    for i in range(1, 40, 2):  # one word changed in thirty: Jaccard ~0.8-0.9
        words = originals[i].split()
        words[15] = "changed"
        planted_near.append(" ".join(words))
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("\n\n".join(originals[:100]))
    (folder / "b.md").write_text("\n\n".join(originals[100:] + planted_exact + planted_near))
    (folder / "ignored.bin").write_bytes(b"\0\1\2")  # not a text suffix: not read
    corpus = data.prepare([folder])
    report = corpus.report
    assert report.files == 2 and report.paragraphs == 240
    assert report.exact_duplicates == 20
    assert report.near_duplicates == 20
    kept = set(corpus.train + corpus.heldout)
    assert kept == set(originals)  # every original kept, nothing planted
    assert report.examples and "≈" in report.examples[0]
    # Different texts that share words are not near-duplicates.
    assert data.deduplicate(["the cat sat on the mat", "the dog sat on the log"]) == [
        "the cat sat on the mat",
        "the dog sat on the log",
    ]


def test_the_held_out_split_is_stable_and_disjoint(tmp_path: Path) -> None:
    rng = random.Random(1)
    paras = [sentence(rng, 12) for _ in range(500)]
    (tmp_path / "one.txt").write_text("\n\n".join(paras))
    (tmp_path / "two.txt").write_text("\n\n".join(reversed(paras)))
    first = data.prepare([tmp_path / "one.txt"], heldout=0.1)
    again = data.prepare([tmp_path / "two.txt"], heldout=0.1)
    assert set(first.heldout) == set(again.heldout)  # by content, not by position
    assert not set(first.train) & set(first.heldout)
    assert 25 <= len(first.heldout) <= 75
    lines = first.report.lines()
    assert "held out" in lines[-1] and len(lines) == 3


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n \t\n")
    binary = tmp_path / "model.txt"
    binary.write_bytes(b"GGUF\0\0\0\3" + bytes(100))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 au lait\n\nand more".encode("latin-1"))
    single = tmp_path / "single.txt"
    single.write_text("Just one paragraph.\n")
    no_text = tmp_path / "no-text"
    no_text.mkdir()
    (no_text / "x.bin").write_bytes(b"1")
    cases = {
        empty: "empty once cleaned",
        binary: "binary",
        latin: "not UTF-8",
        single: "single passage of 19 characters",
        tmp_path / "missing.txt": "no such file",
        no_text: "no text files",
    }
    for path, message in cases.items():
        with pytest.raises(DataError, match=message) as err:
            data.prepare([path])
        assert "\n" not in str(err.value)
        if path not in (empty, single):  # about the corpus, not one file
            assert path.name in str(err.value)
    with pytest.raises(DataError, match="no training data"):
        data.prepare([])


# -- text with few blank lines: passages of lines, windows of over-long lines ---------------


def one_sentence_per_line(rng: random.Random, n: int = 340) -> list[str]:
    return [sentence(rng, rng.randint(5, 10)) for _ in range(n)]


def lines_of(blocks: list[str]) -> list[str]:
    return [line for block in blocks for line in block.split("\n")]


def test_a_file_with_one_sentence_per_line_trains_on_runs_of_its_lines(tmp_path: Path) -> None:
    lines = one_sentence_per_line(random.Random(2))
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(lines) + "\n")  # ~17 KB, no blank line: one paragraph
    assert 14_000 < notes.stat().st_size < 22_000
    corpus = data.prepare([notes])
    report = corpus.report
    assert report.line_runs == report.paragraphs >= 20 and report.windows == 0
    assert report.exact_duplicates == report.near_duplicates == 0
    share = report.heldout_chars / (report.train_chars + report.heldout_chars)
    assert 0.03 < share < 0.25 and report.heldout_paragraphs >= 2
    # Every line once, on one side; each block a run of the file's lines, line
    # breaks kept (the trainers put a blank line only between blocks).
    assert sorted(lines_of(corpus.train + corpus.heldout)) == sorted(lines)
    whole = "\n".join(lines)
    assert all(block in whole for block in corpus.train + corpus.heldout)
    assert len(corpus.train) < report.train_paragraphs  # neighbours joined again
    said = report.lines()
    assert "passages after cleaning (text with too few blank lines cut into" in said[0]
    assert said[2].startswith(f"train: {report.train_paragraphs} passages")

    # Lines added at the top move no boundary further down: the same lines stay held out.
    extra = one_sentence_per_line(random.Random(3), 40)
    (tmp_path / "more.txt").write_text("\n".join(extra + lines))
    again = data.prepare([tmp_path / "more.txt"])
    before = set(lines_of(corpus.heldout))
    after = set(lines_of(again.heldout)) - set(extra)
    assert len(before & after) >= 0.8 * max(len(before), len(after))


def test_copied_passages_go_but_repeated_short_lines_stay(tmp_path: Path) -> None:
    rng = random.Random(4)
    code = []
    for i in range(80):  # C without a blank line: "}" and "return x;" on every function
        code.append(f"int {rng.choice(WORDS)}_{i}(int x) {{")
        code += [f"x = x * {rng.randint(2, 99)} + {rng.choice(WORDS)}_{i};" for _ in range(3)]
        code += ["return x;", "}"]
    (tmp_path / "code.c").write_text("\n".join(code))
    lines = one_sentence_per_line(random.Random(5), 300)
    # A chat export saved twice over: its first 150 lines again at the end.
    (tmp_path / "chat.txt").write_text("\n".join(lines + lines[:150]))
    corpus = data.prepare([tmp_path / "code.c", tmp_path / "chat.txt"])
    kept = lines_of(corpus.train + corpus.heldout)
    assert kept.count("}") == kept.count("return x;") == 80  # not deduplicated away
    assert corpus.report.exact_duplicates >= 8  # the copy, passage by passage
    copied = sum(kept.count(line) for line in lines[:150])
    assert 150 <= copied <= 165  # at most the passage where the copy begins survives
    assert set(lines) <= set(kept)


def test_a_single_long_line_is_cut_into_windows_at_spaces(tmp_path: Path) -> None:
    rng = random.Random(6)
    words = [rng.choice(WORDS) for _ in range(5000)]
    (tmp_path / "minified.txt").write_text(" ".join(words))  # ~33 KB on one line
    corpus = data.prepare([tmp_path / "minified.txt"])
    report = corpus.report
    assert report.windows == report.paragraphs >= 30 and report.line_runs == 0
    share = report.heldout_chars / (report.train_chars + report.heldout_chars)
    assert 0.02 < share < 0.25
    blocks = corpus.train + corpus.heldout
    assert sorted(w for b in blocks for w in b.split(" ")) == sorted(words)  # no word cut
    assert all(block in " ".join(words) for block in blocks)
    assert "windows of over-long lines" in report.lines()[0]
    # No space to cut at: cut anyway.
    encoded = base64.b64encode(rng.randbytes(2250)).decode()  # 3,000 characters
    (tmp_path / "base64.txt").write_text(encoded)
    blob = data.prepare([tmp_path / "base64.txt"], heldout=0.5)
    sides = {blob.report.train_chars, blob.report.heldout_chars}
    assert blob.report.windows == 3 and sides <= {1000, 2000}
    assert all(block in encoded for block in blob.train + blob.heldout)
    assert sum(len(block) for block in blob.train + blob.heldout) == 3000


def test_real_paragraphs_stay_whole(tmp_path: Path) -> None:
    rng = random.Random(7)
    stanzas = ["\n".join(sentence(rng, 6) for _ in range(4)) for _ in range(3)]
    (tmp_path / "poem.txt").write_text("\n\n".join(stanzas))  # fewer than a handful
    prose = [sentence(rng, rng.randint(20, 150)) for _ in range(40)]
    (tmp_path / "essay.md").write_text("\n\n".join(prose))
    corpus = data.prepare([tmp_path / "poem.txt", tmp_path / "essay.md"])
    assert sorted(corpus.train + corpus.heldout) == sorted(stanzas + prose)
    report = corpus.report
    assert report.unit == "paragraphs" and report.line_runs == report.windows == 0
    assert report.lines()[0].startswith("2 files, 43 paragraphs after cleaning (")

    # One paragraph holding most of a file (a long listing) is cut; the rest stay whole.
    listing = "\n".join(one_sentence_per_line(rng, 60))
    (tmp_path / "notes.md").write_text("\n\n".join([*prose[:3], listing, prose[3]]))
    mixed = data.prepare([tmp_path / "notes.md"]).report
    assert mixed.paragraphs - mixed.line_runs == 4 and mixed.line_runs >= 5
    assert mixed.lines()[0].startswith(
        f"1 file, {mixed.paragraphs} passages after cleaning (4 paragraphs, and text with "
        f"too few blank lines cut into {mixed.line_runs} runs of lines; "
    )


def test_both_trainers_take_a_file_without_blank_lines(home: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tokenizers")
    from localchat.testing.tiny_models import write_llama_gguf

    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(one_sentence_per_line(random.Random(8))) + "\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "localchat", "train", *args, "--steps", "2", "--json"]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    scratch = cli("scratch", "--data", str(notes), "--out", str(tmp_path / "m.gguf"),
                  "--preset", "tiny", "--batch", "8", "--vocab", "300")  # fmt: skip
    assert scratch.returncode == 0, scratch.stderr
    done = json.loads(scratch.stdout.splitlines()[-1])["done"]
    assert "runs of lines" in done["data"][0] and (tmp_path / "m.gguf").exists()

    base = write_llama_gguf(tmp_path / "base.gguf", n_layer=2, n_embd=64, n_ff=128)
    lora = cli("lora", "--base", str(base), "--data", str(notes), "--out",
               str(tmp_path / "a.gguf"), "--ctx", "128", "--rank", "8")  # fmt: skip
    assert lora.returncode == 0, lora.stderr
    assert "held-out sequences" in lora.stdout and (tmp_path / "a.gguf").exists()


def test_chats_that_give_nothing_are_named_with_the_reason(tmp_path: Path) -> None:
    from localchat.core.chat.store import ChatStore
    from localchat.core.trainer import chat_data

    with ChatStore(tmp_path / "chats.sqlite3") as store:
        good = store.create_chat("Counting")
        store.add_message(good, "user", "What comes after 1?")
        store.add_message(good, "assistant", "After 1 comes 2.")
        rome = store.create_chat("Trip to Rome")
        store.add_message(rome, "user", "Plan a trip to Rome")
        store.add_message(rome, "assistant", "Day one", status="failed")
        store.add_message(rome, "user", "Try again")
        store.add_message(rome, "assistant", "Day", status="cancelled")
        blank = store.create_chat("")
        unanswered = store.create_chat("Hello")
        store.add_message(unanswered, "user", "Hello?")
        silent = store.create_chat("Silence")
        store.add_message(silent, "user", "Say nothing")
        store.add_message(silent, "assistant", "  \n")
        mixed = store.create_chat("Mixed")
        store.add_message(mixed, "user", "Hm?")
        store.add_message(mixed, "assistant", "", status="done")
        store.add_message(mixed, "assistant", "Half", status="interrupted")

        found = chat_data.read_store(store, [good, rome])
        assert len(found.conversations) == 1 and found.distinct == 1
        assert found.skipped == [chat_data.Skipped(rome, "Trip to Rome", "unfinished")]
        assert found.note == (
            "chat 'Trip to Rome' gave nothing to learn: its replies failed or were stopped "
            "(only finished replies are learned)"
        )
        everything = chat_data.read_store(store)
        assert chat_data.from_store(store) == everything.conversations
        reasons = {s.chat_id: s.reason for s in everything.skipped}
        assert reasons == {
            rome: "unfinished",
            blank: "no-messages",
            unanswered: "no-replies",
            silent: "empty",
            mixed: "empty-or-unfinished",
        }
        note = everything.note
        assert "\n" not in note
        assert "chat 'New chat' gave nothing to learn: it has no messages" in note
        assert "chat 'Hello' gave nothing to learn: it has no replies" in note
        assert "chat 'Silence' gave nothing to learn: its replies are empty" in note
        assert "chat 'Mixed' gave nothing to learn: its replies are empty, failed or were" in note

    several = [chat_data.Skipped(i, f"chat {i}", "no-replies") for i in range(5)]
    assert chat_data.skipped_line(several) == (
        "chats 'chat 0', 'chat 1', 'chat 2' and 2 more gave nothing to learn: they have no replies"
    )
    assert chat_data.skipped_line([]) == ""
