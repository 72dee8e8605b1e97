"""Rank-consistent caching decisions when several processes compute ONE sample together.

Under sequence parallelism (xDiT / USP, as raylight runs it), CFG-parallel or FSDP, every rank runs
the same denoiser calls; their forwards contain collectives (all-to-all in attention, all-gather
before the head, FSDP's weight gathers). A rank that skips a step, or reuses a block, while another
computes it leaves the other waiting in a collective: the job hangs (raylight's process-group
timeout: one minute) or, without collectives, the video tears apart. So every decision must be the
same on every rank of the sample's *group*: the ranks that cooperate on one sample (sequence ×
CFG × pipeline ranks; never data-parallel ranks, which make other videos — except under FSDP,
whose forwards gather weights across all of its ranks, so that all of them must decide alike).

:class:`RankSync` does it with small all-reduces over that group, each issued at a fixed point
whatever is decided (no collective under a rank-local branch); gloo has no ``ReduceOp.AVG``, so a
mean is a SUM then a division. Without a process group, or with a group of one rank,
:func:`for_run` returns None and the caller's code path is exactly the single-GPU one.

Per sampler step while LFCache is active (``StepPolicy.decide``, called exactly once per step on
every rank, with or without a trial):

1. ``step_numbers``: all_reduce(SUM) of ``[Δ, D, trial_cost, trial_failed]`` (NaN where this rank
   has no Δ or D: a step without a trial still reduces its NaN placeholders), divided by the group
   size → the mean over ranks. Under USP every rank sees the full latent and the full trial output
   (gathered before the head), so the ranks' Δ agree up to rounding; under CFG-parallel each rank's
   Δ is its own stream's, and the mean is over the streams.
2. The rule runs on these numbers. Its state (accumulated change, Δ_max, budget spent, consecutive
   skips) is updated from the same numbers and the same agreed decision on every rank, so it is the
   same everywhere by induction; forced decisions (the speed-target rule's forced compute when the
   budget allows every remaining step, forced skip when it is spent, ``max_consecutive_skips``)
   are functions of that state and the step index alone, identical on every rank — they need no
   collective of their own, and the step's collectives are issued all the same.
3. ``all_agree``: all_reduce(MIN) of the skip flag — the step is skipped only if every rank would
   skip it. The reduced numbers are the same bits on every rank, so this never overrules in
   practice; it guards against a rank whose floating point differs (a different GPU model), and a
   rank that is overruled undoes the skip in its rule state (``StepPolicy``), so the states stay equal.

Per BlockCache ranking (the first reuse-phase block call after a refresh, the same block call on
every rank): ``pivotal_blocks`` reduces every block's score (SUM, then ÷ ranks: the mean of the
shards' scores) and a "has a residual" count in ONE all_reduce over the run's fixed block list, and
picks the pivotal set from the mean scores; a block that lacks a residual on some rank is computed
everywhere. Under USP each rank's block patches see its own token shard, so residual buffers hold the
shard (memory ÷ ranks) and the score is the shard's; the mean of the shards' relative scores stands
in for the whole sequence's score.

Once per run (where the speed-target rule has measured a full step's and a trial's time: the same call
on every rank, since which calls are timed follows from the same state): ``sum_numbers`` of the measured
seconds, so that "LFCache steps aside" is decided on the same numbers everywhere.

A trial that fails on one rank (a rank-local error: out of memory) takes part in its step's
collectives with ``trial_failed``; every rank then turns LFCache off together. A failure *inside* a
trial that itself runs collectives (a sharded trial) cannot be recovered from: the other ranks wait
in the trial's collectives until the process group times out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch

from .block_cache import pivotal_count, select_pivotal

SAMPLE_GROUP_KEY = "precisecache_sample_group"
"""``transformer_options`` key holding a :class:`SampleGroup` (set by the Ray nodes, or by hand)."""


def _dist():
    """torch.distributed when a default process group exists, else None."""
    dist = torch.distributed
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


@dataclass(frozen=True)
class SampleGroup:
    """The process group of the ranks that cooperate on one sample (None: the default group).

    Stored in a model's ``transformer_options``: clones of the model share it (never deep-copied)."""

    group: object = None
    description: str = ""
    is_precisecache_sample_group = True
    """Recognised by this marker, not by class identity: ComfyUI imports the pack under its folder
    name, and Ray actors receive it by value, so two copies of this class may meet."""

    def __deepcopy__(self, memo) -> "SampleGroup":
        return self


