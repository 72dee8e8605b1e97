"""BlockCache residual buffers and pivotal selection."""
import torch
from hypothesis import given, settings, strategies as st

from precisecache_core.block_cache import BlockResidualCache, block_phase, pivotal_count, select_pivotal
from precisecache_core.config import BlockCacheConfig


def test_pivotal_selection_takes_largest():
    mask = select_pivotal(torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7]), 0.4)
    assert mask.tolist() == [False, True, False, False, True]
    assert pivotal_count(10, 0.4) == 4 and pivotal_count(3, 0.4) == 2 and pivotal_count(5, 1.0) == 5


def test_phase_cycle():
    assert block_phase(None, 3) == "refresh"
    assert [block_phase(i, 3) for i in range(4)] == ["reuse", "reuse", "reuse", "refresh"]


def _run_steps(cache, blocks, x, phases, slot="s"):
    calls = []
    for phase in phases:
        h = x
        for j, fn in enumerate(blocks):
            def compute(a, fn=fn, j=j):
                calls.append(j)
                return {"img": fn(a["img"])}
            h = cache.run_block(slot, phase, ("double_block", j), {"img": h}, compute)["img"]
        if phase == "refresh":
            pass
        yield h, calls


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.0, 0.99))
def test_identity_block_reuse_is_exact(seed, ratio):
    """A block that is the identity has a zero residual, so reusing it reproduces it exactly."""
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(seed))
    blocks = [lambda t: t, lambda t: t * 2.0, lambda t: t]
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=ratio, refresh_interval=3))
    outs = [h.clone() for h, _ in _run_steps(cache, blocks, x, ["refresh", "reuse", "reuse"])]
    for h in outs:
        assert torch.equal(h, x * 2.0)


def test_reuse_replaces_only_non_pivotal_blocks_and_counts():
    x = torch.ones(1, 4, 8)
    blocks = [lambda t: t + 1.0, lambda t: t * 3.0, lambda t: t + 0.01, lambda t: t - 0.02, lambda t: t * 1.5]
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=0.4, refresh_interval=2))
    calls = []
    for phase in ["refresh", "reuse"]:
        h = x
        for j, fn in enumerate(blocks):
            def compute(a, fn=fn, j=j):
                calls.append((phase, j))
                return {"img": fn(a["img"])}
            h = cache.run_block("slot", phase, ("double_block", j), {"img": h}, compute)["img"]
    reuse_calls = [j for p, j in calls if p == "reuse"]
    # relative residual sizes: b0 1.0, b1 2.0, b2 ~0.002, b3 ~0.003, b4 0.5 → pivotal = {0, 1}
    assert reuse_calls == [0, 1]
    assert cache.blocks_reused == 3 and cache.blocks_computed == 7
    assert cache.bytes_allocated == 5 * x.numel() * 4


def test_memory_budget_caps_buffers():
    x = torch.ones(1, 4, 8)  # 128 bytes per residual
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=0.0, memory_budget_mb=300 / 2**20))
    for j in range(5):
        cache.run_block("s", "refresh", ("double_block", j), {"img": x}, lambda a: {"img": a["img"] + 1})
    assert cache.bytes_allocated <= 300 and cache.budget_refusals == 3
    for j in range(5):
        cache.run_block("s", "reuse", ("double_block", j), {"img": x}, lambda a: {"img": a["img"] + 1})
    assert cache.blocks_reused == 2
    cache.release()
    assert cache.bytes_allocated == 0


def test_multi_tensor_blocks_keep_every_output():
    """HunyuanVideo double blocks return img and txt: reuse must rebuild both."""
    img, txt = torch.randn(1, 4, 8), torch.randn(1, 3, 8)
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=0.0))
    fn = lambda a: {"img": a["img"] * 2, "txt": a["txt"] + 1}
    cache.run_block("s", "refresh", ("double_block", 0), {"img": img, "txt": txt, "vec": None}, fn)
    out = cache.run_block("s", "reuse", ("double_block", 0), {"img": img, "txt": txt, "vec": None},
                          lambda a: (_ for _ in ()).throw(AssertionError("should reuse")))
    assert set(out) == {"img", "txt"} and torch.allclose(out["img"], img * 2) and torch.allclose(out["txt"], txt + 1)


def test_shape_change_recomputes():
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=0.0))
    fn = lambda a: {"img": a["img"] + 1}
    cache.run_block("s", "refresh", ("b", 0), {"img": torch.zeros(1, 4, 8)}, fn)
    out = cache.run_block("s", "reuse", ("b", 0), {"img": torch.zeros(1, 5, 8)}, fn)
    assert out["img"].shape == (1, 5, 8) and cache.blocks_reused == 0
