"""Thinking costs nothing measurable: generation speed with a reasoning
template against the same model without one.

Run from the repository root::

    .venv/bin/python benchmarks/reasoning.py            # ~40M parameters, 256 tokens
    .venv/bin/python benchmarks/reasoning.py --rounds 3 --tokens 128

Two GGUF files hold the same random weights (Llama 2's 32,000-token
SentencePiece vocabulary, so the output layer costs what it does in a real
model): one with DeepSeek-R1-Distill's chat template, whose prompt opens
``<think>`` (asked with thinking on, every token of the reply goes through
the split as thinking: a random model never closes it), one with ChatML
(no reasoning format). Each has an engine of its own; the rounds alternate
between them in this process, greedy, the same prompt, ``--tokens`` tokens
each. It prints the median tokens/s of each and their ratio (goal:
>= 0.98), then the split's own cost per token, measured on the text the
thinking run wrote.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localchat.core.engine.client import Engine  # noqa: E402
from localchat.core.engine.reasoning import Splitter, detect  # noqa: E402
from localchat.core.params import GenerationSettings  # noqa: E402
from localchat.testing.tiny_models import CHATML, fixture_template, write_llama_gguf  # noqa: E402

R1 = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"
PROMPT = [{"role": "user", "content": "Explain how a hash table works."}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="0: one per physical core")
    args = parser.parse_args()
    shape = {"vocab": "llama-spm", "n_embd": 512, "n_layer": 8, "n_head": 8, "n_head_kv": 8}
    shape |= {"n_ff": 1536, "suppress_special": True, "seed": 1}
    folder = Path(tempfile.mkdtemp(prefix="localchat-reasoning-bench-"))
    thinking = write_llama_gguf(folder / "r1.gguf", chat_template=fixture_template(R1), **shape)
    plain = write_llama_gguf(folder / "chatml.gguf", chat_template=CHATML, **shape)
    s = GenerationSettings(
        temperature=0.0,
        max_tokens=args.tokens,
        ctx=1024,
        threads=args.threads,
        thinking="on",
    )
    speeds: dict[str, list[float]] = {"thinking": [], "plain": []}
    written = ""
    with Engine() as a, Engine() as b:
        loaded = a.load(str(thinking), s)
        assert loaded.reasoning == "think", loaded.reasoning
        assert not b.load(str(plain), s).reasoning
        for _ in range(args.rounds):
            for name, engine in (("thinking", a), ("plain", b)):
                stream = engine.chat(PROMPT, s)
                for _piece in stream.pieces():
                    pass
                result = stream.result
                assert result is not None
                if name == "thinking":
                    assert result.reasoning_tokens == result.completion_tokens, result
                    written = result.reasoning
                speeds[name].append(result.tokens_per_s)
    t, p = statistics.median(speeds["thinking"]), statistics.median(speeds["plain"])
    print(f"generation, median of {args.rounds} ({args.tokens} tokens, {loaded.backend}):")
    print(f"  plain template:     {p:8.1f} tok/s")
    print(f"  thinking template:  {t:8.1f} tok/s   ratio {t / p:.3f} (goal >= 0.98)")

    # The split alone, on the thinking run's text a token's worth at a time.
    fmt = detect(fixture_template(R1), set())
    assert fmt is not None
    step = max(len(written) // max(args.tokens, 1), 1)
    pieces = [written[i : i + step] for i in range(0, len(written), step)] * 50
    started = time.perf_counter()
    splitter = Splitter(fmt, inside=True)
    for piece in pieces:
        splitter.feed(piece)
    per_token = (time.perf_counter() - started) / len(pieces)
    print(
        f"  the split: {per_token * 1e6:.1f} µs a token, "
        f"{per_token * p * 100:.3f}% of a token's time at {p:.0f} tok/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
