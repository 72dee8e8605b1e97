"""The rank sync layer (precisecache_core/rank_sync.py) with real collectives: 2 CPU processes, gloo.

Ranks fed different data take identical decisions at every step, with the same number of
all-reduces per step on every rank whatever is decided; a rank whose own rule would decide otherwise
is overruled and its rule state stays in step; a trial failing on one rank turns LFCache off on all;
BlockCache picks one pivotal set from the reduced scores; and with no process group (or one rank)
nothing is reduced and a run is bit-identical to the single-GPU run.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rank_sync_workers as w  # noqa: E402

from precisecache_core.rank_sync import SAMPLE_GROUP_KEY, SampleGroup, for_run, sample_group_of  # noqa: E402

ALPHA = {"alpha": 0.9, "max_consecutive_skips": 3}
TARGET = {"speed_target": 2.0, "max_consecutive_skips": 2}
STEPS = 24
LOOSER = {"alpha": [ALPHA, {**ALPHA, "alpha": 1.6}], "speed_target": [TARGET, {**TARGET, "speed_target": 3.0}]}
SPECS = {
    **{(name, synced): ("policy_run", (STEPS, [rule], [1, 2], synced))
       for name, rule in (("alpha", ALPHA), ("speed_target", TARGET)) for synced in (False, True)},
    **{("looser", name, synced): ("policy_run", (STEPS, rules, [5], synced))
       for name, rules in LOOSER.items() for synced in (False, True)},
    "run": ("run_fake", (20, {"alpha": 1.0}, True, [0.0, 0.3])),
    "fail": ("run_fake", (20, {"alpha": 1.0}, True, [0.0], 6)),
    "aside_0": ("run_fake", (20, {"speed_target": 2.0}, True, [0.0], None, [0.95, 0.02])),
    "aside_1": ("run_fake", (20, {"speed_target": 2.0}, True, [0.0], None, [0.02, 0.95])),
    "same_alpha": ("run_fake", (20, {"alpha": 1.0}, True, [0.0])),
    "same_target": ("run_fake", (20, {"speed_target": 2.0}, True, [0.0])),
    "blocks_alone": ("blocks_run", (8, 0.4, None, False)),
    "blocks": ("blocks_run", (8, 0.4, None, True)),
    "blocks_missing": ("blocks_run", (8, 0.0, 5, True)),
    "one_rank": ("one_rank_groups", ()),
}


@pytest.fixture(scope="module")
def ranks():
    """Every scenario above, run by 2 processes in one spawn: key → (rank 0's result, rank 1's)."""
    keys = list(SPECS)
    per_rank = w.spawn(w.scenarios, 2, [SPECS[k] for k in keys])
    return {k: (per_rank[0][i], per_rank[1][i]) for i, k in enumerate(keys)}


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (the numbers in decisions)."""
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return a == b


@pytest.mark.parametrize("rule", [ALPHA, TARGET], ids=["alpha", "speed_target"])
def test_ranks_fed_different_metrics_take_identical_decisions_every_step(ranks, rule):
    steps = STEPS
    name = "alpha" if rule is ALPHA else "speed_target"
    alone, synced = ranks[name, False], ranks[name, True]
    skips_alone = [[d[0] for d in r["decisions"]] for r in alone]
    assert skips_alone[0] != skips_alone[1], "the two ranks' data must lead to different decisions alone"
    r0, r1 = synced
    assert _same(r0["decisions"], r1["decisions"])  # skip, trial, Δ, metric and threshold, every step
    assert _same(list(r0["state"]), list(r1["state"]))
    skips = [d[0] for d in r0["decisions"]]
    assert any(skips) and not all(skips[2:]), skips
    # a fixed point: two all-reduces at every step, trial or not, skip or compute, forced or not
    assert r0["per_step"] == r1["per_step"] == [2] * steps
    assert any(d[1] for d in r0["decisions"]) and not all(d[1] for d in r0["decisions"])
    assert alone[0]["per_step"] == alone[1]["per_step"] == [0] * steps  # no sync: no collective


@pytest.mark.parametrize("name", list(LOOSER))
def test_a_rank_whose_rule_would_skip_is_overruled_and_stays_in_step(ranks, name):
    """Rank 1 runs a looser rule (larger α / target) on the same data: alone it skips steps rank 0
    computes, and with a speed target even its forced decisions differ. Synced, every step's skip is
    the same on both (skip only if both skip), the all-reduces per step are the same, and rank 1
    records the steps it was overruled at."""
    alone, (r0, r1) = ranks["looser", name, False], ranks["looser", name, True]
    assert [d[0] for d in alone[0]["decisions"]] != [d[0] for d in alone[1]["decisions"]]
    assert [d[0] for d in r0["decisions"]] == [d[0] for d in r1["decisions"]]
    assert r0["per_step"] == r1["per_step"] == [2] * STEPS
    assert r1["overruled"] > 0 and r0["overruled"] == 0


