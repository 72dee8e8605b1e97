"""The step cache: the latest fully computed prediction of each call slot, for the steps LFCache skips.

A skipped step answers each model call from what its slot (:data:`schedule.SlotKey`) stored at the
latest computed step. With x ``[B, C_in, T, H, W]`` the call's input and F ``[B, C, T, H, W]`` the
stored prediction (C ≤ C_in: the input may carry extra conditioning channels):

    reuse='output'     F
    reuse='residual'   x_now[:, :C] + (F − x_then[:, :C])

The prediction is kept by reference (the model made a fresh tensor that ComfyUI only reads); in
``residual`` mode the input part is copied, since the sampler updates x in place later.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .schedule import SlotKey


class StepCache:
    """Stored predictions (and, in residual mode, their inputs) per slot, and their bytes."""

    def __init__(self, residual: bool):
        self.residual = residual
        self._entries: dict[SlotKey, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.nbytes = 0
        """Bytes held now (predictions and copied inputs)."""

    def store(self, slot: SlotKey, x: torch.Tensor, prediction: torch.Tensor) -> None:
        """Remember ``prediction`` (computed from input ``x``) as ``slot``'s latest."""
        old = self._entries.get(slot)
        keep_input = self.residual and x.shape[2:] == prediction.shape[2:] and x.shape[1] >= prediction.shape[1]
        x_part = x[:, :prediction.shape[1]] if keep_input else None
        if x_part is not None and old is not None and old[1] is not None and old[1].shape == x_part.shape:
            old[1].copy_(x_part)  # the buffer of the previous store, overwritten in place
            x_kept = old[1]
        else:
            x_kept = x_part.detach().to(prediction.dtype).clone() if x_part is not None else None
        self._entries[slot] = (prediction.detach(), x_kept)
        if old is None or old[0].shape != prediction.shape:
            self.nbytes = sum(t.numel() * t.element_size() for t in self.tensors())

    def lookup(self, slot: SlotKey, x: torch.Tensor) -> torch.Tensor | None:
        """The prediction for a call of ``slot`` with input ``x`` (module doc), or None: nothing stored for
        the slot, or a stored prediction of another batch or latent size."""
        entry = self._entries.get(slot)
        if entry is None:
            return None
        out, x_then = entry
        if x.shape[0] != out.shape[0] or x.shape[2:] != out.shape[2:]:
            return None
        if x_then is None:
            return out  # ComfyUI only reads a model output (calculate_denoised makes a new tensor)
        return x[:, :out.shape[1]].to(out.dtype) + (out - x_then)

    def tensors(self) -> Iterator[torch.Tensor]:
        """Every tensor held (predictions, copied inputs)."""
        for out, x_then in self._entries.values():
            yield out
            if x_then is not None:
                yield x_then

    def release(self) -> None:
        self._entries.clear()
        self.nbytes = 0
