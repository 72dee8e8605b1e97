"""LFCache's side of a run: when to run the trial, and whether each sampler step is skipped.

One :class:`StepPolicy` per sampling run holds the window, the decision rule (α: :class:`StepDecider`;
speed target: :class:`SpeedTargetDecider`), the previous trial prediction and the trial of the last
computed step. Per step i it answers

    wants_trial(i)         run the trial forward at this step?
    decide(i, F̃_i | None) → StepDecision (skip or compute, and the numbers behind it)

with the low-frequency change of the trial prediction F̃_i [B, C, T̃, H̃, W̃]:

    Δ_i = LFD(F̃_i, F̃_prev)       adjacent change (F̃_prev: the latest trial before i)
    D_i = LFD(F̃_i, F̃_ref)        drift since the last computed step (F̃_ref: its trial)
    A_i = Σ Δ_k since the last computed step

The rule compares the metric m_i = A_i (``metric='accumulated'``, the paper's rule) or D_i
(``metric='drift'``) with its threshold. Only *decidable* steps can skip: in the start/end window
and past the warm-up (step 0 in α mode, steps 0–1 with a speed target). A trial runs at a decidable
step unless the rule is forced (skip limit, spent budget), and at the step just before a decidable
one, to give it a reference; nowhere else. Where a trial did not run, the latest trial stands in
for it (a longer span: larger Δ, a conservative error).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .lowpass import low_frequency_distance
from .speed_target import SpeedTargetDecider
from .step_decision import StepDecider

SPEED_TARGET_WARMUP_STEPS = 2
"""With a speed target, the first steps of a run are always computed: they lay down the structure;
so is the last, whose prediction makes the output's final (and largest-sigma-jump) correction."""


@dataclass
class StepDecision:
    """One step's decision and the numbers behind it (NaN where there were none)."""

    skip: bool
    trial: bool
    delta: float = math.nan
    metric: float = math.nan
    threshold: float = math.nan
    abandoned: bool = False
    """With a rank sync: some rank's trial failed at this step; every rank turns LFCache off."""


