"""The cheap trial input: the latent (and every tensor aligned with it) downsampled.

A latent ``x`` of shape ``[B, C, T, H, W]`` downsampled by factors ``(f_t, f_h, f_w)`` becomes,
shape [B, C, ⌈T/f_t⌉, ⌈H/f_h⌉, ⌈W/f_w⌉], either

    strided  (default)  x̃ = x[:, :, ::f_t, ::f_h, ::f_w]
    avg_pool            x̃ = AvgPool3d(x, kernel = stride = (f_t, f_h, f_w), ceil_mode=True)

so the transformer sees about ``f_t·f_h·f_w`` times fewer tokens (32× for the paper's 2×4×4).
A factor that does not divide its dimension is allowed: the last window is averaged over the
cells it covers (Wan's 81-frame videos have T = 21 latent frames, which 2 does not divide).
A factor larger than its dimension is refused: the trial would average away that whole axis.
Which operator (the paper leaves it open) was settled by measurement on the trained demo model
(README, "open points"): averaging k = f_t·f_h·f_w cells divides the latent's noise std by √k, so
the trial sees an input far less noisy than its σ says (std 0.21 instead of 1.0 at σ = 1);
strided subsampling keeps the noise level, ranks the steps' full-size LFD better (Spearman 0.61
vs 0.52) and gave +0.7 to +1.9 dB PSNR at equal full forwards. Average pooling stays available.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_TRIAL_DOWNSAMPLE = (2, 4, 4)
"""Paper default T×H×W = 2×4×4 (32× fewer tokens)."""

AXIS_NAMES = ("trial_downsample_t", "trial_downsample_h", "trial_downsample_w")
TRIAL_OPERATORS = ("strided", "avg_pool")
MAX_FACTOR = 16


def check_factors_fit(factors: tuple[int, int, int], latent_shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming the input if a factor exceeds the latent's size on its axis.

    ``latent_shape`` is ``[B, C, T, H, W]`` or ``[B, C, H, W]`` (then the T factor must be 1 or is
    ignored for a single-frame latent, see :func:`effective_factors`).
    """
    dims = _thw(latent_shape)
    labels = ("frames", "height", "width")
    for name, f, size, label in zip(AXIS_NAMES, factors, dims, labels):
        if f > size and not (name == AXIS_NAMES[0] and size == 1):
            raise ValueError(
                f"{name} = {f} does not fit this latent: it has {size} latent {label} "
                f"(latent shape {tuple(latent_shape)}); allowed 1..{size}")
    if all(d == 1 for d in dims[1:]):
        raise ValueError(f"latent {tuple(latent_shape)} is too small for a trial forward: "
                         f"it has a single spatial cell")


def _thw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 5:
        return int(shape[2]), int(shape[3]), int(shape[4])
    if len(shape) == 4:
        return 1, int(shape[2]), int(shape[3])
    raise ValueError(f"expected a latent of shape [B, C, T, H, W] or [B, C, H, W], got {tuple(shape)}")


def _fitting_factor(size: int, factor: int, patch: int) -> int:
    """The factor nearest to ``factor`` (the larger on a tie) whose trial length ⌈size/f⌉ is a whole
    number of patches, when the full length is: some networks (HunyuanVideo) reshape their output
    on the token grid and fail on a partial patch. ``factor`` itself when nothing fits."""
    if patch <= 1 or size % patch or -(-size // factor) % patch == 0:
        return factor
    for distance in range(1, size):
        for f in (factor + distance, factor - distance):
            if 1 <= f <= size and -(-size // f) % patch == 0:
                return f
    return factor


def effective_factors(factors: tuple[int, int, int], latent_shape: tuple[int, ...],
                      patch_size: tuple[int, int, int] = (1, 1, 1)) -> tuple[int, int, int]:
    """Factors actually applied: the temporal factor is dropped for single-frame latents, and each
    factor is moved to the nearest one that leaves a whole number of the family's patches
    (e.g. HunyuanVideo at 720p: latent height 90, 90/4 → 23 rows is odd for its 2×2 patches, so 5 →
    18 rows is used)."""
    dims = _thw(latent_shape)
    wanted = (1 if dims[0] == 1 else factors[0], factors[1], factors[2])
    return tuple(_fitting_factor(d, f, p) for d, f, p in zip(dims, wanted, patch_size))  # type: ignore[return-value]


def token_ratio(factors: tuple[int, int, int], latent_shape: tuple[int, ...],
                patch_size: tuple[int, int, int] = (1, 1, 1)) -> float:
    """Trial tokens ÷ full tokens (before patching), e.g. 1/32 for 2×4×4 on a divisible latent."""
    t, h, w = _thw(latent_shape)
    ft, fh, fw = effective_factors(factors, latent_shape, patch_size)
    return (-(-t // ft) * -(-h // fh) * -(-w // fw)) / float(t * h * w)


def pool(x: torch.Tensor, factors: tuple[int, int, int], operator: str = "strided") -> torch.Tensor:
    """Downsample a ``[B, C, T, H, W]`` or ``[B, C, H, W]`` tensor (see module doc)."""
    ft, fh, fw = factors
    if x.dim() == 5:
        ft = min(ft, x.shape[2])
        if (ft, fh, fw) == (1, 1, 1):
            return x
        if operator == "strided":
            return x[:, :, ::ft, ::fh, ::fw].contiguous()
        pooled = F.avg_pool3d(x.float(), kernel_size=(ft, fh, fw), stride=(ft, fh, fw), ceil_mode=True)
    elif x.dim() == 4:
        if (fh, fw) == (1, 1):
            return x
        if operator == "strided":
            return x[:, :, ::fh, ::fw].contiguous()
        pooled = F.avg_pool2d(x.float(), kernel_size=(fh, fw), stride=(fh, fw), ceil_mode=True)
    else:
        raise ValueError(f"cannot pool a tensor of shape {tuple(x.shape)}")
    return pooled.to(x.dtype)
