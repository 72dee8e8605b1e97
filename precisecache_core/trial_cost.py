"""What LFCache's trial forward costs next to a full step: counted (its batch share) and measured (time).

Counted, in units of one full model call (the report's ``trial_work``, and the budget of the speed-target
rule): a trial on ``b_trial`` latents with token ratio r (trial tokens ÷ full tokens) costs

    r · b_trial ÷ b_step         within its own step (b_step: the summed batch of that step's calls)
    r · b_trial ÷ mean b_step    per step for the rule (mean over the computed steps so far)

so a trial on the cond stream alone of a batched cond+uncond call costs half of one on both.

Measured, for the step-aside check: the fastest of the first :data:`TIMED_TRIALS` trials ÷ the fastest of
the first :data:`TIMED_FULL_STEPS` computed steps (their calls summed). Minima on both sides: a busy
machine only ever slows a call down, so it cannot tip the comparison.
"""
from __future__ import annotations

from typing import Callable

TIMED_TRIALS = 3
"""Trials timed before the speed-target rule checks that the trial pays for itself."""
TIMED_FULL_STEPS = 2
"""Computed steps timed for the same check (a speed-target run always computes its first two)."""


class TrialCost:
    """The trial's counted and measured cost share in one run (module doc).

    ``sum_over_ranks``: with several ranks on one sample, sums the ranks' numbers (so every rank sees the
    same measured share and steps aside together); None on one GPU."""

    def __init__(self, token_ratio: float, sum_over_ranks: Callable[[list[float]], list[float]] | None = None):
        self.token_ratio = token_ratio
        self._sum_over_ranks = sum_over_ranks
        self._computed_batch = 0
        self._computed_steps = 0
        self._full_step_seconds: dict[int, float] = {}
        self._trial_seconds: list[float] = []
        self.measured_share: float | None = None
        """Measured trial time ÷ full step time, once both are measured (module doc)."""

    # -- counted --------------------------------------------------------------------------------
    def step_computed(self, batch: int) -> None:
        """A step that ran its model calls at full size, with this summed batch, has ended."""
        self._computed_batch += batch
        self._computed_steps += 1

    def work(self, trial_batch: int, step_batch: int) -> float:
        """The trial's work within its own step: r · b_trial ÷ b_step."""
        return self.token_ratio * trial_batch / max(1, step_batch)

    def share_of_mean_step(self, trial_batch: int) -> float | None:
        """r · b_trial ÷ mean b_step over the computed steps so far (None before the first ended)."""
        if not self._computed_steps:
            return None
        return self.token_ratio * trial_batch / (self._computed_batch / self._computed_steps)

    # -- measured -------------------------------------------------------------------------------
    def time_call(self, step: int, seconds: float, trial: bool) -> float | None:
        """Record one call's measured time; returns :attr:`measured_share` once it is known."""
        if trial:
            self._trial_seconds.append(seconds)
        elif len(self._full_step_seconds) < TIMED_FULL_STEPS or step in self._full_step_seconds:
            self._full_step_seconds[step] = self._full_step_seconds.get(step, 0.0) + seconds
        measured = len(self._trial_seconds) >= TIMED_TRIALS and len(self._full_step_seconds) >= TIMED_FULL_STEPS
        if not measured or (not trial and step == max(self._full_step_seconds)):
            return None  # not all measured yet, or this step's full calls may not all have run
        full, fastest_trial = min(self._full_step_seconds.values()), min(self._trial_seconds)
        if self._sum_over_ranks is not None:
            full, fastest_trial = self._sum_over_ranks([full, fastest_trial])
        if full <= 0:
            return None
        self.measured_share = fastest_trial / full
        return self.measured_share
