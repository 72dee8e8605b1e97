"""The low-frequency difference metric."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from precisecache_core.lowpass import low_frequency_distance, low_pass, lowpass_mask

shapes = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(4, 12), st.integers(4, 12))


def _tensor(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**16))
def test_zero_for_equal_inputs(shape, seed):
    a = _tensor(shape, seed)
    assert low_frequency_distance(a, a.clone()).item() == 0.0


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**16))
def test_symmetric_and_nonnegative(shape, seed):
    a, b = _tensor(shape, seed), _tensor(shape, seed + 1)
    ab, ba = low_frequency_distance(a, b).item(), low_frequency_distance(b, a).item()
    assert ab >= 0 and math.isclose(ab, ba, rel_tol=1e-5, abs_tol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 24), st.integers(8, 24), st.integers(0, 2**16), st.floats(0.1, 0.3))
def test_invariant_to_high_frequency_changes(h, w, seed, radius):
    """Adding a pattern made only of frequencies outside the circle leaves the LFD unchanged."""
    a, b = _tensor((1, 2, 3, h, w), seed), _tensor((1, 2, 3, h, w), seed + 7)
    mask = lowpass_mask(h, w, radius)
    noise_spectrum = torch.fft.fft2(_tensor((1, 2, 3, h, w), seed + 3), norm="ortho") * (1 - mask)
    high = torch.fft.ifft2(noise_spectrum, norm="ortho").real
    base = low_frequency_distance(a, b, radius).item()
    assert math.isclose(low_frequency_distance(a + high, b, radius).item(), base, rel_tol=1e-4, abs_tol=1e-4)
    assert low_frequency_distance(a + high, a, radius).item() < 1e-3 * max(1.0, high.norm().item())


def test_sensitive_to_low_frequency_changes():
    a = torch.zeros(1, 1, 16, 16)
    assert low_frequency_distance(a, a + 1.0).item() == pytest.approx(16.0)  # DC shift: ‖1‖₂ over 256 cells


def test_matches_spatial_definition():
    """‖LP(a) − LP(b)‖₂ computed through the inverse FFT equals the Parseval shortcut."""
    a, b = _tensor((2, 4, 3, 10, 14), 1), _tensor((2, 4, 3, 10, 14), 2)
    direct = torch.linalg.vector_norm(low_pass(a) - low_pass(b)).item()
    assert low_frequency_distance(a, b).item() == pytest.approx(direct, rel=1e-5)


def test_mask_is_the_centred_circle():
    """The uncentred mask, fft-shifted, is the circle of radius r·min(H, W) around the centre."""
    h, w, r = 20, 30, 0.2
    shifted = torch.fft.fftshift(lowpass_mask(h, w, r))
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    expected = ((yy ** 2 + xx ** 2).float().sqrt() <= r * min(h, w)).float()
    assert torch.equal(shifted, expected)


@pytest.mark.parametrize("radius", [0.0, -0.1, 0.51, float("nan")])
def test_bad_radius_is_refused_by_name(radius):
    with pytest.raises(ValueError, match="lowpass_radius"):
        lowpass_mask(8, 8, radius)


def test_works_on_images_and_keeps_float32():
    a = _tensor((1, 4, 8, 8), 0).to(torch.bfloat16)
    d = low_frequency_distance(a, a * 0)
    assert d.dtype == torch.float32 and d.dim() == 0 and d.item() > 0
