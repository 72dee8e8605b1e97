"""Trial-guided BlockCache on tiny models of ComfyUI's own classes (Wan: blocks not in place;
HunyuanVideo and LTX-Video: blocks that update their input in place), checked with forward hooks on
the real block modules that do not use the pack's own bookkeeping:

* off (τ 0, LFCache never skipping): bit-identical to uncached, though every trial records residuals;
* a block refreshed alone stores out − in of its own full-size call;
* a block reused at a step had a trial residual that changed by less than τ (relative to the block's
  trial input) since the step its residual was stored, and a block recomputed there (with a stored
  residual) one that changed by τ or more — both from the trial calls' inputs and outputs seen by the
  hooks;
* the error vs uncached is below that of dropping the same blocks;
* without LFCache on the model: the static rule, with a note, identical to mode 'static'.
"""
from __future__ import annotations

import pytest
import torch

from cache_helpers import (BLOCK_DEFAULTS, assert_same, drop_reused_blocks, latest_report, pack_module, relative_error, spy_on_runs,
                           with_blockcache, with_lfcache)

KINDS = ["wan", "hunyuan", "ltxv"]
STEPS = 20
THRESHOLDS = {"wan": 0.2, "hunyuan": 0.26, "ltxv": 0.2}
"""τ per tiny model, about the median change of its blocks' trial residuals from one step to the next
relative to their input (these random-weight networks: 0.13–0.29 (Wan), 0.16–0.43 (HunyuanVideo),
0.15–0.26 (LTX-Video) at 20 steps), so that some blocks are reused and some refreshed."""
NEVER_SKIP = 1e-6
"""LFCache α this small never skips (a step skips when its Δ < α·Δmax), but its trial runs every step."""


def _guided(comfy, model, threshold, alpha=NEVER_SKIP, **block):
    patched = with_lfcache(comfy, model, alpha=alpha)
    return with_blockcache(comfy, patched, mode="trial_guided", change_threshold=threshold,
                           **{"pivotal_ratio": 0.0, "refresh_interval": 20, **block})


def _blocks(pack, model):
    """(patch key → block module), in network order, from the pack's family adapter."""
    support = pack_module(pack, "nodes.models").model_support(model)
    dm = model.model.diffusion_model
    return {key: getattr(dm, spec.module_list)[key[1]] for key, spec in support.blocks.items()}


def _io_hooks(modules: dict):
    """Every call of every block: (key, tokens, input before it ran, output) — the input cloned in a
    pre-hook, so in-place blocks do not overwrite it. ``img`` only (the tensor the trial measures)."""
    calls = []
    handles = []
    for key, module in modules.items():
        def pre(mod, args, kwargs, key=key):
            x = kwargs["img"] if "img" in kwargs else args[0]
            calls.append([key, x.shape[1], x.detach().clone(), None])

        def post(mod, args, kwargs, output, key=key):
            out = output[0] if isinstance(output, tuple) else output
            assert calls[-1][0] == key
            calls[-1][3] = out.detach().clone()

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True))
    return calls, handles


def _per_step(calls, keys):
    """Split the hooks' calls into steps (every step starts with its trial: fewer tokens than the
    block's full-size calls). Returns per step: {key: trial residual}, keys computed at full size."""
    full_tokens = {}
    for key, tokens, _, _ in calls:
        full_tokens[key] = max(full_tokens.get(key, 0), tokens)
    steps = []
    for key, tokens, before, after in calls:
        trial = tokens < full_tokens[key]
        if trial and key == keys[0]:
            steps.append({"trial": {}, "computed": []})
        if trial:
            steps[-1]["trial"][key] = ((after - before).float(), before.float().norm())
        else:
            steps[-1]["computed"].append(key)
    return steps


def _change(now, ref):
    """The trial residual's change since ``ref``, relative to the block's trial input."""
    residual, input_norm = now
    return ((residual - ref).norm() / input_norm).item()


