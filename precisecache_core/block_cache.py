"""BlockCache: reuse the residuals of non-pivotal transformer blocks inside computed steps.

A block j maps hidden states F^{j-1} ``[B, N, D]`` to F^j. Its residual is D^j = F^j − F^{j-1}.

* Refresh step: every block is computed; D^j is stored (one buffer per block per call slot, i.e.
  per CFG stream or batched stream group) together with its score
      s_j = ‖D^j‖₂ / ‖F^{j-1}‖₂   (``relative_l2``, default)   or   ‖D^j‖₂   (``l2``).
* The ⌈c · n⌉ blocks with the largest scores are *pivotal* and always computed.
* For the next L computed steps every non-pivotal block is replaced by F^j = F^{j-1} + D^j.
  Then the next computed step refreshes again.

Blocks that return several tensors (HunyuanVideo's double blocks return ``img`` and ``txt``) keep
one residual per tensor. Buffers are allocated once per (slot, block, tensor) and overwritten in
place at each refresh; a memory budget caps their total size (blocks that do not fit are simply
computed), and ``residual_location = "cpu"`` keeps them in pinned host memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable

import torch

from .config import BlockCacheConfig

BlockKey = Hashable  # e.g. ("double_block", 3)
SlotKey = Hashable   # identifies the stream(s) of one model call within a step
BlockArgs = dict
BlockFn = Callable[[BlockArgs], dict]


def pivotal_count(n_blocks: int, ratio: float) -> int:
    """Number of pivotal blocks: ⌈ratio · n⌉, clamped to [0, n]."""
    return max(0, min(n_blocks, math.ceil(ratio * n_blocks - 1e-9)))


def select_pivotal(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean mask ``[n]``: True for the ⌈ratio·n⌉ blocks with the largest scores (ties: lower index)."""
    n = int(scores.numel())
    k = pivotal_count(n, ratio)
    mask = torch.zeros(n, dtype=torch.bool)
    if k:
        order = torch.argsort(-scores.detach().float().cpu(), stable=True)
        mask[order[:k]] = True
    return mask


def residual_score(residual: torch.Tensor, block_input: torch.Tensor, ranking: str) -> torch.Tensor:
    """Score of a block's residual (0-d float32 tensor, no host sync)."""
    norm = torch.linalg.vector_norm(residual.float())
    if ranking == "l2":
        return norm
    return norm / torch.linalg.vector_norm(block_input.float()).clamp_min(1e-12)


def block_phase(computed_steps_since_refresh: int | None, refresh_interval: int) -> str:
    """'refresh' when no refresh happened yet or L reuse steps have passed, else 'reuse'."""
    if computed_steps_since_refresh is None or computed_steps_since_refresh >= refresh_interval:
        return "refresh"
    return "reuse"


@dataclass
class _SlotBlocks:
    """Residual buffers and scores of one call slot."""

    residuals: dict[tuple[BlockKey, str], torch.Tensor] = field(default_factory=dict)
    scores: dict[BlockKey, torch.Tensor] = field(default_factory=dict)
    pivotal: set[BlockKey] | None = None


