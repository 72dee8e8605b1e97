"""The trial forward's inputs: every input of a model call made small consistently with the latent.

The latent ``x`` [B, C, T, H, W] becomes ``x̃`` [B, C, T̃, H̃, W̃] (:func:`trial.pool`, T̃ = ⌈T/f_t⌉, …).
Each other input follows the rule its family adapter declares (:mod:`families.base`):

* ``LATENT``          pooled with the same factors and operator (its own T may differ);
* ``STACKED_LATENT``  [B, n, C, T, H, W] → [B, n, C, T̃, H̃, W̃];
* ``TIMESTEP``        [B] kept; [B, T] → [B, T̃] (per frame); [B, N(, 1)] with N = T_tok·H_tok·W_tok
                      → [B, Ñ(, 1)] (per token, on the token grid = latent grid ÷ patch size; since
                      ⌈⌈a/p⌉/f⌉ = ⌈a/(p·f)⌉ the pooled grid is exactly the trial's token grid);
* ``PIXELS``          [B, C, T, s·H, s·W] → [B, C, T̃, s·H̃, s·W̃], whole s×s cells kept together;
* ``TOKEN_HINTS``     dict of lists of [B, N, D] → pooled on the token grid;
* ``KEYFRAME_COORDS``  [B, 3, N_g, 2] coordinates of appended frames' tokens → those of the kept
                      cells, mapped into the trial's coordinate system (:func:`map_keyframe_coords`);
* ``KEEP``            unchanged.

Frames appended after the video's (LTX-Video guides: the adapter's ``appended_frames`` input is
given) are pooled on H and W only, every one kept; the video's frames before them with the trial's
factors. Every latent-aligned input (the latent, the noise mask, per-token / per-frame timesteps)
is split at the same frame.

Anything the rules cannot place raises :class:`TrialInputError` naming the input and its shape.

One CFG stream of a batched call: :func:`select_stream` slices every input the family declares
batched per stream (all but its ``shared_inputs``) to one stream's chunk of dim 0, recursing into
dicts, lists and tuples (ControlNet hints); :func:`cond_index` tells which chunk is the cond.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .families.base import (KEEP, KEYFRAME_COORDS, LATENT, OPTIONS, PIXELS, STACKED_LATENT, TIMESTEP, TOKEN_HINTS,
                            FamilyAdapter)
from .trial import pool

Factors = tuple[int, int, int]


class TrialInputError(ValueError):
    """An input of the model call that the trial cannot make small (names the input)."""


def _grid(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (int(shape[2]), int(shape[3]), int(shape[4])) if len(shape) == 5 else (1, int(shape[2]), int(shape[3]))


def token_grid(latent_shape: tuple[int, ...], patch_size: Factors) -> tuple[int, int, int]:
    """Tokens along T, H, W of a latent: ⌈T/p_t⌉ × ⌈H/p_h⌉ × ⌈W/p_w⌉."""
    return tuple(-(-d // p) for d, p in zip(_grid(latent_shape), patch_size))  # type: ignore[return-value]


def pool_on_grid(values: torch.Tensor, grid: tuple[int, int, int], factors: Factors, operator: str) -> torch.Tensor:
    """Pool a [B, T·H·W, *rest] tensor laid out in (t, h, w) order on ``grid`` = (T, H, W)."""
    b, n = values.shape[:2]
    rest = values.shape[2:]
    cube = values.reshape(b, *grid, -1).permute(0, 4, 1, 2, 3)  # [B, R, T, H, W]
    pooled = pool(cube, factors, operator)
    return pooled.permute(0, 2, 3, 4, 1).reshape(b, -1, *rest)


def _video_and_appended(latent_shape: tuple[int, ...], video_frames: int) -> tuple[tuple, tuple]:
    """Shapes of the video part and of the appended-frames part of a [B, C, T, H, W] latent."""
    b, c, _, h, w = latent_shape
    return (b, c, video_frames, h, w), (b, c, latent_shape[2] - video_frames, h, w)


def _spatial(factors: Factors) -> Factors:
    return (1, factors[1], factors[2])


def pool_timestep(t: torch.Tensor, latent_shape: tuple[int, ...], factors: Factors, patch_size: Factors,
                  operator: str, name: str = "timestep", video_frames: int | None = None) -> torch.Tensor:
    """Timestep of the trial call (see module doc). ``video_frames``: frames of the latent before the
    appended ones (None: nothing appended)."""
    if t.dim() <= 1 or (t.dim() == 2 and t.shape[1] == 1):
        return t
    if video_frames is not None:
        video, appended = _video_and_appended(latent_shape, video_frames)
        if t.shape[1] == math.prod(token_grid(latent_shape, patch_size)) and t.dim() in (2, 3):
            n_video = math.prod(token_grid(video, patch_size))  # per token
        elif t.dim() == 2 and t.shape[1] == latent_shape[2]:
            n_video = video_frames  # per frame
        else:
            raise TrialInputError(f"'{name}' has shape {tuple(t.shape)}, neither one timestep per sample, per latent "
                                  f"frame nor per token of the latent {tuple(latent_shape)}")
        return torch.cat([pool_timestep(t[:, :n_video], video, factors, patch_size, operator, name),
                          pool_timestep(t[:, n_video:], appended, _spatial(factors), patch_size, operator, name)],
                         dim=1)
    frames = _grid(latent_shape)[0]
    grid = token_grid(latent_shape, patch_size)
    if t.dim() == 2 and t.shape[1] == frames and frames != math.prod(grid):
        return pool(t[:, None, :, None, None], (factors[0], 1, 1), operator)[:, 0, :, 0, 0]
    if t.shape[1] == math.prod(grid) and t.dim() in (2, 3):
        return pool_on_grid(t, grid, factors, operator)
    raise TrialInputError(f"'{name}' has shape {tuple(t.shape)}, neither one timestep per sample, per latent "
                          f"frame ({frames}) nor per token ({math.prod(grid)}) of the latent {tuple(latent_shape)}")


def pool_pixels(v: torch.Tensor, latent_shape: tuple[int, ...], factors: Factors, scale: int, operator: str,
                name: str) -> torch.Tensor:
    """Pool a pixel-resolution tensor [B, C, T, s·H, s·W] in whole s×s cells."""
    t, h, w = _grid(latent_shape)
    if v.dim() != 5 or v.shape[-2:] != (scale * h, scale * w):
        raise TrialInputError(f"'{name}' has shape {tuple(v.shape)}, expected [B, C, T, {scale * h}, {scale * w}] "
                              f"(pixel resolution of the latent {tuple(latent_shape)})")
    b, c, f = v.shape[:3]
    cells = v.reshape(b, c, f, h, scale, w, scale).permute(0, 1, 4, 6, 2, 3, 5).reshape(b, c * scale * scale, f, h, w)
    pooled = pool(cells, factors, operator)
    ph, pw = pooled.shape[-2:]
    return (pooled.reshape(b, c, scale, scale, pooled.shape[2], ph, pw).permute(0, 1, 4, 5, 2, 6, 3)
            .reshape(b, c, pooled.shape[2], ph * scale, pw * scale))


def pool_latent_like(v: torch.Tensor, latent_shape: tuple[int, ...], factors: Factors, operator: str,
                     name: str, video_frames: int | None = None) -> torch.Tensor:
    """Pool a tensor on the latent's H × W grid ([B, C, T', H, W] or [B, C, H, W]); with
    ``video_frames``, a 5-D tensor's frames from ``video_frames`` on are appended ones (H, W only)."""
    if v.dim() not in (4, 5) or tuple(v.shape[-2:]) != tuple(latent_shape[-2:]):
        raise TrialInputError(f"'{name}' has shape {tuple(v.shape)}, not on the latent's grid "
                              f"{tuple(latent_shape[-2:])} (latent {tuple(latent_shape)})")
    if video_frames is not None and v.dim() == 5:
        if v.shape[2] != latent_shape[2]:
            raise TrialInputError(f"'{name}' has {v.shape[2]} frames, the latent {latent_shape[2]} of which the last "
                                  f"{latent_shape[2] - video_frames} are appended guide frames: cannot tell which of "
                                  f"its frames are guide frames")
        return torch.cat([pool(v[:, :, :video_frames], factors, operator),
                          pool(v[:, :, video_frames:], _spatial(factors), operator)], dim=2)
    return pool(v, factors, operator)  # a 4-D tensor is pooled on H and W only


