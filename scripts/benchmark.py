#!/usr/bin/env python3
"""PreciseCache benchmark: speed and fidelity of every cache against the uncached run, through the
real ComfyUI sampling path, in one process.

Every method (uncached; LFCache α sweep and speed targets; BlockCache; Flash; ComfyUI's EasyCache,
copy-fixed and as shipped, and LazyCache; the paper's open points a-e) samples the same
(seed, condition) pairs with nodes.KSampler (euler, "simple", 50 steps, CFG 5 by default) on the demo
model (models/precisecache_demo_wan.safetensors, a tiny Wan 2.1), methods interleaved in rotating
order. Per method: full / trial forwards and blocks computed / reused (our RunReport, checked against
independent forward hooks on every run), wall-clock, CPU-time and counted speedups, PSNR and SSIM of
the decoded frames against the uncached output, cache memory; plus the trial + metric overhead as a
share of a full forward at several latent sizes.

This file is the command line; the benchmark itself is the package scripts/bench/ (scenarios,
methods, runner, probes, metrics, report: see its __init__ for what each holds).

Output (--out, default bench_out/; --publish writes docs/benchmark/): results.json, results.md
(tables), speedup_vs_psnr.png (Pareto curves per method family), open_points.png.

Examples
--------
  python3 scripts/benchmark.py                 # full run (~20 min on 2 shared CPU cores)
  python3 scripts/benchmark.py --smoke         # tiny run (< 1 min), what the test suite runs
  python3 scripts/benchmark.py --publish       # full run, results into docs/benchmark/
  python3 scripts/benchmark.py --scenarios main --methods uncached,lf_a0.5,easy_fixed_t0.2
  python3 scripts/benchmark.py --model deep    # the 12-block model, at its training length (17 frames)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path

import comfy_host
from bench.common import REPO, resolve_model
from bench.scenarios import ScenarioConfig  # standard library only: --help still runs without torch

_SWEEPS = ScenarioConfig("main", size=128, frames=9, steps=50, cfg=5.0)
"""The main scenario's defaults: the sweeps' command-line defaults are read from it (written once there)."""


def _listed(values) -> str:
    """A sweep as its command-line text: '0.2,0.3' (floats), '2:0.4:3' (tuples, colon-joined)."""
    return ",".join(":".join(f"{x:g}" for x in v) if isinstance(v, tuple) else f"{v:g}" for v in values)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/benchmark.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny fast run: 64x64 px at the model's frames (9 for the demo), 12 steps, 2 pairs, 9 methods, one overhead size (< 1 min)")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out", help="output directory (default bench_out/)")
    ap.add_argument("--publish", action="store_true",
                    help="write the results into docs/benchmark/ (committed, used by docs/benchmark.md)")
    ap.add_argument("--model", default=None,
                    help="diffusion model: a .safetensors path (relative to the current directory or the "
                         "repository), or 'demo' (models/precisecache_demo_wan.safetensors, the default) or 'deep' "
                         "(models/precisecache_deep_wan.safetensors, 12 blocks). A missing default falls back to a "
                         "random-weight tiny Wan with a warning; a missing named model is an error")
    ap.add_argument("--comfyui", default=None, help="ComfyUI directory (default: COMFYUI_DIR, ../ComfyUI, /opt/ComfyUI)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--scenarios", default="main,large",
                    help="comma list: main (the model's training size, all methods), large (--large-size, fewer "
                         "methods and pairs), xl (--xl-size, a handful of methods; slow: ~10 min, not in the default)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=128, help="main scenario frame size in pixels (latent = size / 8)")
    ap.add_argument("--frames", type=int, default=None,
                    help="video frames (latent frames = 1 + (frames - 1) / 4); default: the frames the model was "
                         "trained at (its file's training metadata), else 9; --smoke uses it too")
    ap.add_argument("--pairs", type=int, default=_SWEEPS.pairs, help="seed x condition pairs of the main scenario")
    ap.add_argument("--repeats", type=int, default=_SWEEPS.repeats, help="timing repeats of the main scenario (rounds = pairs x repeats)")
    ap.add_argument("--large-size", type=int, default=256, help="frame size of the 'large' scenario (latent 32x32)")
    ap.add_argument("--large-pairs", type=int, default=4)
    ap.add_argument("--large-repeats", type=int, default=2)
    ap.add_argument("--xl-size", type=int, default=512, help="frame size of the opt-in 'xl' scenario (latent 64x64)")
    ap.add_argument("--xl-frames", type=int, default=9)
    ap.add_argument("--xl-pairs", type=int, default=2)
    ap.add_argument("--alphas", default=_listed(_SWEEPS.alphas), help="LFCache α sweep")
    ap.add_argument("--flash-alphas", default=_listed(_SWEEPS.flash_alphas), help="Flash α sweep (open point e)")
    ap.add_argument("--flash-targets", default=_listed(_SWEEPS.flash_targets),
                    help="static Flash on a speed target, comma list of target:c:L (BlockCache top-c %% / L)")
    ap.add_argument("--guided", default=_listed(_SWEEPS.guided),
                    help="trial-guided Flash, comma list of target:τ:c:L (change threshold, pivotal ratio, max reuses)")
    ap.add_argument("--easy-thresholds", default=_listed(_SWEEPS.easy_thresholds), help="EasyCache (copy-fixed) sweep")
    ap.add_argument("--lazy-thresholds", default=_listed(_SWEEPS.lazy_thresholds), help="LazyCache sweep")
    ap.add_argument("--easy-shipped-thresholds", default=_listed(_SWEEPS.easy_shipped_thresholds), help="EasyCache as shipped (reference only)")
    ap.add_argument("--dmax-first-k", type=int, default=_SWEEPS.dmax_first_k, help="open point c: Δmax = max over the first k Δ's")
    ap.add_argument("--no-open-points", action="store_true", help="skip the open-point variants (a-d)")
    ap.add_argument("--methods", default="", help="only these method names (comma list; uncached always runs)")
    ap.add_argument("--overhead-sizes", default="16,32,64",
                    help="latent sizes (H = W, in latent pixels) for the overhead measurement; '' to skip")
    args = ap.parse_args(argv)
    args.model = resolve_model(args.model)
    return args




def scenario_results(bench, cfg, log=print) -> dict:
    """One scenario: its runs, their summary and, where asked for, the trial agreement."""
    from bench.metrics import summarize
    from bench.probes import measure_trial_agreement
    from bench.runner import run_scenario
    runs = run_scenario(bench, cfg, log=log)
    t0 = time.perf_counter()
    summary = summarize(bench, runs)
    summary["metrics_seconds"] = time.perf_counter() - t0
    if cfg.trial_agreement:
        t0 = time.perf_counter()
        summary["trial_agreement"] = measure_trial_agreement(bench, cfg, runs.pairs, log=log)
        summary["trial_agreement"]["seconds"] = time.perf_counter() - t0
    log(f"[{cfg.name}] sampling {runs.sampling_seconds:.0f} s, decoding + metrics {summary['metrics_seconds']:.0f} s")
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    # the package after the arguments (--help needs no torch); it puts the repository on sys.path
    from bench.metrics import analyze
    from bench.probes import measure_overhead
    from bench.report import git_commit, print_summary, write_results
    from bench.runner import Bench
    from bench.scenarios import scenario_configs
    t_start = time.perf_counter()
    out_dir = (REPO / "docs" / "benchmark") if args.publish else args.out
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    host = comfy_host.find_comfyui(args.comfyui)
    if host.path is None:
        print(host.reason, file=sys.stderr)
        return 2
    comfyui_dir = host.path
    import logging
    logging.getLogger().setLevel(logging.WARNING)

    def log(msg):
        print(msg, flush=True)

    bench = Bench(comfyui_dir, args.model, args.threads, log=log)
    if args.frames is None:
        args.frames = int(bench.model_info["training"].get("frames", 9))
    log(f"ComfyUI {comfyui_dir} imported in {bench.import_seconds:.1f} s; model {bench.model_info['source']} "
        f"(training step {bench.model_info['training'].get('step', '?')}); {bench.blocks_per_forward} blocks; "
        f"{args.frames} frames")
    scenarios = {}
    for cfg in scenario_configs(args):
        scenarios[cfg.name] = scenario_results(bench, cfg, log=log)
    overhead = []
    if args.overhead_sizes:
        sizes = [int(s) for s in args.overhead_sizes.split(",") if s]
        if args.smoke:
            sizes = [8]
        steps_for = (lambda s: 12) if args.smoke else (lambda s: 50 if s <= 16 else (24 if s <= 32 else 12))
        overhead = measure_overhead(bench, sizes, args.frames, args.cfg, steps_for, log=log)
    import torch
    comfy_version = host.version
    cmd = "python3 scripts/benchmark.py" + ("".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])))
    results = {
        "meta": {
            "command": cmd.strip(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "git_commit": git_commit(), "model": bench.model_info, "blocks_per_forward": bench.blocks_per_forward,
            "threads": args.threads, "torch": torch.__version__, "comfyui_dir": comfyui_dir,
            "comfyui_version": comfy_version, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "sampler": "euler", "scheduler": "simple", "smoke": args.smoke,
            "metrics": "torchmetrics.functional.image peak_signal_noise_ratio (whole clip, data_range 1) and "
                       "structural_similarity_index_measure (per frame, mean), decoded frames in [0, 1]",
        },
        "scenarios": scenarios,
        "overhead": overhead,
    }
    for name, scen in scenarios.items():
        scen["analysis"] = analyze(scen, overhead if name == "main" else [])
    results["meta"]["runtime_seconds"] = time.perf_counter() - t_start
    written = write_results(results, out_dir)
    print_summary(results, log=log)
    log("\nwrote " + ", ".join(str(p) for p in written))
    log(f"total {results['meta']['runtime_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
