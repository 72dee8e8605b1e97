"""Trial-guided BlockCache (precisecache_core/block_guidance.py): the per-block decision, the trial
residuals it is made from, and a whole run of a toy network driven the way nodes/hooks.py drives it,
checked against residuals computed independently here."""
import math

import pytest
import torch

from precisecache_core.block_guidance import BlockGuidance, guided_reuse, trial_change
from precisecache_core.config import BlockCacheConfig, LFCacheConfig
from precisecache_core.run import PreciseCacheRun

INF = math.inf


def test_decision_per_block_threshold_pivotal_age_and_no_reuse_without_a_trial():
    changes = [0.05, 0.2, 0.05, INF, 0.099]
    pivotal = [False, False, True, False, False]
    ages = [0, 0, 0, 0, 3]
    # with a trial: below τ, not pivotal, younger than L
    assert guided_reuse(changes, pivotal, ages, 0.1, 3, True) == [True, False, False, False, False]
    assert guided_reuse(changes, pivotal, ages, 0.1, 4, True) == [True, False, False, False, True]
    assert guided_reuse(changes, pivotal, ages, 0.0, 20, True) == [False] * 5  # τ 0: never where a trial ran
    # no trial at this step: every block computed
    assert guided_reuse(changes, pivotal, ages, 0.1, 3, False) == [False] * 5


def test_trial_change_is_the_difference_relative_to_the_block_input():
    ref = torch.tensor([[3.0, 4.0]])
    now = torch.tensor([[3.0, 5.0]])
    assert trial_change(now, ref, torch.tensor(10.0)).item() == pytest.approx(1.0 / 10.0)
    assert trial_change(ref.clone(), ref, torch.tensor(10.0)).item() == 0.0
    assert trial_change(torch.zeros(1, 3), ref, torch.tensor(10.0)).item() == INF


def test_trial_residual_of_an_in_place_block_is_taken_before_it_ran():
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(8, 8, generator=g), torch.randn(1, 5, 8, generator=g)

    def in_place(a):
        a["img"] += torch.tanh(a["img"] @ w)
        return {"img": a["img"]}

    guide = BlockGuidance(0.1, 3, 0.0)
    guide.trial_block(("double_block", 0), {"img": x.clone()}, in_place, in_place_tensors=("img",))
    guide.close_trial(0)
    residual, input_norm = guide._latest[("double_block", 0)]
    assert torch.allclose(residual, torch.tanh(x @ w), atol=1e-6)
    assert input_norm.item() == pytest.approx(x.norm().item(), rel=1e-6)


# -- a whole run of a toy network ------------------------------------------------------------------
N_BLOCKS, TOKENS, DIM = 4, 32, 8
STEPS = 12


def _weights():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(DIM, DIM, generator=g) / math.sqrt(DIM) for _ in range(N_BLOCKS)]


def _gain(block, step):
    """Block 1 changes its behaviour at step 6; the others never do."""
    return 2.0 if block == 1 and step >= 6 else 1.0


def _block_fn(weights, block, step):
    return lambda a: {"img": a["img"] + _gain(block, step) * torch.tanh(a["img"] @ weights[block])}


def _drive(block_config, lf_config=LFCacheConfig(alpha=1e-9), trial_at=lambda step: True):
    """Run STEPS steps like nodes/hooks.py does: trial (every block, small input) → decision → full forward
    through run.run_block. The input of every step is the same, so a block's residual changes only when
    the block does. Returns (run, report, per-step record)."""
    weights = _weights()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, TOKENS, DIM, generator=g)
    x_trial = x[:, ::4]
    sigmas = [1.0 - i / STEPS for i in range(STEPS + 1)]
    run = PreciseCacheRun(lf_config, block_config, sigmas, (1, 16, 1, 8, 8), lambda p: 1.0 - p,
                          blocks_per_forward=N_BLOCKS)
    steps = []
    for step, sigma in enumerate(sigmas[:-1]):
        plan = run.begin_call(("c",), sigma)
        trial_residuals = {}
        if plan.needs_trial and trial_at(step):
            h = x_trial
            for j in range(N_BLOCKS):
                out = run.trial_block(("double_block", j), {"img": h}, _block_fn(weights, j, step)) \
                    if run.guides_blocks else _block_fn(weights, j, step)({"img": h})
                trial_residuals[j] = (out["img"] - h, h.norm())  # independent of the run's own record
                h = out["img"]
            run.decide(plan, torch.randn(1, 16, 1, 2, 2, generator=g))  # random: Δ > 0, never skipped at α≈0
        assert not run.should_skip(plan)
        run.plan_blocks(plan)
        h = x
        computed, stored = [], {}
        for j in range(N_BLOCKS):
            fn = _block_fn(weights, j, step)

            def compute(a, j=j, fn=fn):
                computed.append(j)
                return fn(a)

            out = run.run_block(plan, ("double_block", j), {"img": h}, compute)
            state = run.blocks._slots[plan.slot]
            if j in computed and (("double_block", j), "img") in state.residuals:
                stored[j] = (state.residuals[(("double_block", j), "img")].clone(), fn({"img": h})["img"] - h)
            h = out["img"]
        run.store(plan, x, h)
        changes = dict(run.guidance.last_changes) if run.guidance is not None else {}
        steps.append({"computed": computed, "trial": trial_residuals, "stored": stored, "out": h, "changes": changes})
    report = run.finish()
    return run, report, steps


