"""Helpers for host tests of the cache nodes: patching through our nodes, and counting the real
work of a run with hooks that do not rely on our own statistics."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch

LF_DEFAULTS = dict(preset="custom", speed_target=0.0, alpha=0.5, trial_downsample_t=2, trial_downsample_h=4, trial_downsample_w=4,
                   lowpass_radius=0.2, start_percent=0.0, end_percent=1.0)
BLOCK_DEFAULTS = dict(pivotal_ratio=0.4, refresh_interval=3, start_percent=0.0, end_percent=1.0, mode="static")
"""The paper's static rule (the tests written for it); the node's own default is trial_guided."""


def node(comfy, class_type):
    return comfy.nodes.NODE_CLASS_MAPPINGS[class_type]


def with_lfcache(comfy, model, **overrides):
    """Run our LFCache node's execute on ``model`` (node defaults, ``overrides`` on top)."""
    return node(comfy, "PreciseCacheLFCache").execute(model, **{**LF_DEFAULTS, **overrides}).args[0]


def with_blockcache(comfy, model, **overrides):
    return node(comfy, "PreciseCacheBlockCache").execute(model, **{**BLOCK_DEFAULTS, **overrides}).args[0]


def pack_module(pack, dotted: str):
    """A submodule of our pack as ComfyUI imported it (e.g. 'nodes.hooks')."""
    return sys.modules[f"{pack.module.__name__}.{dotted}"]


def latest_report(pack, model):
    return pack_module(pack, "nodes.hooks").get_setup(model).reports.latest


def _entry_module(diffusion_model):
    for name in ("patch_embedding", "img_in", "patchify_proj"):
        if hasattr(diffusion_model, name):
            return getattr(diffusion_model, name)
    raise AssertionError(f"no known entry module on {type(diffusion_model).__name__}")


def _block_modules(diffusion_model):
    for names in (("blocks",), ("double_blocks", "single_blocks"), ("transformer_blocks",)):
        if all(hasattr(diffusion_model, n) for n in names):
            return [b for n in names for b in getattr(diffusion_model, n)]
    raise AssertionError(f"no known block list on {type(diffusion_model).__name__}")


@dataclass
class WorkCounter:
    """Counts forwards of the real network (entry layer calls) and of its transformer blocks.

    Calls are split into full size and trial size by the number of elements of their input: the
    largest seen in a run is the full size."""

    entry_sizes: list[int] = field(default_factory=list)
    block_sizes: list[tuple[int, int]] = field(default_factory=list)
    """(block index, input elements) per block call."""
    handles: list = field(default_factory=list)

    def full_forwards(self) -> int:
        top = max(self.entry_sizes, default=0)
        return sum(1 for s in self.entry_sizes if s == top)

    def trial_forwards(self) -> int:
        top = max(self.entry_sizes, default=0)
        return sum(1 for s in self.entry_sizes if s < top)

    def work(self) -> float:
        """The run's work in full forwards: Σ entry-layer input elements ÷ the largest (a trial on
        1/32 of the tokens of one stream of a batched cond+uncond call counts 1/64)."""
        top = max(self.entry_sizes)
        return sum(size / top for size in self.entry_sizes)

    def full_block_calls(self) -> int:
        top: dict[int, int] = {}
        for block, size in self.block_sizes:
            top[block] = max(top.get(block, 0), size)
        return sum(1 for block, size in self.block_sizes if size == top[block])

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def count_work(model) -> WorkCounter:
    """Attach counting hooks to the network behind a ModelPatcher (remove with ``.close()``)."""
    diffusion_model = model.model.diffusion_model
    counter = WorkCounter()

    def on_entry(module, inputs):
        counter.entry_sizes.append(int(inputs[0].numel()))

    def on_block(index):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs.get("img", kwargs.get("x"))
            counter.block_sizes.append((index, int(x.numel())))
        return hook

    counter.handles.append(_entry_module(diffusion_model).register_forward_pre_hook(on_entry))
    for index, block in enumerate(_block_modules(diffusion_model)):
        counter.handles.append(block.register_forward_pre_hook(on_block(index), with_kwargs=True))
    return counter


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.equal(a, b), f"max abs difference {(a.float() - b.float()).abs().max().item()}"


def spy_on_runs(pack, monkeypatch):
    """Weak references to every PreciseCacheRun created from now on, and to every buffer it held
    when finishing (step-cache outputs, the last trial, block residuals). Returns (runs, buffers)."""
    import weakref

    hooks = pack_module(pack, "nodes.hooks")
    runs, buffers = [], []

    class SpyRun(hooks.PreciseCacheRun):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            runs.append(weakref.ref(self))

        def finish(self, interrupted=False):
            buffers.extend(weakref.ref(t) for t in self.step_cache.tensors())
            policy = self.policy
            for trial in ((policy._prev_trial, policy._reference) if policy is not None else ()):
                if trial is not None:
                    buffers.append(weakref.ref(trial))
            if self.blocks is not None:
                buffers.extend(weakref.ref(t) for s in self.blocks._slots.values() for t in s.residuals.values())
            return super().finish(interrupted)

    monkeypatch.setattr(hooks, "PreciseCacheRun", SpyRun)
    return runs, buffers


def relative_error(a: torch.Tensor, reference: torch.Tensor) -> float:
    """‖a − reference‖₂ / ‖reference‖₂ (in float32)."""
    return ((a.float() - reference.float()).norm() / reference.float().norm()).item()


def drop_reused_blocks(pack, monkeypatch) -> None:
    """From now on, a block that BlockCache would answer from its stored residual is skipped instead
    (its input passed on unchanged): the error a cache that drops blocks would make, to compare with."""
    block_cache_mod = pack_module(pack, "precisecache_core.block_cache")

    def drop(self, state, block, args):
        names = [n for (b, n) in state.residuals if b == block]
        return {n: args[n] for n in names} if names else None

    monkeypatch.setattr(block_cache_mod.BlockResidualCache, "_reuse", drop)


def spy_trials(pack, monkeypatch) -> list[dict]:
    """Record every trial forward's inputs: per call a dict with the full call's ``args`` / ``kwargs``,
    the trial's ``targs`` / ``tkwargs`` and the ``factors`` it was made with."""
    hooks = pack_module(pack, "nodes.hooks")
    calls = []
    original = hooks.trial_call

    def spy(family, args, kwargs, factors, operator, trial_options):
        targs, tkwargs = original(family, args, kwargs, factors, operator, trial_options)
        calls.append({"args": args, "kwargs": kwargs, "targs": targs, "tkwargs": tkwargs, "factors": factors})
        return targs, tkwargs

    monkeypatch.setattr(hooks, "trial_call", spy)
    return calls
