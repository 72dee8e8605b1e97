"""A fixed, linear, documented stand-in for Wan's VAE: RGB clips <-> 16-channel latents.

Shapes
------
clip   : ``[B, 3, F, H, W]`` in [0, 1],  ``F = 1 + 4 (T - 1)``,  ``H, W`` multiples of 8
latent : ``[B, 16, T, H / 8, W / 8]``   (the shape Wan 2.1's VAE gives; ``EmptyHunyuanLatentVideo``
         / ``EmptyLatentVideo`` with width W, height H, length F make exactly this shape)

Which latent space
------------------
``encode`` returns, and ``decode`` expects, latents in **ComfyUI's normalised model space** for
Wan 2.1, i.e. the space *after* ``comfy.latent_formats.Wan21().process_in``.  That is the space the
diffusion model sees and the space the demo model was trained in.  A ComfyUI ``LATENT`` (what
``KSampler`` returns) holds ``process_out(z)``, so:

    frames = decode(Wan21().process_in(latent["samples"]))

and to hand an encoded clip to ComfyUI as a LATENT use ``Wan21().process_out(encode(clip))``.
(This package imports nothing from ComfyUI; the node ``PreciseCacheDemoDecode`` applies
``process_in`` for you.)

The map (per latent frame t and latent pixel (i, j), i.e. an 8x8 pixel block)
-----------------------------------------------------------------------------
1. ``p = 2 * clip - 1`` and an orthonormal opponent colour transform
   ``Y = (R+G+B)/sqrt3``, ``C1 = (R-G)/sqrt2``, ``C2 = (R+G-2B)/sqrt6``.
2. 4x4 average pooling: every 8x8 block becomes 2x2 "sub-pixels" (effective resolution H/4 x W/4).
3. Time: latent frame 0 <-> video frame 0; latent frame t >= 1 <-> video frames 4t-3 .. 4t (Wan's
   causal grouping).  Two samples are kept per latent frame: A = frame 4t-2 and B = frame 4t
   (for t = 0 both are frame 0).  Odd frames are not stored.
4. 16 channels = [Y_A at the 4 sub-pixels, Y_B at the 4 sub-pixels, C1 at the 4 sub-pixels,
   C2 at the 4 sub-pixels], chroma being the mean of A and B (space-to-depth order (0,0),(0,1),
   (1,0),(1,1)).
5. Standardise with fixed constants measured once on the demo clips (240 clips, all conditions):
   ``Y -> (Y - Y_MEAN) / Y_STD``, ``C1 -> C1 / C1_STD``, ``C2 -> C2 / C2_STD``, then
   ``z = Q @ u`` with ``Q`` a fixed 16x16 orthogonal matrix (seeded QR), so every channel carries
   a mixture, like a real VAE latent, with mean ~ 0 and std ~ 1 on the clips (as a real Wan latent
   has after ``process_in``).

``decode`` is the pseudo-inverse: un-mix (``Q^T``), un-standardise, nearest-neighbour up-sampling
of the sub-pixels (exact pseudo-inverse of average pooling), key frames 0, 2, 4, ..., F-1 from
the A/B samples (frame 0 = mean of A_0 and B_0), odd frames = mean of their two neighbouring key
frames, inverse colour transform, ``(p + 1) / 2``.

Invertibility (tested):
* ``encode(decode(z)) == z`` exactly (up to float error) for every ``z`` in the range of
  ``encode`` (the only constraint: Y_A == Y_B at t = 0), when ``decode`` is not clamped.
* ``decode(encode(x))`` is a projection: ``x`` with its 4x4 blocks averaged, chroma averaged
  over each A/B pair and odd frames replaced by the mean of their neighbours.  Clips that are
  already of that form (e.g. ``decode`` outputs) round-trip exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LATENT_CHANNELS = 16
SPATIAL = 8          # pixels per latent pixel (as Wan's VAE)
POOL = 4             # average-pool factor; 8 / 4 = 2x2 sub-pixels per latent pixel
TEMPORAL = 4         # video frames per latent frame after the first (as Wan's VAE)
# Standardisation of the pooled opponent-colour values (measured on the demo clips, then fixed):
Y_MEAN, Y_STD = -0.95, 0.46
C1_STD, C2_STD = 0.17, 0.22
MIX_SEED = 20260301

_SQ3, _SQ2, _SQ6 = math.sqrt(3.0), math.sqrt(2.0), math.sqrt(6.0)
# rows: Y, C1, C2 (orthonormal)
COLOUR = torch.tensor([
    [1 / _SQ3, 1 / _SQ3, 1 / _SQ3],
    [1 / _SQ2, -1 / _SQ2, 0.0],
    [1 / _SQ6, 1 / _SQ6, -2 / _SQ6],
], dtype=torch.float64)


def mixing_matrix() -> torch.Tensor:
    """The fixed orthogonal 16x16 channel mixing ``Q`` (float64, deterministic)."""
    g = torch.Generator().manual_seed(MIX_SEED)
    a = torch.randn(LATENT_CHANNELS, LATENT_CHANNELS, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique QR: positive diag(R)
    return q


_Q = mixing_matrix()


def latent_frames(frames: int) -> int:
    """Wan's latent length for ``frames`` video frames: ``1 + (frames - 1) // 4``."""
    return 1 + (frames - 1) // TEMPORAL


def video_frames(t: int) -> int:
    """Video frames represented by ``t`` latent frames: ``1 + 4 (t - 1)``."""
    return 1 + TEMPORAL * (t - 1)


