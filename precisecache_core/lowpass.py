"""Low-frequency difference (LFD): the metric LFCache decides with.

Notation: a prediction ``F`` has shape ``[B, C, T, H, W]`` (video) or ``[B, C, H, W]`` (image).
For every batch item, channel and frame the 2-D spatial FFT is taken,

    S = FFT2(F)  over (H, W), orthonormal,

and a circular low-pass mask keeps the frequencies (k_y, k_x) with

    sqrt(k_y² + k_x²) ≤ r · min(H, W),    k_y ∈ {-⌊H/2⌋ … ⌈H/2⌉-1},  k_x likewise,

which is the paper's "centred FFT, circle of radius min(H, W)/5" (r = 0.2) written in the
uncentred layout (the mask is built on integer frequencies, so no fftshift is needed).

    LP(F)          = IFFT2(mask ⊙ S)
    LFD(F_a, F_b)  = ‖LP(F_a) − LP(F_b)‖₂ = ‖mask ⊙ FFT2(F_a − F_b)‖₂    (Parseval, linearity)

The last form is what is computed: one FFT of the difference, no inverse transform.
Everything is computed in float32 on the tensors' own device; the result is a 0-d tensor, so the
caller decides when (and whether) to synchronise with the host.
"""
from __future__ import annotations

import torch

DEFAULT_RADIUS = 0.2
"""Mask radius as a fraction of min(H, W): the paper's min(H, W) / 5."""
MAX_RADIUS = 0.5
"""The largest radius allowed: half of min(H, W), the highest frequency along the shorter axis."""


def check_radius(radius: float, name: str = "lowpass_radius") -> float:
    """Return ``radius`` if it lies in (0, MAX_RADIUS], else raise a ValueError naming the input."""
    if not (isinstance(radius, (int, float)) and 0.0 < float(radius) <= MAX_RADIUS):
        raise ValueError(f"{name} = {radius!r} is out of range: allowed (0, {MAX_RADIUS}] "
                         f"(fraction of min(height, width); the paper uses {DEFAULT_RADIUS})")
    return float(radius)


_MASKS: dict[tuple[int, int, float, str], torch.Tensor] = {}


def lowpass_mask(height: int, width: int, radius: float = DEFAULT_RADIUS,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Circular low-pass mask ``[H, W]`` (float32, 1 inside the circle) in the uncentred FFT layout.

    Built once per (shape, radius, device) and reused. The DC term is always inside the mask.
    """
    check_radius(radius)
    key = (int(height), int(width), float(radius), str(torch.device(device)))
    mask = _MASKS.get(key)
    if mask is None:
        ky = torch.fft.fftfreq(key[0], d=1.0 / key[0])  # integer frequencies, uncentred layout
        kx = torch.fft.fftfreq(key[1], d=1.0 / key[1])
        dist = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
        mask = (dist <= key[2] * min(key[0], key[1])).to(device=device, dtype=torch.float32)
        if len(_MASKS) > 256:
            _MASKS.clear()
        _MASKS[key] = mask
    return mask


def _check_spatial(x: torch.Tensor) -> None:
    if x.dim() not in (4, 5):
        raise ValueError(f"expected a prediction of shape [B, C, H, W] or [B, C, T, H, W], got {tuple(x.shape)}")


def low_pass(x: torch.Tensor, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """``LP(x)``: the spatial low-frequency part of ``x`` (same shape, float32)."""
    _check_spatial(x)
    h, w = x.shape[-2:]
    spectrum = torch.fft.fft2(x.float(), norm="ortho")
    return torch.fft.ifft2(spectrum * lowpass_mask(h, w, radius, x.device), norm="ortho").real


def low_frequency_distance(a: torch.Tensor, b: torch.Tensor, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """``LFD(a, b) = ‖LP(a) − LP(b)‖₂`` over the whole tensor, as a 0-d float32 tensor.

    ``a`` and ``b`` must have the same shape ``[B, C, (T,) H, W]``.
    """
    if a.shape != b.shape:
        raise ValueError(f"low_frequency_distance needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    _check_spatial(a)
    h, w = a.shape[-2:]
    spectrum = torch.fft.fft2(a.float() - b.float(), norm="ortho")
    return torch.linalg.vector_norm(spectrum * lowpass_mask(h, w, radius, a.device))
