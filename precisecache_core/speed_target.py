"""LFCache's speed-target rule: compute a fixed share of the work, spent where the trial says.

The user asks for a speed-up S (work of the uncached run ÷ work of this run). Over a run of N
sampler steps the work budget, in units of one fully computed step, is

    W = N / S.

A computed step costs 1, a trial forward costs ``trial_cost`` (its share of a full step's tokens
and streams, e.g. 1/32 for a 2×4×4 trial on both CFG streams, 1/64 on the cond stream alone).
Steps that may not skip (outside the start/end window, and the first ``warmup`` steps, which lay
down the structure) are computed and run no trial unless the next step needs it as a reference.

At a *decidable* step i, with R decidable steps left (i included) and E non-decidable steps after
it, the computes still affordable in the decidable steps are

    a_i = W − spent − E − trial_cost · R            (trials reserved for every remaining step).

* a_i ≥ R    → compute, no trial: the budget allows every remaining step (forced compute);
* a_i < ½    → skip, no trial: the budget is spent (forced skip; at most half a step over W);
* otherwise  → run the trial and compare its metric m_i (the accumulated low-frequency change since
  the last computed step, or its drift from that step's trial) with a threshold steered by the
  budget left:

      p_i = R / a_i                                  (budget pressure: steps per affordable compute)
      τ_i = α₀(S) · Δ_max · (p_i / p_first)^3,       skip i  ⇔  m_i < τ_i,

  α₀(S) is the paper's α that gives about S× on a typical run (:func:`prior_alpha`), only a starting
  point: a run that spends faster than its budget raises its threshold, one that spends slower lowers
  it, per model. Δ_max is the largest adjacent change seen, so the computes go where the change is
  large relative to the run's own scale; the forced cases keep the total within half a step of W
  whatever the model, resolution, sampler or step count. ``max_consecutive_skips`` still forces a
  compute. (Exponent 3 measured: 0, 1 and 2 gave 0.3–6 dB less at equal work on the demo model.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

PRESSURE_GAIN = 3.0
"""Exponent of the budget feedback on the threshold (see module doc)."""

FORCED_COMPUTE = "compute"
FORCED_SKIP = "skip"


def prior_alpha(target: float) -> float:
    """The starting point of the threshold, α₀(S) · Δ_max: the α of the paper's rule that gives about S×
    on a typical run (α 0.5 ≈ 1.5×, 1.0 ≈ 2.4×, 1.5 ≈ 3.4×; the budget feedback corrects it per model)."""
    return max(0.1, 0.53 * (target - 0.6))


@dataclass
class SpeedTargetDecider:
    """Per-run state of the speed-target rule (see module doc)."""

    target: float
    decidable: Sequence[bool]
    """Per step: may this step be skipped (in the window, past the warm-up)."""
    trial_cost: float
    """Cost of one trial forward in units of one full step (updated by the run once measured)."""
    max_consecutive_skips: int = 0
    spent: float = 0.0
    consecutive_skips: int = 0
    delta_max: float = 0.0
    last_threshold: float = float("nan")
    initial_pressure: float | None = None
    _tail_decidable: list[int] = field(default_factory=list, repr=False)
    _trial_charged_at: int = -1

    def __post_init__(self) -> None:
        n = len(self.decidable)
        tail = [0] * (n + 1)  # tail[i] = number of decidable steps in [i, n)
        for i in range(n - 1, -1, -1):
            tail[i] = tail[i + 1] + (1 if self.decidable[i] else 0)
        self._tail_decidable = tail

    @property
    def steps(self) -> int:
        return len(self.decidable)

    @property
    def budget(self) -> float:
        """W = N / S, in full steps."""
        return self.steps / self.target

    def reachable_speedup(self) -> float:
        """The largest speed-up this schedule allows: every decidable step skipped without a trial."""
        mandatory = self.steps - self._tail_decidable[0]
        return self.steps / max(1, mandatory)

    def _affordable(self, step: int) -> tuple[float, int]:
        remaining = self._tail_decidable[step]
        after = (self.steps - step - 1) - self._tail_decidable[step + 1]  # non-decidable steps after i
        reserved = remaining - (1 if self._trial_charged_at == step else 0)  # this step's trial already spent
        return self.budget - self.spent - after - self.trial_cost * reserved, remaining

    def forced(self, step: int) -> str | None:
        """FORCED_COMPUTE / FORCED_SKIP when step ``step`` needs no trial to be decided, else None."""
        if not self.decidable[step]:
            return FORCED_COMPUTE
        if self.max_consecutive_skips and self.consecutive_skips >= self.max_consecutive_skips:
            return FORCED_COMPUTE
        affordable, remaining = self._affordable(step)
        if affordable >= remaining - 1e-9:
            return FORCED_COMPUTE
        if affordable < 0.5:
            return FORCED_SKIP
        return None

    def threshold(self, step: int) -> float:
        """τ_i for an undecided step (after its Δ was recorded with :meth:`observe`)."""
        affordable, remaining = self._affordable(step)
        pressure = remaining / max(affordable, 1e-9)
        if self.initial_pressure is None:
            self.initial_pressure = pressure
        return prior_alpha(self.target) * self.delta_max * (pressure / self.initial_pressure) ** PRESSURE_GAIN

    def observe(self, delta: float | None) -> None:
        """Record an adjacent-step low-frequency change Δ (used for the threshold's scale)."""
        if delta is not None and math.isfinite(delta):
            self.delta_max = max(self.delta_max, float(delta))

    def decide(self, step: int, metric: float | None) -> bool:
        """True to skip step ``step``. ``metric`` is m_i, None when no trial ran (forced step or
        no reference yet: computed). Call after the trial cost of this step was charged.
        ``last_threshold`` holds τ_i when the threshold decided, else NaN."""
        forced = self.forced(step)
        self.last_threshold = float("nan")
        if forced == FORCED_SKIP:
            skip = True
        elif forced == FORCED_COMPUTE or metric is None:
            skip = False
        else:
            self.last_threshold = self.threshold(step)
            skip = metric < self.last_threshold
        self.consecutive_skips = self.consecutive_skips + 1 if skip else 0
        if not skip:
            self.spent += 1.0
        return skip

    def charge_trial(self, step: int) -> None:
        """A trial forward ran at ``step`` (whether or not that step is decidable)."""
        self.spent += self.trial_cost
        self._trial_charged_at = step
