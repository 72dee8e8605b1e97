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
* ``KEEP``            unchanged.

Anything the rules cannot place raises :class:`TrialInputError` naming the input and its shape.

One CFG stream of a batched call: :func:`select_stream` slices every input the family declares
batched per stream (all but its ``shared_inputs``) to one stream's chunk of dim 0, recursing into
dicts, lists and tuples (ControlNet hints); :func:`cond_index` tells which chunk is the cond.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .families.base import (KEEP, LATENT, OPTIONS, PIXELS, STACKED_LATENT, TIMESTEP, TOKEN_HINTS,
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


def pool_timestep(t: torch.Tensor, latent_shape: tuple[int, ...], factors: Factors, patch_size: Factors,
                  operator: str, name: str = "timestep") -> torch.Tensor:
    """Timestep of the trial call (see module doc)."""
    if t.dim() <= 1 or (t.dim() == 2 and t.shape[1] == 1):
        return t
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
                     name: str) -> torch.Tensor:
    """Pool a tensor on the latent's H × W grid ([B, C, T', H, W] or [B, C, H, W])."""
    if v.dim() not in (4, 5) or tuple(v.shape[-2:]) != tuple(latent_shape[-2:]):
        raise TrialInputError(f"'{name}' has shape {tuple(v.shape)}, not on the latent's grid "
                              f"{tuple(latent_shape[-2:])} (latent {tuple(latent_shape)})")
    return pool(v, factors, operator)  # a 4-D tensor is pooled on H and W only


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
                operator: str) -> Any:
    """One input of the trial call (see module doc); ``latent_shape`` is the full call's ``x`` shape."""
    if value is None:
        return None
    if name in adapter.not_for_trial:
        raise TrialInputError(f"'{name}' ({adapter.not_for_trial[name]})")
    rule = adapter.rule(name)
    if rule is None:
        if isinstance(value, torch.Tensor):
            raise TrialInputError(f"'{name}' (shape {tuple(value.shape)}) is an input {adapter.name}'s adapter "
                                  f"does not know how to downsample")
        return value
    if rule in (KEEP, OPTIONS):
        return value
    if rule == TIMESTEP:
        return pool_timestep(value, latent_shape, factors, adapter.patch_size, operator, name)
    if rule == TOKEN_HINTS:
        return _pool_hints(value, latent_shape, factors, adapter.patch_size, operator, name)
    if not isinstance(value, torch.Tensor):
        raise TrialInputError(f"'{name}' is a {type(value).__name__}, expected a tensor")
    if rule == LATENT:
        return pool_latent_like(value, latent_shape, factors, operator, name)
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

    def small(name: str, value: Any) -> Any:
        return trial_options if adapter.rule(name) == OPTIONS else \
            trial_value(adapter, name, value, shape, factors, operator)

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
