"""LFCache's step-wise decision: compute the full step, or reuse the cache.

At sampler step i the trial prediction F̃_i (see :mod:`trial`) is compared with F̃_{i-1}:

    Δ_i     = LFD(F̃_i, F̃_{i-1})                       (:func:`lowpass.low_frequency_distance`)
    Δ_max   = max(Δ_1 … Δ_i)                            (running maximum over this run)
    A_i     = Σ Δ_k over the steps since the last full step, k ≤ i
    skip i  ⇔  A_i < α · Δ_max                           (strict: α = 0 never skips)

After a full step A resets to 0. Step 0 has no Δ and is always computed; at step 1
A_1 = Δ_1 = Δ_max, so it is computed as well for any α ≤ 1. Steps outside the start/end window
and steps past ``max_consecutive_skips`` are computed (and reset A).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StepDecider:
    """Per-run accumulator state of the LFCache decision (one instance per sampling run)."""

    alpha: float
    max_consecutive_skips: int = 0
    """0 = no limit; otherwise at most this many skipped steps in a row."""
    accumulated: float = 0.0
    running_max: float = 0.0
    consecutive_skips: int = 0
    history: list[float] = field(default_factory=list)
    """Δ_i per decided step (NaN where no Δ was available)."""
    last_accumulated: float = 0.0
    """A_i as compared at the latest decision (before any reset)."""

    def decide(self, delta: float | None, allowed: bool, metric: float | None = None) -> bool:
        """Record Δ_i (None when there is no previous trial) and return True to skip step i.

        ``metric`` replaces A_i in the comparison when given (the drift D_i of the trial from the
        last computed step's trial, see :mod:`step_policy`)."""
        if delta is None:
            self.history.append(float("nan"))
            return self._compute()
        delta = float(delta)
        self.history.append(delta)
        self.running_max = self.updated_max(delta)
        self.accumulated += delta
        self.last_accumulated = self.accumulated
        if not allowed:
            return self._compute()
        if self.max_consecutive_skips and self.consecutive_skips >= self.max_consecutive_skips:
            return self._compute()
        value = self.accumulated if metric is None else metric
        if value < self.alpha * self.running_max:
            self.consecutive_skips += 1
            return True
        return self._compute()

    def updated_max(self, delta: float) -> float:
        """Δ_max after seeing Δ_i: the running maximum over the run (the definition chosen by
        measurement, see README; a subclass may define another, e.g. the max of the first k steps)."""
        return max(self.running_max, delta)

    def _compute(self) -> bool:
        self.accumulated = 0.0
        self.consecutive_skips = 0
        return False