def test_trial_guided_run_refreshes_the_changed_block_alone_and_reuses_the_rest():
    config = BlockCacheConfig(mode="trial_guided", change_threshold=0.05, pivotal_ratio=0.0, refresh_interval=20)
    run, report, steps = _drive(config)
    assert report.block_mode == "trial_guided"
    # step 0: nothing stored, everything computed; the block that changed at step 6 is recomputed there
    assert steps[0]["computed"] == [0, 1, 2, 3]
    assert 1 in steps[6]["computed"] and 0 not in steps[6]["computed"]
    # from the independent trial residuals: a reused block's change since its residual was stored
    # (relative to the block's trial input) is below τ, a recomputed one (with a stored residual) not
    reference = {}
    for step, s in enumerate(steps):
        for j in range(N_BLOCKS):
            if step:
                now, input_norm = s["trial"][j]
                change = ((now - reference[j]).norm() / input_norm).item()
                assert s["changes"][("double_block", j)] == pytest.approx(change, rel=1e-4, abs=1e-6)
                assert (change < 0.05) == (j not in s["computed"]), (step, j, change)
            if j in s["computed"]:
                reference[j] = s["trial"][j][0]
    assert steps[6]["changes"][("double_block", 1)] > 0.05
    # every computed block's stored residual is its full-size out − in
    for s in steps:
        for j, (kept, expected) in s["stored"].items():
            assert torch.allclose(kept, expected, atol=1e-6)
    # per-block report: reuse counts match what happened, per step and in total
    reused = [[0 if j in s["computed"] else 1 for j in range(N_BLOCKS)] for s in steps]
    assert report.block_reuse_map == reused
    assert report.reused_per_block == [sum(r[j] for r in reused) for j in range(N_BLOCKS)]
    assert report.blocks_reused == sum(report.reused_per_block) > 0
    assert report.block_names == [f"double_block {j}" for j in range(N_BLOCKS)]
    # memory: the latest trial's residuals and the references (at most one older trial's per block) count
    trial_bytes = (TOKENS // 4) * DIM * 4
    assert N_BLOCKS * trial_bytes <= run.guidance.peak_bytes <= 2 * N_BLOCKS * trial_bytes
    assert report.cache_bytes_peak >= run.blocks.peak_bytes + run.guidance.peak_bytes


def test_trial_guided_output_is_closer_to_uncached_than_static_at_no_more_work():
    """On the toy network (one block changes, the others never), trial-guided reuse recomputes only
    the changed block; the static rule reuses it stale until its next refresh."""
    uncached = _drive(BlockCacheConfig(pivotal_ratio=1.0))[2]
    guided = _drive(BlockCacheConfig(mode="trial_guided", change_threshold=0.05, pivotal_ratio=0.0,
                                     refresh_interval=20))
    static = _drive(BlockCacheConfig(mode="static", pivotal_ratio=0.25, refresh_interval=3))

    def error(steps):
        return max((a["out"] - b["out"]).norm().item() for a, b in zip(steps, uncached))

    assert guided[1].blocks_reused >= static[1].blocks_reused
    assert error(guided[2]) < 1e-5 < error(static[2])


def test_a_step_without_a_trial_computes_every_block_and_the_report_says_so():
    config = BlockCacheConfig(mode="trial_guided", change_threshold=1.0, pivotal_ratio=0.0, refresh_interval=20)
    run, report, steps = _drive(config, trial_at=lambda step: step not in (4, 5, 6))
    # τ 1: where a trial ran (after step 0) every block is reused; at steps 4-6 (no trial) all computed
    for step, s in enumerate(steps):
        expected = [0, 1, 2, 3] if step in (0, 4, 5, 6) else []
        assert s["computed"] == expected, (step, s["computed"])
    assert any("steps 4-6" in note and "every block was computed" in note for note in report.notes), report.notes


def test_without_lfcache_trial_guided_falls_back_to_static_with_a_note():
    config = BlockCacheConfig(mode="trial_guided", pivotal_ratio=0.5, refresh_interval=3)
    run, report, steps = _drive(config, lf_config=None)
    static = _drive(BlockCacheConfig(mode="static", pivotal_ratio=0.5, refresh_interval=3), lf_config=None)[2]
    assert report.block_mode == "static" and run.guidance is None
    assert any("trial_guided needs LFCache" in note for note in report.notes)
    assert [s["computed"] for s in steps] == [s["computed"] for s in static]
    assert all(torch.equal(a["out"], b["out"]) for a, b in zip(steps, static))


def test_the_node_default_without_lfcache_is_the_papers_static_rule():
    """trial_guided's default pivotal_ratio 0 would reuse every block in the static rule: its fallback
    uses the paper's 40 % instead, exactly as FLASH_BLOCKCACHE does."""
    from precisecache_core.config import FLASH_BLOCKCACHE, TRIAL_GUIDED_BLOCKCACHE
    run, report, steps = _drive(TRIAL_GUIDED_BLOCKCACHE, lf_config=None)
    paper = _drive(FLASH_BLOCKCACHE, lf_config=None)[2]
    assert run.blocks.config.pivotal_ratio == 0.4 and report.block_mode == "static"
    assert [s["computed"] for s in steps] == [s["computed"] for s in paper]
    assert any("paper's share" in note for note in report.notes), report.notes


@pytest.mark.parametrize("inputs, name", [
    (dict(mode="dynamic"), "mode"),
    (dict(mode="trial_guided", change_threshold=-0.1), "change_threshold"),
    (dict(mode="trial_guided", change_threshold=2.5), "change_threshold"),
    (dict(mode="trial_guided", change_threshold=float("nan")), "change_threshold"),
])
def test_config_names_the_bad_input(inputs, name):
    with pytest.raises(ValueError, match=name):
        BlockCacheConfig(**inputs).validate()