MODEL_GEOMETRY_KEY = "precisecache_model_geometry"
"""``transformer_options`` key holding the diffusion model's attributes named by the adapter's
``model_geometry`` (recorded before the first step by :func:`record_model_geometry`)."""


def record_model_geometry(adapter: FamilyAdapter, diffusion_model) -> dict:
    """The attributes ``adapter.model_geometry`` of ``diffusion_model`` (lists as tuples)."""
    out = {}
    for attr in adapter.model_geometry:
        value = getattr(diffusion_model, attr, None)
        out[attr] = tuple(value) if isinstance(value, list) else value
    return out


def appended_frame_count(adapter: FamilyAdapter, value: Any, latent_shape: tuple[int, ...]) -> int:
    """Frames appended after the video's, from the adapter's ``appended_frames`` input (0 when None)."""
    name = adapter.appended_frames
    if value is None:
        return 0
    if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[1] != 3 or value.shape[3] != 2:
        raise TrialInputError(f"'{name}' has shape {tuple(getattr(value, 'shape', ()))}, expected [B, 3, N, 2] "
                              f"pixel coordinates of the appended frames' tokens")
    if len(latent_shape) != 5 or adapter.patch_size[0] != 1:
        raise TrialInputError(f"'{name}' given with a latent {tuple(latent_shape)}: appended frames need a "
                              f"video latent with one frame per token along T")
    _, tok_h, tok_w = token_grid(latent_shape, adapter.patch_size)
    n = value.shape[2]
    frames, rest = divmod(n, tok_h * tok_w)
    if rest or not 0 < frames < latent_shape[2]:
        raise TrialInputError(f"'{name}' holds {n} tokens, not a whole number of frames of {tok_h}×{tok_w} tokens "
                              f"fewer than the latent's {latent_shape[2]} frames")
    return frames


