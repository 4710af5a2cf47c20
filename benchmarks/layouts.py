"""Weight layouts benchmark: our engine with llama.cpp's weight layouts on and
off, against GPT4All 2.8.2's own bindings, on the same file.

Run from the repository root::

    python3 -m venv /tmp/gpt4all && /tmp/gpt4all/bin/pip install gpt4all==2.8.2
    .venv/bin/python benchmarks/layouts.py --gpt4all /tmp/gpt4all/bin/python
    .venv/bin/python benchmarks/layouts.py --quick          # a tiny model, to try it

Why: on some CPUs one of llama.cpp's extra buffer types (the AMX layout on
Intel Xeons) crashes the first decode, and the engine then turns it off
(``localchat/core/engine/layouts.py``). Turning *every* extra layout off is
safe but slow: the CPU_REPACK layout (weights interleaved for AVX2/AVX-512)
is what makes generation fast. This measures what each choice costs:

* **ours, llama.cpp's choice**: every extra layout this build has;
* **ours, AMX off**: the others kept, tensor by tensor (only where AMX exists;
  elsewhere it places the very same bytes as llama.cpp's choice);
* **ours, all extra layouts off**: ``use_extra_bufts = false``;
* **GPT4All 2.8.2** (its own older llama.cpp, which has no such layouts), in
  a venv of its own (``--gpt4all``: its Python), skipped without one.

Each side gets the same prompts (a unique tag first, so nothing comes from a
cache) and generates ``--gen-tokens`` greedily, with ``--threads`` threads and
a batch of 512. Prompt speed is prompt tokens / time to the first token;
generation speed is (tokens - 1) / (last token - first token). All sides are
loaded at once (the file is memory-mapped once) and take turns, the order
rotating each round; medians over ``--rounds`` are printed, and each side's
ratio to GPT4All. The model is TinyLlama-1.1B's shape with random weights
(speed does not depend on them), Q4_0, with the Llama 2 vocabulary
(GPT4All needs SentencePiece's single-character pieces).

Goal (issue 18): with a layout off, generation at least GPT4All's speed and
prompt speed kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from engine import QUICK_SHAPE, TINYLLAMA_SHAPE, cached_model, filler  # benchmarks/engine.py

from localchat.core.engine.client import Engine
from localchat.core.params import GenerationSettings

BATCH = 512

# The GPT4All side: a loop in its own venv, one JSON request and answer a line.
GPT4ALL_SERVER = r"""
import json, sys, time
from pathlib import Path
from gpt4all import GPT4All
path, threads, ctx = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
model = GPT4All(path.name, model_path=str(path.parent), allow_download=False,
                device="cpu", n_threads=threads, n_ctx=ctx, verbose=False)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    times = []
    def on_token(token_id, text):
        times.append(time.perf_counter())
        return True
    t0 = time.perf_counter()
    model.generate(req["prompt"], max_tokens=req["gen"], temp=0.0, top_k=1,
                   repeat_penalty=1.0, n_batch=req["batch"], callback=on_token)
    print(json.dumps({"ttft": times[0] - t0 if times else None,
                      "gen_s": times[-1] - times[0] if len(times) > 1 else None,
                      "tokens": len(times)}), flush=True)
"""


def prompt_text(tag: int, words: int) -> str:
    return f"Note {tag}: {filler(words)}"  # the tag first: nothing comes from a cache


class Ours:
    def __init__(self, name: str, path: Path, threads: int, off: tuple[str, ...]) -> None:
        self.name = name
        self.engine = Engine()
        self.settings = GenerationSettings(
            temperature=0.0, top_k=1, repeat_penalty=1.0, ctx=2048, threads=threads, seed=1
        )
        self.loaded = self.engine.load(path, self.settings, layouts_off=off)

    def tokens(self, text: str) -> int:
        return len(self.engine.tokenize(text, add_bos=True, special=False))

    def run(self, text: str, gen: int) -> tuple[float, float]:
        stream = self.engine.chat(
            [{"role": "user", "content": text}], self.settings.replace(max_tokens=gen)
        )
        stream.text()
        r = stream.result
        assert r is not None
        return r.evaluated_tokens / (r.ttft_ms / 1000), r.tokens_per_s

    def close(self) -> None:
        self.engine.close()


class Gpt4All:
    name = "GPT4All 2.8.2"

    def __init__(self, python: str, path: Path, threads: int, count: Any) -> None:
        self.count = count
        self.proc = subprocess.Popen(
            [python, "-c", GPT4ALL_SERVER, str(path), str(threads), "2048"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if "ready" not in self.proc.stdout.readline():
            raise SystemExit("GPT4All could not load the model")

    def run(self, text: str, gen: int) -> tuple[float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"prompt": text, "gen": gen, "batch": BATCH}) + "\n")
        self.proc.stdin.flush()
        r = json.loads(self.proc.stdout.readline())
        prompt = self.count(text) / r["ttft"]
        return prompt, (r["tokens"] - 1) / r["gen_s"] if r["gen_s"] else float("nan")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gpt4all", help="the Python of a venv with gpt4all==2.8.2")
    ap.add_argument("--model", type=Path, help="a GGUF file (default: TinyLlama's shape, Q4_0)")
    ap.add_argument("--quick", action="store_true", help="a tiny model, to try the script")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-words", type=int, default=200)
    ap.add_argument("--gen-tokens", type=int, default=64)
    args = ap.parse_args()
    path = args.model or cached_model(QUICK_SHAPE if args.quick else TINYLLAMA_SHAPE)
    os.environ["LOCALCHAT_HOME"] = tempfile.mkdtemp(prefix="localchat-bench-")
    print(f"model {path.name}, {args.threads} threads, load {os.getloadavg()}", flush=True)

    sides: list[Any] = [Ours("ours, llama.cpp's choice", path, args.threads, ())]
    extras = set(sides[0].loaded.layouts_used)
    if "AMX" in extras:
        sides.append(Ours("ours, AMX off", path, args.threads, ("AMX",)))
    sides.append(Ours("ours, all extra layouts off", path, args.threads, ("AMX", "CPU_REPACK")))
    for side in sides:
        held = dict(side.loaded.weight_bytes)
        print(f"  {side.name}: weights in {held} (off: {side.loaded.layouts_off or 'none'})")
    if args.gpt4all:
        sides.append(Gpt4All(args.gpt4all, path, args.threads, sides[0].tokens))
    else:
        print("  (no --gpt4all: GPT4All not measured)")

    results: dict[str, list[tuple[float, float]]] = {s.name: [] for s in sides}
    tag = 0
    for rnd in range(args.rounds + 1):  # the first round warms up, untimed
        order = sides[rnd % len(sides) :] + sides[: rnd % len(sides)]
        for side in order:
            tag += 1
            got = side.run(prompt_text(tag, args.prompt_words), args.gen_tokens)
            if rnd:
                results[side.name].append(got)
    for side in sides:
        side.close()

    ref = results.get(Gpt4All.name)
    ref_p = statistics.median(p for p, _ in ref) if ref else None
    ref_g = statistics.median(g for _, g in ref) if ref else None
    print(f"\n{'':32} {'prompt tok/s':>13} {'gen tok/s':>10}   vs GPT4All (prompt, gen)")
    for name, runs in results.items():
        p = statistics.median(x for x, _ in runs)
        g = statistics.median(y for _, y in runs)
        vs = f"   {p / ref_p:.2f}x, {g / ref_g:.2f}x" if ref_p and ref_g else ""
        print(f"{name:32} {p:13.1f} {g:10.1f}{vs}")
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
