"""LFCache / BlockCache on a real ComfyUI with tiny models of the real architectures."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from cache_helpers import (assert_same, count_work, latest_report, with_blockcache, with_lfcache)

KINDS = ["wan", "hunyuan", "ltxv"]
STEPS = 12


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    return comfy, precisecache_pack


@pytest.mark.parametrize("kind", KINDS + ["wan_i2v", "wan22"])
def test_alpha_zero_and_all_pivotal_are_bit_identical(ready, kind):
    comfy, pack = ready
    model = comfy.load_model(kind)
    reference = comfy.sample(model, kind, steps=STEPS, cfg=5.0)
    lf_off = with_lfcache(comfy, model, alpha=0.0)
    block_off = with_blockcache(comfy, model, pivotal_ratio=1.0)
    both_off = with_blockcache(comfy, lf_off, pivotal_ratio=1.0)
    for patched in (lf_off, block_off, both_off):
        assert_same(comfy.sample(patched, kind, steps=STEPS, cfg=5.0), reference)
        report = latest_report(pack, patched)
        assert report.skipped_steps == [] and report.blocks_reused == 0
    assert_same(comfy.sample(model, kind, steps=STEPS, cfg=5.0), reference)  # input model untouched


@pytest.mark.parametrize("kind", KINDS)
def test_counts_from_independent_hooks_match_report(ready, kind):
    comfy, pack = ready
    model = comfy.load_model(kind)
    counter = count_work(model)
    try:
        comfy.sample(model, kind, steps=STEPS, cfg=5.0)
        uncached_full, uncached_blocks = counter.full_forwards(), counter.full_block_calls()
        assert counter.trial_forwards() == 0
        counter.entry_sizes.clear()
        counter.block_sizes.clear()
        # alpha > 1 makes the tiny random model skip; the pivotal ratio leaves blocks to reuse
        patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5), pivotal_ratio=0.4)
        comfy.sample(patched, kind, steps=STEPS, cfg=5.0)
    finally:
        counter.close()
    report = latest_report(pack, patched)
    assert uncached_full == STEPS  # cfg > 1: cond and uncond batched in one call per step
    assert report.skipped_steps, "nothing was skipped: the test would not show anything"
    assert counter.full_forwards() == report.full_forwards < uncached_full
    assert counter.trial_forwards() == report.trial_forwards == STEPS
    assert report.full_forwards + report.reused_forwards == uncached_full
    assert counter.full_block_calls() == report.blocks_computed < uncached_blocks
    assert report.blocks_reused > 0
    assert report.blocks_computed + report.blocks_reused == report.full_forwards * report.blocks_per_forward


def _run_sequence(comfy, model, kind, shapes, cfg):
    outputs = []
    for i, shape in enumerate(shapes):
        latent = torch.zeros(shape)
        outputs.append(comfy.sample(model, kind, seed=10 + i, steps=STEPS, cfg=cfg, latent=latent))
    return outputs


FRESH_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, {host_dir!r})
import harness
from cache_helpers import with_blockcache, with_lfcache
comfy = harness.import_comfy({comfyui_dir!r}, {base_dir!r})
comfy.load_pack()
model = comfy.load_model({kind!r})
patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.9), pivotal_ratio=0.5)
out = comfy.sample(patched, {kind!r}, seed={seed}, steps={steps}, cfg={cfg}, latent=torch.zeros({shape!r}))
torch.save(out, {out_path!r})
"""


def test_no_state_leaks_across_runs_and_sizes(ready, comfyui_dir, comfy_base_dir, tmp_path):
    """CFG 5, batch 2, then other frame counts and sizes with the same patched model: every run
    equals the same run made in a fresh process."""
    comfy, _ = ready
    kind = "wan"
    model = comfy.load_model(kind)
    patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.9), pivotal_ratio=0.5)
    shapes = [(2, 16, 5, 16, 16), (1, 16, 3, 8, 12), (2, 16, 5, 16, 16)]
    outputs = _run_sequence(comfy, patched, kind, shapes, cfg=5.0)
    assert all(torch.isfinite(o).all() for o in outputs)
    assert outputs[0].shape == shapes[0] and outputs[1].shape == shapes[1]
    out_path = str(tmp_path / "fresh.pt")
    script = FRESH_SCRIPT.format(host_dir=os.path.dirname(__file__), comfyui_dir=comfyui_dir,
                                 base_dir=comfy_base_dir, kind=kind, seed=11, steps=STEPS, cfg=5.0,
                                 shape=shapes[1], out_path=out_path)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same(outputs[1], torch.load(out_path))