@dataclass
class RankSync:
    """Decision sync over one :class:`SampleGroup` for one sampling run (see module doc)."""

    group: object = None
    block_keys: Sequence[Hashable] = ()
    """Every block BlockCache may act on, in one fixed order on every rank."""
    collectives: int = 0
    """All-reduces issued by this run (the tests count them per step)."""
    overruled: int = 0
    """Steps where this rank would have skipped but another rank computed."""
    description: str = ""
    _device: torch.device | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        dist = _dist()
        if dist is None:
            raise RuntimeError("RankSync needs an initialised torch.distributed process group")
        self.size = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)
        if self._device is None:
            backend = str(dist.get_backend(self.group)).lower()
            self._device = (torch.device("cuda", torch.cuda.current_device())
                            if "nccl" in backend and torch.cuda.is_available() else torch.device("cpu"))

    # -- collectives ------------------------------------------------------------------------
    def _all_reduce(self, values: Sequence[float], op) -> list[float]:
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._device)
        torch.distributed.all_reduce(t, op=op, group=self.group)
        self.collectives += 1
        return t.cpu().tolist()

    def sum_numbers(self, values: Sequence[float]) -> list[float]:
        """Σ over the group of each value (one all_reduce)."""
        return self._all_reduce(values, torch.distributed.ReduceOp.SUM)

    def mean_numbers(self, values: Sequence[float]) -> list[float]:
        """Mean over the group of each value: SUM, then ÷ ranks (gloo has no AVG). NaN on any rank → NaN."""
        return [v / self.size for v in self.sum_numbers(values)]

    def step_numbers(self, delta: float | None, drift: float | None, trial_cost: float,
                     failed: bool) -> tuple[float | None, float | None, float, bool]:
        """One step's numbers, agreed: (mean Δ, mean D, mean trial cost, did any rank's trial fail).
        A value missing on a rank (no trial at this step) is reduced as NaN and comes back None."""
        nan = math.nan
        d, dr, cost, fails = self.mean_numbers([nan if delta is None else delta, nan if drift is None else drift,
                                                trial_cost, 1.0 if failed else 0.0])
        return (None if math.isnan(d) else d, None if math.isnan(dr) else dr, cost, fails > 0)

    def all_agree(self, flag: bool) -> bool:
        """True only if ``flag`` is True on every rank (all_reduce MIN)."""
        return self._all_reduce([1.0 if flag else 0.0], torch.distributed.ReduceOp.MIN)[0] > 0.5

    def pivotal_blocks(self, scores: dict, ratio: float) -> set:
        """BlockCache's pivotal set from the group's mean scores (one all_reduce over ``block_keys``).

        ``scores``: block key → this rank's score (0-d tensor) for the blocks it holds a residual of.
        Pivotal: the ⌈ratio · n⌉ highest mean scores among the n blocks every rank holds a residual
        of, plus every block some rank holds none of (computed everywhere, never reused)."""
        keys = list(self.block_keys) or sorted(scores, key=repr)
        n = len(keys)
        held_keys = [k for k in keys if k in scores]
        read = dict(zip(held_keys, torch.stack([scores[k].reshape(()) for k in held_keys]).double().cpu().tolist()
                        if held_keys else []))  # one host read for all blocks, not one per block
        local = [read.get(k, 0.0) for k in keys]
        held = [1.0 if k in scores else 0.0 for k in keys]
        total = self.sum_numbers(local + held)
        everywhere = [k for k, count in zip(keys, total[n:]) if count > self.size - 0.5]
        mean = {k: s / self.size for k, s in zip(keys, total[:n])}
        pivotal = {k for k in keys if k not in everywhere}
        if everywhere:
            mask = select_pivotal(torch.tensor([mean[k] for k in everywhere], dtype=torch.float64),
                                  ratio)
            pivotal.update(k for k, m in zip(everywhere, mask.tolist()) if m)
        assert len(pivotal) >= pivotal_count(len(everywhere), ratio)
        return pivotal


def sample_group_of(options: dict | None) -> SampleGroup | None:
    """The :class:`SampleGroup` a model's ``transformer_options`` carry, if any."""
    value = (options or {}).get(SAMPLE_GROUP_KEY)
    return value if getattr(value, "is_precisecache_sample_group", False) else None


def for_run(sample_group: SampleGroup | None, block_keys: Sequence[Hashable] = ()) -> RankSync | None:
    """A fresh :class:`RankSync` for one run, or None — no group given, no process group, or a group
    of one rank: then nothing is reduced and the run is exactly the single-GPU run."""
    if sample_group is None or _dist() is None:
        return None
    if torch.distributed.get_world_size(sample_group.group) <= 1:
        return None
    return RankSync(group=sample_group.group, block_keys=tuple(block_keys), description=sample_group.description)
