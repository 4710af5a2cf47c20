"""Streamed text is whole characters and never shows the start of a stop string."""

from __future__ import annotations

import random

import pytest

from localchat.core.engine.streaming import StopMatcher, Utf8Assembler

SAMPLES = [
    "héllo wörld",
    "emoji 😀 and 👩‍👩‍👧 family",
    "中文字符和日本語のテキスト",
    "mixed: ñ, ß, €, 𝄞",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_utf8_assembler_never_emits_half_a_character(text: str) -> None:
    data = text.encode()
    rng = random.Random(0)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), k=min(8, len(data) - 1)))
        chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        asm = Utf8Assembler()
        out = [asm.feed(c) for c in chunks] + [asm.flush()]
        assert "".join(out) == text
        assert all("\ufffd" not in piece for piece in out)


def test_utf8_assembler_replaces_invalid_bytes_like_a_whole_decode() -> None:
    data = b"ok \xc3 then \xe4\xb8 x \xff\xc3\xa9"
    asm = Utf8Assembler()
    out = "".join(asm.feed(data[i : i + 1]) for i in range(len(data))) + asm.flush()
    assert out == data.decode("utf-8", errors="replace")


def test_stop_matcher_holds_back_a_possible_stop_string() -> None:
    m = StopMatcher(["</answer>"])
    assert m.feed("The answer is 4") == ("The answer is 4", False)
    assert m.feed(" </ans") == (" ", False)  # "</ans" might become the stop string
    assert m.feed("wer> trailing") == ("", True)


def test_stop_matcher_releases_text_that_did_not_become_a_stop() -> None:
    m = StopMatcher(["STOP"])
    assert m.feed("ST") == ("", False)
    assert m.feed("ART") == ("START", False)
    assert m.feed("S") == ("", False)
    assert m.flush() == "S"


def test_stop_matcher_earliest_stop_wins_and_empty_stops_are_ignored() -> None:
    m = StopMatcher(["", "B", "A"])
    assert m.feed("xxAyyB") == ("xx", True)
    assert StopMatcher([]).feed("anything") == ("anything", False)