def test_same_patched_model_repeats_exactly(ready):
    """Third run of a sequence equals the first with the same inputs: nothing carried over."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    patched = with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.9), pivotal_ratio=0.5)
    first = comfy.sample(patched, "wan", seed=3, steps=STEPS, cfg=5.0, latent=torch.zeros(2, 16, 5, 16, 16))
    comfy.sample(patched, "wan", seed=4, steps=STEPS, cfg=1.0, latent=torch.zeros(1, 16, 3, 8, 8))
    again = comfy.sample(patched, "wan", seed=3, steps=STEPS, cfg=5.0, latent=torch.zeros(2, 16, 5, 16, 16))
    assert_same(first, again)
    assert latest_report(pack, patched).cache_bytes_peak > 0


def _model_around(model, base_class, network):
    """A clone of ``model`` whose ComfyUI model object is a bare ``base_class`` holding ``network``."""
    fake = model.clone()
    fake.model = base_class.__new__(base_class)
    torch.nn.Module.__init__(fake.model)
    fake.model.diffusion_model = network
    return fake


def test_unsupported_model_is_refused_by_name(ready):
    comfy, _ = ready
    import comfy.model_base as mb

    # a real ComfyUI model class around a network that is not a video DiT
    fake = _model_around(comfy.load_model("wan"), mb.BaseModel, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"does not support the model BaseModel.*Supported: Wan"):
        with_lfcache(comfy, fake)


def test_audio_video_variants_are_refused_by_name(ready):
    """LTX-2 (audio + video) subclasses LTX-Video's network but is refused, naming why."""
    comfy, _ = ready
    from comfy.ldm.lightricks.av_model import LTXAVModel

    model = comfy.load_model("ltxv")
    fake = _model_around(model, type(model.model), LTXAVModel.__new__(LTXAVModel))
    with pytest.raises(ValueError, match=r"LTXAVModel \(LTX-2 generates audio and video together\).*Supported"):
        with_blockcache(comfy, fake)


@pytest.mark.parametrize("variant", ["HunyuanVideo15_SR_Distilled", "HunyuanImage21"])
def test_untested_variants_of_a_supported_network_are_refused_by_name(ready, variant):
    """Same HunyuanVideo network, other ComfyUI model classes: not covered by the tests, refused."""
    comfy, _ = ready
    import comfy.model_base as mb

    model = comfy.load_model("hunyuan")
    fake = _model_around(model, getattr(mb, variant), model.model.diffusion_model)
    with pytest.raises(ValueError, match=rf"does not support the model {variant} \(HunyuanVideo network\): "
                                         rf"this variant is not covered"):
        with_lfcache(comfy, fake)


def test_one_decision_per_step_when_cond_and_uncond_run_as_separate_calls(ready):
    """Text lengths 7 and 11 cannot be batched (ComfyUI pads at most 4x), so each step makes two
    denoiser calls: one trial per step, both calls follow the step's decision."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    positive = comfy.conditioning("wan", 1, "positive", length=7)
    negative = comfy.conditioning("wan", 1, "negative", length=11)

    def run(m):
        return comfy.sample(m, "wan", steps=STEPS, cfg=5.0, positive=positive, negative=negative)

    reference = run(model)
    assert_same(run(with_lfcache(comfy, model, alpha=0.0)), reference)
    patched = with_lfcache(comfy, model, alpha=1.5)
    counter = count_work(patched)
    try:
        run(patched)
    finally:
        counter.close()
    report = latest_report(pack, patched)
    assert report.skipped_steps, "nothing was skipped: the test would not show anything"
    assert counter.trial_forwards() == report.trial_forwards == STEPS  # one trial per step, not per call
    assert counter.full_forwards() == report.full_forwards == 2 * (STEPS - len(report.skipped_steps))
    assert report.reused_forwards == 2 * len(report.skipped_steps)


def test_blockcache_chains_to_a_block_patch_installed_before_it(ready):
    """Another node's patch on a block keeps running under BlockCache (chained, not overwritten),
    and with BlockCache unable to act the output equals the patched model's output."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    calls = []

    def other_patch(args, extra):  # a foreign block patch: runs the block, then nudges its output
        calls.append(1)
        out = extra["original_block"](args)
        return {"img": out["img"] * 1.01}

    foreign = model.clone()
    foreign.set_model_patch_replace(other_patch, "dit", "double_block", 0)
    reference = comfy.sample(foreign, "wan", steps=STEPS, cfg=5.0)
    calls_alone = len(calls)
    calls.clear()
    assert_same(comfy.sample(with_blockcache(comfy, foreign, pivotal_ratio=1.0), "wan", steps=STEPS, cfg=5.0),
                reference)
    assert len(calls) == calls_alone == STEPS
    calls.clear()
    patched = with_blockcache(comfy, foreign, pivotal_ratio=0.0)  # every block reusable
    comfy.sample(patched, "wan", steps=STEPS, cfg=5.0)
    report = latest_report(pack, patched)
    assert report.blocks_reused > 0
    # the foreign patch runs exactly when block 0 is computed (BlockCache counts it as computed)
    assert 0 < len(calls) < STEPS