def map_keyframe_coords(coords: torch.Tensor, latent_shape: tuple[int, ...], factors: Factors,
                        patch_size: Factors, geometry: dict | None, name: str = "keyframe_idxs") -> torch.Tensor:
    """The appended tokens' pixel coordinates [B, 3, N_g, 2] for the trial call (``latent_shape``: that
    of the appended frames alone; ``factors[0]``: the factor the video's frames are pooled with).

    The trial keeps every appended frame and, on H and W, the first cell of every f_h × f_w block (the
    cell whose coordinates the model gives a trial token of the video). The model places a video
    token of latent cell ℓ at π(ℓ) = s·ℓ + c along each axis (s = ``vae_scale_factors``; c = 1 − s_t,
    clamped at 0, along T when ``causal_temporal_positioning``, else 0) and the trial's token ℓ̃
    stands for the full latent's cell f·ℓ̃: so a start coordinate p maps to π(π⁻¹(p)/f) =
    (p − c)/f + c (clamped like the model's), which puts every guide token where it sat relative to
    the video's tokens, and every kept video-aligned guide token exactly on the trial's video token
    of the same cell. The end coordinate keeps its extent (end − start), as the trial's own tokens do.
    Integer coordinates are rounded to the nearest integer (the model stores them in an integer grid).
    """
    if not geometry or geometry.get("vae_scale_factors") is None:
        raise TrialInputError(f"'{name}' (the model's vae_scale_factors were not recorded before sampling: "
                              f"cannot map the guide frames' coordinates)")
    frames, tok_h, tok_w = token_grid(latent_shape, patch_size)
    if coords.dim() != 4 or coords.shape[2] != frames * tok_h * tok_w:
        raise TrialInputError(f"'{name}' has shape {tuple(coords.shape)}, not [B, 3, {frames * tok_h * tok_w}, 2] "
                              f"for {frames} appended frames of {tok_h}×{tok_w} tokens")
    scale_t = int(geometry["vae_scale_factors"][0])
    causal = bool(geometry.get("causal_temporal_positioning"))
    b = coords.shape[0]
    cells = coords.reshape(b, 3, frames, tok_h, tok_w, 2)[:, :, :, ::factors[1], ::factors[2]]
    cells = cells.reshape(b, 3, -1, 2).to(torch.float64)
    start, extent = cells[..., 0], cells[..., 1] - cells[..., 0]
    offset_t = 1 - scale_t if causal else 0  # Python numbers: no host-to-device copy (and sync) per trial
    new_start = torch.stack([(start[:, 0] - offset_t) / factors[0] + offset_t, start[:, 1] / factors[1],
                             start[:, 2] / factors[2]], dim=1)
    if causal:
        new_start[:, 0] = new_start[:, 0].clamp(min=0)
    out = torch.stack([new_start, new_start + extent], dim=-1)
    if not coords.is_floating_point():
        out = out.round()
    return out.to(coords.dtype)



