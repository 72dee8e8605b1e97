"""When BlockCache acts in a computed step, and with which phase.

Outside BlockCache's start/end window a computed step runs every block (phase None). Inside it:

* static rule (the paper's): the first computed step refreshes every block's residual, the next L
  (``refresh_interval``) computed steps reuse the non-pivotal blocks' residuals, then a step refreshes
  again, and so on: phases refresh, reuse × L, refresh, …, one phase per step, shared by its calls;
* trial-guided rule: every computed step is ``GUIDED``: each block is decided on its own
  (:mod:`.block_guidance`).
"""
from __future__ import annotations

from .block_cache import REFRESH, block_phase
from .block_guidance import GUIDED
from .schedule import StepClock


class BlockSchedule:
    """The phase of each computed step (module doc). ``window``: the run's schedule with BlockCache's
    sigma window."""

    def __init__(self, window: StepClock, refresh_interval: int, guided: bool):
        self.window = window
        self.refresh_interval = refresh_interval
        self.guided = guided
        self._step = -1
        self._phase: str | None = None
        self._computed_since_refresh: int | None = None
        """Computed steps in the window since the latest refresh (None before the first)."""

    def phase(self, step: int, sigma: float) -> str | None:
        """The phase of computed step ``step`` (at ``sigma``): None, 'refresh', 'reuse' or ``GUIDED``.

        Call it for the computed steps only, in the order they run: the static cadence counts them."""
        if not self.window.in_window(sigma):
            return None
        if self.guided:
            return GUIDED
        if step != self._step:
            self._step = step
            self._phase = block_phase(self._computed_since_refresh, self.refresh_interval)
            self._computed_since_refresh = 0 if self._phase == REFRESH else self._computed_since_refresh + 1
        return self._phase
