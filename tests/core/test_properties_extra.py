"""Property tests that complete tests/core/test_lowpass.py, test_step_decision.py and
test_block_cache.py: the LFD metric on both sides and on images, the decision through a whole
run (window, consecutive-skip limit, first step), the sigma -> step mapping, and the block cache's
exact identity reuse, memory budget and release."""
import math
import weakref

import torch
from hypothesis import assume, given, settings, strategies as st

from precisecache_core.block_cache import BlockResidualCache
from precisecache_core.config import FEW_STEP_LIMIT, BlockCacheConfig, LFCacheConfig
from precisecache_core.lowpass import low_frequency_distance, lowpass_mask
from precisecache_core.run import PreciseCacheRun
from precisecache_core.schedule import StepClock
from precisecache_core.step_decision import StepDecider

seeds = st.integers(0, 2**16)


def _tensor(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _high_only(shape, seed, radius):
    """A random pattern whose spectrum lies entirely outside the low-pass circle."""
    h, w = shape[-2:]
    spectrum = torch.fft.fft2(_tensor(shape, seed), norm="ortho") * (1 - lowpass_mask(h, w, radius))
    return torch.fft.ifft2(spectrum, norm="ortho").real


# -- LFD metric ---------------------------------------------------------------------------------
video_or_image = st.one_of(
    st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(6, 16), st.integers(6, 16)),
    st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(6, 16), st.integers(6, 16)))


@settings(max_examples=40, deadline=None)
@given(video_or_image, seeds, st.floats(0.05, 0.5))
def test_lfd_ignores_high_frequency_changes_on_both_sides(shape, seed, radius):
    a, b = _tensor(shape, seed), _tensor(shape, seed + 1)
    ha, hb = _high_only(shape, seed + 2, radius), _high_only(shape, seed + 3, radius)
    assume(ha.norm() > 1e-3)  # radius 0.5 on a tiny grid can leave no frequency outside the circle
    base = low_frequency_distance(a, b, radius).item()
    moved = low_frequency_distance(a + ha, b + hb, radius).item()
    assert math.isclose(moved, base, rel_tol=1e-4, abs_tol=1e-4)
    assert low_frequency_distance(a, a + ha, radius).item() < 1e-4 * max(1.0, ha.norm().item())


@settings(max_examples=40, deadline=None)
@given(video_or_image, seeds, st.floats(0.05, 0.5))
def test_lfd_is_zero_for_equal_inputs_and_symmetric_on_images_too(shape, seed, radius):
    a, b = _tensor(shape, seed), _tensor(shape, seed + 1)
    assert low_frequency_distance(a, a.clone(), radius).item() == 0.0
    ab, ba = low_frequency_distance(a, b, radius).item(), low_frequency_distance(b, a, radius).item()
    assert math.isclose(ab, ba, rel_tol=1e-5, abs_tol=1e-6)


@settings(max_examples=40, deadline=None)
@given(video_or_image, seeds, st.floats(-4.0, 4.0))
def test_lfd_is_a_scaled_pseudometric(shape, seed, scale):
    """Triangle inequality and |c|-homogeneity: the decision's threshold is relative, so scaling the
    model output by c must scale every Δ by |c| (and leave decisions unchanged)."""
    a, b, c = _tensor(shape, seed), _tensor(shape, seed + 1), _tensor(shape, seed + 2)
    ab = low_frequency_distance(a, b).item()
    assert ab <= low_frequency_distance(a, c).item() + low_frequency_distance(c, b).item() + 1e-4
    assert math.isclose(low_frequency_distance(a * scale, b * scale).item(), abs(scale) * ab,
                        rel_tol=1e-4, abs_tol=1e-4)


# -- decision -----------------------------------------------------------------------------------
steps_in = st.lists(st.tuples(st.floats(0.0, 10.0, allow_nan=False), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 2.0), st.integers(0, 5), steps_in)
def test_decider_never_skips_outside_window_nor_over_the_limit(alpha, limit, values):
    d = StepDecider(alpha, max_consecutive_skips=limit)
    assert d.decide(None, True) is False
    run = 0
    for delta, allowed in values:
        skip = d.decide(delta, allowed)
        assert not (skip and not allowed)
        run = run + 1 if skip else 0
        if limit:
            assert run <= limit


def _schedule(n):
    return [1.0 - i / n for i in range(n)] + [0.0]


def _run(n_steps, lf, block=None, shape=(1, 4, 3, 8, 8)):
    return PreciseCacheRun(lf, block, _schedule(n_steps), shape, lambda p: 1.0 - p, blocks_per_forward=0)


