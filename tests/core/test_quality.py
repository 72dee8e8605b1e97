"""PSNR and SSIM of precisecache_core.quality against independent implementations: the textbook
PSNR formula in numpy, scikit-image's structural_similarity and torchmetrics' SSIM."""
import math

import numpy as np
import pytest
import torch

from precisecache_core import quality

skimage_metrics = pytest.importorskip("skimage.metrics")


def _psnr_numpy(a, b, peak):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 10 * np.log10(peak ** 2 / np.mean((a - b) ** 2))


def _frames(seed, n=3, h=24, w=20, noise=0.03):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, h, w, 3, generator=g)
    cand = (ref + noise * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    return ref, cand


def test_psnr_of_images_equals_the_formula_and_scikit_image():
    ref, cand = _frames(0)
    q = quality.compare(ref, cand, "image")
    assert q.peak == 1.0
    assert q.psnr == pytest.approx(_psnr_numpy(ref, cand, 1.0), abs=1e-9)
    assert q.psnr == pytest.approx(skimage_metrics.peak_signal_noise_ratio(
        ref.double().numpy(), cand.double().numpy(), data_range=1.0), abs=1e-9)


def test_psnr_of_a_constant_offset_is_known_in_closed_form():
    ref = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    peak = float(ref.max() - ref.min())
    # MSE of a constant offset c is c², so PSNR = 20 log10(peak / c)
    assert quality.compare(ref, ref + 0.01, "latent").psnr == pytest.approx(20 * math.log10(peak / 0.01), abs=1e-4)


def test_ssim_of_frames_equals_scikit_image_per_frame_mean():
    ref, cand = _frames(2)
    q = quality.compare(ref, cand, "image")
    expected = np.mean([skimage_metrics.structural_similarity(
        ref[i].double().numpy(), cand[i].double().numpy(), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0, channel_axis=-1) for i in range(ref.shape[0])])
    assert q.window == 11
    assert q.ssim == pytest.approx(expected, abs=1e-10)
    assert q.ssim < 0.999  # the noise is visible: the comparison can fail


def test_ssim_map_equals_torchmetrics_on_the_valid_region():
    """torchmetrics averages its map over the whole reflect-padded image; inside the 5-cell border its
    map is computed from real pixels only, and its mean there is ours."""
    tm = pytest.importorskip("torchmetrics.functional.image")
    ref, cand = _frames(3, n=2, h=32, w=40)
    _, full = tm.structural_similarity_index_measure(cand.permute(0, 3, 1, 2).double(), ref.permute(0, 3, 1, 2).double(),
                                                     data_range=1.0, return_full_image=True)
    assert quality.compare(ref, cand, "image").ssim == pytest.approx(float(full[..., 5:-5, 5:-5].mean()), abs=1e-10)


def test_latent_uses_the_reference_range_as_peak_and_planes_per_channel_and_frame():
    g = torch.Generator().manual_seed(4)
    ref = torch.randn(1, 4, 2, 16, 16, generator=g) * 2
    cand = ref + 0.1 * torch.randn(ref.shape, generator=g)
    q = quality.compare(ref, cand, "latent")
    peak = float(ref.max() - ref.min())
    assert q.peak == pytest.approx(peak)
    assert q.psnr == pytest.approx(_psnr_numpy(ref, cand, peak), abs=1e-9)
    planes_ref = ref.reshape(-1, 16, 16).double().numpy()
    planes_cand = cand.reshape(-1, 16, 16).double().numpy()
    expected = np.mean([skimage_metrics.structural_similarity(
        planes_ref[i], planes_cand[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=peak) for i in range(planes_ref.shape[0])])
    assert q.ssim == pytest.approx(expected, abs=1e-10)


def test_small_planes_shrink_the_window_as_scikit_image_does_for_the_scaled_sigma():
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(1, 2, 1, 8, 9, generator=g)
    cand = ref + 0.2 * torch.randn(ref.shape, generator=g)
    q = quality.compare(ref, cand, "latent")
    assert q.window == 7
    peak = float(ref.max() - ref.min())
    sigma = 1.5 * 7 / 11  # scikit-image's window for this sigma (truncate 3.5) is 7
    planes_ref, planes_cand = ref.reshape(-1, 8, 9).double().numpy(), cand.reshape(-1, 8, 9).double().numpy()
    expected = np.mean([skimage_metrics.structural_similarity(
        planes_ref[i], planes_cand[i], gaussian_weights=True, sigma=sigma, use_sample_covariance=False,
        data_range=peak) for i in range(2)])
    assert q.ssim == pytest.approx(expected, abs=1e-10)


def test_identical_is_infinite_psnr_and_ssim_one_and_tiny_planes_have_no_ssim():
    ref, _ = _frames(6)
    q = quality.compare(ref, ref.clone(), "image")
    assert q.identical and math.isinf(q.psnr) and q.ssim == pytest.approx(1.0)
    tiny = torch.randn(1, 16, 3, 2, 2)
    q = quality.compare(tiny, tiny + 0.1, "latent")
    assert q.ssim is None and q.window == 0 and math.isfinite(q.psnr)


def test_chunked_computation_equals_one_piece(monkeypatch):
    ref, cand = _frames(7, n=5, h=16, w=16)
    whole = quality.compare(ref, cand, "image")
    monkeypatch.setattr(quality, "_CHUNK_ELEMENTS", 300)  # several planes' worth split over many chunks
    chunked = quality.compare(ref, cand, "image")
    assert chunked.psnr == pytest.approx(whole.psnr, abs=1e-9)
    assert chunked.ssim == pytest.approx(whole.ssim, abs=1e-12)


def test_mismatched_or_non_finite_inputs_are_refused():
    a = torch.zeros(1, 8, 8, 3)
    with pytest.raises(ValueError, match="different shapes"):
        quality.compare(a, torch.zeros(1, 8, 9, 3), "image")
    with pytest.raises(ValueError, match="the candidate holds NaN"):
        quality.compare(a, torch.full_like(a, float("nan")), "image")
    with pytest.raises(ValueError, match="layout"):
        quality.compare(a, a, "video")
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        quality.compare(torch.zeros(8, 8), torch.zeros(8, 8), "image")
