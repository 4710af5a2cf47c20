"""The token X-ray's cost: generation with every token's log-probability and
its top candidates read, against the same generation without.

Run from the repository root::

    .venv/bin/python benchmarks/xray.py                 # TinyLlama-1.1B shape, 32k and 128k
    .venv/bin/python benchmarks/xray.py --quick         # a small model, to try the script
    .venv/bin/python benchmarks/xray.py --rounds 5 --tokens 96

For each vocabulary (Llama 2's 32,000-token SentencePiece one and Llama 3's
128,256-token BPE one: the 128k softmax is the hard case), a random-weight
Q4_0 model of TinyLlama-1.1B's shape (written once into ``benchmarks/.cache``,
as ``benchmarks/engine.py`` does) generates ``--tokens`` tokens greedily, in
alternating rounds with and without ``top_logprobs=10``, in this process. It
prints the median tokens/s of each (the worker's own count, after the first
token) and their ratio (goal: >= 0.97), and what the tokens take stored
(``core/chat/token_codec.py``), per 1,000 tokens.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localchat.core.chat import token_codec  # noqa: E402
from localchat.core.engine.client import Engine  # noqa: E402
from localchat.core.params import GenerationSettings  # noqa: E402


def _engine_bench():  # type: ignore[no-untyped-def]
    """benchmarks/engine.py, for its cached random-weight models."""
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "benchmarks" / "engine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="a small model")
    parser.add_argument(
        "--vocab", choices=("llama-spm", "llama-bpe"), help="only this vocabulary (both by default)"
    )
    args = parser.parse_args()
    bench = _engine_bench()
    base = bench.QUICK_SHAPE if args.quick else bench.TINYLLAMA_SHAPE
    s = GenerationSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=args.tokens, ctx=1024)
    for vocab in [args.vocab] if args.vocab else ["llama-spm", "llama-bpe"]:
        model = bench.cached_model({**base, "vocab": vocab})
        speeds: dict[str, list[float]] = {"off": [], "on": []}
        stored = 0
        with Engine() as engine:
            loaded = engine.load(str(model), s)
            engine.chat(PROMPT, s).text()  # warm-up
            for r in range(args.rounds):
                order = ("off", "on") if r % 2 == 0 else ("on", "off")
                for mode in order:
                    top = args.top if mode == "on" else 0
                    stream = engine.chat(PROMPT, s, top_logprobs=top)
                    stream.text()
                    result = stream.result
                    assert result is not None
                    speeds[mode].append(result.tokens_per_s)
                    if mode == "on":
                        assert len(result.tokens) == result.completion_tokens
                        stored = (
                            len(token_codec.encode(result.tokens))
                            * 1000
                            // max(len(result.tokens), 1)
                        )
        off, on = statistics.median(speeds["off"]), statistics.median(speeds["on"])
        print(f"{model.name} ({loaded.n_vocab:,} tokens, {loaded.backend}):")
        print(f"  without logprobs:      {off:7.2f} tok/s")
        ratio = on / off
        print(
            f"  with top {args.top} logprobs:  {on:7.2f} tok/s   ratio {ratio:.3f} (goal >= 0.97)"
        )
        print(f"  stored: {stored:,} bytes per 1,000 tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
