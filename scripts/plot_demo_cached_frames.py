#!/usr/bin/env python3
"""Uncached and cached frames of the demo model side by side: docs/images/demo_uncached_vs_cached.png.

ComfyUI, the pack and the demo model are loaded the way ``scripts/benchmark.py`` loads them
(``bench.runner.Bench``: the test harness imports ComfyUI in-process, the pack as ComfyUI loads a
custom node, the model through ``UNETLoader``). For each prompt (default: the demo workflow's "a
white circle growing" and two prompts with a textured background, seed 0) it samples with
``KSampler`` (euler, "simple", 50 steps, CFG 5, 128x128 px, 9 frames: the demo workflow's settings)
uncached and with each LFCache preset asked for (default: Turbo, the default preset, and Flash),
decodes with the demo's stand-in VAE and draws frames 0, 2, 4, 6, 8 of every run, and for the cached
runs the absolute difference of the last frame from the uncached one, amplified 4x.

Each cached row is labelled with what was measured for that very run: PSNR of the whole clip against
the uncached clip (``bench.metrics.video_metrics``, as the benchmark computes it), the work saved as
the run report counts it (uncached forwards / (full forwards + trial work), trials included) and the
skipped steps. LFCache's ``step_aside`` is off for these runs: on a busy CPU the tiny model's trial
can cost more time than a skipped step saves, and LFCache would then compute every step; the picture
is about what the cache's decisions do to the frames. Wall time is not shown (timings:
``scripts/benchmark.py``).

The numbers also go to ``<out>.json``.

Usage:  python3 scripts/plot_demo_cached_frames.py [--presets Turbo,Flash] [--steps 50] [--out PATH]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROMPTS = ("a white circle growing", "a cyan triangle moving right on stripes",
                   "a red circle on a checkerboard, camera panning left")
DEFAULT_OUT = REPO / "docs" / "images" / "demo_uncached_vs_cached.png"
FRAMES_SHOWN = (0, 2, 4, 6, 8)
SIZE, FRAMES, CFG = 128, 9, 5.0
"""The clip sampled (pixels per side, frames) and its CFG scale; euler/simple."""
DIFF_GAIN = 4.0


def measure(bench, prompts, presets, seed: int, steps: int, log=print) -> list[dict]:
    """Per prompt: the uncached clip and, per preset, the cached clip with its PSNR and report counts."""
    from bench.metrics import video_metrics
    from bench.scenarios import ScenarioConfig
    config = bench.config_mod
    cfg = ScenarioConfig("frames", size=SIZE, frames=FRAMES, steps=steps, cfg=CFG)
    models = {}
    for name in presets:
        if name not in config.LFCACHE_PRESETS:
            raise SystemExit(f"unknown preset {name!r}: choose from {list(config.LFCACHE_PRESETS)}")
        lf = dataclasses.replace(config.LFCACHE_PRESETS[name], step_aside=False).validate()
        models[name] = bench.hooks.apply_setup(bench.model, lf=lf)
    rows = []
    for prompt in prompts:
        latent, _ = bench.sample(bench.model, seed, prompt, cfg)
        reference = bench.decode(latent).clamp(0, 1)
        row = {"prompt": prompt, "seed": seed, "steps": steps, "uncached": reference, "cached": []}
        for name, model in models.items():
            latent, _ = bench.sample(model, seed, prompt, cfg)
            decoded = bench.decode(latent).clamp(0, 1)
            psnr, ssim = video_metrics(decoded, reference)
            report = bench.latest_report(model)
            row["cached"].append({
                "preset": name, "speed_target": report.speed_target, "frames": decoded, "psnr_db": psnr,
                "ssim": ssim, "work_saved": report.estimated_speedup, "skipped": len(report.skipped_steps),
                "steps": report.steps, "full_forwards": report.full_forwards,
                "trial_forwards": report.trial_forwards, "notes": list(report.notes)})
            log(f"{prompt} / {name}: {psnr:.2f} dB, work saved {report.estimated_speedup:.2f}x "
                f"(target {report.speed_target:g}x), skipped {len(report.skipped_steps)}/{report.steps}")
        rows.append(row)
    return rows


def _frame(video, index):
    """[1, 3, F, H, W] -> H x W x 3 numpy image of frame ``index``."""
    return video[0, :, index].permute(1, 2, 0).float().numpy()


def draw(rows, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    per_prompt = 1 + len(rows[0]["cached"])
    n_rows, n_cols = len(rows) * per_prompt, len(FRAMES_SHOWN) + 1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.45 * n_cols + 2.3, 1.45 * n_rows + 1.1), squeeze=False)
    for r, row in enumerate(rows):
        runs = [("uncached", row["uncached"], None)] + [(c["preset"], c["frames"], c) for c in row["cached"]]
        for k, (name, video, info) in enumerate(runs):
            i = r * per_prompt + k
            for j, f in enumerate(FRAMES_SHOWN):
                ax = axes[i, j]
                ax.imshow(_frame(video, f), interpolation="nearest")
                if i == 0:
                    ax.set_title(f"frame {f}", fontsize=9)
            diff_ax = axes[i, -1]
            if info is None:
                diff_ax.axis("off")
                label = f'"{row["prompt"]}"\nuncached\n{row["steps"]} steps'
            else:
                last = FRAMES_SHOWN[-1]
                diff = np.clip(np.abs(_frame(video, last) - _frame(row["uncached"], last)) * DIFF_GAIN, 0, 1)
                diff_ax.imshow(diff, interpolation="nearest")
                label = (f'{name} (target {info["speed_target"]:g}x)\n{info["psnr_db"]:.1f} dB PSNR\n'
                         f'work saved {info["work_saved"]:.2f}x\nskipped {info["skipped"]}/{info["steps"]}')
            if i == 0:
                diff_ax.set_title(f"|frame {FRAMES_SHOWN[-1]} - uncached| x{DIFF_GAIN:g}", fontsize=9)
            axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8, labelpad=6)
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle("Demo model (tiny Wan 2.1): uncached vs LFCache presets, same seed\n"
                 f"euler, {rows[0]['steps']} steps, CFG {CFG:g}, {SIZE}x{SIZE} px, {FRAMES} frames; PSNR of the "
                 "whole clip vs uncached; work saved counted in model forwards (trials included), as the run report counts it",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="Turbo,Flash", help="LFCache presets to compare (default Turbo,Flash)")
    parser.add_argument("--prompts", default="|".join(DEFAULT_PROMPTS), help="prompts, separated by '|'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--comfyui", help="ComfyUI folder (default: COMFYUI_DIR, ../ComfyUI, /opt/ComfyUI)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in (REPO / "scripts", REPO / "tests" / "host"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import comfy_host
    from bench.common import DEFAULT_MODEL
    from bench.runner import Bench
    host = comfy_host.find_comfyui(args.comfyui)
    if host.path is None:
        print(host.reason, file=sys.stderr)
        return 2
    bench = Bench(host.path, DEFAULT_MODEL, args.threads)
    if not bench.model_info.get("trained"):
        print("the demo model is missing: nothing to show", file=sys.stderr)
        return 2
    prompts = [p.strip() for p in args.prompts.split("|") if p.strip()]
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    rows = measure(bench, prompts, presets, args.seed, args.steps)
    draw(rows, args.out)
    numbers = [{"prompt": r["prompt"], "seed": r["seed"], "steps": r["steps"],
                "cached": [{k: v for k, v in c.items() if k != "frames"} for c in r["cached"]]} for r in rows]
    summary = {"model": bench.model_info.get("source"), "model_sha256": bench.model_info.get("sha256"),
               "sampler": "euler", "scheduler": "simple", "cfg": CFG, "size": [SIZE, SIZE], "frames": FRAMES,
               "step_aside": False, "runs": numbers}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