@settings(max_examples=30, deadline=None)
@given(st.integers(FEW_STEP_LIMIT + 1, 30), st.floats(0.01, 2.0), st.integers(0, 4), seeds,
       st.floats(0.0, 0.9), st.floats(0.1, 1.0))
def test_run_never_skips_first_step_window_or_limit(n, alpha, limit, seed, start, span):
    """Through PreciseCacheRun: random trial predictions, random window; the first step is always
    computed, no skip happens outside the window, and no more than ``limit`` skips in a row."""
    end = min(1.0, start + span)
    assume(end > start)
    lf = LFCacheConfig(alpha=alpha, max_consecutive_skips=limit, start_percent=start, end_percent=end).validate()
    run = _run(n, lf)
    gen = torch.Generator().manual_seed(seed)
    trial_shape = (1, 4, 2, 2, 2)
    base = torch.randn(trial_shape, generator=gen)
    skips = []
    for i, sigma in enumerate(_schedule(n)[:-1]):
        plan = run.begin_call(("c",), sigma)
        assert plan.step == i and (run.lf_active or not plan.needs_trial)  # off when no step lies in the window
        if plan.needs_trial:  # a trial only where it can change a decision: in the window, or just before it
            in_window = [start - 1e-6 <= 1.0 - s < end + 1e-6 for s in _schedule(n)[i:i + 2]]
            assert any(in_window), (i, start, end)
        # shrinking updates, like a denoising trajectory, plus noise
        trial = base + torch.randn(trial_shape, generator=gen) / (i + 1)
        skip = run.decide(plan, trial) if plan.needs_trial else run.should_skip(plan)
        skips.append(skip)
        if not skip or run.reuse(plan, torch.zeros(1, 4, 3, 8, 8)) is None:
            run.store(plan, torch.zeros(1, 4, 3, 8, 8), torch.randn(1, 4, 3, 8, 8, generator=gen))
    report = run.finish()
    assert not skips[0]
    for i, (skip, sigma) in enumerate(zip(skips, _schedule(n))):
        percent = 1.0 - sigma  # percent_to_sigma here is 1 - p
        if skip:
            assert start - 1e-6 <= percent < end + 1e-6, (i, percent, start, end)
    if limit:
        longest = max((len(r) for r in "".join("s" if s else "." for s in skips).split(".")), default=0)
        assert longest <= limit
    assert report.skipped_steps == [i for i, s in enumerate(skips) if s]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, FEW_STEP_LIMIT), st.floats(0.01, 2.0))
def test_few_step_schedules_are_never_cached(n, alpha):
    run = _run(n, LFCacheConfig(alpha=alpha), BlockCacheConfig(pivotal_ratio=0.0))
    assert not run.lf_active and not run.block_active
    for sigma in _schedule(n)[:-1]:
        plan = run.begin_call(("c",), sigma)
        assert not plan.needs_trial and not run.should_skip(plan)
        assert run.plan_blocks(plan).block_phase is None
    assert any(str(FEW_STEP_LIMIT) in note for note in run.finish().notes)


# -- sigma -> step mapping ----------------------------------------------------------------------
decreasing = st.tuples(st.floats(0.01, 100.0), st.lists(st.floats(0.05, 0.99), min_size=1, max_size=40)).map(
    lambda v: [x for x in (v[0] * math.prod(v[1][:i]) for i in range(len(v[1]) + 1)) if x >= 1e-4] + [0.0])
"""Strictly decreasing schedules ending at 0, consecutive sigmas at least 1 % apart, none below 1e-4
(step_of has an absolute tolerance of 1e-12: real schedules never come near it)."""


@settings(max_examples=100, deadline=None)
@given(decreasing, st.floats(0.0, 1.0))
def test_step_of_maps_each_sigma_and_each_interval_to_its_step(sigmas, t):
    clock = StepClock.from_schedule(sigmas)
    assert clock.decreasing and clock.steps == len(sigmas) - 1
    for i in range(clock.steps):
        assert clock.step_of(sigmas[i]) == i
        inside = sigmas[i + 1] + t * (sigmas[i] - sigmas[i + 1])  # a call between σ_{i+1} and σ_i
        assume(inside > sigmas[i + 1] * (1 + 1e-4))
        assert clock.step_of(inside) == i
    probes = sorted((sigmas[0] * k / 17 for k in range(18)), reverse=True)
    mapped = [clock.step_of(p) for p in probes]
    assert mapped == sorted(mapped)  # lower sigma never maps to an earlier step


