"""Interruption (issue 6, item 3): a run cancelled mid-sampling with ComfyUI's own interrupt
(``comfy.model_management.interrupt_current_processing()``; the next comfy op raises
InterruptProcessingException) leaves nothing behind, and the next run equals a fresh run.

The interrupt is triggered from a forward pre-hook on the transformer blocks at a chosen block
call, so it lands at known points: inside the first trial forward, inside a full forward of a
refresh step, inside a reuse step, late in the run."""
from __future__ import annotations

import gc

import pytest
import torch

import harness
from cache_helpers import spy_on_runs, BLOCK_DEFAULTS, LF_DEFAULTS, assert_same, latest_report, pack_module, with_blockcache, with_lfcache

STEPS = 12
SHAPE = (2, 16, 3, 8, 8)


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    return comfy, precisecache_pack


class InterruptAt:
    """Call ComfyUI's interrupt when the n-th transformer block call (1-based) starts."""

    def __init__(self, at_block_call: int):
        import comfy.model_management as mm
        from comfy.ldm.wan.model import WanAttentionBlock
        self.at, self.calls, self.fired, self.mm, self.block_type = at_block_call, 0, False, mm, WanAttentionBlock

    def __enter__(self):
        def hook(module, args):
            if isinstance(module, self.block_type):
                self.calls += 1
                if self.calls == self.at:
                    self.fired = True
                    self.mm.interrupt_current_processing()
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        self.mm.interrupt_current_processing(False)


@pytest.fixture
def run_spy(ready, monkeypatch):
    """Weak references to every PreciseCacheRun created, and to the buffers it held at finish()."""
    return spy_on_runs(ready[1], monkeypatch)


def _flash(comfy, model):
    return with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5), pivotal_ratio=0.5)


@pytest.mark.parametrize("at_block_call", [1, 4, 9, 17])
def test_interrupted_run_leaves_nothing_and_next_run_is_fresh(ready, run_spy, at_block_call):
    comfy, pack = ready
    import comfy.model_management as mm
    runs, buffers = run_spy
    model = comfy.load_model("wan")
    cached = _flash(comfy, model)
    fresh = comfy.sample(cached, "wan", seed=3, steps=STEPS, cfg=5.0, latent=torch.zeros(SHAPE))
    runs_before = latest_report(pack, cached) and pack_module(pack, "nodes.hooks").get_setup(cached).reports.runs
    buffers.clear()
    with InterruptAt(at_block_call) as interrupter:
        with pytest.raises(mm.InterruptProcessingException):
            comfy.sample(cached, "wan", seed=4, steps=STEPS, cfg=5.0, latent=torch.zeros(SHAPE))
    assert interrupter.fired
    report = latest_report(pack, cached)
    assert pack_module(pack, "nodes.hooks").get_setup(cached).reports.runs == runs_before + 1
    assert report.interrupted and report.steps == STEPS
    if at_block_call > 2:
        assert buffers, "the run held no buffers when interrupted: the test would not show a leak"
    gc.collect()
    assert all(r() is None for r in runs), "a PreciseCacheRun survived its (interrupted) run"
    assert all(b() is None for b in buffers), "a cache buffer survived its (interrupted) run"
    options = cached.model_options.get("transformer_options", {})
    assert not any(k in options for k in ("precisecache_run", "precisecache_call", "precisecache_trial"))
    assert not mm.processing_interrupted()
    again = comfy.sample(cached, "wan", seed=3, steps=STEPS, cfg=5.0, latent=torch.zeros(SHAPE))
    assert_same(again, fresh)
    assert not latest_report(pack, cached).interrupted


def _graph(seed, prefix):
    chain = [("PreciseCacheLFCache", {**LF_DEFAULTS, "alpha": 1.5}),
             ("PreciseCacheBlockCache", {**BLOCK_DEFAULTS, "pivotal_ratio": 0.5})]
    return harness.sample_graph("wan", seed=seed, steps=STEPS, cfg=5.0, model_chain=chain,
                                filename_prefix=f"latents/reliability_interrupt_{prefix}")


def test_interrupt_through_the_execution_engine(ready, run_spy):
    """PromptExecutor with ComfyUI's output cache: the patched MODEL is reused by the next prompt
    after an interrupted one, and that prompt equals the same prompt run on a fresh executor."""
    comfy, _ = ready
    runs, _ = run_spy
    reference = comfy.run_graph(_graph(3, "ref"), executor=comfy.new_executor())
    executor = comfy.new_executor()
    comfy.run_graph(_graph(1, "a"), executor=executor)
    with InterruptAt(7) as interrupter:
        with pytest.raises(harness.PromptFailed, match="interrupted"):
            comfy.run_graph(_graph(2, "b"), executor=executor)
    assert interrupter.fired
    gc.collect()
    assert all(r() is None for r in runs)
    result = comfy.run_graph(_graph(3, "c"), executor=executor)
    assert "5" in result.executed and "10" not in result.executed  # sampler ran, patched model came from cache
    assert_same(comfy.load_saved_latent(result.outputs), comfy.load_saved_latent(reference.outputs))
