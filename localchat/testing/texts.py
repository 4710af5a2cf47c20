"""Training text for tests and benchmarks, made here (no downloads)."""

from __future__ import annotations

import random
from pathlib import Path

NOUNS = "cat dog bird fox owl bear horse mouse".split()
VERBS = "sees chases finds follows hears meets".split()
ADJS = "small quick brown lazy old young".split()


def grammar_text(path: Path, paragraphs: int = 300, seed: int = 0) -> Path:
    """Paragraphs of sentences from a tiny grammar ("The small cat sees the
    old fox."): structure a small model learns in seconds."""
    rng = random.Random(seed)

    def sentence() -> str:
        return (
            f"The {rng.choice(ADJS)} {rng.choice(NOUNS)} {rng.choice(VERBS)} "
            f"the {rng.choice(ADJS)} {rng.choice(NOUNS)}."
        )

    path.write_text("\n\n".join(" ".join(sentence() for _ in range(4)) for _ in range(paragraphs)))
    return path
