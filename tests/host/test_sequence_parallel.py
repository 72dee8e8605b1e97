"""A sequence-parallel Wan 2.1 over 2 CPU ranks (gloo), with and without PreciseCache.

Each rank imports ComfyUI and loads our pack as ComfyUI does, builds the same tiny Wan 2.1 (2 heads),
and gets raylight's USP injection rebuilt on yunchang (``usp_wan``): tokens split after the patch
embedding, attention through yunchang's LongContextAttention (Ulysses 2, or ring 2), all-gather before
the head; KSampler, 12 euler steps, CFG 5 (cond and uncond batched).

- uncached: each rank's output equals the single-process output (float tolerance);
- with LFCache + BlockCache and the ranks' SampleGroup: both ranks take identical step decisions and
  pick identical pivotal blocks; each rank's residual buffers hold its own token shard (half the
  tokens, equal to that slice of the single-process residual at the first refresh); the output equals
  a single-process run with the same decisions (its pivotal sets replayed; its step skips coincide
  on their own), within float tolerance;
- the trial sharded like the full forward (raylight's default) and unsharded (every rank alone).
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

pytest.importorskip("yunchang")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core"))
import rank_sync_workers as spawner  # noqa: E402
import sp_workers as spw  # noqa: E402

LF = {"speed_target": 2.0, "step_aside": False}  # steps 2..10 decidable of 12, ~half skipped; no stepping
# aside on measured times (on a loaded CPU the sharded trial's collectives can make it look too slow)
BLOCK = {"pivotal_ratio": 0.5, "refresh_interval": 2}
TOL = dict(rtol=1e-4, atol=5e-5)  # ring attention's online softmax: ~2e-5 from the single-process order
ULYSSES = (2, 1, "sharded")
LAYOUTS = [ULYSSES, (2, 1, "unsharded"), (1, 2, "sharded")]


@pytest.fixture(scope="module")
def runs(comfyui_dir, comfy_base_dir):
    """Both ranks' results of every layout: Ulysses 2 with the trial sharded like the full forward
    (raylight's default) and unsharded (every rank runs it alone), ring 2 with it sharded."""
    r0, r1 = spawner.spawn(spw.sp_run, 2, comfyui_dir, comfy_base_dir, LAYOUTS, LF, BLOCK)
    return r0, r1


def _layout(runs, layout):
    r0, r1 = runs
    return {**r0[layout], **{k: v for k, v in r0.items() if isinstance(k, str)}}, r1[layout]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: f"ulysses{l[0]}-ring{l[1]}-{l[2]}-trial")
def test_uncached_sequence_parallel_output_equals_the_single_process_output(runs, layout):
    r0, r1 = _layout(runs, layout)
    single = r0["single_uncached"]
    assert single.abs().max() > 0.1
    for r in (r0, r1):
        torch.testing.assert_close(r["uncached"], single, **TOL)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: f"ulysses{l[0]}-ring{l[1]}-{l[2]}-trial")
def test_both_ranks_take_identical_step_decisions_and_pivotal_blocks(runs, layout):
    r0, r1 = _layout(runs, layout)
    rep0, rep1 = r0["report"], r1["report"]
    assert rep0["skipped"] == rep1["skipped"] and rep0["skipped"], rep0
    assert all(a == b or (a != a and b != b) for a, b in zip(rep0["lfd"], rep1["lfd"]))
    assert r0["pivotal"] == r1["pivotal"] and r0["pivotal"]
    assert all(len(p) == 2 for p in r0["pivotal"])  # ⌈0.5 × 4⌉ of the 4 blocks
    assert rep0["blocks_reused"] == rep1["blocks_reused"] > 0
    assert rep0["full"] == rep1["full"] and rep0["trials"] == rep1["trials"] > 0
    assert any("agreed over 2 ranks" in n for n in rep0["notes"])


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: f"ulysses{l[0]}-ring{l[1]}-{l[2]}-trial")
def test_each_rank_residual_buffers_hold_its_own_shard(runs, layout):
    r0, r1 = _layout(runs, layout)
    tokens = 5 * 8 * 8
    for rank, r in enumerate((r0, r1)):
        assert r["buffer_shapes"] == [(2, tokens // 2, spw.DIM)]  # cond + uncond, half the tokens, dim
        assert r["residuals"]
        for block, residual in r["residuals"].items():
            whole = r0["single_residuals"][block]
            assert whole.shape == (2, tokens, spw.DIM)
            torch.testing.assert_close(residual, whole[:, rank * tokens // 2:(rank + 1) * tokens // 2], **TOL)
    assert r0["report"]["cache_bytes_peak"] < r0["single_report"]["cache_bytes_peak"]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: f"ulysses{l[0]}-ring{l[1]}-{l[2]}-trial")
def test_cached_output_matches_the_single_process_run_with_the_same_decisions(runs, layout):
    r0, r1 = _layout(runs, layout)
    assert r0["single_natural_report"]["skipped"] == r0["report"]["skipped"]  # step decisions coincide on their own
    assert r0["single_natural_pivotal"] == r0["pivotal"]  # here the shards' mean scores pick the same blocks too
    assert r0["single_report"]["skipped"] == r0["report"]["skipped"]
    assert r0["single_report"]["blocks_reused"] == r0["report"]["blocks_reused"]
    for r in (r0, r1):
        torch.testing.assert_close(r["cached"], r0["single_cached"], **TOL)
    assert not torch.allclose(r0["cached"], r0["uncached"], rtol=1e-4, atol=1e-5)  # the cache acted
