"""Every sampling path against an uncached run (issue 6, item 1).

For each path: with caching configured but unable to act (alpha 0, pivotal_ratio 1.0) the output is
bit-identical to the uncached run (the hooks are transparent on that path); with caching acting,
decisions and counts are per sampler step, not per model call, and the work counted by independent
hooks on the network matches the report. Random-weight tiny models say nothing about quality, so
no quality threshold is asserted here."""
from __future__ import annotations

import os

import pytest
import torch

from cache_helpers import assert_same, count_work, latest_report, with_blockcache, with_lfcache

STEPS = 12
CFG = 5.0
EXPERT_LOW = "tiny_wan21_t2v_expert_low.safetensors"


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    from safetensors.torch import save_file
    import harness
    import tiny_models as tm
    path = os.path.join(harness.diffusion_models_dir(comfy.base_dir), EXPERT_LOW)
    if not os.path.exists(path):  # a second Wan with other weights: Wan 2.2's low-noise expert
        sd, metadata = tm.tiny_state_dict("wan", seed=1)
        save_file(sd, path, metadata=metadata)
    return comfy, precisecache_pack


def _off(comfy, model):
    return with_blockcache(comfy, with_lfcache(comfy, model, alpha=0.0), pivotal_ratio=1.0)


def _on(comfy, model, **window):
    """LFCache alpha 1.5 (the random-weight model skips often) + BlockCache 40 % pivotal, same window."""
    return with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5, **window), pivotal_ratio=0.4, **window)


def _conds(comfy, shape=(1, 16, 3, 8, 8)):
    return comfy.conditioning("wan", 1, "positive", latent_shape=shape), \
        comfy.conditioning("wan", 1, "negative", latent_shape=shape)


def _ksa(comfy, model, latent, start, end, steps=20, add_noise=True, leftover=True, sampler="euler", seed=5):
    pos, neg = _conds(comfy)
    out = comfy.nodes.KSamplerAdvanced().sample(
        model, "enable" if add_noise else "disable", seed, steps, CFG, sampler, "simple", pos, neg,
        {"samples": latent}, start, end, "enable" if leftover else "disable")
    return out[0]["samples"]


def _custom(comfy, model, sigmas, sampler="euler", seed=0):
    pos, neg = _conds(comfy)
    guider = comfy.node("CFGGuider").execute(model, pos, neg, CFG).args[0]
    sampler_obj = comfy.node("KSamplerSelect").execute(sampler).args[0]
    noise = comfy.node("RandomNoise").execute(seed).args[0]
    out = comfy.node("SamplerCustomAdvanced").execute(noise, guider, sampler_obj, sigmas,
                                                      {"samples": torch.zeros(1, 16, 3, 8, 8)}).args[0]
    return out["samples"]


def _check_counts(report, counter, uncached_calls, steps):
    """Per-step decisions and per-call counts, from the report and from independent hooks."""
    assert report.steps == steps
    assert report.trial_forwards == len(report.lfd) <= steps  # one trial + decision per step, not per call
    assert report.full_forwards + report.reused_forwards == uncached_calls
    assert counter.full_forwards() == report.full_forwards
    assert counter.trial_forwards() == report.trial_forwards
    assert report.skipped_steps, "nothing was skipped: the test would not show anything"
    assert all(0 <= i < steps for i in report.skipped_steps)


# -- KSampler with one and two model calls per step ------------------------------------------------
@pytest.mark.parametrize("sampler, calls", [("euler", STEPS), ("dpmpp_2m", STEPS), ("heun", 2 * STEPS - 1),
                                            ("dpmpp_2s_ancestral", 2 * STEPS - 1)])
def test_ksampler_paths(ready, sampler, calls):
    comfy, pack = ready
    model = comfy.load_model("wan")
    counter = count_work(model)
    try:
        reference = comfy.sample(model, "wan", steps=STEPS, cfg=CFG, sampler=sampler)
        assert len(counter.entry_sizes) == calls  # cond+uncond batched: one network call per model call
        assert_same(comfy.sample(_off(comfy, model), "wan", steps=STEPS, cfg=CFG, sampler=sampler), reference)
        counter.entry_sizes.clear()
        cached = _on(comfy, model)
        out = comfy.sample(cached, "wan", steps=STEPS, cfg=CFG, sampler=sampler)
        report = latest_report(pack, cached)
        _check_counts(report, counter, calls, STEPS)
    finally:
        counter.close()
    assert torch.isfinite(out).all() and not torch.equal(out, reference)
    # one decision per sampler step: every step of the schedule that the sampler evaluates
    assert len(report.lfd) == STEPS
    assert_same(comfy.sample(cached, "wan", steps=STEPS, cfg=CFG, sampler=sampler), out)


