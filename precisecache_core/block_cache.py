"""BlockCache: reuse the residuals of non-pivotal transformer blocks inside computed steps.

A block j maps hidden states F^{j-1} ``[B, N, D]`` to F^j. Its residual is D^j = F^j − F^{j-1}.

* Refresh step: every block is computed; D^j is stored (one buffer per block per call slot, i.e.
  per CFG stream or batched stream group) together with its score
      s_j = ‖D^j‖₂ / ‖F^{j-1}‖₂   (``relative_l2``, default)   or   ‖D^j‖₂   (``l2``).
* The ⌈c · n⌉ blocks with the largest scores are *pivotal* and always computed.
* For the next L computed steps every non-pivotal block is replaced by F^j = F^{j-1} + D^j.
  Then the next computed step refreshes again.

Blocks that return several tensors (HunyuanVideo's double blocks return ``img`` and ``txt``) keep
one residual per tensor. Blocks that update their input **in place** and return it (HunyuanVideo,
LTX-Video) are recorded against a snapshot: the input is copied into the residual buffer before the
block runs, then ``buffer = output − buffer`` in place (no extra memory); the score's ‖F^{j-1}‖ is
taken from the same snapshot. Buffers are allocated once per (slot, block, tensor) and overwritten in
place at each refresh; a memory budget caps their total size (blocks that do not fit are simply
computed), and ``residual_location = "cpu"`` keeps them in pinned host memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable

import torch

from .config import BlockCacheConfig
from .schedule import SlotKey

BlockKey = Hashable  # e.g. ("double_block", 3)
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


def norm32(x: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ accumulated in float32 (0-d tensor, no host sync, no float32 copy of ``x``)."""
    return torch.linalg.vector_norm(x, dtype=torch.float32)


def residual_score(residual_norm: torch.Tensor, input_norm: torch.Tensor, ranking: str) -> torch.Tensor:
    """Score of a block: ‖D^j‖ (``l2``) or ‖D^j‖ / ‖F^{j-1}‖ (``relative_l2``); 0-d float32."""
    if ranking == "l2":
        return residual_norm
    return residual_norm / input_norm.clamp_min(1e-12)


REFRESH = "refresh"
"""Phase of a computed step that computes every block and stores the residuals (static rule)."""
REUSE = "reuse"
"""Phase of a computed step whose non-pivotal blocks reuse their stored residuals (static rule)."""
REUSE_BLOCK = "reuse_block"
"""Phase of one block that reuses its stored residual alone (trial-guided mode, :mod:`.block_guidance`,
decides per block; no pivotal ranking here). When it has none usable it is computed and stored."""


def block_phase(computed_steps_since_refresh: int | None, refresh_interval: int) -> str:
    """'refresh' when no refresh happened yet or L reuse steps have passed, else 'reuse'."""
    if computed_steps_since_refresh is None or computed_steps_since_refresh >= refresh_interval:
        return REFRESH
    return REUSE


@dataclass
class _SlotBlocks:
    """Residual buffers and scores of one call slot."""

    residuals: dict[tuple[BlockKey, str], torch.Tensor] = field(default_factory=dict)
    scores: dict[BlockKey, torch.Tensor] = field(default_factory=dict)
    pivotal: set[BlockKey] | None = None


