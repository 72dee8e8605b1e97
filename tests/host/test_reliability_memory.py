"""Bounded cache memory (issue 6, item 2): BlockCache's memory budget is respected (fewer blocks
reused, said once, never more memory), residual_location works, and every buffer is released at
the end of a run, also when the run fails. The 50-run memory figures come from
scripts/bench_memory.py (not a timed test)."""
from __future__ import annotations

import gc
import logging

import pytest
import torch

from cache_helpers import spy_on_runs, assert_same, latest_report, with_blockcache, with_lfcache

STEPS = 12
SHAPE = (2, 16, 3, 8, 8)


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    return comfy, precisecache_pack


def _sample(comfy, model, seed=3):
    return comfy.sample(model, "wan", seed=seed, steps=STEPS, cfg=5.0, latent=torch.zeros(SHAPE))


def test_budget_caps_residual_memory_reuses_fewer_blocks_and_says_so_once(ready, caplog):
    comfy, pack = ready
    model = comfy.load_model("wan")
    unbounded = with_blockcache(comfy, model, pivotal_ratio=0.0)
    _sample(comfy, unbounded)
    full = latest_report(pack, unbounded)
    assert full.cache_bytes_peak > 0 and full.blocks_reused > 0 and full.block_budget_refusals == 0
    budget_mb = full.cache_bytes_peak / 2 / 2**20  # half of what the run wants
    bounded = with_blockcache(comfy, model, pivotal_ratio=0.0, memory_budget_mb=budget_mb)
    with caplog.at_level(logging.INFO):
        out = _sample(comfy, bounded)
    report = latest_report(pack, bounded)
    assert 0 < report.cache_bytes_peak <= budget_mb * 2**20
    assert 0 < report.blocks_reused < full.blocks_reused
    assert report.block_budget_refusals > 0
    assert sum("memory budget" in n for n in report.notes) == 1
    budget_lines = [r for r in caplog.records if "memory budget" in r.getMessage()]
    assert len(budget_lines) == 1 and budget_lines[0].levelno == logging.WARNING
    assert torch.isfinite(out).all()


def test_budget_below_one_residual_means_no_block_reuse_and_uncached_output(ready):
    comfy, pack = ready
    model = comfy.load_model("wan")
    reference = _sample(comfy, model)
    tiny_budget = with_blockcache(comfy, model, pivotal_ratio=0.0, memory_budget_mb=0.001)  # ~1 KB
    assert_same(_sample(comfy, tiny_budget), reference)
    report = latest_report(pack, tiny_budget)
    assert report.blocks_reused == 0 and report.cache_bytes_peak == 0 and report.block_budget_refusals > 0


def test_residual_location_cpu_gives_the_same_run(ready):
    """On this CPU host both locations keep residuals in host memory: the runs must be identical
    (on a GPU, 'cpu' keeps them in pinned host memory and copies them back non-blocking)."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    outs = []
    for location in ("gpu", "cpu"):
        patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5), pivotal_ratio=0.4,
                                  residual_location=location)
        outs.append(_sample(comfy, patched))
        assert latest_report(pack, patched).blocks_reused > 0
    assert_same(outs[0], outs[1])


@pytest.fixture
def buffer_spy(ready, monkeypatch):
    """Weak references to every PreciseCacheRun and to every buffer it held when finishing."""
    return spy_on_runs(ready[1], monkeypatch)


def test_buffers_are_released_after_a_completed_run(ready, buffer_spy):
    comfy, pack = ready
    runs, buffers = buffer_spy
    model = comfy.load_model("wan")
    patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5), pivotal_ratio=0.4)
    _sample(comfy, patched)
    assert len(runs) == 1 and len(buffers) >= 3  # outputs, last trial, block residuals
    assert latest_report(pack, patched).cache_bytes_peak > 0
    # no gc.collect(): the buffers must go with the run's last reference, not wait for the cycle collector
    assert all(b() is None for b in buffers), "a cache buffer outlived its run"
    gc.collect()
    assert all(r() is None for r in runs)


def test_buffers_are_released_when_the_run_fails_and_the_next_run_is_fresh(ready, buffer_spy):
    comfy, pack = ready
    runs, buffers = buffer_spy
    model = comfy.load_model("wan")
    patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5), pivotal_ratio=0.4)
    fresh = _sample(comfy, patched)
    runs.clear()
    buffers.clear()
    calls = []

    def explode(module, args):
        calls.append(1)
        if len(calls) == 11:  # mid-run, after a few steps filled the caches
            raise RuntimeError("simulated failure inside the model")

    block = model.model.diffusion_model.blocks[0]
    handle = block.register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="simulated failure") as info:
            _sample(comfy, patched, seed=8)
    finally:
        handle.remove()
    del info
    report = latest_report(pack, patched)
    assert report.interrupted and buffers
    gc.collect()
    assert all(b() is None for b in buffers) and all(r() is None for r in runs)
    assert_same(_sample(comfy, patched), fresh)


def test_repeated_runs_do_not_accumulate_tensors(ready):
    """Live tensor objects after 1 and after 8 more runs with the same patched model are the same."""
    comfy, _ = ready
    model = comfy.load_model("wan")
    patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5), pivotal_ratio=0.4)

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    _sample(comfy, patched)
    after_one = live_tensors()
    for seed in range(8):
        _sample(comfy, patched, seed=seed)
    assert live_tensors() == after_one
