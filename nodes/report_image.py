"""The run report as a picture: LFD per step, threshold, skipped steps, reused blocks per step."""
from __future__ import annotations

import io as _io
import math

import numpy as np
import torch

from ..precisecache_core import RunReport


def report_figure_png(report: RunReport, width_px: int = 900, height_px: int = 520) -> bytes:
    """Render ``report`` to PNG bytes with matplotlib (Agg backend, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = list(range(len(report.lfd)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width_px / 100, height_px / 100), dpi=100, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    lfd = [v if not math.isnan(v) else None for v in report.lfd]
    acc = [v if not math.isnan(v) else None for v in report.accumulated]
    thr = [v if not math.isnan(v) else None for v in report.threshold]
    top.plot(steps, [np.nan if v is None else v for v in lfd], "o-", ms=3, label="LFD Δ (trial)")
    top.plot(steps, [np.nan if v is None else v for v in acc], "-", lw=1, alpha=0.7, label="accumulated Δ since full")
    top.plot(steps, [np.nan if v is None else v for v in thr], "--", lw=1, label="threshold α·Δmax")
    for s in report.skipped_steps:
        top.axvspan(s - 0.5, s + 0.5, color="tab:green", alpha=0.18, lw=0)
    top.set_ylabel("low-frequency difference")
    top.set_title(f"PreciseCache: skipped {len(report.skipped_steps)}/{report.steps} steps (green), "
                  f"~{report.estimated_speedup:.2f}x estimated speedup", fontsize=10)
    top.legend(fontsize=8, loc="upper right")
    if any(v is not None and v > 0 for v in lfd):
        top.set_yscale("log")
    blocks = report.reused_blocks_per_step + [0] * (len(steps) - len(report.reused_blocks_per_step))
    bottom.bar(steps, blocks[:len(steps)], color="tab:orange")
    bottom.set_ylabel("blocks reused")
    bottom.set_xlabel("sampler step")
    fig.tight_layout()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def report_image_tensor(report: RunReport) -> torch.Tensor:
    """The report picture as a ComfyUI IMAGE: float32 ``[1, H, W, 3]`` in [0, 1]."""
    from PIL import Image
    image = Image.open(_io.BytesIO(report_figure_png(report))).convert("RGB")
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]