def _sample_indices(t: int) -> tuple[list[int], list[int]]:
    a = [0] + [TEMPORAL * k - 2 for k in range(1, t)]
    b = [0] + [TEMPORAL * k for k in range(1, t)]
    return a, b


def _mix(u: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bcthw->bothw", q.to(u.dtype), u)


def encode(clip: torch.Tensor) -> torch.Tensor:
    """``[B, 3, F, H, W]`` in [0, 1] -> normalised-space latent ``[B, 16, T, H/8, W/8]``."""
    if clip.ndim != 5 or clip.shape[1] != 3:
        raise ValueError(f"expected [B, 3, F, H, W], got {tuple(clip.shape)}")
    b, _, f, h, w = clip.shape
    if (f - 1) % TEMPORAL or h % SPATIAL or w % SPATIAL:
        raise ValueError(f"need F = 1 + 4k and H, W multiples of 8, got F={f}, H={h}, W={w}")
    dtype = clip.dtype if clip.dtype in (torch.float32, torch.float64) else torch.float32
    p = clip.to(dtype) * 2 - 1
    ycc = torch.einsum("oc,bcfhw->bofhw", COLOUR.to(dtype), p)
    pooled = F.avg_pool3d(ycc, kernel_size=(1, POOL, POOL))        # [B, 3, F, H/4, W/4]
    t = latent_frames(f)
    ia, ib = _sample_indices(t)
    sa, sb = pooled[:, :, ia], pooled[:, :, ib]                     # [B, 3, T, H/4, W/4]
    y_a = _s2d(sa[:, :1])
    y_b = _s2d(sb[:, :1])
    chroma = _s2d(0.5 * (sa[:, 1:] + sb[:, 1:]))                    # [B, 8, T, H/8, W/8]
    u = torch.cat([y_a, y_b, chroma], dim=1)
    return _mix(_standardise(u), _Q)


def decode(latent: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Normalised-space latent ``[B, 16, T, h, w]`` -> clip ``[B, 3, 1+4(T-1), 8h, 8w]``.

    With ``clamp`` (default) the result is clipped to [0, 1]; without it, it is the exact
    linear pseudo-inverse (useful for round-trip tests).
    """
    if latent.ndim != 5 or latent.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"expected [B, 16, T, h, w], got {tuple(latent.shape)}")
    dtype = latent.dtype if latent.dtype in (torch.float32, torch.float64) else torch.float32
    z = latent.to(dtype)
    u = _unstandardise(_mix(z, _Q.T))
    y_a, y_b, chroma = _d2s(u[:, 0:4]), _d2s(u[:, 4:8]), _d2s(u[:, 8:16])  # [B,1|1|2,T,H/4,W/4]
    b, _, t, h4, w4 = y_a.shape
    keys = []  # key frames at video indices 0, 2, 4, ...
    keys.append(torch.cat([0.5 * (y_a[:, :, 0] + y_b[:, :, 0]), chroma[:, :, 0]], dim=1))
    for k in range(1, t):
        keys.append(torch.cat([y_a[:, :, k], chroma[:, :, k]], dim=1))
        keys.append(torch.cat([y_b[:, :, k], chroma[:, :, k]], dim=1))
    frames = []
    for i, key in enumerate(keys):
        if i > 0:
            frames.append(0.5 * (keys[i - 1] + key))
        frames.append(key)
    ycc = torch.stack(frames, dim=2)                                  # [B, 3, F, H/4, W/4]
    ycc = ycc.repeat_interleave(POOL, dim=3).repeat_interleave(POOL, dim=4)
    p = torch.einsum("oc,bofhw->bcfhw", COLOUR.to(dtype), ycc)       # COLOUR^T (orthonormal)
    out = (p + 1) / 2
    return out.clamp(0.0, 1.0) if clamp else out


def _affine(dtype):
    shift = torch.tensor([Y_MEAN] * 8 + [0.0] * 8, dtype=dtype).view(1, 16, 1, 1, 1)
    scale = torch.tensor([Y_STD] * 8 + [C1_STD] * 4 + [C2_STD] * 4, dtype=dtype).view(1, 16, 1, 1, 1)
    return shift, scale


def _standardise(u: torch.Tensor) -> torch.Tensor:
    shift, scale = _affine(u.dtype)
    return (u - shift) / scale


def _unstandardise(u: torch.Tensor) -> torch.Tensor:
    shift, scale = _affine(u.dtype)
    return u * scale + shift


def _s2d(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, 2h, 2w] -> [B, 4C, T, h, w]; channel index = c * 4 + (dy * 2 + dx)."""
    b, c, t, h2, w2 = x.shape
    x = x.reshape(b, c, t, h2 // 2, 2, w2 // 2, 2)
    x = x.permute(0, 1, 4, 6, 2, 3, 5)  # b c dy dx t h w
    return x.reshape(b, c * 4, t, h2 // 2, w2 // 2)


def _d2s(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_s2d`."""
    b, c4, t, h, w = x.shape
    c = c4 // 4
    x = x.reshape(b, c, 2, 2, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)  # b c t h dy w dx
    return x.reshape(b, c, t, h * 2, w * 2)


def frames_to_image(clip: torch.Tensor) -> torch.Tensor:
    """``[B, 3, F, H, W]`` -> ComfyUI IMAGE layout ``[B * F, H, W, 3]``."""
    b, c, f, h, w = clip.shape
    return clip.permute(0, 2, 3, 4, 1).reshape(b * f, h, w, c).contiguous()
