"""Configuration of the two caches, their presets and validation of every user input.

Each config is a frozen dataclass: it is what a ComfyUI node stores on the model (deep-copied by
``ModelPatcher.clone``), never per-run state. ``validate()`` raises a ValueError whose message names
the node input and its allowed range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .lowpass import DEFAULT_RADIUS, check_radius
from .trial import DEFAULT_TRIAL_DOWNSAMPLE, TRIAL_OPERATORS, check_factors

if TYPE_CHECKING:
    from .preset_store import PresetOrigin

REUSE_MODES = ("output", "residual")
LF_METRICS = ("accumulated", "drift")
TRIAL_STREAMS = ("cond", "all")
"""Which CFG streams of a batched cond+uncond call the trial runs on."""
SPEED_TARGET_RANGE = (1.1, 6.0)
"""Allowed speed targets (uncached work ÷ cached work); 0 switches to the expert α rule."""
RANKING_NORMS = ("relative_l2", "l2")
RESIDUAL_LOCATIONS = ("gpu", "cpu")
BLOCK_MODES = ("static", "trial_guided")
"""BlockCache's rule: the paper's static top-c % / refresh every L (``static``), or per block by the
change of its residual in LFCache's trial (``trial_guided``, :mod:`.block_guidance`)."""
CHANGE_THRESHOLD_RANGE = (0.0, 2.0)
FEW_STEP_LIMIT = 8
"""Schedules of this many steps or fewer (distilled 4–8 step models) are never cached: with so
few steps every prediction carries structure, and the trial forward would only add cost."""


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} = {value!r} is out of range: allowed {bracket}{low}, {high}]")
    return float(value)


def _check_window(start_percent: float, end_percent: float) -> None:
    _check_range("start_percent", start_percent, 0.0, 1.0)
    _check_range("end_percent", end_percent, 0.0, 1.0)
    if start_percent >= end_percent:
        raise ValueError(f"start_percent ({start_percent}) must be smaller than end_percent ({end_percent})")


@dataclass(frozen=True)
class LFCacheConfig:
    """Step-wise cache.

    ``speed_target`` S > 0: compute 1/S of the uncached run's work (trials included), spent on the
    steps whose low-frequency change is largest (:mod:`speed_target`). ``speed_target`` 0: the
    expert α rule (:mod:`step_decision`): larger α skips more; α 0 disables skipping.
    """

    speed_target: float = 0.0
    alpha: float = 0.5
    metric: str = "accumulated"
    trial_streams: str = "cond"
    step_aside: bool = True
    """With a speed target: compute every step when the trial's measured time would make the run slower
    than uncached (tiny latents, where a forward's fixed costs dominate)."""
    trial_downsample: tuple[int, int, int] = DEFAULT_TRIAL_DOWNSAMPLE
    lowpass_radius: float = DEFAULT_RADIUS
    start_percent: float = 0.0
    end_percent: float = 1.0
    max_consecutive_skips: int = 0
    reuse: str = "output"
    trial_operator: str = "strided"
    calibration: "PresetOrigin | None" = None
    """Set when ``speed_target`` comes from a calibrated preset: its name and the setup it was measured on
    (the run's report notes a different setup)."""

    @property
    def skips(self) -> bool:
        """False when this config can never skip a step (α mode with α 0)."""
        return self.speed_target > 0 or self.alpha > 0

    def validate(self) -> "LFCacheConfig":
        if self.speed_target != 0:
            low, high = SPEED_TARGET_RANGE
            ok = isinstance(self.speed_target, (int, float)) and not isinstance(self.speed_target, bool)
            if not ok or not low <= self.speed_target <= high:
                raise ValueError(f"speed_target = {self.speed_target!r} is out of range: allowed [{low}, {high}] "
                                 f"(times less work than uncached), or 0 to use alpha instead")
        _check_range("alpha", self.alpha, 0.0, 2.0)
        if self.trial_streams not in TRIAL_STREAMS:
            raise ValueError(f"trial_streams = {self.trial_streams!r} is not allowed: choose one of {TRIAL_STREAMS}")
        if self.metric not in LF_METRICS:
            raise ValueError(f"metric = {self.metric!r} is not allowed: choose one of {LF_METRICS}")
        check_factors(self.trial_downsample)
        check_radius(self.lowpass_radius)
        _check_window(self.start_percent, self.end_percent)
        if not isinstance(self.max_consecutive_skips, int) or not 0 <= self.max_consecutive_skips <= 100:
            raise ValueError(f"max_consecutive_skips = {self.max_consecutive_skips!r} is out of range: "
                             f"allowed integers 0..100 (0 = no limit)")
        if self.reuse not in REUSE_MODES:
            raise ValueError(f"reuse = {self.reuse!r} is not allowed: choose one of {REUSE_MODES}")
        if self.trial_operator not in TRIAL_OPERATORS:
            raise ValueError(f"trial_operator = {self.trial_operator!r} is not allowed: choose one of {TRIAL_OPERATORS}")
        return self


