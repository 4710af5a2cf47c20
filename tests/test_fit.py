"""Fit badges: will a model fit this computer's memory (and GPU)?"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from localchat.core import hardware
from localchat.core.engine.gguf_info import read_model_info
from localchat.core.models import fit
from localchat.core.units import human_size

GB = 10**9  # as sizes are shown


def test_verdicts_follow_the_need_against_free_and_total_memory() -> None:
    ram = (32 * GB, 20 * GB)  # total, available
    small = fit.fit(4 * GB, 4096, memory=ram, gpu=None)
    assert small.verdict == "fits" and small.need > 4 * GB  # the KV cache and buffers count
    # Over 80% of what is free but under 90% of the total: others must make room.
    assert fit.fit(18 * GB, 4096, memory=ram, gpu=None).verdict == "tight"
    assert fit.fit(30 * GB, 4096, memory=ram, gpu=None).verdict == "too big"
    # A longer context needs more (the KV cache grows with it).
    assert fit.fit(4 * GB, 32768, memory=ram, gpu=None).need > small.need
    # Not given: this computer's memory (and GPU), read now.
    assert fit.fit(4 * GB, 4096).verdict in ("fits", "tight", "too big", "unknown")
    tip = small.explain()
    assert "needs about" in tip and "20.0 GB of 32.0 GB RAM is free" in tip


def test_an_installed_model_is_judged_by_its_header(tiny_model: Path) -> None:
    info = read_model_info(tiny_model)
    verdict = fit.fit(info, 2048, memory=(8 * GB, 4 * GB), gpu=None)
    assert verdict.need == info.ram_estimate(2048)
    assert verdict.verdict == "fits"


def test_a_gpu_with_room_makes_it_fit_and_says_so() -> None:
    ram = (16 * GB, 6 * GB)
    alone = fit.fit(9 * GB, 4096, memory=ram, gpu=None)
    assert alone.verdict == "tight" and not alone.on_gpu
    big_gpu = fit.fit(9 * GB, 4096, memory=ram, gpu=(24 * GB, 23 * GB))
    assert big_gpu.verdict == "fits" and big_gpu.on_gpu
    assert "fits on the GPU (23.0 GB of 24.0 GB free)" in big_gpu.explain()
    small_gpu = fit.fit(9 * GB, 4096, memory=ram, gpu=(8 * GB, 7 * GB))
    assert small_gpu.verdict == "tight" and not small_gpu.on_gpu
    assert "the rest runs on the CPU" in small_gpu.explain()
    # Every layer kept on the CPU: the GPU is not considered (nor asked).
    cpu_only = fit.fit(9 * GB, 4096, memory=ram, gpu=(24 * GB, 23 * GB), gpu_layers=0)
    assert cpu_only.verdict == "tight" and cpu_only.gpu is None


def test_an_installed_model_runs_at_most_its_trained_context(tiny_model: Path) -> None:
    info = read_model_info(tiny_model)
    assert info.context_length == 4096
    capped = fit.fit(info, 10_000, memory=(8 * GB, 4 * GB), gpu=None)
    assert capped.n_ctx == 4096 and capped.requested_ctx == 10_000
    assert capped.need == info.ram_estimate(4096)
    assert capped.weights == info.weights_bytes and capped.kv_cache == info.kv_cache_bytes(4096)
    hub_file = fit.fit(info.file_size, 10_000, memory=(8 * GB, 4 * GB), gpu=None)
    assert hub_file.n_ctx == 10_000  # a file on the Hub: its context is not known


def test_the_memory_note_says_the_need_its_parts_and_the_ram(tiny_model: Path) -> None:
    """The note under the context size: the same numbers as the badges."""
    info = read_model_info(tiny_model)
    ram = (16 * GB, 6 * GB)
    at = fit.fit(info, 2048, memory=ram, gpu=None)
    assert at.note() == (
        f"About {human_size(info.ram_estimate(2048))} of memory at 2,048 tokens (the model "
        f"{human_size(info.weights_bytes)}, its KV cache {human_size(info.kv_cache_bytes(2048))})"
        ". This computer has 6.0 GB free of 16.0 GB."
    )
    assert not at.short_of_free
    over = fit.fit(info, 8192, memory=(16 * GB, 1000), gpu=None)
    assert "at 4,096 tokens" in over.note() and "; this model takes at most 4,096." in over.note()
    assert over.short_of_free
    unknown = fit.fit(info, 2048, memory=None, gpu=None)
    assert unknown.note().endswith("KV cache " + human_size(info.kv_cache_bytes(2048)) + ")")
    assert unknown.verdict == "unknown" and not unknown.short_of_free


def fake_nvidia_smi(folder: Path, output: str, code: int = 0) -> None:
    folder.mkdir(exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(os.name == "nt", reason="a shell script stands in for nvidia-smi")
def test_gpu_memory_comes_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert hardware.gpu_memory() is None  # none installed
    fake_nvidia_smi(tmp_path / "bin", "8192, 7000\n81559, 80000\n")
    assert hardware.gpu_memory() == (81559 * 2**20, 80000 * 2**20)  # the largest GPU
    fake_nvidia_smi(tmp_path / "bin", "NVIDIA-SMI has failed to communicate\n", code=9)
    assert hardware.gpu_memory() is None
    fake_nvidia_smi(tmp_path / "bin", "[N/A], [N/A]\n")
    assert hardware.gpu_memory() is None