def _pool_hints(hints: Any, latent_shape, factors, patch_size, operator, name: str) -> Any:
    grid = token_grid(latent_shape, patch_size)
    n = math.prod(grid)

    def one(h):
        if h is None:
            return None
        if not isinstance(h, torch.Tensor) or h.dim() != 3 or h.shape[1] != n:
            raise TrialInputError(f"'{name}' holds a hint of shape {tuple(getattr(h, 'shape', ()))}, "
                                  f"expected [B, {n}, D] on the token grid {grid}")
        return pool_on_grid(h, grid, factors, operator)

    if hints is None:
        return None
    if not isinstance(hints, dict):
        raise TrialInputError(f"'{name}' is a {type(hints).__name__}, expected ControlNet hints (a dict of lists)")
    return {k: ([one(h) for h in v] if isinstance(v, (list, tuple)) else v) for k, v in hints.items()}


def trial_value(adapter: FamilyAdapter, name: str, value: Any, latent_shape: tuple[int, ...], factors: Factors,
                operator: str, video_frames: int | None = None, geometry: dict | None = None) -> Any:
    """One input of the trial call (see module doc); ``latent_shape`` is the full call's ``x`` shape;
    ``video_frames``: the latent's frames before appended ones (None: nothing appended); ``geometry``:
    the recorded model attributes (:data:`MODEL_GEOMETRY_KEY`)."""
    if value is None:
        return None
    rule = adapter.rule(name)
    if rule is None:
        if isinstance(value, torch.Tensor):
            raise TrialInputError(f"'{name}' (shape {tuple(value.shape)}) is an input {adapter.name}'s adapter "
                                  f"does not know how to downsample")
        return value
    if rule in (KEEP, OPTIONS):
        return value
    if rule == TIMESTEP:
        return pool_timestep(value, latent_shape, factors, adapter.patch_size, operator, name, video_frames)
    if rule == TOKEN_HINTS:
        if video_frames is not None:
            raise TrialInputError(f"'{name}' (ControlNet hints) together with appended guide frames: not supported")
        return _pool_hints(value, latent_shape, factors, adapter.patch_size, operator, name)
    if rule == KEYFRAME_COORDS:
        if not isinstance(value, torch.Tensor) or video_frames is None:
            raise TrialInputError(f"'{name}' is not the family's appended-frames input")
        appended = _video_and_appended(latent_shape, video_frames)[1]
        video_factors = (min(factors[0], video_frames), factors[1], factors[2])  # as pool() takes it
        return map_keyframe_coords(value, appended, video_factors, adapter.patch_size, geometry, name)
    if not isinstance(value, torch.Tensor):
        raise TrialInputError(f"'{name}' is a {type(value).__name__}, expected a tensor")
    if rule == LATENT:
        return pool_latent_like(value, latent_shape, factors, operator, name, video_frames)
    if video_frames is not None:
        raise TrialInputError(f"'{name}' together with appended guide frames: not supported")
    if rule == STACKED_LATENT:
        if value.dim() != 6:
            raise TrialInputError(f"'{name}' has shape {tuple(value.shape)}, expected [B, n, C, T, H, W]")
        b, k = value.shape[:2]
        flat = pool_latent_like(value.flatten(0, 1), latent_shape, factors, operator, name)
        return flat.reshape(b, k, *flat.shape[1:])
    if rule == PIXELS:
        return pool_pixels(value, latent_shape, factors, adapter.pixel_scale, operator, name)
    raise TrialInputError(f"'{name}': unknown trial rule {rule!r}")  # pragma: no cover (checked by the adapter)