@dataclass(frozen=True)
class BlockCacheConfig:
    """Block-wise cache: top ``pivotal_ratio`` of blocks always computed, the rest reuse their
    residual for ``refresh_interval`` computed steps after each refresh (``mode='static'``), or, with
    ``mode='trial_guided'``, each while its residual in LFCache's trial changed by less than
    ``change_threshold`` since it was stored (at most ``refresh_interval`` computed steps in a row)."""

    pivotal_ratio: float = 0.4
    refresh_interval: int = 3
    start_percent: float = 0.0
    end_percent: float = 1.0
    ranking: str = "relative_l2"
    memory_budget_mb: float = 0.0
    residual_location: str = "gpu"
    mode: str = "static"
    change_threshold: float = 0.1
    """trial_guided: a block reuses its residual while its trial residual changed by less than this
    (relative L2) since the residual was stored."""

    def validate(self) -> "BlockCacheConfig":
        _check_range("pivotal_ratio", self.pivotal_ratio, 0.0, 1.0)
        if not isinstance(self.refresh_interval, int) or not 1 <= self.refresh_interval <= 20:
            raise ValueError(f"refresh_interval = {self.refresh_interval!r} is out of range: allowed integers 1..20")
        _check_window(self.start_percent, self.end_percent)
        if self.ranking not in RANKING_NORMS:
            raise ValueError(f"ranking = {self.ranking!r} is not allowed: choose one of {RANKING_NORMS}")
        _check_range("memory_budget_mb", self.memory_budget_mb, 0.0, 1.0e7)
        if self.residual_location not in RESIDUAL_LOCATIONS:
            raise ValueError(f"residual_location = {self.residual_location!r} is not allowed: "
                             f"choose one of {RESIDUAL_LOCATIONS}")
        if self.mode not in BLOCK_MODES:
            raise ValueError(f"mode = {self.mode!r} is not allowed: choose one of {BLOCK_MODES}")
        _check_range("change_threshold", self.change_threshold, *CHANGE_THRESHOLD_RANGE)
        return self


LFCACHE_PRESETS: dict[str, LFCacheConfig] = {
    "Base": LFCacheConfig(speed_target=1.25),
    "Turbo": LFCacheConfig(speed_target=1.5),
    "Flash": LFCacheConfig(speed_target=1.75),
}
"""Presets by fidelity level, each the largest measured speed target that keeps the level on every setting
of the benchmark (demo and deep model, 128 and 256 px, 30 and 50 steps; docs/benchmark/summary.md):
Base: mean PSNR vs uncached ≥ 38 dB (visually identical); Turbo: ≥ 32 dB (visibly lossless on the
benchmark models); Flash: ≥ 30 dB (small differences)."""
PRESET_FIDELITY_DB: dict[str, float] = {"Base": 38.0, "Turbo": 32.0, "Flash": 30.0}
"""The fidelity level each preset stands for: mean PSNR vs uncached (decoded frames) on every benchmark setting."""
DEFAULT_LFCACHE_PRESET = "Turbo"

PAPER_BASE = LFCacheConfig(alpha=0.5)
"""The paper's Base preset (α 0.5, no speed target), kept for its Flash setting."""

FLASH_BLOCKCACHE = BlockCacheConfig(pivotal_ratio=0.4, refresh_interval=3, mode="static")
"""The paper's Flash setting: LFCache Base plus BlockCache c = 40 %, L = 3."""

TRIAL_GUIDED_BLOCKCACHE = BlockCacheConfig(pivotal_ratio=0.0, refresh_interval=3, mode="trial_guided",
                                           change_threshold=0.02)
"""The BlockCache node's default: trial-guided, no pivotal blocks, τ 0.02, at most 3 reuses in a row.
Measured (scripts/benchmark.py, deep 12-block model, 8 pairs, on LFCache target 2×): at equal counted
work trial-guided is 0.5–1.9 dB above the best static top-c % / L setting from 2.2× to 3.5×; pivotal
blocks (c 0.25–0.5) and a larger L (20) did not help it. τ 0.02 saves ~7 % more work at ~1 dB.
Without LFCache's trial it falls back to the static rule (:func:`static_fallback`)."""


def static_fallback(block: BlockCacheConfig) -> BlockCacheConfig:
    """The static rule that ``trial_guided`` uses where no trial can guide it for a whole run: the same
    settings, with the paper's pivotal share (40 %) when ``pivotal_ratio`` is 0 (trial-guided's default;
    in the static rule 0 would reuse every block)."""
    return replace(block, mode="static", pivotal_ratio=block.pivotal_ratio or FLASH_BLOCKCACHE.pivotal_ratio)

SAMPLER_PRESETS: dict[str, tuple[LFCacheConfig | None, BlockCacheConfig | None]] = {
    "off": (None, None),
    **{name: (config, None) for name, config in LFCACHE_PRESETS.items()},
    "paper Flash": (PAPER_BASE, FLASH_BLOCKCACHE),
}
