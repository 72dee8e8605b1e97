#!/usr/bin/env python3
"""Does a block's residual change in LFCache's trial track the same change at full size?

Trial-guided BlockCache (precisecache_core/block_guidance.py) reuses block j's full-size residual
while c̃_j = ‖r̃_j(i) − r̃_j(k)‖ / ‖F̃^{j-1}(i)‖ (trial residuals, the trial's block input) is small. This
script measures, with forward hooks on the real blocks and nothing from the pack's bookkeeping, c̃_j
and its full-size counterpart c_j = ‖D_j(i) − D_j(k)‖ / ‖F^{j-1}(i)‖ for k = i − 1 and i − 2, over
uncached-equivalent runs (LFCache α 1e-6: a trial every step, nothing skipped; BlockCache
trial_guided with τ 0: nothing reused), and prints their rank agreement (Spearman over all steps and
blocks, and within a step across blocks) and the ratio full / trial.

  python3 scripts/trial_block_agreement.py --model deep --pairs 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.common import resolve_model  # noqa: E402
from comfy_host import require_comfyui  # noqa: E402
from bench.methods import Method  # noqa: E402
from bench.runner import Bench  # noqa: E402
from bench.scenarios import ScenarioConfig, pairs_for  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deep", help="'demo', 'deep' or a .safetensors path")
    ap.add_argument("--comfyui", default=None, help="ComfyUI folder (default: COMFYUI_DIR, ../ComfyUI, /opt/ComfyUI)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=2)
    args = ap.parse_args(argv)
    from precisecache_core.config import FEW_STEP_LIMIT
    if args.steps <= FEW_STEP_LIMIT:
        ap.error(f"--steps must be more than {FEW_STEP_LIMIT}: the pack caches nothing (runs no trial) on shorter schedules")
    comfyui_dir = require_comfyui(args.comfyui)
    import numpy as np
    from scipy.stats import spearmanr

    path = resolve_model(args.model)
    bench = Bench(comfyui_dir, path, 1, log=lambda *a: None)
    frames = int(bench.model_info.get("training", {}).get("frames", 9) or 9)
    cfg = ScenarioConfig("main", size=args.size, frames=frames, steps=args.steps, pairs=args.pairs, repeats=1)
    probe = Method("probe", "probe", "probe", "precisecache", lf={"alpha": 1e-6},
                   block={"mode": "trial_guided", "change_threshold": 0.0, "pivotal_ratio": 0.0,
                          "refresh_interval": 20})
    model = bench.build(probe)
    calls, handles = [], []
    for j, block in enumerate(model.model.diffusion_model.blocks):
        def pre(mod, a, kw, j=j):
            calls.append([j, a[0].shape[1], a[0].detach().clone(), None])

        def post(mod, a, kw, out, j=j):
            calls[-1][3] = out.detach().clone()

        handles += [block.register_forward_pre_hook(pre, with_kwargs=True),
                    block.register_forward_hook(post, with_kwargs=True)]
    rows = []  # (pair, gap, step, block, trial change, full change)
    for pair, (seed, cond) in enumerate(pairs_for(args.pairs)):
        calls.clear()
        bench.sample(model, seed, cond, cfg)
        full = max(c[1] for c in calls)
        steps = []
        for j, tokens, before, after in calls:
            if tokens < full and j == 0:
                steps.append({"trial": {}, "full": {}})
            steps[-1]["trial" if tokens < full else "full"][j] = (after - before, before.norm())
        for gap in (1, 2):
            for i in range(gap, len(steps)):
                for j, (r_now, in_now) in steps[i]["trial"].items():
                    d_now, fin_now = steps[i]["full"][j]
                    trial = ((r_now - steps[i - gap]["trial"][j][0]).norm() / in_now).item()
                    full_change = ((d_now - steps[i - gap]["full"][j][0]).norm() / fin_now).item()
                    rows.append((pair, gap, i, j, trial, full_change))
    for h in handles:
        h.remove()
    data = np.array([r[4:] for r in rows])
    within = []
    for pair in range(args.pairs):
        for i in range(1, args.steps):
            sel = [r for r in rows if r[0] == pair and r[1] == 1 and r[2] == i]
            if len(sel) > 3:
                within.append(spearmanr([r[4] for r in sel], [r[5] for r in sel]).correlation)
    ratio = data[:, 1] / data[:, 0]
    print(f"{path.name}, {args.size} px, {args.steps} steps, {args.pairs} pairs, {len(rows)} (step, block) changes")
    print(f"Spearman(trial change, full change), all steps and blocks: {spearmanr(data[:, 0], data[:, 1]).correlation:.3f}")
    print(f"Spearman within a step, across blocks (mean): {np.nanmean(within):.3f}")
    print(f"full / trial change: median {np.median(ratio):.2f}, 10th-90th percentile "
          f"{np.percentile(ratio, 10):.2f}-{np.percentile(ratio, 90):.2f}")
    print(f"change per step (gap 1): trial median {np.median([r[4] for r in rows if r[1] == 1]):.4f}, "
          f"full median {np.median([r[5] for r in rows if r[1] == 1]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
