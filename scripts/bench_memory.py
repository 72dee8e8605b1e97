#!/usr/bin/env python3
"""Memory over many consecutive runs with the same patched model (issue 6: bounded cache memory).

Runs a real ComfyUI in-process (COMFYUI_DIR, default /opt/ComfyUI) on the tiny random-weight Wan
of the host tests (written to a temporary --base-directory), patches it once with PreciseCache
(LFCache alpha 1.5 + BlockCache 40 % pivotal, so it skips steps and reuses blocks on random
weights), samples it ``--runs`` times with different seeds and prints, after run 1 and every
``--every`` runs:

* process RSS (after gc.collect() and glibc malloc_trim(0), so freed memory is returned to the OS),
* the number of live torch.Tensor objects (gc),
* on CUDA: torch.cuda.memory_allocated() and the peak of the last run (max_memory_allocated,
  reset before each run),
* the run's own cache peak (report.cache_bytes_peak).

Scenarios: ``uncached`` (the same runs without PreciseCache: the host's own noise floor),
``cached``, and ``cached+interrupts`` (every 5th run interrupted mid-sampling with ComfyUI's
interrupt, every 7th fails with an exception raised inside the model). Memory after the last run
should equal memory after the first.

Usage:  python3 scripts/bench_memory.py [--runs 50 --steps 20 --shape 1,16,5,24,24 --every 10
        --scenarios uncached,cached,cached+interrupts --threads 1 --json out.json]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "host"))
sys.path.insert(0, str(REPO))


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def settle() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def live_tensors() -> int:
    import warnings
    import torch
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on some torch module objects warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


class Trouble:
    """Interrupt (ComfyUI's own interrupt) or fail (RuntimeError) at the n-th block call of a run."""

    def __init__(self, mode: str | None, at_block_call: int = 9):
        self.mode, self.at, self.calls = mode, at_block_call, 0

    def __enter__(self):
        import torch
        import comfy.model_management as mm
        from comfy.ldm.wan.model import WanAttentionBlock
        self.mm = mm

        def hook(module, args):
            if self.mode and isinstance(module, WanAttentionBlock):
                self.calls += 1
                if self.calls == self.at:
                    if self.mode == "interrupt":
                        mm.interrupt_current_processing()
                    else:
                        raise RuntimeError("bench_memory: simulated failure inside the model")
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        self.mm.interrupt_current_processing(False)
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--shape", default="1,16,5,24,24", help="latent B,C,T,H,W")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--scenarios", default="uncached,cached,cached+interrupts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    import harness
    import tiny_models
    from cache_helpers import latest_report, with_blockcache, with_lfcache

    comfyui = harness.find_comfyui().path
    if comfyui is None:
        print(harness.SKIP_BANNER, file=sys.stderr)
        return 2
    base = harness.make_base_dir(tempfile.mkdtemp(prefix="precisecache_bench_memory_"))
    comfy = harness.import_comfy(comfyui, base)
    tiny_models.write_tiny_model("wan", harness.diffusion_models_dir(base), seed=0)
    pack = comfy.load_pack()
    import comfy.model_management as mm
    cuda = torch.cuda.is_available() and mm.get_torch_device().type == "cuda"
    shape = tuple(int(s) for s in args.shape.split(","))
    model = comfy.load_model("wan")
    print(f"device: {mm.get_torch_device()}  torch {torch.__version__}  latent {shape}  steps {args.steps}  "
          f"runs {args.runs}  threads {args.threads}")

    results = {}
    for scenario in [s for s in args.scenarios.split(",") if s]:
        patched = model if scenario == "uncached" else \
            with_blockcache(comfy, with_lfcache(comfy, model, alpha=1.5), pivotal_ratio=0.4)
        rows, troubles = [], {"interrupt": 0, "fail": 0}
        started = time.perf_counter()
        for run in range(1, args.runs + 1):
            mode = None
            if scenario.endswith("+interrupts") and run > 1:
                mode = "interrupt" if run % 5 == 0 else "fail" if run % 7 == 0 else None
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            try:
                with Trouble(mode):
                    comfy.sample(patched, "wan", seed=run, steps=args.steps, cfg=5.0, latent=torch.zeros(shape))
            except (mm.InterruptProcessingException, RuntimeError) as error:
                if mode is None:
                    raise
                troubles[mode] += 1
                del error
            if run == 1 or run % args.every == 0 or run == args.runs:
                settle()
                row = {"run": run, "rss_mib": rss_bytes() / 2**20, "live_tensors": live_tensors()}
                if cuda:
                    row["cuda_allocated_mib"] = torch.cuda.memory_allocated() / 2**20
                    row["cuda_peak_last_run_mib"] = torch.cuda.max_memory_allocated() / 2**20
                if scenario != "uncached":
                    report = latest_report(pack, patched)
                    row["cache_peak_mib"] = report.cache_bytes_peak / 2**20
                    row["last_run_interrupted"] = report.interrupted
                rows.append(row)
        elapsed = time.perf_counter() - started
        first, last = rows[0], rows[-1]
        results[scenario] = {"rows": rows, "troubles": troubles, "seconds": elapsed}
        print(f"\n== {scenario}: {args.runs} runs in {elapsed:.1f} s"
              + (f" ({troubles['interrupt']} interrupted, {troubles['fail']} failed)" if any(troubles.values()) else ""))
        for row in rows:
            print("  " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        delta = last["rss_mib"] - first["rss_mib"]
        print(f"  RSS after run 1: {first['rss_mib']:.1f} MiB, after run {last['run']}: {last['rss_mib']:.1f} MiB "
              f"(delta {delta:+.1f} MiB); live tensors {first['live_tensors']} -> {last['live_tensors']}"
              + (f"; CUDA allocated {first['cuda_allocated_mib']:.1f} -> {last['cuda_allocated_mib']:.1f} MiB"
                 if cuda else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": shape, "steps": args.steps, "runs": args.runs,
                                               "cuda": cuda, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