# -- KSamplerAdvanced and Wan 2.2's two experts ----------------------------------------------------
def test_ksampler_advanced_start_end_steps(ready):
    comfy, pack = ready
    model = comfy.load_model("wan")
    latent = torch.zeros(1, 16, 3, 8, 8)
    reference = _ksa(comfy, model, latent, 4, 16)
    assert_same(_ksa(comfy, _off(comfy, model), latent, 4, 16), reference)
    cached = _on(comfy, model)
    counter = count_work(model)
    try:
        out = _ksa(comfy, cached, latent, 4, 16)
        _check_counts(latest_report(pack, cached), counter, 12, 12)
    finally:
        counter.close()
    assert torch.isfinite(out).all()


def _wan22(comfy, high, low, latent):
    mid = _ksa(comfy, high, latent, 0, 10, add_noise=True, leftover=True)
    return mid, _ksa(comfy, low, mid, 10, 10000, add_noise=False, leftover=False)


def test_wan22_two_experts_windows_are_on_the_whole_schedule(ready):
    """High-noise expert runs steps 0-9 of 20, low-noise expert steps 10-19, each with its own
    patched model. start_percent 0.6 means 60 % of the *whole* schedule: the high-noise expert may
    skip nothing (and runs no trial), the low-noise one only from global step 12 on."""
    comfy, pack = ready
    import comfy.samplers as cs
    high, low = comfy.load_model("wan"), comfy.load_model(EXPERT_LOW)
    latent = torch.zeros(1, 16, 3, 8, 8)
    ref_mid, reference = _wan22(comfy, high, low, latent)
    assert_same(_wan22(comfy, _off(comfy, high), _off(comfy, low), latent)[1], reference)

    high_c, low_c = _on(comfy, high, start_percent=0.6), _on(comfy, low, start_percent=0.6)
    mid, out = _wan22(comfy, high_c, low_c, latent)
    report_high, report_low = latest_report(pack, high_c), latest_report(pack, low_c)
    assert report_high is not report_low and report_high.steps == report_low.steps == 10
    # high-noise expert: nothing in its range lies in the window -> untouched, no trial cost
    assert_same(mid, ref_mid)
    assert report_high.skipped_steps == [] and report_high.trial_forwards == 0 and report_high.blocks_reused == 0
    assert any("whole denoising schedule" in n for n in report_high.notes)
    # low-noise expert: skips, but only at steps whose whole-schedule sigma is inside the window
    sigmas = cs.calculate_sigmas(low.get_model_object("model_sampling"), "simple", 20).tolist()
    window_start = low.get_model_object("model_sampling").percent_to_sigma(0.6)
    assert report_low.skipped_steps
    assert all(sigmas[10 + i] <= window_start * (1 + 1e-5) for i in report_low.skipped_steps)
    assert min(report_low.skipped_steps) >= 2  # global step 12 = 60 % of 20 steps ("simple" schedule)
    # the same alpha on the high-noise expert with the default window does skip: the window is what stopped it
    high_all = _on(comfy, high)
    _ksa(comfy, high_all, latent, 0, 10)
    assert latest_report(pack, high_all).skipped_steps
    # the low-noise expert's run depends on nothing but its input: rerun it alone on the same latent
    assert_same(_ksa(comfy, low_c, mid, 10, 10000, add_noise=False, leftover=False), out)
    assert latest_report(pack, low_c).skipped_steps == report_low.skipped_steps


def test_one_patched_model_split_over_two_samplers_starts_fresh_in_each(ready):
    """The same patched model in both KSamplerAdvanced halves: the second half equals the second
    half run alone (after unrelated runs), so nothing of the first half's state is used."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    cached = _on(comfy, model)
    latent = torch.zeros(1, 16, 3, 8, 8)
    mid, out = _wan22(comfy, cached, cached, latent)
    assert latest_report(pack, cached).steps == 10
    comfy.sample(cached, "wan", seed=9, steps=STEPS, cfg=1.0, latent=torch.zeros(2, 16, 5, 16, 16))
    assert_same(_ksa(comfy, cached, mid, 10, 10000, add_noise=False, leftover=False), out)


# -- SamplerCustomAdvanced with custom sigmas --------------------------------------------------
def test_custom_sigmas_partial_and_uneven(ready):
    comfy, pack = ready
    model = comfy.load_model("wan")
    sigmas = comfy.node("ManualSigmas").execute("0.95, 0.93, 0.9, 0.86, 0.8, 0.75, 0.7, 0.6, 0.5, 0.42, 0.3, "
                                                "0.2, 0.1, 0.0").args[0]
    reference = _custom(comfy, model, sigmas)
    assert_same(_custom(comfy, _off(comfy, model), sigmas), reference)
    cached = _on(comfy, model)
    counter = count_work(model)
    try:
        out = _custom(comfy, cached, sigmas)
        _check_counts(latest_report(pack, cached), counter, 13, 13)
    finally:
        counter.close()
    assert torch.isfinite(out).all()


def test_custom_sigmas_with_a_repeated_sigma(ready):
    """A repeated sigma (σ_i = σ_{i+1}): both steps' calls share one decision (one trial), counts add up."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    sigmas = torch.tensor([1.0, 0.97, 0.94, 0.9, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.35, 0.2, 0.0])
    reference = _custom(comfy, model, sigmas)
    assert_same(_custom(comfy, _off(comfy, model), sigmas), reference)
    cached = _on(comfy, model)
    out = _custom(comfy, cached, sigmas)
    report = latest_report(pack, cached)
    assert torch.isfinite(out).all()
    assert report.steps == 12 and report.trial_forwards == 11
    assert report.full_forwards + report.reused_forwards == 12