@settings(max_examples=50, deadline=None)
@given(decreasing)
def test_increasing_schedules_turn_caching_off(sigmas):
    flipped = list(reversed(sigmas))
    flipped[0] = 1e-4
    clock = StepClock.from_schedule(flipped)
    assert not clock.decreasing
    run = PreciseCacheRun(LFCacheConfig(alpha=1.5), BlockCacheConfig(pivotal_ratio=0.0), flipped,
                          (1, 4, 3, 8, 8), lambda p: 1.0 - p)
    if run.clock.steps > FEW_STEP_LIMIT:
        assert not run.lf_active and not run.block_active
        assert any("increases" in note for note in run.report.notes)
    assert not run.lf_active or run.clock.decreasing


# -- block cache --------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seeds, st.floats(0.0, 0.99), st.integers(1, 4))
def test_identity_blocks_reuse_exactly_for_multi_tensor_blocks(seed, ratio, reuse_steps):
    """img and txt both pass an identity block: reuse reproduces both bit for bit, whatever is pivotal."""
    gen = torch.Generator().manual_seed(seed)
    img, txt = torch.randn(2, 6, 8, generator=gen), torch.randn(2, 3, 8, generator=gen)
    blocks = [lambda a: {"img": a["img"], "txt": a["txt"]},
              lambda a: {"img": a["img"] * 2.0, "txt": a["txt"] - 1.0},
              lambda a: {"img": a["img"], "txt": a["txt"]}]
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=ratio, refresh_interval=reuse_steps))
    for phase in ["refresh"] + ["reuse"] * reuse_steps:
        h = {"img": img, "txt": txt}
        for j, fn in enumerate(blocks):
            h = cache.run_block("slot", phase, ("double_block", j), dict(h, vec=None), fn)
        assert torch.equal(h["img"], img * 2.0) and torch.equal(h["txt"], txt - 1.0)
    assert cache.blocks_reused > 0 or ratio * 3 > 2


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 64)), min_size=1, max_size=12),
       st.integers(0, 4000), st.integers(1, 3))
def test_memory_budget_is_never_exceeded_and_release_frees_everything(sizes, budget_bytes, slots):
    config = BlockCacheConfig(pivotal_ratio=0.0, memory_budget_mb=budget_bytes / 2**20).validate()
    cache = BlockResidualCache(config)
    refs = []
    for slot in range(slots):
        for j, (rows, cols) in enumerate(sizes):
            x = torch.ones(1, rows, cols)
            cache.run_block(slot, "refresh", ("double_block", j), {"img": x}, lambda a: {"img": a["img"] + 1})
            if budget_bytes:
                assert cache.bytes_allocated <= budget_bytes
    needed = slots * sum(r * c * 4 for r, c in sizes)
    if budget_bytes and needed > budget_bytes:
        assert cache.budget_refusals > 0
    if not budget_bytes:
        assert cache.budget_refusals == 0 and cache.bytes_allocated == needed
    refs += [weakref.ref(buf) for state in cache._slots.values() for buf in state.residuals.values()]
    assert len(refs) == (len(sizes) * slots if not budget_bytes else len(refs))
    cache.release()  # no gc.collect(): buffers must go with their last reference, not wait for a cycle
    assert cache.bytes_allocated == 0 and all(r() is None for r in refs)


@settings(max_examples=60, deadline=None)
@given(st.integers(FEW_STEP_LIMIT + 1, 30), st.floats(0.0, 0.95), st.floats(0.05, 1.0), st.floats(0.0, 0.8))
def test_a_window_outside_the_run_turns_the_cache_off(n, start, span, first):
    """A sampler running part of the schedule (KSamplerAdvanced, a Wan 2.2 expert): a cache whose
    whole-schedule window holds none of its steps costs nothing (no trial, no block work)."""
    end = min(1.0, start + span)
    full = [1.0 - i / 40 for i in range(40)] + [0.0]
    part = [s for s in full if s <= 1.0 - first][:n + 1]
    assume(len(part) == n + 1)
    lf = LFCacheConfig(alpha=1.0, start_percent=start, end_percent=end).validate()
    block = BlockCacheConfig(pivotal_ratio=0.0, start_percent=start, end_percent=end).validate()
    run = PreciseCacheRun(lf, block, part, (1, 4, 3, 8, 8), lambda p: 1.0 - p)
    inside = [s for s in part[:-1] if 1.0 - end < s <= (1.0 - start) * (1 + 1e-5)]  # schedule.py tolerance
    assert run.lf_active == bool(inside) and run.block_active == bool(inside)
    plan = run.begin_call(("c",), part[0])
    assert plan.needs_trial == (part[1] in inside)  # step 0 gives step 1 its first Δ, if step 1 may skip
    assert any("window" in note for note in run.report.notes) != bool(inside)
