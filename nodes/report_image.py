"""The run report as a picture: LFD per step, threshold, skipped steps, reused blocks per step.

Top panel: the low-frequency difference Δ of each step's trial forward, the accumulated Δ since the
last computed step, and the skip threshold (τ of the speed target, or α·Δmax); skipped steps are shaded green (in both panels).
Middle panel: transformer blocks whose cached residual was reused, per step (of the blocks one
forward has). Bottom panel, when blocks were reused: which blocks, per step (a step × block map; the
labels give each block's share of reused calls), from BlockCache's static or trial-guided rule. The title says how many steps were skipped and the work saved (counted, not timed); the line below
it names the model and the settings.
"""
from __future__ import annotations

import io as _io
import math
import textwrap

import numpy as np
import torch

from ..precisecache_core import RunReport

SKIP_COLOR = "tab:green"
BLOCK_COLOR = "tab:orange"


def _series(values: list[float], n: int) -> np.ndarray:
    """``values`` as a float array of length ``n`` (NaN where missing or not finite)."""
    out = np.full(n, np.nan)
    for i, v in enumerate(values[:n]):
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
            out[i] = float(v)
    return out


def _title(report: RunReport) -> str:
    target = f" (target {report.speed_target:g}x)" if report.speed_target else ""
    wall = f", sampling {report.wall_seconds:.1f} s" if report.wall_seconds else ""
    title = (f"PreciseCache: skipped {len(report.skipped_steps)}/{report.steps} steps, "
             f"work saved {report.estimated_speedup:.2f}x{target} (counted){wall}")
    if report.blocks_reused:
        title += f", {report.blocks_reused} block calls reused"
    if report.interrupted:
        title += " (interrupted)"
    return title


def _has_block_map(report: RunReport) -> bool:
    return bool(report.block_names and report.block_reuse_map and report.blocks_reused)


def _block_panel(axis, report: RunReport, n: int) -> None:
    """Step × block map of reused residuals; y labels: block and its share of reused calls."""
    names = report.block_names
    grid = np.zeros((len(names), n))
    for i, row in enumerate(report.block_reuse_map[:n]):
        grid[:len(row), i] = row[:len(names)]
    axis.imshow(grid, aspect="auto", origin="lower", cmap="Oranges", vmin=0, vmax=max(1.0, float(grid.max())),
                extent=(-0.5, n - 0.5, -0.5, len(names) - 0.5), interpolation="nearest")
    every = max(1, math.ceil(len(names) / 16))
    ticks = list(range(0, len(names), every))
    labels = []
    for j in ticks:
        calls = report.block_calls_per_block[j] if j < len(report.block_calls_per_block) else 0
        share = report.reused_per_block[j] / calls if calls and j < len(report.reused_per_block) else 0.0
        labels.append(f"{names[j].replace('double_block', 'd').replace('single_block', 's')} {100 * share:.0f}%")
    axis.set_yticks(ticks)
    axis.set_yticklabels(labels, fontsize=6.5)
    mode = f" ({report.block_mode})" if report.block_mode else ""
    axis.set_ylabel(f"block reused{mode}\n(share of its calls)", fontsize=8)