class BlockResidualCache:
    """Per-run residual store plus the block-level bookkeeping of BlockCache."""

    def __init__(self, config: BlockCacheConfig):
        self.config = config
        self._slots: dict[SlotKey, _SlotBlocks] = {}
        self.bytes_allocated = 0
        self.peak_bytes = 0
        self.blocks_computed = 0
        self.blocks_reused = 0
        self.budget_refusals = 0
        self._budget_bytes = int(config.memory_budget_mb * 1024 * 1024)

    # -- one block call ---------------------------------------------------------------------
    def run_block(self, slot: SlotKey, phase: str, block: BlockKey, args: BlockArgs, compute: BlockFn) -> dict:
        """Run or replace one block call.

        ``phase`` is this step's phase for the slot ('refresh' or 'reuse'); ``compute(args)`` runs
        the real block (or the patch chained before ours) and returns a dict of tensors.
        """
        state = self._slots.setdefault(slot, _SlotBlocks())
        if phase == "reuse" and state.pivotal is None and state.scores:
            state.pivotal = self._rank(state)
        if phase == "reuse" and state.pivotal is not None and block not in state.pivotal:
            reused = self._reuse(state, block, args)
            if reused is not None:
                self.blocks_reused += 1
                return reused
        out = compute(args)
        self.blocks_computed += 1
        if phase == "refresh":
            self._record(state, block, args, out)
        return out

    def start_refresh(self, slot: SlotKey) -> None:
        """Forget the ranking of ``slot``: the coming refresh step re-measures every block."""
        state = self._slots.get(slot)
        if state is not None:
            state.pivotal = None
            state.scores = {}

    # -- internals ----------------------------------------------------------------------------
    def _rank(self, state: _SlotBlocks) -> set[BlockKey]:
        keys = list(state.scores)
        mask = select_pivotal(torch.stack([state.scores[k] for k in keys]), self.config.pivotal_ratio)
        return {k for k, m in zip(keys, mask.tolist()) if m}

    def _reuse(self, state: _SlotBlocks, block: BlockKey, args: BlockArgs) -> dict | None:
        names = [name for (b, name) in state.residuals if b == block]
        if not names:
            return None
        out = {}
        for name in names:
            buf = state.residuals[(block, name)]
            current = args.get(name)
            if not isinstance(current, torch.Tensor) or current.shape != buf.shape:
                return None
            out[name] = current + buf.to(current.device, non_blocking=True)
        return out

    def _record(self, state: _SlotBlocks, block: BlockKey, args: BlockArgs, out: dict) -> None:
        pairs = [(name, value, args.get(name)) for name, value in out.items()
                 if isinstance(value, torch.Tensor) and isinstance(args.get(name), torch.Tensor)
                 and args[name].shape == value.shape]
        if not pairs or len(pairs) != len(out):
            return  # the block's output cannot be rebuilt from residuals alone: never reuse it
        buffers = []
        for name, value, _ in pairs:
            buf = self._buffer(state, (block, name), value)
            if buf is None:
                self._drop_block(state, block)
                return
            buffers.append(buf)
        score = None
        for buf, (name, value, before) in zip(buffers, pairs):
            if buf.device == value.device:
                diff = torch.sub(value, before, out=buf)  # straight into the buffer: no temporary
            else:
                diff = value - before
                buf.copy_(diff, non_blocking=True)
            if name == "img" or score is None:
                score = residual_score(diff, before, self.config.ranking)
        state.scores[block] = score

    def _drop_block(self, state: _SlotBlocks, block: BlockKey) -> None:
        for key in [k for k in state.residuals if k[0] == block]:
            buf = state.residuals.pop(key)
            self.bytes_allocated -= buf.numel() * buf.element_size()
        state.scores.pop(block, None)

    def _buffer(self, state: _SlotBlocks, key: tuple[BlockKey, str], like: torch.Tensor) -> torch.Tensor | None:
        buf = state.residuals.get(key)
        if buf is not None and buf.shape == like.shape and buf.dtype == like.dtype:
            return buf
        if buf is not None:
            self.bytes_allocated -= buf.numel() * buf.element_size()
            del state.residuals[key]
        size = like.numel() * like.element_size()
        if self._budget_bytes and self.bytes_allocated + size > self._budget_bytes:
            self.budget_refusals += 1
            return None
        if self.config.residual_location == "cpu" and like.device.type != "cpu":
            buf = torch.empty(like.shape, dtype=like.dtype, device="cpu", pin_memory=torch.cuda.is_available())
        else:
            buf = torch.empty_like(like)
        state.residuals[key] = buf
        self.bytes_allocated += size
        self.peak_bytes = max(self.peak_bytes, self.bytes_allocated)
        return buf

    def release(self) -> None:
        """Drop every buffer (end of run, also on error or interruption)."""
        self._slots.clear()
        self.bytes_allocated = 0
