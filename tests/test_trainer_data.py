"""Training data: cleaning, deduplication, the held-out split, bad inputs."""

from __future__ import annotations

import random
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
        single: "single paragraph",
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
