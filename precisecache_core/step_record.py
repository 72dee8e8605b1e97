"""What happened at each sampler step of one run, and the report's per-step and per-block lists read from it.

The run writes one :class:`StepRecord` per step as its calls happen (the decision, the calls and their
batch, the calls answered from the step cache, the block calls and which reused a residual); at the end
:func:`write_step_lists` and :func:`write_block_lists` derive every list of the :class:`RunReport` from
the records alone, so the lists cannot fall out of step with each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .block_cache import BlockKey
from .report import RunReport
from .step_policy import StepDecision


@dataclass
class StepRecord:
    """One sampler step (see module doc)."""

    sigma: float
    decision: StepDecision | None = None
    """LFCache's decision (compute without LFCache); None until taken."""
    calls: int = 0
    batch: int = 0
    """Total batch over this step's model calls."""
    reused_calls: int = 0
    """Calls answered from the step cache."""
    block_calls: dict[BlockKey, int] = field(default_factory=dict)
    """Per block, in the order the blocks first ran: its calls in this step (reused or computed)."""
    blocks_reused: dict[BlockKey, int] = field(default_factory=dict)
    """Per block: its calls in this step that reused the cached residual."""

    @property
    def skip(self) -> bool:
        return self.decision is not None and self.decision.skip

    @property
    def decided(self) -> bool:
        return self.decision is not None

    def count_block(self, block: BlockKey, reused: bool) -> None:
        self.block_calls[block] = self.block_calls.get(block, 0) + 1
        if reused:
            self.blocks_reused[block] = self.blocks_reused.get(block, 0) + 1


def write_step_lists(report: RunReport, records: Mapping[int, StepRecord]) -> None:
    """The skipped steps (every call reused), the decisions' Δ / metric / threshold (decided steps, in
    order) and the reused block calls per step."""
    ordered = [records[i] for i in sorted(records)]
    report.skipped_steps = sorted(i for i, r in records.items() if r.skip and r.reused_calls == r.calls)
    decisions = [r.decision for r in ordered if r.decision is not None]
    report.lfd = [d.delta for d in decisions]
    report.accumulated = [d.metric for d in decisions]
    report.threshold = [d.threshold for d in decisions]
    report.reused_blocks_per_step = [sum(r.blocks_reused.values()) for r in ordered]


def write_block_lists(report: RunReport, records: Mapping[int, StepRecord], steps: int) -> None:
    """Per block (network order: the order blocks first ran): its name, reused calls and calls; and the
    per-step × per-block map of reused calls (``steps`` rows)."""
    ordered = [records[i] for i in sorted(records)]
    order = list(dict.fromkeys(block for r in ordered for block in r.block_calls))
    report.block_names = [" ".join(str(p) for p in b) if isinstance(b, tuple) else str(b) for b in order]
    report.reused_per_block = [sum(r.blocks_reused.get(b, 0) for r in ordered) for b in order]
    report.block_calls_per_block = [sum(r.block_calls.get(b, 0) for r in ordered) for b in order]
    empty = StepRecord(sigma=0.0)
    report.block_reuse_map = [[records.get(i, empty).blocks_reused.get(b, 0) for b in order] for i in range(steps)]
