"""The speed-target rule: the work budget is met whatever the low-frequency changes look like."""
import math

import torch
from hypothesis import given, settings, strategies as st

from precisecache_core import LFCacheConfig, PreciseCacheRun
from precisecache_core.speed_target import SpeedTargetDecider


def _run_rule(target, deltas, trial_cost=1 / 32, warmup=2):
    """Drive the rule as the policy does; returns (work in full steps, skips)."""
    n = len(deltas)
    decidable = [warmup <= i < n - 1 for i in range(n)]
    rule = SpeedTargetDecider(target, decidable, trial_cost)
    accumulated, skips = 0.0, []
    for i, delta in enumerate(deltas):
        trial = decidable[i] and rule.forced(i) is None
        if trial:
            rule.charge_trial(i)
            rule.observe(delta)
            accumulated += delta
        skip = rule.decide(i, accumulated if trial else None)
        skips.append(skip)
        if not skip:
            accumulated = 0.0
    return rule.spent, skips


@settings(max_examples=200, deadline=None)
@given(st.integers(12, 80), st.floats(1.2, 5.0),
       st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=80, max_size=80))
def test_work_is_within_ten_percent_and_never_half_a_step_over_the_budget(n, target, deltas):
    spent, skips = _run_rule(target, deltas[:n])
    budget = n / target
    if budget >= 3 + (n - 3) / 32:
        assert spent <= budget + 0.5 + 1e-9
        # met within 10 % (or one step, on short schedules), not beaten by skipping more
        assert spent >= min(0.9 * min(budget, n), budget - 1.0) - 1e-9
    else:
        # unreachable: only steps 0, 1 and the last are computed, every other step is skipped
        assert spent <= 3 + 1e-9 and not any(not s for s in skips[2:-1])
    assert not skips[0] and not skips[1] and not skips[-1]


def test_larger_changes_get_the_computes():
    """A stretch of large low-frequency changes gets a denser share of the computes than quiet ones."""
    deltas = [1.0] * 10 + [0.5] * 15 + [4.0] * 10 + [0.5] * 15
    _, skips = _run_rule(2.0, deltas)
    computed = [not s for s in skips]
    busy, quiet = sum(computed[25:35]) / 10, sum(computed[10:25] + computed[35:49]) / 29
    assert busy > 1.5 * quiet, (busy, quiet)


def test_step_aside_when_the_trial_costs_more_time_than_it_saves():
    lf = LFCacheConfig(speed_target=2.0).validate()
    sigmas = [1.0 - i / 20 for i in range(20)] + [0.0]
    run = PreciseCacheRun(lf, None, sigmas, (1, 4, 3, 8, 8), lambda p: 1.0 - p)
    trials = 0
    for i, sigma in enumerate(sigmas[:-1]):
        plan = run.begin_call(("c",), sigma, batch=2)
        if plan.needs_trial and run.lf_active:
            run.decide(plan, torch.randn(1, 4, 2, 2, 2))
            run.record_seconds(plan, 0.9, trial=True)  # a trial as slow as 90 % of a full step
            trials += 1
        if not run.should_skip(plan) or run.reuse(plan, torch.zeros(2, 4, 3, 8, 8)) is None:
            run.record_seconds(plan, 1.0, trial=False)
            run.store(plan, torch.zeros(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8))
    report = run.finish()
    assert trials == 3 and any("stepped aside" in n for n in report.notes)
    assert report.skipped_steps == [] and report.full_forwards == 20


def test_no_step_aside_when_the_trial_is_cheap():
    lf = LFCacheConfig(speed_target=2.0).validate()
    sigmas = [1.0 - i / 20 for i in range(20)] + [0.0]
    run = PreciseCacheRun(lf, None, sigmas, (1, 4, 3, 8, 8), lambda p: 1.0 - p)
    for i, sigma in enumerate(sigmas[:-1]):
        plan = run.begin_call(("c",), sigma, batch=2)
        if plan.needs_trial:
            run.decide(plan, torch.full((1, 4, 2, 2, 2), float(math.sqrt(i + 1))))
            run.record_seconds(plan, 0.05, trial=True)
        if not run.should_skip(plan) or run.reuse(plan, torch.zeros(2, 4, 3, 8, 8)) is None:
            run.record_seconds(plan, 1.0, trial=False)
            run.store(plan, torch.zeros(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8))
    report = run.finish()
    assert not any("stepped aside" in n for n in report.notes)
    assert abs(report.estimated_speedup / 2.0 - 1) <= 0.1, report.summary_line()


def test_bad_targets_name_the_input():
    import pytest
    for value in (0.5, 1.0, 6.5, -2.0, True):
        with pytest.raises(ValueError, match="speed_target"):
            LFCacheConfig(speed_target=value).validate()
