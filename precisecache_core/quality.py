"""How close a cached result is to the uncached one: PSNR and SSIM on tensors (pure torch).

Two layouts:

* ``"image"``: ComfyUI IMAGE frames ``[N, H, W, C]`` in [0, 1] (decoded video frames); peak 1.
* ``"latent"``: a latent ``[B, C, T, H, W]`` or ``[B, C, H, W]``; peak = the reference's
  peak-to-peak range (max − min), since a latent has no fixed range.

Both are cut into 2-D planes ``[H, W]`` (one per frame and channel). PSNR is taken over the whole
tensor: 10·log10(peak² / MSE), ∞ when identical. SSIM (Wang et al. 2004) is the mean of the SSIM
map over every plane's valid region (no padding), with an 11×11 Gaussian window of σ 1.5 and
K1 = 0.01, K2 = 0.03: scikit-image's ``structural_similarity(gaussian_weights=True,
use_sample_covariance=False)``, and torchmetrics' ``structural_similarity_index_measure`` map on the
same region (torchmetrics also averages a 5-cell border of reflect-padded values, which moves its
mean by about 1e-4; scripts/benchmark.py reports that one). On
planes smaller than 11 cells (tiny latents) the window shrinks to the largest odd size that fits,
σ scaled with it; planes under 3 cells have no SSIM (None).

Work is done in float64, a bounded number of planes at a time, so a long 720p clip does not need
several float64 copies of itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

LAYOUTS = ("image", "latent")
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_CHUNK_ELEMENTS = 1 << 23
"""Elements per float64 chunk (64 MiB per intermediate map)."""


@dataclass(frozen=True)
class Quality:
    psnr: float
    """dB; ``math.inf`` when the two are identical."""
    ssim: float | None
    """Mean SSIM in [-1, 1]; None when the planes are too small for a 3-cell window."""
    peak: float
    """The peak value used (1 for images, the reference's range for latents)."""
    window: int
    """SSIM window side used (11, smaller on tiny planes; 0 when no SSIM)."""

    @property
    def identical(self) -> bool:
        return math.isinf(self.psnr)


def planes(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` as ``[P, H, W]`` planes (frames × channels)."""
    if layout == "image":
        if x.ndim != 4:
            raise ValueError(f"an image batch must be [N, H, W, C], got shape {tuple(x.shape)}")
        return x.permute(0, 3, 1, 2).reshape(-1, x.shape[1], x.shape[2])
    if layout == "latent":
        if x.ndim not in (4, 5):
            raise ValueError(f"a latent must be [B, C, H, W] or [B, C, T, H, W], got shape {tuple(x.shape)}")
        return x.reshape(-1, x.shape[-2], x.shape[-1])
    raise ValueError(f"layout = {layout!r} is not allowed: choose one of {LAYOUTS}")


def _chunks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    per_plane = max(1, a.shape[-2] * a.shape[-1])
    step = max(1, _CHUNK_ELEMENTS // per_plane)
    for i in range(0, a.shape[0], step):
        yield a[i:i + step].double(), b[i:i + step].double()


def ssim_window(height: int, width: int) -> int:
    """The SSIM window side for planes of this size: 11, or the largest odd size that fits; 0 if < 3."""
    side = min(SSIM_WINDOW, height, width)
    if side % 2 == 0:
        side -= 1
    return side if side >= 3 else 0


def _gaussian(side: int, device) -> torch.Tensor:
    sigma = SSIM_SIGMA * side / SSIM_WINDOW
    d = torch.arange(side, dtype=torch.float64, device=device) - (side - 1) / 2
    g = torch.exp(-(d / sigma) ** 2 / 2)
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of ``[P, 1, H, W]``, valid region only."""
    side = g.numel()
    x = F.conv2d(x, g.view(1, 1, side, 1))
    return F.conv2d(x, g.view(1, 1, 1, side))


def psnr(reference: torch.Tensor, candidate: torch.Tensor, peak: float) -> float:
    """10·log10(peak² / MSE) over all elements; ``math.inf`` when identical."""
    reference, candidate = reference.detach(), candidate.detach()
    _check_pair(reference, candidate)
    if not (isinstance(peak, (int, float)) and peak > 0 and math.isfinite(peak)):
        raise ValueError(f"peak = {peak!r} must be a positive finite number")
    return _psnr(reference, candidate, peak)


def _psnr(reference: torch.Tensor, candidate: torch.Tensor, peak: float) -> float:
    """:func:`psnr` on inputs already checked."""
    a, b = reference.reshape(-1), candidate.reshape(-1)
    squared = 0.0
    for i in range(0, a.numel(), _CHUNK_ELEMENTS):
        d = a[i:i + _CHUNK_ELEMENTS].double() - b[i:i + _CHUNK_ELEMENTS].double()
        squared += float((d * d).sum())
    mse = squared / max(1, reference.numel())
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def ssim(reference_planes: torch.Tensor, candidate_planes: torch.Tensor, peak: float) -> tuple[float | None, int]:
    """(mean SSIM, window side) over ``[P, H, W]`` planes; (None, 0) when the planes are too small."""
    reference_planes, candidate_planes = reference_planes.detach(), candidate_planes.detach()
    _check_pair(reference_planes, candidate_planes)
    return _ssim(reference_planes, candidate_planes, peak)


def _ssim(reference_planes: torch.Tensor, candidate_planes: torch.Tensor, peak: float) -> tuple[float | None, int]:
    """:func:`ssim` on inputs already checked."""
    side = ssim_window(reference_planes.shape[-2], reference_planes.shape[-1])
    if side == 0:
        return None, 0
    g = _gaussian(side, reference_planes.device)
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    total, count = 0.0, 0
    for x, y in _chunks(reference_planes, candidate_planes):
        x, y = x.unsqueeze(1), y.unsqueeze(1)
        mu_x, mu_y = _filter(x, g), _filter(y, g)
        var_x = _filter(x * x, g) - mu_x * mu_x
        var_y = _filter(y * y, g) - mu_y * mu_y
        cov = _filter(x * y, g) - mu_x * mu_y
        index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
        total += float(index.sum())
        count += index.numel()
    return total / count, side


def compare(reference: torch.Tensor, candidate: torch.Tensor, layout: str) -> Quality:
    """PSNR and SSIM of ``candidate`` against ``reference`` (see the module doc for ``layout``)."""
    reference, candidate = reference.detach(), candidate.detach()
    _check_pair(reference, candidate)
    ref_planes, cand_planes = planes(reference, layout), planes(candidate, layout)
    if layout == "image":
        peak = 1.0
    else:
        peak = float(reference.max() - reference.min()) if reference.numel() else 0.0
        if not math.isfinite(peak) or peak <= 0:
            peak = 1.0
    value, side = _ssim(ref_planes, cand_planes, peak)  # the pair was checked once, above
    return Quality(psnr=_psnr(reference, candidate, peak), ssim=value, peak=peak, window=side)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"cannot compare tensors of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    for which, t in (("reference", a), ("candidate", b)):
        if not torch.isfinite(t).all():
            raise ValueError(f"cannot compare: the {which} holds NaN or infinity")
