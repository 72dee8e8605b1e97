"""Configuration of the two caches, their presets and validation of every user input.

Each config is a frozen dataclass: it is what a ComfyUI node stores on the model (deep-copied by
``ModelPatcher.clone``), never per-run state. Each user setting is written once, on its field
(:func:`.settings.setting`): its range or choices, and the tooltip, step and optional flag of the node
input that shows it. ``validate()`` checks every setting against its field and the rules between fields
(:func:`check_inputs`), raising a ValueError whose message names the node input and its allowed range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, TypeVar

from .lowpass import DEFAULT_RADIUS, MAX_RADIUS
from .preset_origin import PresetOrigin
from .settings import check_values, setting, settings_of
from .trial import AXIS_NAMES, DEFAULT_TRIAL_DOWNSAMPLE, MAX_FACTOR, TRIAL_OPERATORS


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
PAPER_PIVOTAL_RATIO = 0.4
PAPER_REFRESH_INTERVAL = 3
"""The paper's BlockCache setting: c = 40 % of blocks always computed, the others refreshed every L = 3 steps."""
FEW_STEP_LIMIT = 8
"""Schedules of this many steps or fewer (distilled 4–8 step models) are never cached: with so
few steps every prediction carries structure, and the trial forward would only add cost."""

Config = TypeVar("Config")


def _window(edge: str, what: str) -> Any:
    """The setting start_percent (``edge`` 'start') or end_percent ('end'): the part of the whole
    denoising schedule in which ``what`` may act."""
    tooltip = (f"Denoising progress (0 = first step, 1 = end, over the whole schedule, not per sampler) from "
               f"which {what} may act. Must be below end_percent." if edge == "start" else
               f"Denoising progress after which {what} stops acting and every step is computed. Must be above "
               f"start_percent.")
    return setting(0.0 if edge == "start" else 1.0, tooltip, low=0.0, high=1.0, step=0.01)


def check_inputs(config_type: type, values: Mapping[str, Any]) -> None:
    """Check the settings in ``values`` (by field name; None: not known yet) against their fields, then,
    when both are known, start_percent < end_percent: ``validate()`` for the whole config, and the
    nodes' validation before a run for the inputs ComfyUI's own checks cannot judge."""
    check_values(config_type, values)
    start, end = values.get("start_percent"), values.get("end_percent")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"start_percent ({start}) must be smaller than end_percent ({end})")


def check_config(config: Config) -> Config:
    """``config`` itself when every setting is allowed (else a ValueError naming the input)."""
    check_inputs(type(config), {name: getattr(config, name) for name in settings_of(type(config))})
    return config


@dataclass(frozen=True)
class LFCacheConfig:
    """Step-wise cache.

    ``speed_target`` S > 0: compute 1/S of the uncached run's work (trials included), spent on the
    steps whose low-frequency change is largest (:mod:`speed_target`). ``speed_target`` 0: the
    expert α rule (:mod:`step_decision`): larger α skips more; α 0 disables skipping.
    """

    speed_target: float = setting(
        0.0, f"Only with preset 'custom'. Times less work than uncached, {SPEED_TARGET_RANGE[0]:g} to "
             f"{SPEED_TARGET_RANGE[1]:g} (trial forwards included), reached within a few percent on any model, "
             f"sampler and step count. 0 = expert mode: use alpha instead.",
        low=SPEED_TARGET_RANGE[0], high=SPEED_TARGET_RANGE[1], off=0.0, step=0.1,
        note="(times less work than uncached), or 0 to use alpha instead")
    alpha: float = setting(
        0.5, "Expert mode (preset 'custom' with speed_target 0): skip threshold as a fraction of the largest "
             "low-frequency difference seen; larger skips more, 0 never skips. How many steps it skips differs "
             "between models.", low=0.0, high=2.0, step=0.01)
    metric: str = setting(
        "accumulated", "What is compared with the threshold: 'accumulated' = the sum of the step-to-step "
                       "low-frequency changes since the last computed step (the paper's; measured better), 'drift' = "
                       "the change of this step's trial from the last computed step's trial.",
        choices=LF_METRICS, optional=True)
    trial_streams: str = setting(
        "cond", "With CFG, which streams the trial runs on: 'cond' = the conditional prediction alone (half the "
                "trial's cost; measured as good), 'all' = cond and uncond, as the model is called.",
        choices=TRIAL_STREAMS, optional=True)
    step_aside: bool = setting(
        True, "When the trial's measured time would make sampling slower than uncached (tiny videos, where a "
              "forward's fixed costs dominate), compute every step and say so in the report.", optional=True)
    """With a speed target: compute every step when the trial's measured time would make the run slower
    than uncached (tiny latents, where a forward's fixed costs dominate)."""
    trial_downsample: tuple[int, int, int] = setting(
        DEFAULT_TRIAL_DOWNSAMPLE, "", low=1, high=MAX_FACTOR, items=tuple(zip(AXIS_NAMES, (
            "Temporal pooling of the trial latent (latent frames per trial frame).",
            f"Height pooling of the trial latent. {'x'.join(map(str, DEFAULT_TRIAL_DOWNSAMPLE))} (t,h,w) = "
            f"{math.prod(DEFAULT_TRIAL_DOWNSAMPLE)}x fewer tokens.",
            "Width pooling of the trial latent."))))
    lowpass_radius: float = setting(
        DEFAULT_RADIUS, f"Radius of the circular low-pass mask as a fraction of min(height, width) of the trial "
                        f"latent (paper: 1/5 = {DEFAULT_RADIUS}). Allowed (0, {MAX_RADIUS}].",
        low=0, low_open=True, high=MAX_RADIUS, step=0.01,
        note=f"(fraction of min(height, width); the paper uses {DEFAULT_RADIUS})")
    start_percent: float = _window("start", "skipping")
    end_percent: float = _window("end", "skipping")
    max_consecutive_skips: int = setting(
        0, "Never skip more than this many steps in a row (0 = no limit).", low=0, high=100, optional=True,
        note="(0 = no limit)")
    reuse: str = setting(
        "output", "What a skipped step returns: 'output' = the last computed prediction; 'residual' = current "
                  "input + (last prediction - its input).", choices=REUSE_MODES, optional=True)
    trial_operator: str = setting(
        "strided", "How the trial latent is made smaller: 'strided' keeps every n-th latent cell (keeps the noise "
                   "level the model expects; measured better), 'avg_pool' averages each window.",
        choices=TRIAL_OPERATORS, optional=True)
    calibration: PresetOrigin | None = None
    """Set when ``speed_target`` comes from a calibrated preset: its name and the setup it was measured on
    (the run's report notes a different setup)."""

    @property
    def skips(self) -> bool:
        """False when this config can never skip a step (α mode with α 0)."""
        return self.speed_target > 0 or self.alpha > 0

    def validate(self) -> "LFCacheConfig":
        return check_config(self)


