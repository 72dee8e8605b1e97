"""LFCache's accumulate-and-threshold decision."""
from hypothesis import given, settings, strategies as st

from precisecache_core.step_decision import StepDecider

deltas = st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 2.0), deltas)
def test_first_step_is_never_skipped(alpha, values):
    d = StepDecider(alpha)
    assert d.decide(None, True) is False
    for v in values:
        d.decide(v, True)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 2.0), st.integers(1, 5), deltas)
def test_consecutive_skip_limit(alpha, limit, values):
    d = StepDecider(alpha, max_consecutive_skips=limit)
    d.decide(None, True)
    run = 0
    for v in values:
        run = run + 1 if d.decide(v, True) else 0
        assert run <= limit


@settings(max_examples=100, deadline=None)
@given(deltas)
def test_alpha_zero_never_skips(values):
    d = StepDecider(0.0)
    d.decide(None, True)
    assert not any(d.decide(v, True) for v in values)


def test_rule_by_hand():
    d = StepDecider(0.5)
    assert d.decide(None, True) is False          # step 0
    assert d.decide(10.0, True) is False          # A=10, max=10: 10 < 5? no → compute
    assert d.decide(2.0, True) is True            # A=2 < 5 → skip
    assert d.decide(2.0, True) is True            # A=4 < 5 → skip
    assert d.decide(2.0, True) is False           # A=6 ≥ 5 → compute, reset
    assert d.decide(1.0, False) is False          # outside window: compute
    assert d.decide(1.0, True) is True            # A=1 (reset by the previous compute)
    assert d.history[0] != d.history[0]           # NaN for the first step


def test_larger_alpha_never_skips_fewer():
    import random
    rng = random.Random(0)
    values = [10.0 / (i + 1) + rng.random() for i in range(50)]
    counts = []
    for alpha in (0.0, 0.3, 0.5, 0.7, 1.0):
        d = StepDecider(alpha)
        d.decide(None, True)
        counts.append(sum(d.decide(v, True) for v in values))
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] > 0
