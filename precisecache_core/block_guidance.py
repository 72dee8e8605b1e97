"""Trial-guided BlockCache: reuse a block's cached residual only while the trial says it still holds.

LFCache's trial runs *every* block at the start of a step, on a latent 32× smaller. For block j it
gives the trial residual and the block's trial input

    r̃_j(i) = F̃^j − F̃^{j-1}   [B̃, Ñ, D]      F̃^{j-1}(i)        (``img``; for in-place blocks taken
                                                                against a copy of the input)

When block j is computed at full size at step k, its full-resolution residual D^j is stored (as in
the static scheme, :mod:`.block_cache`) and the trial residual of that step is kept with it as its
reference r̃_j^ref = r̃_j(k). At a later computed step i whose trial ran, each block's change is

    c_j(i) = ‖r̃_j(i) − r̃_j^ref‖₂ / ‖F̃^{j-1}(i)‖₂            (one float per block)

— the error that reusing D^j adds to the hidden states, relative to them, as the trial sees it — (all
blocks' c_j and scores stacked and read on the host once per step and call slot), and

    block j reuses D^j  ⇔  j not pivotal  ∧  c_j(i) < τ  ∧  it reused D^j fewer than L times in a row;

otherwise block j alone is computed and its D^j, score and r̃_j^ref are refreshed. Pivotal blocks (the
top ⌈c·n⌉ by the scores of their latest stored residuals) are always computed, as in the paper's
scheme; L is the config's ``refresh_interval``, here an upper bound on a residual's age.

Chosen by measurement (scripts/benchmark.py, demo model, 4 pairs, LFCache target 2×): the change
relative to the block's input beats the change relative to the reference residual by ~2.5 dB at equal
work (28.2 dB at 2.87× vs ~25.6 dB), since a block whose residual is small next to the hidden states
costs little when reused however much that residual moves.

A computed step where no trial ran (LFCache runs none there: step 0, its warm-up or forced steps, the
last step with a speed target, outside its window, after it stepped aside) computes every block and
stores their residuals: measured, letting the static rule reuse stale residuals at the last step of a
speed-target run alone cost 3.5 dB (34.5 → 31.1 dB on the demo model). A block stored at such a step
takes the latest trial before it as its reference (a longer span: a larger c_j, a conservative
error). Without LFCache on the model the whole run uses the static scheme (:mod:`.run` says so in the
report).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .block_cache import REFRESH, REUSE_BLOCK, BlockKey, norm32, select_pivotal
from .schedule import SlotKey

GUIDED = "guided"
"""Block phase of a computed step in trial-guided mode: each block decided on its own."""


def trial_change(now: torch.Tensor, reference: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """c = ‖now − reference‖₂ / ‖F̃^{j-1}‖₂ as a 0-d float32 tensor (no host sync); inf on a shape change."""
    if now.shape != reference.shape:
        return torch.tensor(math.inf, device=now.device)
    return norm32(now - reference) / input_norm.clamp_min(1e-12)


def guided_reuse(changes: list[float], pivotal: list[bool], ages: list[int], threshold: float, max_age: int,
                 have_trial: bool) -> list[bool]:
    """Per block with a stored residual: reuse it (True) or compute and refresh it (False).

    ``changes[j]`` c_j (inf: no reference trial residual); ``ages[j]`` reuses in a row since it was
    stored; ``have_trial`` False: this step ran no trial, every block is computed."""
    return [have_trial and not piv and age < max_age and c < threshold for c, piv, age in zip(changes, pivotal, ages)]


@dataclass
class _SlotGuide:
    """Per call slot: each block's reference trial residual and reuses in a row."""

    reference: dict[BlockKey, torch.Tensor] = field(default_factory=dict)
    age: dict[BlockKey, int] = field(default_factory=dict)
    step: int = -1
    decisions: dict[BlockKey, bool] = field(default_factory=dict)