class StepPolicy:
    """See module doc. ``allowed[i]``: step i lies in the LFCache window."""

    def __init__(self, allowed: Sequence[bool], *, alpha: float, speed_target: float, metric: str,
                 lowpass_radius: float, max_consecutive_skips: int, trial_cost: float, sync=None):
        self.sync = sync
        """:class:`rank_sync.RankSync` when several ranks compute one sample (None: one GPU, nothing reduced)."""
        self.metric = metric
        self.lowpass_radius = lowpass_radius
        self.target: SpeedTargetDecider | None = None
        self.alpha_rule: StepDecider | None = None
        if speed_target > 0:
            last = len(allowed) - 1  # the last step's prediction is the output's final correction
            self.decidable = tuple(a and SPEED_TARGET_WARMUP_STEPS <= i < last for i, a in enumerate(allowed))
            self.target = SpeedTargetDecider(speed_target, self.decidable, trial_cost, max_consecutive_skips)
        else:
            self.decidable = tuple(a and i >= 1 for i, a in enumerate(allowed))
            self.alpha_rule = StepDecider(alpha, max_consecutive_skips)
        self._prev_trial: torch.Tensor | None = None
        self._reference: torch.Tensor | None = None
        self._accumulated = 0.0

    @property
    def steps(self) -> int:
        return len(self.decidable)

    def set_trial_cost(self, cost: float) -> None:
        """The measured cost of a trial in units of one full step (token ratio × streams share)."""
        if self.target is not None:
            self.target.trial_cost = cost

    def _forced(self, step: int) -> str | None:
        if self.target is not None:
            return self.target.forced(step)
        rule = self.alpha_rule
        if rule.max_consecutive_skips and rule.consecutive_skips >= rule.max_consecutive_skips:
            return "compute"
        return None

    def wants_trial(self, step: int) -> bool:
        if self.decidable[step]:
            return self._forced(step) is None
        return step + 1 < self.steps and self.decidable[step + 1]

    def decide(self, step: int, trial: torch.Tensor | None, failed: bool = False) -> StepDecision:
        """Step ``step``'s decision from its trial prediction (None: no trial ran at this step).

        With a sync, called exactly once per step on every rank (``failed``: this rank's trial could
        not be run); its collectives are issued whatever is decided (see :mod:`rank_sync`)."""
        delta = drift = None
        if trial is not None:
            if self._prev_trial is not None and self._prev_trial.shape == trial.shape:
                delta = float(low_frequency_distance(trial, self._prev_trial, self.lowpass_radius))
            if self.metric == "drift" and self._reference is not None and self._reference.shape == trial.shape:
                drift = float(low_frequency_distance(trial, self._reference, self.lowpass_radius))
        if self.sync is not None:
            return self._decide_synced(step, trial, delta, drift, failed)
        if trial is not None and self.target is not None:
            self.target.charge_trial(step)
        return self._decide_from(step, trial, delta, drift)

    def _decide_synced(self, step: int, trial: torch.Tensor | None, delta: float | None, drift: float | None,
                       failed: bool) -> StepDecision:
        """The ranks' mean Δ and D, the rule on them, then the skip flag agreed (skip only if every rank
        skips). Two all-reduces, whatever is decided."""
        cost = self.target.trial_cost if self.target is not None else 0.0
        delta, drift, cost, any_failed = self.sync.step_numbers(delta, drift, cost, failed)
        if any_failed:  # some rank could not run its trial: LFCache stops on every rank, this step computed
            self.sync.all_agree(False)
            return StepDecision(skip=False, trial=trial is not None, abandoned=True)
        if self.target is not None:
            self.target.trial_cost = cost
            if trial is not None:
                self.target.charge_trial(step)
        decision = self._decide_from(step, trial, delta, drift)
        if self.sync.all_agree(decision.skip) != decision.skip:
            self._overrule_skip(trial)  # another rank computes this step: so does this one
            self.sync.overruled += 1
            decision.skip = False
        return decision

    def _overrule_skip(self, trial: torch.Tensor | None) -> None:
        """Turn this rank's skip of the step just decided into a compute, in the rule state exactly as
        if the rule had decided compute (the state the other ranks now hold)."""
        if self.target is not None:
            self.target.consecutive_skips = 0
            self.target.spent += 1.0
        else:
            self.alpha_rule.accumulated = 0.0
            self.alpha_rule.consecutive_skips = 0
        self._accumulated = 0.0
        self._reference = self._prev_trial  # this step's trial (already stored as the latest one)

    def _decide_from(self, step: int, trial: torch.Tensor | None, delta: float | None,
                     drift: float | None) -> StepDecision:
        if delta is not None:
            self._accumulated += delta
        metric = drift if self.metric == "drift" else (self._accumulated if delta is not None else None)
        decision = self._rule_decision(step, delta, metric)
        decision.trial = trial is not None
        if not decision.skip:
            self._accumulated = 0.0
            self._reference = trial.detach() if trial is not None else self._prev_trial
        if trial is not None:
            self._prev_trial = trial.detach()  # a fresh tensor that only this run holds
        return decision

    def _rule_decision(self, step: int, delta: float | None, metric: float | None) -> StepDecision:
        nan = math.nan
        if self.target is not None:
            self.target.observe(delta)
            skip = self.target.decide(step, metric)
            return StepDecision(skip=skip, trial=False, delta=nan if delta is None else delta,
                                metric=nan if metric is None else metric, threshold=self.target.last_threshold)
        rule = self.alpha_rule
        forced = self._forced(step) if self.decidable[step] else "compute"
        skip = rule.decide(delta, self.decidable[step] and forced is None,
                           metric=metric if self.metric == "drift" else None)
        return StepDecision(skip=skip, trial=False, delta=nan if delta is None else delta,
                            metric=rule.last_accumulated if delta is not None else nan,
                            threshold=rule.alpha * rule.running_max if delta is not None else nan)

    def predicted_wall_speedup(self, trial_time_share: float) -> float | None:
        """With a speed target: N ÷ (computes left in the budget + trials × measured trial time share
        of a full step). None in α mode (its number of computes is not known in advance)."""
        if self.target is None:
            return None
        trials = sum(self.decidable) + 1
        computes = max(1.0, self.target.budget - self.target.trial_cost * trials)
        return self.steps / (computes + trials * trial_time_share)

    def release(self) -> None:
        self._prev_trial = None
        self._reference = None