@pytest.mark.parametrize("kind", KINDS)
def test_off_is_bit_identical_to_uncached_while_every_trial_records(ready, kind, monkeypatch):
    comfy, pack = ready
    model = comfy.load_model(kind)
    reference = comfy.sample(model, kind, steps=STEPS, cfg=5.0)
    runs, _ = spy_on_runs(pack, monkeypatch)
    recorded = []
    guidance_mod = pack_module(pack, "precisecache_core.block_guidance")
    original = guidance_mod.BlockGuidance.close_trial

    def spy_close(self, step):
        recorded.append(len(self._trial))
        original(self, step)

    monkeypatch.setattr(guidance_mod.BlockGuidance, "close_trial", spy_close)
    patched = _guided(comfy, model, threshold=0.0)
    out = comfy.sample(patched, kind, steps=STEPS, cfg=5.0)
    report = latest_report(pack, patched)
    assert report.block_mode == "trial_guided" and report.trial_forwards == STEPS and report.blocks_reused == 0
    assert recorded == [len(_blocks(pack, model))] * STEPS  # every block's trial residual, every step
    assert_same(out, reference)


@pytest.mark.parametrize("kind", KINDS)
def test_reuse_and_refresh_follow_the_trial_residuals_seen_by_independent_hooks(ready, kind, monkeypatch):
    comfy, pack = ready
    model = comfy.load_model(kind)
    modules = _blocks(pack, model)
    keys = list(modules)
    threshold = THRESHOLDS[kind]
    block_cache_mod = pack_module(pack, "precisecache_core.block_cache")
    runs, _ = spy_on_runs(pack, monkeypatch)
    calls, handles = _io_hooks(modules)
    checked = []  # (step, block) of every stored residual checked against its own call's out − in
    original_record = block_cache_mod.BlockResidualCache._record

    def checking_record(self, state, block, args, out, snapshot):
        original_record(self, state, block, args, out, snapshot)
        key, tokens, before, after = calls[-1]
        assert key == block
        stored = state.residuals[(block, "img")]
        assert torch.allclose(stored.float(), (after - before).float(), atol=1e-5, rtol=1e-4), \
            f"{kind} {block}: stored residual differs from out - in by {(stored - (after - before)).abs().max():.3g}"
        checked.append((runs[-1]().slots.step, block))

    monkeypatch.setattr(block_cache_mod.BlockResidualCache, "_record", checking_record)
    try:
        patched = _guided(comfy, model, threshold)
        comfy.sample(patched, kind, steps=STEPS, cfg=5.0)
    finally:
        for h in handles:
            h.remove()
    report = latest_report(pack, patched)
    steps = _per_step(calls, keys)
    assert len(steps) == STEPS and not report.skipped_steps and all(len(s["trial"]) == len(keys) for s in steps)
    reused_at = [[k for k in keys if k not in s["computed"]] for s in steps]
    # the report's per-block map says the same as the hooks
    assert [[bool(n) for n in row] for row in report.block_reuse_map] == \
        [[k in r for k in keys] for r in reused_at]
    # reuse iff the trial residual moved less than τ since the block's residual was stored
    reference, decided = {}, {"reused": 0, "refreshed": 0}
    for i, s in enumerate(steps):
        for k in keys:
            if k in reference:
                change = _change(s["trial"][k], reference[k])
                if k in reused_at[i]:
                    assert change < threshold * (1 + 1e-4), (kind, i, k, change)
                    decided["reused"] += 1
                else:
                    assert change >= threshold * (1 - 1e-4), (kind, i, k, change)
                    decided["refreshed"] += 1
            if k in s["computed"]:
                reference[k] = s["trial"][k][0]
    assert decided["reused"] > 0 and decided["refreshed"] > 0, decided
    # a block refreshed alone (another block of the same forward reused) stored its own out − in
    alone = [(i, b) for i, b in checked if reused_at[i]]
    assert alone, checked