def test_collective_count_per_step_is_the_same_on_every_rank_through_a_whole_run(ranks):
    """PreciseCacheRun as the glue drives it, each rank with its own denoiser output: per step the
    same all-reduces on both ranks (two per step while LFCache is active, whatever is decided); the
    step decisions and Δ are identical; the outputs differ only by the ranks' own data."""
    r0, r1 = ranks["run"]
    assert r0["per_step"] == r1["per_step"] == [2] * 20
    assert r0["skipped"] == r1["skipped"] and r0["skipped"]
    assert _same(r0["lfd"], r1["lfd"])
    assert r0["full"] == r1["full"] and r0["trials"] == r1["trials"]
    assert any("agreed over 2 ranks" in n for n in r0["notes"])


def test_a_trial_failing_on_one_rank_turns_lfcache_off_on_every_rank(ranks):
    r0, r1 = ranks["fail"]
    assert r0["per_step"] == r1["per_step"]
    assert r0["per_step"][:7] == [2] * 7 and r0["per_step"][7:] == [0] * 13  # LFCache off from step 7 on
    assert any("failed on another rank" in n for n in r0["notes"])
    assert any("failed on this rank" in n for n in r1["notes"])
    assert r0["skipped"] == r1["skipped"] and all(s < 6 for s in r0["skipped"])
    assert r0["full"] == r1["full"]


def test_stepping_aside_is_decided_on_the_ranks_summed_times(ranks):
    """One rank measures a slow trial, the other a fast one: both step aside or neither."""
    for key in ("aside_0", "aside_1"):
        r0, r1 = ranks[key]
        aside = ["stepped aside" in " ".join(r["notes"]) for r in (r0, r1)]
        assert aside[0] == aside[1]
        assert r0["per_step"] == r1["per_step"] and r0["skipped"] == r1["skipped"]


def test_identical_data_on_two_ranks_gives_the_single_process_run_bit_for_bit(ranks):
    """The mean over two ranks of the same Δ is that Δ: a synced run on identical data decides and
    outputs exactly what the single-process run does."""
    for key, lf in (("same_alpha", {"alpha": 1.0}), ("same_target", {"speed_target": 2.0})):
        single = w.run_fake(0, 1, 20, lf, False, [0.0])
        r0, r1 = ranks[key]
        assert single["skipped"] and r0["skipped"] == r1["skipped"] == single["skipped"]
        assert torch.equal(r0["x"], single["x"]) and torch.equal(r1["x"], single["x"])
        assert _same(r0["lfd"], single["lfd"])


def test_no_process_group_is_a_no_op_and_bit_identical():
    """No torch.distributed group: ``for_run`` gives None whatever the options say, nothing is
    reduced, and the run equals the one made with no sync argument at all."""
    assert not torch.distributed.is_initialized()
    options = {SAMPLE_GROUP_KEY: SampleGroup(description="configured, but no process group")}
    assert sample_group_of(options) is not None
    assert for_run(sample_group_of(options)) is None and for_run(None) is None
    for lf in ({"alpha": 1.0}, {"speed_target": 2.0}):
        plain = w.run_fake(0, 1, 20, lf, False, [0.0])
        configured = w.run_fake(0, 1, 20, lf, True, [0.0])  # a SampleGroup, but no process group
        assert torch.equal(plain["x"], configured["x"]) and plain["skipped"] == configured["skipped"]
        assert plain["per_step"] == [0] * 20


def test_a_group_of_one_rank_is_a_no_op(ranks):
    assert ranks["one_rank"] == (True, True)


def test_block_scores_reduced_so_every_rank_picks_the_same_pivotal_blocks(ranks):
    alone = ranks["blocks_alone"]
    assert alone[0]["pivotal"] != alone[1]["pivotal"], "the shards' own scores must rank differently"
    r0, r1 = ranks["blocks"]
    assert r0["pivotal"] == r1["pivotal"] and len(r0["pivotal"]) == 4  # ⌈0.4 · 8⌉
    assert r0["computed"] == r1["computed"]  # the same blocks run (and issue their collectives) on both
    assert r0["all_reduces"] == r1["all_reduces"] == 1  # one reduce per ranking, not per block
    mean = {k: (r0["local_scores"][k] + r1["local_scores"][k]) / 2 for k in r0["local_scores"]}
    top = sorted(mean, key=lambda k: -mean[k])[:4]
    assert sorted(top, key=repr) == r0["pivotal"]
    assert all(shape == (1, 6, 8) for shape in r0["shapes"].values())  # each rank's own shard


def test_a_block_without_a_residual_on_one_rank_is_computed_on_every_rank(ranks):
    """Rank 1 could not keep block 5's residual (memory budget): reused on rank 0 alone it would
    leave rank 1 computing it — inside its attention all-to-all — alone. It is computed on both."""
    r0, r1 = ranks["blocks_missing"]  # pivotal ratio 0: every other block is reused
    assert r0["computed"][1] == r1["computed"][1] == [5]
    assert ("double_block", 5) in r0["pivotal"] and r0["pivotal"] == r1["pivotal"]
