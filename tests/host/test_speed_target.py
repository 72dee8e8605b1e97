"""LFCache's speed target reached on real sampling paths, measured by independent hooks.

The work of a run is counted on the network itself (``count_work``: every entry-layer call, weighted
by its input's size relative to the largest, so a trial on the cond stream of a 32× smaller latent
counts 1/64 of a batched cond+uncond call), and compared with the same count of the uncached run:
the ratio must be within ±10 % of the target, across step counts, CFG on/off, a two-call sampler
(Heun) and the two sampler runs of a Wan 2.2-style split (each run meets the target on its own).
``step_aside`` is off here: tiny models on a CPU are dominated by fixed costs, where the default
would (rightly) compute every step instead (tested separately in the core).
"""
from __future__ import annotations

import pytest
import torch

from cache_helpers import count_work, latest_report, node, with_lfcache

SHAPE = (1, 16, 5, 16, 16)


@pytest.fixture(scope="module")
def ready(comfy, tiny_models, precisecache_pack):
    return comfy, precisecache_pack


def _sample(comfy, model, steps, cfg, sampler, start=None, end=None, latent=None, seed=3):
    pos = comfy.conditioning("wan", 1, "positive", latent_shape=SHAPE)
    neg = comfy.conditioning("wan", 1, "negative", latent_shape=SHAPE)
    latent = {"samples": torch.zeros(SHAPE) if latent is None else latent}
    counter = count_work(model)
    try:
        if start is None:
            out = comfy.nodes.KSampler().sample(model, seed, steps, cfg, sampler, "simple", pos, neg, latent)
        else:
            out = comfy.nodes.KSamplerAdvanced().sample(model, "enable" if start == 0 else "disable", seed, steps,
                                                        cfg, sampler, "simple", pos, neg, latent, start, end,
                                                        "enable" if end < steps else "disable")
    finally:
        counter.close()
    return out[0]["samples"], counter.work()


@pytest.mark.parametrize("steps, sampler", [(20, "euler"), (30, "euler"), (50, "euler"), (20, "heun"), (30, "heun")])
@pytest.mark.parametrize("cfg", [1.0, 5.0])
def test_target_reached_within_ten_percent(ready, steps, cfg, sampler):
    comfy, pack = ready
    model = comfy.load_model("wan")
    _, uncached = _sample(comfy, model, steps, cfg, sampler)
    for target in (1.5, 2.5):
        cached_model = with_lfcache(comfy, model, speed_target=target, step_aside=False)
        out, work = _sample(comfy, cached_model, steps, cfg, sampler)
        report = latest_report(pack, cached_model)
        assert torch.isfinite(out).all()
        assert abs((uncached / work) / target - 1) <= 0.10, (target, uncached, work, report.summary_line())
        assert abs(report.estimated_speedup / (uncached / work) - 1) <= 0.02  # the report counts the same work


def test_each_sampler_run_of_a_split_schedule_meets_its_target(ready):
    """Wan 2.2: the high-noise expert runs steps 0-10, the low-noise expert 10-20, each its own run."""
    comfy, pack = ready
    model = comfy.load_model("wan")
    _, high_uncached = _sample(comfy, model, 20, 5.0, "euler", 0, 10)
    _, low_uncached = _sample(comfy, model, 20, 5.0, "euler", 10, 20)
    high = with_lfcache(comfy, model, speed_target=2.0, step_aside=False)
    low = with_lfcache(comfy, model, speed_target=2.0, step_aside=False)
    mid, high_work = _sample(comfy, high, 20, 5.0, "euler", 0, 10)
    _, low_work = _sample(comfy, low, 20, 5.0, "euler", 10, 20, latent=mid)
    for uncached, work in ((high_uncached, high_work), (low_uncached, low_work)):
        assert abs((uncached / work) / 2.0 - 1) <= 0.10, (uncached, work)


def test_an_unreachable_target_skips_all_it_may_and_says_so(ready):
    comfy, pack = ready
    model = with_lfcache(comfy, comfy.load_model("wan"), speed_target=6.0, step_aside=False)
    _sample(comfy, model, 10, 5.0, "euler")  # 10 steps: steps 0, 1 and the last are always computed
    report = latest_report(pack, model)
    assert report.full_forwards == 3 and any("cannot be reached" in n for n in report.notes), report.notes


@pytest.mark.parametrize("value", [0.5, 1.0, 7.0, -1.0])
def test_bad_targets_refused_by_name_before_sampling(ready, value):
    comfy, _ = ready
    lf = node(comfy, "PreciseCacheLFCache")
    message = lf.validate_inputs(preset="custom", speed_target=value)
    assert isinstance(message, str) and "speed_target" in message and "1.1" in message and "6" in message