@pytest.mark.parametrize("kind", KINDS)
def test_error_is_below_dropping_the_reused_blocks(ready, kind, monkeypatch):
    comfy, pack = ready
    model = comfy.load_model(kind)
    reference = comfy.sample(model, kind, steps=STEPS, cfg=5.0)
    patched = _guided(comfy, model, threshold=0.9 * THRESHOLDS[kind])
    cached = comfy.sample(patched, kind, steps=STEPS, cfg=5.0)
    reused = latest_report(pack, patched).blocks_reused
    assert reused > 0
    drop_reused_blocks(pack, monkeypatch)
    dropped = comfy.sample(patched, kind, steps=STEPS, cfg=5.0)
    err = lambda a: relative_error(a, reference)
    assert torch.isfinite(cached).all()
    assert err(dropped) > 1e-3, "dropping blocks changed nothing: the test would show nothing"
    assert err(cached) < 0.6 * err(dropped), f"{kind}: trial-guided {err(cached):.4f} vs dropped {err(dropped):.4f}"


def test_without_lfcache_trial_guided_is_the_static_rule_with_a_note(ready):
    comfy, pack = ready
    model = comfy.load_model("wan")
    static = with_blockcache(comfy, model, mode="static", pivotal_ratio=0.5, refresh_interval=2)
    guided = with_blockcache(comfy, model, mode="trial_guided", pivotal_ratio=0.5, refresh_interval=2)
    out_static = comfy.sample(static, "wan", steps=STEPS, cfg=5.0)
    out_guided = comfy.sample(guided, "wan", steps=STEPS, cfg=5.0)
    report = latest_report(pack, guided)
    assert report.block_mode == "static" and report.blocks_reused > 0
    assert any("trial_guided needs LFCache" in note for note in report.notes), report.notes
    assert_same(out_guided, out_static)


def test_chains_to_a_block_patch_installed_before_it_in_the_trial_too(ready):
    """A foreign patch on block 0 (runs the block, nudges its output) keeps running under trial-guided
    BlockCache: in every trial forward (whose residual then includes the nudge) and whenever block 0 is
    computed at full size; with τ 0 the output equals the foreign-patched model's."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    calls = []

    def other_patch(args, extra):
        calls.append(args["img"].shape[1])
        out = extra["original_block"](args)
        return {"img": out["img"] * 1.01}

    foreign = model.clone()
    foreign.set_model_patch_replace(other_patch, "dit", "double_block", 0)
    reference = comfy.sample(foreign, "wan", steps=STEPS, cfg=5.0)
    calls.clear()
    assert_same(comfy.sample(_guided(comfy, foreign, threshold=0.0), "wan", steps=STEPS, cfg=5.0), reference)
    full = max(calls)
    assert sum(1 for n in calls if n < full) == STEPS and sum(1 for n in calls if n == full) == STEPS
    calls.clear()
    patched = _guided(comfy, foreign, threshold=THRESHOLDS["wan"])
    comfy.sample(patched, "wan", steps=STEPS, cfg=5.0)
    report = latest_report(pack, patched)
    assert report.reused_per_block[0] > 0
    assert sum(1 for n in calls if n < full) == STEPS
    assert sum(1 for n in calls if n == full) == report.block_calls_per_block[0] - report.reused_per_block[0]


def test_node_refuses_bad_mode_and_threshold_by_name(ready):
    comfy, pack = ready
    node = comfy.nodes.NODE_CLASS_MAPPINGS["PreciseCacheBlockCache"]
    # before a prompt runs, ComfyUI checks both against the schema (our validate_inputs does not take them)
    optional = node.INPUT_TYPES()["optional"]
    assert optional["mode"][1]["options"] == ["static", "trial_guided"]
    assert (optional["change_threshold"][1]["min"], optional["change_threshold"][1]["max"]) == (0.0, 2.0)
    # the node's own config builder refuses them by name
    build = pack_module(pack, "nodes.blockcache_node").config_from_inputs
    inputs = {k: v for k, v in BLOCK_DEFAULTS.items() if k != "mode"}
    assert build(**inputs, mode="trial_guided", change_threshold=0.05).change_threshold == 0.05
    with pytest.raises(ValueError, match=r"change_threshold = 2.5 is out of range: allowed \[0.0, 2.0\]"):
        build(**inputs, mode="trial_guided", change_threshold=2.5)
    with pytest.raises(ValueError, match=r"mode = 'dynamic' is not allowed: choose one of .*trial_guided"):
        build(**inputs, mode="dynamic")


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    return comfy, precisecache_pack
