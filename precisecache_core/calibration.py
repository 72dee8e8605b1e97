"""Calibration of LFCache's speed target on the user's own setup (pure Python; the ComfyUI node
``PreciseCacheCalibrate`` runs the samplings).

One uncached run, then one run per speed target; each cached output is compared with the uncached
one (:mod:`quality`). The chosen setting is the one with the most work saved (counted in forwards,
as the run report counts it: deterministic, unlike wall time) whose PSNR is at least the quality
floor; ties go to the higher PSNR, then the lower target. Wall time is measured and shown beside it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

from .config import FEW_STEP_LIMIT, SPEED_TARGET_RANGE
from .preset_store import check_name

QUALITY_FLOOR_RANGE = (10.0, 80.0)
"""Allowed PSNR floors in dB (30 dB: small visible differences; 40 dB: hard to see any)."""
MAX_TARGETS = 8
DEFAULT_SPEED_TARGETS = "1.5, 2, 2.5, 3, 4"
MAX_STEPS = 10000


def parse_speed_targets(text) -> tuple[float, ...]:
    """The speed targets of a text such as '1.5, 2, 3' (commas, semicolons or spaces), sorted, each once."""
    low, high = SPEED_TARGET_RANGE
    rule = (f"give 1 to {MAX_TARGETS} speed targets between {low:g} and {high:g} separated by commas, "
            f"e.g. '{DEFAULT_SPEED_TARGETS}'")
    if not isinstance(text, str):
        raise ValueError(f"speed_targets = {text!r} is not text: {rule}")
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    if not parts:
        raise ValueError(f"speed_targets is empty: {rule}")
    targets = set()
    for part in parts:
        try:
            value = float(part.rstrip("xX"))
        except ValueError:
            raise ValueError(f"speed_targets: {part!r} is not a number: {rule}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"speed_targets: {part} is out of range: allowed [{low:g}, {high:g}] (times less work "
                             f"than uncached)")
        targets.add(value)
    if len(targets) > MAX_TARGETS:
        raise ValueError(f"speed_targets holds {len(targets)} targets: {rule} (each one is a full sampling run)")
    return tuple(sorted(targets))


def check_floor(value) -> float:
    low, high = QUALITY_FLOOR_RANGE
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise ValueError(f"quality_floor_db = {value!r} is out of range: allowed [{low:g}, {high:g}] dB of PSNR "
                         f"vs the uncached run")
    return float(value)


def check_steps(steps) -> int:
    ok = isinstance(steps, int) and not isinstance(steps, bool)
    if not ok or not FEW_STEP_LIMIT < steps <= MAX_STEPS:
        raise ValueError(f"steps = {steps!r} is out of range: allowed integers {FEW_STEP_LIMIT + 1}..{MAX_STEPS} "
                         f"(schedules of {FEW_STEP_LIMIT} steps or fewer are never cached, so there is nothing to "
                         f"calibrate)")
    return steps


@dataclass(frozen=True)
class CalibrationPlan:
    speed_targets: tuple[float, ...]
    quality_floor_db: float
    preset_name: str
    """'' = measure only, save nothing."""


def plan_calibration(speed_targets="", quality_floor_db=35.0, preset_name="", steps=None, **_ignored) -> CalibrationPlan:
    """Validate the Calibrate node's own inputs (ValueError naming the input and its range).

    ``steps`` is checked when given (it is None while linked to another node's output)."""
    targets = parse_speed_targets(speed_targets)
    floor = check_floor(quality_floor_db)
    if not isinstance(preset_name, str):
        raise ValueError(f"preset_name = {preset_name!r} is not text")
    name = preset_name.strip()
    if name:
        check_name(name, "preset_name")
    if steps is not None:
        check_steps(steps)
    return CalibrationPlan(targets, floor, name)


@dataclass
class CalibrationRow:
    """One sampling run of a calibration."""

    speed_target: float | None
    """None for the uncached reference."""
    wall_seconds: float
    work_saved: float
    """Uncached work ÷ this run's work, counted in forwards (the run report's estimated_speedup)."""
    psnr_db: float
    """vs uncached; math.inf when identical."""
    ssim: float | None
    skipped_steps: int
    steps: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return "uncached" if self.speed_target is None else f"{self.speed_target:g}x"

    def wall_speedup(self, uncached_seconds: float) -> float:
        return uncached_seconds / self.wall_seconds if self.wall_seconds > 0 else math.nan

    def meets(self, floor_db: float) -> bool:
        return self.psnr_db >= floor_db

    def to_dict(self, uncached_seconds: float) -> dict:
        """JSON-safe (no infinities: an identical run has psnr_db null and identical true)."""
        return {"speed_target": self.speed_target, "wall_seconds": round(self.wall_seconds, 4),
                "wall_speedup": _finite(round(self.wall_speedup(uncached_seconds), 4)),
                "work_saved": round(self.work_saved, 4), "psnr_db": _finite(self.psnr_db),
                "identical": math.isinf(self.psnr_db), "ssim": self.ssim, "skipped_steps": self.skipped_steps,
                "steps": self.steps, "notes": list(self.notes)}


def choose(rows: Sequence[CalibrationRow], floor_db: float) -> CalibrationRow | None:
    """The cached run with the most work saved whose PSNR ≥ ``floor_db`` (None if there is none)."""
    fits = [r for r in rows if r.speed_target is not None and r.meets(floor_db)]
    return max(fits, key=lambda r: (round(r.work_saved, 6), r.psnr_db, -r.speed_target), default=None)


def format_psnr(value: float) -> str:
    return "∞ (identical)" if math.isinf(value) else f"{value:.2f} dB"


def format_table(rows: Sequence[CalibrationRow], floor_db: float, chosen: CalibrationRow | None, *,
                 header: Sequence[str] = (), footer: Sequence[str] = ()) -> str:
    """The calibration as a text table (uncached row first), the choice, and every run's notes."""
    uncached = next(r.wall_seconds for r in rows if r.speed_target is None)
    lines = list(header)
    lines.append(f"| run | speed target | work saved (counted) | wall time | wall speedup | PSNR | SSIM | "
                 f"skipped steps | PSNR ≥ {floor_db:g} dB |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        meets = "reference" if r.speed_target is None else ("yes" if r.meets(floor_db) else "no")
        if r is chosen:
            meets += " (chosen)"
        lines.append(f"| {'uncached' if r.speed_target is None else 'LFCache'} | "
                     f"{'–' if r.speed_target is None else f'{r.speed_target:g}x'} | {r.work_saved:.2f}x | "
                     f"{r.wall_seconds:.2f} s | {r.wall_speedup(uncached):.2f}x | {format_psnr(r.psnr_db)} | "
                     f"{'–' if r.ssim is None else f'{r.ssim:.4f}'} | {r.skipped_steps}/{r.steps} | {meets} |")
    if chosen is not None:
        lines.append(f"chosen: speed target {chosen.speed_target:g}x, the most work saved with PSNR ≥ {floor_db:g} dB "
                     f"({format_psnr(chosen.psnr_db)}, {chosen.work_saved:.2f}x less work, "
                     f"{chosen.wall_speedup(uncached):.2f}x faster in wall time)")
    else:
        best = max((r for r in rows if r.speed_target is not None), key=lambda r: r.psnr_db, default=None)
        closest = f" (best: {format_psnr(best.psnr_db)} at speed target {best.speed_target:g}x)" if best else ""
        lines.append(f"chosen: none — no speed target kept PSNR ≥ {floor_db:g} dB{closest}; try lower targets "
                     f"(from {SPEED_TARGET_RANGE[0]:g}) or a lower floor")
    lines.extend(footer)
    notes = [(r.label, n) for r in rows for n in r.notes]
    if notes:
        lines.append("notes:")
        lines.extend(f"- {label}: {n}" for label, n in notes)
    return "\n".join(lines)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
