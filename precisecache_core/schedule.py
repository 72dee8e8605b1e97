"""Where a model call falls: its sampler step, from the sigma schedule alone, and its slot within the step.

Samplers call the denoiser once per step (Euler), twice (Heun: at σ_i and at σ_{i+1}), at
intermediate sigmas (DPM++ 2S: a midpoint), or several times at the same sigma (skip-layer
guidance adds a call). Counting calls therefore miscounts steps. Instead a call at sigma σ belongs to

    step(σ) = max { i : σ_i ≥ σ }     over the run's schedule σ_0 > σ_1 > … > σ_N

(with a relative tolerance), so every call at σ_i, or between σ_{i+1} and σ_i, shares step i's
decision. A Heun corrector at σ_{i+1} evaluates there, so it shares step i+1's decision, which the
next predictor at σ_{i+1} then reuses: one decision per schedule sigma, never two.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Hashable, Sequence

_REL_TOL = 1e-5


@dataclass(frozen=True)
class StepClock:
    """The run's sigma schedule (host floats) and the sigma window where caching may act."""

    sigmas: tuple[float, ...]
    start_sigma: float = float("inf")
    end_sigma: float = -1.0

    @classmethod
    def from_schedule(cls, sigmas: Sequence[float], start_sigma: float = float("inf"),
                      end_sigma: float = -1.0) -> "StepClock":
        return cls(tuple(float(s) for s in sigmas), float(start_sigma), float(end_sigma))

    @property
    def steps(self) -> int:
        """Number of sampler steps (schedule length − 1)."""
        return max(0, len(self.sigmas) - 1)

    decreasing: bool = field(init=False, repr=False, compare=False)
    """True when the schedule never increases (repeated sigmas allowed).

    :meth:`step_of` assumes this; an increasing schedule (FlipSigmas, unsampling / inversion)
    would map every call to the first or the last step."""
    _negated_step_sigmas: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # computed once here rather than with functools.cached_property, whose lock (Python ≤ 3.11)
        # cannot be pickled: the pack is sent by value to Ray actors (nodes/ray_nodes.py)
        decreasing = all(b <= a * (1.0 + _REL_TOL) + 1e-12 for a, b in zip(self.sigmas, self.sigmas[1:]))
        object.__setattr__(self, "decreasing", decreasing)
        object.__setattr__(self, "_negated_step_sigmas",
                           tuple(-s for s in (self.sigmas[:-1] if len(self.sigmas) > 1 else self.sigmas)))

    def step_of(self, sigma: float) -> int:
        """Index of the step a call at ``sigma`` belongs to (see module doc): a bisection on a
        decreasing schedule, the first-failure scan otherwise."""
        threshold = sigma * (1.0 - _REL_TOL) - 1e-12
        if self.decreasing:
            # s_i ≥ threshold ⇔ −s_i ≤ −threshold: the count of such leading entries, minus one
            return max(0, bisect_right(self._negated_step_sigmas, -threshold) - 1)
        best = 0
        for i, s in enumerate(self.sigmas[:-1] if len(self.sigmas) > 1 else self.sigmas):
            if s >= threshold:
                best = i
            else:
                break
        return best

    def in_window(self, sigma: float) -> bool:
        """Caching may act at ``sigma``: end_sigma < σ ≤ start_sigma (ComfyUI's start/end percent)."""
        return self.end_sigma < sigma <= self.start_sigma * (1.0 + _REL_TOL)


SlotKey = tuple[tuple[Hashable, ...], int]
"""One model call's place within its step: (the stream uuids of the call, how many calls with that tuple
came before it in the step). Cond and uncond batched together form one slot, called separately two; an
extra call at the same sigma (Heun's corrector, skip-layer guidance) gets a slot of its own."""


class CallSlots:
    """Numbers the model calls of the current step (see :data:`SlotKey`)."""

    def __init__(self) -> None:
        self.step = -1
        """The step of the latest call."""
        self._seen: dict[tuple[Hashable, ...], int] = {}

    def slot(self, step: int, uuids: Sequence[Hashable]) -> SlotKey:
        if step != self.step:
            self.step, self._seen = step, {}
        key = tuple(uuids)
        ordinal = self._seen.get(key, 0)
        self._seen[key] = ordinal + 1
        return key, ordinal
