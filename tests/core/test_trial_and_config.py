"""Trial pooling, schedule mapping and input validation."""
import math

import pytest
import torch

from precisecache_core.config import BlockCacheConfig, LFCacheConfig
from precisecache_core.schedule import StepClock
from precisecache_core.trial import check_factors_fit, pool, token_ratio


def test_pool_shapes_and_values():
    x = torch.randn(2, 16, 21, 60, 104)
    y = pool(x, (2, 4, 4), "avg_pool")
    assert y.shape == (2, 16, 11, 15, 26)
    assert torch.allclose(y[:, :, :10].mean(), x[:, :, :20].mean(), atol=1e-4)
    s = pool(x, (2, 4, 4), "strided")
    assert s.shape == y.shape and torch.equal(s, x[:, :, ::2, ::4, ::4])
    assert pool(x, (2, 4, 4)).shape == y.shape  # default operator
    assert pool(x, (1, 1, 1)) is x


def test_strided_trial_keeps_the_noise_level_average_pooling_divides_it():
    noise = torch.randn(1, 16, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    assert abs(pool(noise, (2, 4, 4), "strided").std().item() - 1.0) < 0.05
    assert abs(pool(noise, (2, 4, 4), "avg_pool").std().item() - 32 ** -0.5) < 0.02


def test_token_ratio():
    assert token_ratio((2, 4, 4), (1, 16, 20, 64, 64)) == pytest.approx(1 / 32)
    assert token_ratio((2, 4, 4), (1, 16, 1, 64, 64)) == pytest.approx(1 / 16)


@pytest.mark.parametrize("factors,shape,name", [
    ((2, 8, 4), (1, 16, 5, 4, 16), "trial_downsample_h"),
    ((2, 4, 32), (1, 16, 5, 16, 16), "trial_downsample_w"),
    ((8, 4, 4), (1, 16, 5, 16, 16), "trial_downsample_t"),
])
def test_factor_that_does_not_fit_is_refused_by_name(factors, shape, name):
    with pytest.raises(ValueError, match=name):
        check_factors_fit(factors, shape)


def test_single_cell_latent_is_refused():
    with pytest.raises(ValueError, match="too small"):
        check_factors_fit((1, 1, 1), (1, 16, 3, 1, 1))


@pytest.mark.parametrize("kwargs,name", [
    ({"alpha": -0.1}, "alpha"), ({"alpha": float("nan")}, "alpha"), ({"alpha": 3.0}, "alpha"),
    ({"lowpass_radius": 0.0}, "lowpass_radius"), ({"lowpass_radius": 0.6}, "lowpass_radius"),
    ({"trial_downsample": (0, 4, 4)}, "trial_downsample_t"), ({"trial_downsample": (2, 4, 99)}, "trial_downsample_w"),
    ({"start_percent": 0.5, "end_percent": 0.5}, "start_percent"), ({"end_percent": 1.5}, "end_percent"),
    ({"reuse": "magic"}, "reuse"), ({"trial_operator": "bicubic"}, "trial_operator"), ({"max_consecutive_skips": -1}, "max_consecutive_skips"),
])
def test_lfcache_bad_inputs_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LFCacheConfig(**kwargs).validate()


@pytest.mark.parametrize("kwargs,name", [
    ({"pivotal_ratio": 1.2}, "pivotal_ratio"), ({"refresh_interval": 0}, "refresh_interval"),
    ({"ranking": "l7"}, "ranking"), ({"memory_budget_mb": -1}, "memory_budget_mb"),
    ({"residual_location": "disk"}, "residual_location"), ({"start_percent": 0.9, "end_percent": 0.1}, "start_percent"),
])
def test_blockcache_bad_inputs_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BlockCacheConfig(**kwargs).validate()


def test_step_clock_maps_heun_and_midpoints():
    clock = StepClock.from_schedule([1.0, 0.8, 0.5, 0.2, 0.0])
    assert clock.steps == 4
    assert [clock.step_of(s) for s in (1.0, 0.9, 0.8, 0.65, 0.5, 0.2, 0.1)] == [0, 0, 1, 1, 2, 3, 3]
    window = StepClock.from_schedule([1.0, 0.5, 0.0], start_sigma=0.9, end_sigma=0.1)
    assert not window.in_window(1.0) and window.in_window(0.5) and not window.in_window(0.1)
    assert math.isinf(StepClock.from_schedule([1.0, 0.0]).start_sigma)


def test_trial_factors_keep_whole_patches_where_the_full_latent_has_them():
    """HunyuanVideo at 720p: latent height 90 → 90/4 gives 23 rows, an odd count its 2×2 patches cannot
    tile (ComfyUI's final reshape fails); the nearest factor leaving whole patches is used instead."""
    from precisecache_core.trial import effective_factors, token_ratio
    shape = (1, 16, 33, 90, 160)
    ft, fh, fw = effective_factors((2, 4, 4), shape, (1, 2, 2))
    assert (ft, fw) == (2, 4) and fh in (3, 5)
    assert -(-90 // fh) % 2 == 0 and -(-160 // fw) % 2 == 0
    assert effective_factors((2, 4, 4), shape) == (2, 4, 4)  # no patch constraint: as asked
    assert effective_factors((2, 4, 4), (1, 16, 3, 15, 16), (1, 2, 2))[1] == 4  # odd full height: left as is
    assert token_ratio((2, 4, 4), shape, (1, 2, 2)) == (17 * -(-90 // fh) * 40) / (33 * 90 * 160)
