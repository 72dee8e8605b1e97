"""The calibration as a picture: quality vs wall-clock speed, one point per speed target.

Left: PSNR vs the uncached run against the measured wall-clock speedup; the quality floor is a
dashed line, the chosen setting is circled, each point is labelled with its speed target and the
work it saved (counted). Right: SSIM against the same speedup. A run identical to uncached
(PSNR ∞) is drawn at the top edge with an upward arrow.
"""
from __future__ import annotations

import math
import textwrap
from typing import Sequence

import numpy as np
import torch

from ..precisecache_core.calibration import CalibrationRow
from .report_image import figure_png, png_image

POINT_COLOR = "tab:blue"
CHOSEN_COLOR = "tab:green"
FLOOR_COLOR = "tab:red"


def calibration_figure_png(rows: Sequence[CalibrationRow], floor_db: float, chosen: CalibrationRow | None,
                           title: str, subtitle: str = "", width_px: int = 1000, height_px: int = 480) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    uncached = next(r.wall_seconds for r in rows if r.speed_target is None)
    cached = [r for r in rows if r.speed_target is not None]
    speed = np.array([r.wall_speedup(uncached) for r in cached], dtype=float)
    finite = [r.psnr_db for r in cached if math.isfinite(r.psnr_db)]
    top = max([floor_db + 5.0, *(v + 3.0 for v in finite)])
    bottom = min([floor_db - 5.0, *(v - 3.0 for v in finite)])
    psnr = np.array([r.psnr_db if math.isfinite(r.psnr_db) else top for r in cached], dtype=float)

    fig, (left, right) = plt.subplots(1, 2, figsize=(width_px / 100, height_px / 100), dpi=100,
                                      gridspec_kw={"width_ratios": [3, 2]})
    order = np.argsort(speed)
    left.plot(speed[order], psnr[order], "-", color=POINT_COLOR, alpha=0.5, lw=1)
    left.scatter(speed, psnr, color=POINT_COLOR, zorder=3, s=28, label="LFCache at a speed target")
    for r, x, y in zip(cached, speed, psnr):
        marker = "  ↑ identical" if math.isinf(r.psnr_db) else ""
        left.annotate(f"target {r.speed_target:g}x: {r.work_saved:.2f}x less work{marker}", (x, y),
                      textcoords="offset points", xytext=(6, 5), fontsize=7.5)
    left.axhline(floor_db, ls="--", color=FLOOR_COLOR, lw=1.2, label=f"quality floor {floor_db:g} dB")
    left.axvline(1.0, ls=":", color="0.5", lw=1, label="uncached (1.00x)")
    if chosen is not None:
        i = cached.index(chosen)
        left.scatter([speed[i]], [psnr[i]], s=180, facecolors="none", edgecolors=CHOSEN_COLOR, linewidths=2,
                     zorder=4, label=f"chosen: {chosen.speed_target:g}x")
    left.set_ylim(bottom, top + 1.0)
    left.margins(x=0.25)
    left.set_xlabel("wall-clock speedup vs uncached (measured)")
    left.set_ylabel("PSNR vs uncached (dB)")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7.5, loc="lower left")

    ssim = [(x, r.ssim) for r, x in zip(cached, speed) if r.ssim is not None]
    if ssim:
        xs, ys = zip(*sorted(ssim))
        right.plot(xs, ys, "o-", color="tab:purple", ms=5, lw=1)
        if chosen is not None and chosen.ssim is not None:
            right.scatter([speed[cached.index(chosen)]], [chosen.ssim], s=180, facecolors="none",
                          edgecolors=CHOSEN_COLOR, linewidths=2, zorder=4)
        right.set_ylabel("SSIM vs uncached")
    else:
        right.text(0.5, 0.5, "no SSIM: planes smaller than 3 cells", transform=right.transAxes, ha="center",
                   va="center", fontsize=9, color="0.35")
    right.axvline(1.0, ls=":", color="0.5", lw=1)
    right.set_xlabel("wall-clock speedup vs uncached (measured)")
    right.grid(True, alpha=0.3)

    fig.suptitle(title, fontsize=10.5)
    if subtitle:
        fig.text(0.5, 0.005, "\n".join(textwrap.wrap(subtitle, 170)[:2]), ha="center", va="bottom", fontsize=7,
                 color="0.3")
    fig.tight_layout(rect=(0, 0.04 if subtitle else 0, 1, 1))
    return figure_png(fig)


def calibration_image_tensor(*args, **kwargs) -> torch.Tensor:
    """The picture as a ComfyUI IMAGE: float32 ``[1, H, W, 3]`` in [0, 1]."""
    return png_image(calibration_figure_png(*args, **kwargs))