def report_figure_png(report: RunReport, width_px: int = 900, height_px: int | None = None) -> bytes:
    """Render ``report`` to PNG bytes with matplotlib (Agg backend, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = max(report.steps, len(report.lfd), len(report.reused_blocks_per_step), 1)
    steps = np.arange(n)
    lfd, acc, thr = (_series(v, n) for v in (report.lfd, report.accumulated, report.threshold))
    skipped = [s for s in report.skipped_steps if 0 <= s < n]

    block_map = _has_block_map(report)
    height_px = height_px or (760 if block_map else 560)
    rows = [3, 1.3, 2.2] if block_map else [3, 1.3]
    fig, axes = plt.subplots(len(rows), 1, figsize=(width_px / 100, height_px / 100), dpi=100, sharex=True,
                             gridspec_kw={"height_ratios": rows})
    top, bottom = axes[0], axes[1]
    for axis in (top, bottom):
        for s in skipped:
            axis.axvspan(s - 0.5, s + 0.5, color=SKIP_COLOR, alpha=0.18, lw=0)
        axis.grid(True, axis="y", alpha=0.3)

    handles = []
    if np.isfinite(lfd).any():
        handles += top.plot(steps, lfd, "o-", ms=3, lw=1.4, color="tab:blue", label="LFD Δ of the trial forward")
        if np.isfinite(acc).any():
            handles += top.plot(steps, acc, "-", lw=1, alpha=0.75, color="tab:purple",
                                label="accumulated Δ since last computed step")
        if np.isfinite(thr).any():
            rule = (f"skip threshold τ (speed target {report.speed_target:g}x)" if report.speed_target
                    else "skip threshold α·Δmax")
            handles += top.plot(steps, thr, "--", lw=1.2, color="tab:red", label=rule)
        positive = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in (lfd, acc, thr)])
        if positive.size and positive.max() / positive.min() > 20:
            top.set_yscale("log")
        top.set_ylabel("low-frequency difference")
    else:
        top.text(0.5, 0.5, "no LFCache decisions in this run\n(LFCache off, alpha 0, or 8 steps or fewer)",
                 transform=top.transAxes, ha="center", va="center", fontsize=10, color="0.35")
        top.set_yticks([])
    if skipped:
        handles.append(Patch(color=SKIP_COLOR, alpha=0.3, label="skipped step (cached prediction reused)"))
    if handles:   # above the plot, so it never hides a step
        top.legend(handles=handles, fontsize=7.5, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles),
                   frameon=False, handlelength=1.8, columnspacing=1.2)
    fig.suptitle(_title(report), fontsize=10.5)
    subtitle = "; ".join(p for p in (report.model, report.settings) if p)
    if subtitle:
        fig.text(0.5, 0.005, "\n".join(textwrap.wrap(subtitle, 150)[:2]), ha="center", va="bottom", fontsize=7,
                 color="0.3")

    blocks = np.zeros(n)
    for i, v in enumerate(report.reused_blocks_per_step[:n]):
        blocks[i] = v
    bottom.bar(steps, blocks, width=0.8, color=BLOCK_COLOR)
    if report.blocks_per_forward:
        bottom.set_ylim(0, report.blocks_per_forward)
        bottom.set_ylabel(f"blocks reused\n(of {report.blocks_per_forward})", fontsize=9)
    else:
        bottom.set_ylim(0, max(1.0, float(blocks.max())))
        bottom.set_ylabel("blocks reused", fontsize=9)
    if not blocks.any():
        bottom.text(0.5, 0.5, "no block residuals reused (BlockCache off or nothing to reuse)",
                    transform=bottom.transAxes, ha="center", va="center", fontsize=8, color="0.35")
    if block_map:
        _block_panel(axes[2], report, n)
        for s in skipped:
            axes[2].axvspan(s - 0.5, s + 0.5, color=SKIP_COLOR, alpha=0.18, lw=0)
    axes[-1].set_xlabel("sampler step")
    bottom.set_xlim(-0.7, n - 0.3)
    bottom.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout(rect=(0, 0.035 if subtitle else 0, 1, 1))
    return figure_png(fig)


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def png_image(png: bytes) -> torch.Tensor:
    """PNG bytes as a ComfyUI IMAGE: float32 ``[1, H, W, 3]`` in [0, 1]."""
    from PIL import Image
    image = Image.open(_io.BytesIO(png)).convert("RGB")
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


def report_image_tensor(report: RunReport) -> torch.Tensor:
    """The report picture as a ComfyUI IMAGE: float32 ``[1, H, W, 3]`` in [0, 1]."""
    return png_image(report_figure_png(report))