def test_increasing_sigmas_are_not_cached(ready):
    """FlipSigmas (unsampling): caching turns itself off for the run, with a note; output as uncached."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    base = comfy.node("BasicScheduler").execute(model, "simple", STEPS, 1.0).args[0]
    flipped = comfy.node("FlipSigmas").execute(base.clone()).args[0]
    reference = _custom(comfy, model, flipped)
    cached = _on(comfy, model)
    out = _custom(comfy, cached, flipped)
    torch.testing.assert_close(out, reference, rtol=0, atol=0, equal_nan=True)
    report = latest_report(pack, cached)
    assert report.trial_forwards == 0 and report.skipped_steps == [] and report.blocks_reused == 0
    assert any("increases" in n for n in report.notes)


# -- an extra model call at the same sigma: skip-layer guidance ---------------------------------
@pytest.mark.parametrize("order", ["slg_then_cache", "cache_then_slg"])
def test_skip_layer_guidance_extra_call(ready, order):
    comfy, pack = ready
    model = comfy.load_model("wan")
    slg = comfy.node("SkipLayerGuidanceDiT")

    def with_slg(m):
        return slg.execute(m, 3.0, 0.0, 0.6, double_layers="1", single_layers="", rescaling_scale=0.0).args[0]

    def build(m, cache):
        return cache(with_slg(m)) if order == "slg_then_cache" else with_slg(cache(m))

    counter = count_work(model)
    try:
        reference = comfy.sample(with_slg(model), "wan", steps=STEPS, cfg=CFG)
        calls = len(counter.entry_sizes)
        assert calls > STEPS  # SLG added cond-only calls at the same sigmas
        assert_same(comfy.sample(build(model, lambda m: _off(comfy, m)), "wan", steps=STEPS, cfg=CFG), reference)
        counter.entry_sizes.clear()
        cached = build(model, lambda m: _on(comfy, m))
        out = comfy.sample(cached, "wan", steps=STEPS, cfg=CFG)
        report = latest_report(pack, cached)
    finally:
        counter.close()
    assert torch.isfinite(out).all()
    assert report.steps == STEPS and report.trial_forwards == len(report.lfd) == STEPS
    assert report.full_forwards + report.reused_forwards == calls
    assert report.skipped_steps
    # network calls = full forwards + trials (the SLG call is smaller than the batched one, so
    # the size-based split of the counter does not apply here)
    assert len(counter.entry_sizes) == report.full_forwards + report.trial_forwards


# -- few-step distilled schedules ------------------------------------------------------------------
@pytest.mark.parametrize("steps, sampler", [(4, "euler"), (6, "heun"), (8, "euler")])
def test_few_step_schedules_are_identical_to_uncached(ready, steps, sampler):
    comfy, pack = ready
    model = comfy.load_model("wan")
    reference = comfy.sample(model, "wan", steps=steps, cfg=CFG, sampler=sampler)
    cached = with_blockcache(comfy, with_lfcache(comfy, model, alpha=2.0), pivotal_ratio=0.0)
    counter = count_work(model)
    try:
        assert_same(comfy.sample(cached, "wan", steps=steps, cfg=CFG, sampler=sampler), reference)
        assert counter.trial_forwards() == 0
    finally:
        counter.close()
    report = latest_report(pack, cached)
    assert report.trial_forwards == 0 and report.skipped_steps == [] and report.blocks_reused == 0
    assert report.cache_bytes_peak == 0
    assert any(f"{steps}-step schedule" in n for n in report.notes)


def test_few_step_limit_is_the_boundary_and_the_sampler_node_obeys_it(ready):
    comfy, pack = ready
    from precisecache_core.config import FEW_STEP_LIMIT
    model = comfy.load_model("wan")
    cached = with_lfcache(comfy, model, alpha=2.0)
    comfy.sample(cached, "wan", steps=FEW_STEP_LIMIT + 1, cfg=CFG)
    assert latest_report(pack, cached).trial_forwards == FEW_STEP_LIMIT + 1  # one step more: caching acts
    pos, neg = _conds(comfy)
    latent = {"samples": torch.zeros(1, 16, 3, 8, 8)}
    reference = comfy.nodes.KSampler().sample(model, 3, 4, CFG, "euler", "simple", pos, neg, latent)[0]["samples"]
    node = comfy.node("PreciseCacheSampler")
    result = node.execute(model, "Flash", 3, 4, CFG, "euler", "simple", pos, neg, latent, 1.0)
    assert_same(result.args[0]["samples"], reference)
    assert "4-step schedule" in result.args[1]
