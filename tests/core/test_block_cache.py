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


def _in_place_block(weight):
    """Like HunyuanVideo's / LTX-Video's blocks: adds to its input in place and returns the same tensor."""
    def block(a):
        img = a["img"]
        img += torch.tanh(img @ weight)
        txt = a.get("txt")
        if txt is not None:
            txt += 0.5 * txt
            return {"img": img, "txt": txt}
        return {"img": img}
    return block


def test_in_place_block_residual_is_taken_against_the_input_before_it_ran():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 8, generator=g)
    x = torch.randn(2, 6, 8, generator=g)
    txt = torch.randn(2, 3, 8, generator=g)
    expected_img = torch.tanh(x @ weight)  # independent: out − in, computed on a copy
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=0.0, refresh_interval=2))
    out = cache.run_block("s", "refresh", ("double_block", 0), {"img": x.clone(), "txt": txt.clone()},
                          _in_place_block(weight), in_place_tensors=("img", "txt"))
    state = cache._slots["s"]
    assert torch.allclose(state.residuals[(("double_block", 0), "img")], expected_img, atol=1e-6)
    assert torch.allclose(state.residuals[(("double_block", 0), "txt")], 0.5 * txt, atol=1e-6)
    expected_score = torch.linalg.vector_norm(expected_img) / torch.linalg.vector_norm(x)
    assert torch.allclose(state.scores[("double_block", 0)], expected_score, rtol=1e-5)
    # the reuse step rebuilds the block's output from the stored residual
    reused = cache.run_block("s", "reuse", ("double_block", 0), {"img": x.clone(), "txt": txt.clone()},
                             _in_place_block(weight), in_place_tensors=("img", "txt"))
    assert torch.allclose(reused["img"], out["img"], atol=1e-6) and torch.allclose(reused["txt"], out["txt"])


def test_in_place_block_without_the_snapshot_would_store_zero():
    """What the adapter's in_place flag prevents: out − args taken after the block ran is 0."""
    x = torch.randn(1, 4, 8)
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=0.0, refresh_interval=2))
    cache.run_block("s", "refresh", ("double_block", 0), {"img": x.clone()}, _in_place_block(torch.eye(8)))
    assert torch.count_nonzero(cache._slots["s"].residuals[(("double_block", 0), "img")]) == 0


def test_in_place_snapshot_respects_the_memory_budget():
    x = torch.randn(1, 64, 64)  # 16 KiB per buffer
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=0.0, refresh_interval=2, memory_budget_mb=0.01))
    out = cache.run_block("s", "refresh", ("double_block", 0), {"img": x.clone()}, _in_place_block(torch.eye(64)),
                          in_place_tensors=("img",))
    assert torch.allclose(out["img"], x + torch.tanh(x))
    assert cache.bytes_allocated == 0 and cache.budget_refusals == 1