def trial_call(adapter: FamilyAdapter, args: tuple, kwargs: dict, factors: Factors, operator: str,
               trial_options: dict) -> tuple[tuple, dict]:
    """Arguments of the trial forward for one ``DIFFUSION_MODEL`` call ``(args, kwargs)``.

    Positional arguments are named by ``adapter.forward_args``; ``trial_options`` replaces the
    ``transformer_options`` argument. Raises :class:`TrialInputError`.
    """
    shape = tuple(args[0].shape)
    names = adapter.forward_args
    if len(args) > len(names):
        raise TrialInputError(f"{adapter.name} forward got {len(args)} positional inputs, its adapter names "
                              f"{len(names)} ({', '.join(names)})")

    named = {**dict(zip(names, args)), **kwargs}
    video_frames = None
    geometry = None
    if adapter.appended_frames is not None and named.get(adapter.appended_frames) is not None:
        video_frames = shape[2] - appended_frame_count(adapter, named[adapter.appended_frames], shape)
        options = next((v for k, v in named.items() if adapter.rule(k) == OPTIONS), None)
        geometry = options.get(MODEL_GEOMETRY_KEY) if isinstance(options, dict) else None

    def small(name: str, value: Any) -> Any:
        return trial_options if adapter.rule(name) == OPTIONS else \
            trial_value(adapter, name, value, shape, factors, operator, video_frames, geometry)

    return (tuple(small(name, value) for name, value in zip(names, args)),
            {name: small(name, value) for name, value in kwargs.items()})


# -- one CFG stream of a batched call -------------------------------------------------------------
def cond_index(cond_or_uncond) -> int | None:
    """Chunk index of the cond stream in a batched call: the first position of 0 in
    ``transformer_options["cond_or_uncond"]`` (0 = cond, 1 = uncond), or None when the call holds
    no cond (e.g. an uncond-only call, or ``cond_or_uncond`` missing)."""
    for i, entry in enumerate(cond_or_uncond or ()):
        if entry == 0:
            return i
    return None


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def _chunk(value: Any, stream_count: int, index: int, name: str) -> Any:
    """``value``'s chunk ``index`` of ``stream_count`` equal chunks along dim 0, through dicts/lists/tuples."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return value  # a scalar: the same for every stream
        size = value.shape[0]
        if size % stream_count:
            raise TrialInputError(f"'{name}' has batch size {size} (shape {tuple(value.shape)}), which does not "
                                  f"divide into {stream_count} CFG streams")
        step = size // stream_count
        return value.narrow(0, index * step, step)
    if isinstance(value, dict):
        return {k: _chunk(v, stream_count, index, name) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_chunk(v, stream_count, index, name) for v in value)
    return value  # None, numbers, strings: the same for every stream


def _stream_options(options: Any, stream_count: int, index: int) -> Any:
    """A shallow copy of ``transformer_options`` whose per-stream lists describe the one stream."""
    if not isinstance(options, dict):
        return options
    out = dict(options)
    for key in ("cond_or_uncond", "uuids"):
        entries = options.get(key)
        if isinstance(entries, (list, tuple)) and len(entries) == stream_count:
            out[key] = [entries[index]]
    return out


def select_stream(adapter: FamilyAdapter, args: tuple, kwargs: dict, stream_count: int,
                  index: int) -> tuple[tuple, dict]:
    """The inputs of a ``DIFFUSION_MODEL`` call ``(args, kwargs)`` for CFG stream ``index`` alone.

    ``stream_count`` = ``len(transformer_options["cond_or_uncond"])``. Every input the family does not
    declare shared (``adapter.shared_inputs``) is cut to its ``index``-th of ``stream_count`` equal
    chunks along dim 0 (views, no copies), tensors nested in dicts, lists and tuples too; shared inputs
    are passed as they are, except ``transformer_options``, which becomes a shallow copy with
    ``cond_or_uncond`` and ``uuids`` narrowed to the one stream. Positional inputs are named by
    ``adapter.forward_args``. Pure: the inputs are not modified.

    Raises :class:`TrialInputError` naming the input when its batch size does not divide into
    ``stream_count`` chunks, or when a tensor input is one the adapter does not know.
    """
    if stream_count < 1 or not 0 <= index < stream_count:
        raise ValueError(f"stream index {index} out of range for {stream_count} streams")
    names = adapter.forward_args
    if len(args) > len(names):
        raise TrialInputError(f"{adapter.name} forward got {len(args)} positional inputs, its adapter names "
                              f"{len(names)} ({', '.join(names)})")

    def one(name: str, value: Any) -> Any:
        batched = adapter.batched_per_stream(name)
        if batched is None:
            if _has_tensor(value):
                raise TrialInputError(f"'{name}' is an input {adapter.name}'s adapter does not know: it cannot "
                                      f"tell whether it is batched per CFG stream")
            return value
        if not batched:
            return _stream_options(value, stream_count, index) if adapter.rule(name) == OPTIONS else value
        return _chunk(value, stream_count, index, name)

    return (tuple(one(name, value) for name, value in zip(names, args)),
            {name: one(name, value) for name, value in kwargs.items()})
