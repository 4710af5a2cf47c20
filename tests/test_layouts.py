"""Weight layouts: a model whose first decode crashes the worker loads again
with the suspect layout off (the others kept), the user is told, and the
choice is remembered for this CPU and llama.cpp build."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from localchat.core.engine import layouts
from localchat.core.engine.client import Engine
from localchat.core.errors import EngineCrashed
from localchat.core.params import GenerationSettings
from localchat.testing.tiny_models import quantize, write_llama_gguf

GREEDY = GenerationSettings(temperature=0.0, max_tokens=8, repeat_penalty=1.0)
HI = [{"role": "user", "content": "hi"}]
Q = gguf.GGMLQuantizationType


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder of the test's own: what it remembers stays here."""
    monkeypatch.setenv("LOCALCHAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def q4_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 460 vocabulary rows: the output matrix is one CPU_REPACK must refuse (rows % 8).
    path = tmp_path_factory.mktemp("layouts") / "q4_0.gguf"
    return write_llama_gguf(path, n_embd=256, n_ff=512, qtype=Q.Q4_0)


def test_what_to_turn_off_next() -> None:
    extras = ("AMX", "CPU_REPACK")
    # At the first decode: the first layout holding weights, then the next.
    assert layouts.next_off((), ("AMX", "CPU_REPACK"), extras, decoded=True) == ("AMX",)
    assert layouts.next_off((), ("CPU_REPACK",), extras, decoded=True) == ("CPU_REPACK",)
    assert layouts.next_off(("AMX",), ("CPU_REPACK",), extras, decoded=True) == (
        "AMX",
        "CPU_REPACK",
    )
    # Nothing left that holds weights: not a layout's crash.
    assert layouts.next_off(("AMX",), (), extras, decoded=True) is None
    assert layouts.next_off((), (), extras, decoded=True) is None
    # Loading crashed while our overrides placed weights: all off.
    assert layouts.next_off(("AMX",), (), extras, decoded=False) == extras
    assert layouts.next_off((), (), extras, decoded=False) is None
    assert layouts.next_off(extras, (), extras, decoded=False) is None


def test_the_memory_survives_a_broken_file(tmp_path: Path) -> None:
    memory = layouts.LayoutMemory(tmp_path / "layouts.json")
    assert memory.get("k") is None
    memory.put("k", ("AMX",), "it crashed")
    memory.put("other", (), "")
    assert layouts.LayoutMemory(memory.path).get("k") == layouts.Remembered(("AMX",), "it crashed")
    memory.path.write_text("{not json")
    assert memory.get("k") is None
    memory.put("k", ("CPU_REPACK",), "again")  # a broken file is replaced, not fatal
    assert memory.get("k") == layouts.Remembered(("CPU_REPACK",), "again")


def test_a_crash_at_the_first_decode_turns_the_layout_off_and_is_remembered(
    home: Path, q4_0: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Engine() as engine:
        plain = engine.load(q4_0, GREEDY)
        expected = engine.chat(HI, GREEDY).text()
    if not plain.layouts_used:
        pytest.skip("no extra buffer type holds this model's weights on this CPU")
    suspect = plain.layouts_used[0]
    # The crash the AMX layout causes on some Xeons, on any CPU: the worker
    # dies (SIGSEGV) at the first decode while `suspect` holds weights.
    monkeypatch.setenv(layouts.CRASH_ENV, suspect)
    caplog.set_level(logging.WARNING, logger="localchat.core.engine.loading")
    with Engine() as engine:
        loaded = engine.load(q4_0, GREEDY)
        assert suspect in loaded.layouts_off and suspect not in loaded.layouts_used
        # One line for the user: what is off, and why.
        assert f"{suspect} weight layout off" in loaded.backend
        assert "crashed" in loaded.backend and "SIGSEGV" in loaded.backend
        assert "\n" not in loaded.backend
        assert engine.chat(HI, GREEDY).text() == expected  # it chats, and the same
    assert len([r for r in caplog.records if "crashed the worker" in r.message]) == 1
    remembered = json.loads((home / layouts.MEMORY_FILE).read_text())
    assert [entry["off"] for entry in remembered.values()] == [[suspect]]
    # Later loads go straight to what worked: no crash, no second try.
    caplog.clear()
    with Engine() as engine:
        again = engine.load(q4_0, GREEDY)
        assert again.layouts_off == loaded.layouts_off and again.backend == loaded.backend
        assert engine.chat(HI, GREEDY).text() == expected
    assert not [r for r in caplog.records if "crashed the worker" in r.message]


def test_a_crash_no_layout_explains_is_reported_as_before(
    home: Path, q4_0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(layouts.CRASH_ENV, "any")  # every first decode dies
    f32 = write_llama_gguf(tmp_path / "f32.gguf")  # no extra buffer type takes F32
    with Engine() as engine:
        with pytest.raises(EngineCrashed, match="SIGSEGV"):
            engine.load(f32, GREEDY)
        # With every layout turned off in turn, it still dies: said once, not looped.
        with pytest.raises(EngineCrashed, match="SIGSEGV"):
            engine.load(q4_0, GREEDY)
    assert not (home / layouts.MEMORY_FILE).exists()
    monkeypatch.delenv(layouts.CRASH_ENV)
    with Engine() as engine:  # and nothing was remembered against the layouts
        assert engine.load(q4_0, GREEDY).layouts_off == ()


def _repacked(path: Path, gpu_layers: int = 0) -> list[tuple[str, int]]:
    """The weights our mirror of llama.cpp's rule puts in CPU_REPACK (name,
    bytes), computed in a subprocess (llama.cpp stays out of the test process)."""
    code = (
        "import json, sys\n"
        "from localchat.core.engine import cpu_layout\n"
        "print(json.dumps(cpu_layout.repacked_tensors(sys.argv[1], int(sys.argv[2]))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), str(gpu_layers)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [(name, size) for name, size in json.loads(done.stdout)]


def _mirror(path: Path) -> int:
    return sum(size for _, size in _repacked(path))


def test_offloaded_layers_are_left_to_the_gpu(q4_0: Path) -> None:
    """An override outranks the layer's device in llama.cpp: the layers a GPU
    runs must get none, or turning a layout off would pull them to the CPU.
    llama.cpp offloads the output first, then the last layers."""
    every = [name for name, _ in _repacked(q4_0)]
    if not every:
        pytest.skip("CPU_REPACK takes nothing on this CPU")
    assert "blk.0.attn_q.weight" in every and "blk.1.attn_q.weight" in every
    layer_1 = [name for name, _ in _repacked(q4_0, gpu_layers=2)]  # the output and layer 1
    assert layer_1 and all(name.startswith("blk.0.") for name in layer_1)
    assert _repacked(q4_0, gpu_layers=3) == [] and _repacked(q4_0, gpu_layers=-1) == []


def test_the_override_patterns_match_exactly_the_weights_chosen() -> None:
    names = ["output.weight", "blk.0.attn_q.weight", "blk.12.attn_q.weight", "blk.3.ffn_up.weight"]
    patterns = [re.compile(p) for p in layouts.override_patterns(names)]
    assert len(patterns) == 3  # one per kind of weight, not one per tensor
    others = ["blk.1.attn_q.weight", "blk.0.attn_q.weight.lora_a", "blk.0.ffn_up.weight"]
    candidates = [*names, *others, "xblk.0.attn_q.weight", "blk.120.attn_q.weight"]
    chosen = [n for n in candidates if any(p.search(n) for p in patterns)]
    assert chosen == names


def test_only_a_fault_in_the_process_counts_as_a_layout_crash() -> None:
    assert layouts.is_crash(-signal.SIGSEGV) and layouts.is_crash(-signal.SIGILL)
    assert layouts.is_crash(-signal.SIGABRT) and layouts.is_crash(0xC0000005)
    # Killed from outside (the out-of-memory killer), or an ordinary exit: no.
    assert not layouts.is_crash(-signal.SIGKILL) and not layouts.is_crash(-signal.SIGTERM)
    assert not layouts.is_crash(1) and not layouts.is_crash(0) and not layouts.is_crash(None)


@pytest.mark.parametrize("kind", ["Q4_0", "Q8_0", "Q4_K_M", "Q6_K", "IQ4_NL"])
def test_without_amx_the_other_layouts_hold_what_llama_cpp_gives_them(
    home: Path, q4_0: Path, tmp_path: Path, kind: str
) -> None:
    """With AMX off, the weights CPU_REPACK would take are put there by our
    overrides, tensor by tensor. On a CPU without AMX, llama.cpp's own choice
    is the same placement: the bytes per buffer type must match exactly."""
    if kind == "Q4_0":
        path = q4_0
    else:
        f32 = write_llama_gguf(tmp_path / "f32.gguf", n_embd=256, n_ff=512)
        path = quantize(f32, tmp_path / f"{kind}.gguf", kind)
    with Engine() as engine:
        default = engine.load(path, GREEDY)
        expected = engine.chat(HI, GREEDY).text()
        without = engine.load(path, GREEDY, layouts_off=("AMX",))
        assert engine.chat(HI, GREEDY).text() == expected
    assert without.layouts_off == ("AMX",) and "AMX" not in without.layouts_used
    placed = dict(without.weight_bytes)
    assert abs(placed.get("CPU_REPACK", 0) - _mirror(path)) <= 0.005 * 2**20  # MiB, 2 places
    if "AMX" not in default.layouts_used:
        assert placed == dict(default.weight_bytes)


def test_a_crash_note_quotes_only_the_crash_it_reports(
    home: Path, tmp_path: Path, slow_model: Path
) -> None:
    """The log keeps earlier workers' lines; a worker killed without a word
    must not be given an old one as its last words."""
    log = tmp_path / "engine.log"
    log.write_text("ggml/src/ggml-cpu/ops.cpp:5422: fatal error from an earlier run\n")
    s = GREEDY.replace(max_tokens=4000)
    with Engine(log_path=log) as engine:
        engine.load(slow_model, s)
        pid = engine.worker_pid
        assert pid is not None
        with pytest.raises(EngineCrashed) as err:
            for _ in engine.chat(HI, s):
                os.kill(pid, signal.SIGKILL)
    assert "SIGKILL" in str(err.value)
    assert "earlier run" not in str(err.value) and "last words" not in str(err.value)