@dataclass(frozen=True)
class BlockCacheConfig:
    """Block-wise cache: top ``pivotal_ratio`` of blocks always computed, the rest reuse their
    residual for ``refresh_interval`` computed steps after each refresh (``mode='static'``), or, with
    ``mode='trial_guided'``, each while its residual in LFCache's trial changed by less than
    ``change_threshold`` since it was stored (at most ``refresh_interval`` computed steps in a row)."""

    pivotal_ratio: float = setting(
        PAPER_PIVOTAL_RATIO, f"Fraction of blocks always computed (those whose residual changes the features most). "
                             f"static: the paper uses {PAPER_PIVOTAL_RATIO}. trial_guided: 0 (measured best; the trial "
                             f"picks the blocks to recompute; without LFCache the static fallback then uses "
                             f"{PAPER_PIVOTAL_RATIO}). 1.0 = BlockCache off.", low=0.0, high=1.0, step=0.05)
    refresh_interval: int = setting(
        PAPER_REFRESH_INTERVAL, f"static: computed steps that reuse residuals after each full refresh (paper: L = "
                                f"{PAPER_REFRESH_INTERVAL}). trial_guided: the most computed steps in a row a block "
                                f"may reuse its residual.", low=1, high=20)
    start_percent: float = _window("start", "block reuse")
    end_percent: float = _window("end", "block reuse")
    ranking: str = setting(
        "relative_l2", "How blocks are ranked: relative_l2 = |out - in| / |in|, l2 = |out - in|.",
        choices=RANKING_NORMS, optional=True)
    memory_budget_mb: float = setting(
        0.0, "Cap on cached residual memory in MB (0 = no cap). Over the cap, fewer blocks are reused (computed "
             "instead); never runs out of memory on its own.", low=0.0, high=1.0e7, step=64.0, optional=True)
    residual_location: str = setting(
        "gpu", "Keep cached residuals on the GPU (fastest) or in pinned CPU memory (saves VRAM, costs transfers).",
        choices=RESIDUAL_LOCATIONS, optional=True)
    mode: str = setting(
        "static", "trial_guided (default; measured 0.5-1.9 dB better than static at equal work on a 12-block "
                  "model): each block reuses its residual only while its residual in LFCache's small trial forward "
                  "changed by less than change_threshold since it was stored, else that block alone is recomputed; "
                  "a step without a trial computes every block. Needs LFCache on the model: without it the static "
                  "rule runs and the report says so. static: the paper's rule (the top pivotal_ratio of blocks "
                  "always run, the others reuse their residual for refresh_interval computed steps, then all are "
                  "refreshed).", choices=BLOCK_MODES, optional=True)
    change_threshold: float = setting(
        0.1, "trial_guided only: a block's cached residual is reused while its trial residual changed by less "
             "than this since it was stored, relative to the block's input: |r_now - r_stored| / |input|. 0 = never "
             "reuse; larger = more reuse, less fidelity (12-block model: 0.015 / 0.02 / 0.03 saved 2 / 7 / 23 % "
             "more work at -0.3 / -1.1 / -3.7 dB).",
        low=CHANGE_THRESHOLD_RANGE[0], high=CHANGE_THRESHOLD_RANGE[1], step=0.005, optional=True)
    """trial_guided: a block reuses its residual while its trial residual changed by less than this
    (relative L2) since the residual was stored."""

    def validate(self) -> "BlockCacheConfig":
        return check_config(self)


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

FLASH_BLOCKCACHE = BlockCacheConfig(pivotal_ratio=PAPER_PIVOTAL_RATIO, refresh_interval=PAPER_REFRESH_INTERVAL,
                                    mode="static")
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