class BlockGuidance:
    """Per-run state of trial-guided BlockCache (see module doc)."""

    def __init__(self, threshold: float, max_age: int, pivotal_ratio: float):
        self.threshold = threshold
        self.max_age = max_age
        self.pivotal_ratio = pivotal_ratio
        self._trial: dict[BlockKey, tuple[torch.Tensor, torch.Tensor]] = {}
        """(r̃_j, ‖F̃^{j-1}‖) of the trial now running (filled block by block)."""
        self._latest: dict[BlockKey, tuple[torch.Tensor, torch.Tensor]] = {}
        self._latest_step = -1
        """The same of the latest completed trial, and its step."""
        self._slots: dict[SlotKey, _SlotGuide] = {}
        self.fallback_steps: set[int] = set()
        """Computed steps with residuals stored but no trial: every block was computed there."""
        self.peak_bytes = 0
        """Most memory the latest trial's residuals and the references held together (at trial ends)."""
        self.last_changes: dict[BlockKey, float] = {}
        """c_j of the latest guided decision (for tests and the report)."""

    # -- the trial forward ------------------------------------------------------------------------
    def trial_block(self, block: BlockKey, args: dict, compute: Callable[[dict], dict],
                    in_place_tensors: tuple[str, ...] = ()) -> dict:
        """Run one block of the trial forward and record its residual r̃_j (``img``)."""
        value = args.get("img")
        before = value.clone() if isinstance(value, torch.Tensor) and "img" in in_place_tensors else value
        out = compute(args)
        after = out.get("img") if isinstance(out, dict) else None
        if isinstance(after, torch.Tensor) and isinstance(before, torch.Tensor) and after.shape == before.shape:
            self._trial[block] = (after - before, norm32(before))
        return out

    def close_trial(self, step: int) -> None:
        """The trial of ``step`` completed: its residuals become the latest."""
        if self._trial:
            self._latest, self._latest_step = self._trial, step
        self._trial = {}
        held = {id(t): t for t, _ in self._latest.values()}
        held.update((id(t), t) for guide in self._slots.values() for t in guide.reference.values())
        self.peak_bytes = max(self.peak_bytes, sum(t.numel() * t.element_size() for t in held.values()))

    def drop_trial(self) -> None:
        """A trial failed part-way: forget what it recorded."""
        self._trial = {}

    # -- a computed step --------------------------------------------------------------------------
    def reuse(self, slot: SlotKey, step: int, block: BlockKey, scores: dict[BlockKey, torch.Tensor]) -> bool:
        """Should ``block`` reuse its stored residual at ``step``? ``scores``: the slot's blocks with a
        stored residual (network order) and their scores. Decided for all of them at the step's first
        block call of the slot, with one host read."""
        guide = self._slots.setdefault(slot, _SlotGuide())
        if guide.step != step:
            guide.step = step
            guide.decisions = self._decide(guide, step, scores)
        return guide.decisions.get(block, False)

    def _decide(self, guide: _SlotGuide, step: int, scores: dict[BlockKey, torch.Tensor]) -> dict[BlockKey, bool]:
        blocks = list(scores)
        if not blocks:
            return {}  # nothing stored yet (the run's first computed step): every block is computed
        if not (self._latest_step == step and self._latest):
            self.fallback_steps.add(step)
            return {}  # no trial at this step: every block is computed (no host read)
        values = []
        for b in blocks:
            ref, now = guide.reference.get(b), self._latest.get(b)
            values.append(trial_change(now[0], ref, now[1]) if ref is not None and now is not None else None)
            values.append(scores[b] if self.pivotal_ratio > 0 else None)
        device = scores[blocks[0]].device
        present = [v.float().to(device) for v in values if v is not None]
        read = iter(torch.stack(present).tolist() if present else [])  # the one host read of this step and slot
        flat = [next(read) if v is not None else math.inf for v in values]
        changes, block_scores = flat[0::2], flat[1::2]
        pivotal = select_pivotal(torch.tensor(block_scores), self.pivotal_ratio).tolist()
        self.last_changes = dict(zip(blocks, changes))
        decisions = guided_reuse(changes, pivotal, [guide.age.get(b, 0) for b in blocks], self.threshold,
                                 self.max_age, True)
        return dict(zip(blocks, decisions))

    def after_block(self, slot: SlotKey, block: BlockKey, reused: bool) -> None:
        """Block ``block`` reused its residual (age + 1) or was computed and stored (new reference)."""
        guide = self._slots.setdefault(slot, _SlotGuide())
        if reused:
            guide.age[block] = guide.age.get(block, 0) + 1
            return
        guide.age[block] = 0
        latest = self._latest.get(block)
        if latest is None:
            guide.reference.pop(block, None)
        else:
            guide.reference[block] = latest[0]  # by reference: trial residuals are fresh tensors, never written

    def release(self) -> None:
        self._trial, self._latest = {}, {}
        self._slots.clear()


def phase_for(guidance: BlockGuidance, slot: SlotKey, step: int, block: BlockKey, scores: dict) -> str:
    """The block cache phase of one block in a guided step: reuse it alone, or refresh it alone."""
    return REUSE_BLOCK if guidance.reuse(slot, step, block, scores) else REFRESH