class BlockResidualCache:
    """Per-run residual store plus the block-level bookkeeping of BlockCache."""

    pivotal_sync: Callable[[dict, float], set] | None = None
    """Set by the run when several ranks compute one sample: the pivotal set from the scores reduced
    over them, the same on every rank (:meth:`rank_sync.RankSync.pivotal_blocks`)."""

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
    def run_block(self, slot: SlotKey, phase: str, block: BlockKey, args: BlockArgs, compute: BlockFn,
                  in_place_tensors: tuple[str, ...] = ()) -> dict:
        """Run or replace one block call.

        ``phase`` is this step's phase for the slot ('refresh' or 'reuse'); ``compute(args)`` runs
        the real block (or the patch chained before ours) and returns a dict of tensors;
        ``in_place_tensors``: names in ``args`` that the block overwrites in place (see module doc).
        """
        state = self._slots.setdefault(slot, _SlotBlocks())
        if phase == REUSE_BLOCK:  # decided per block by the trial-guided mode: reuse, or refresh it alone
            reused = self._reuse(state, block, args)
            if reused is not None:
                self.blocks_reused += 1
                return reused
            phase = REFRESH
        if phase == REUSE and state.pivotal is None and state.scores:
            state.pivotal = self._rank(state)
        if phase == REUSE and state.pivotal is not None and block not in state.pivotal:
            reused = self._reuse(state, block, args)
            if reused is not None:
                self.blocks_reused += 1
                return reused
        snapshot = self._snapshot(state, block, args, in_place_tensors) \
            if phase == REFRESH and in_place_tensors else None
        out = compute(args)
        self.blocks_computed += 1
        if phase == REFRESH and (snapshot is not None or not in_place_tensors):
            self._record(state, block, args, out, snapshot)
        return out

    def slot_scores(self, slot: SlotKey) -> dict[BlockKey, torch.Tensor]:
        """The blocks of ``slot`` with a stored residual (network order) and their scores (0-d tensors)."""
        state = self._slots.get(slot)
        return state.scores if state is not None else {}

    def start_refresh(self, slot: SlotKey) -> None:
        """Forget the ranking of ``slot``: the coming refresh step re-measures every block."""
        state = self._slots.get(slot)
        if state is not None:
            state.pivotal = None
            state.scores = {}

    # -- internals ----------------------------------------------------------------------------
    def _rank(self, state: _SlotBlocks) -> set[BlockKey]:
        if self.pivotal_sync is not None:
            return self.pivotal_sync(state.scores, self.config.pivotal_ratio)
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

    def _snapshot(self, state: _SlotBlocks, block: BlockKey, args: BlockArgs,
                  names: tuple[str, ...]) -> dict | None:
        """Copy the block's input tensors into its residual buffers (before an in-place block runs).

        Returns name → (buffer holding F^{j-1}, ‖F^{j-1}‖), or None when a buffer does not fit the budget."""
        snapshot = {}
        for name in names:
            value = args.get(name)
            if isinstance(value, torch.Tensor):
                buf = self._buffer(state, (block, name), value)
                if buf is None:
                    self._drop_block(state, block)
                    return None
                buf.copy_(value, non_blocking=True)
                snapshot[name] = (buf, norm32(value))
        return snapshot

    def _record(self, state: _SlotBlocks, block: BlockKey, args: BlockArgs, out: dict,
                snapshot: dict | None) -> None:
        """Store D^j = F^j − F^{j-1} for every tensor the block returned, and the block's score.

        F^{j-1} is the snapshot (in-place blocks) or ``args`` as it still is. The residual is
        written straight into its buffer when both live on one device; otherwise (CPU-located
        buffers) it is formed on the block's device, where its norm is taken, then copied out
        (stream-ordered: the host never reads a buffer still being filled)."""
        before = ({name: buf for name, (buf, _) in snapshot.items()} if snapshot is not None
                  else {name: v for name, v in args.items() if isinstance(v, torch.Tensor)})
        usable = all(isinstance(value, torch.Tensor) and isinstance(before.get(name), torch.Tensor)
                     and before[name].shape == value.shape for name, value in out.items())
        if not out or not usable:
            self._drop_block(state, block)
            return  # the block's output cannot be rebuilt from residuals alone: never reuse it
        score = None
        for name, value in out.items():
            if snapshot is not None:
                buf, input_norm = snapshot[name]
            else:
                buf = self._buffer(state, (block, name), value)
                if buf is None:
                    self._drop_block(state, block)
                    return
                input_norm = norm32(before[name])
            if buf.device == value.device:
                diff = torch.sub(value, before[name], out=buf)  # in place when before[name] is buf
            else:
                diff = value - before[name].to(value.device, non_blocking=True)
                buf.copy_(diff, non_blocking=True)
            if name == "img" or score is None:
                score = residual_score(norm32(diff), input_norm, self.config.ranking)
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
