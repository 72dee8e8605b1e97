"""Where LFCache's trial should run under sequence parallelism: sharded like the full forward, or
unsharded on every rank. Measured on the CPU with real collectives (N processes, gloo).

Each rank builds the same Wan 2.1 network of ComfyUI (``--dim``, ``--layers``; heads = dim / 128)
twice: once with raylight's USP injection (``tests/host/usp_wan.py``: tokens split after the patch
embedding, yunchang's Ulysses attention, all-gather before the head) and once plain. Per trial size it
times, over ``--repeats`` calls after a warm-up, with the ranks started together by a barrier and each
call's time taken as the slowest rank's:

    sharded     the trial through the USP network (its tokens split again; all-to-alls in every block)
    unsharded   the trial through the plain network on every rank (no collective; work duplicated)
    full        a full forward of the latent the trial comes from (2x4x4 larger), through USP

and reports the median times, the trial's share of a full step for each mode, and which is faster.
On GPUs with NCCL the balance differs (much cheaper collectives relative to compute on one side, much
faster compute on the other): these numbers decide the CPU default only; the GPU case is not measured.

    python scripts/sp_trial_timing.py [--world 2] [--json docs/sp_trial_timing.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(REPO, "scripts") not in sys.path:
    sys.path.append(os.path.join(REPO, "scripts"))  # comfy_host, also in the spawned ranks
from comfy_host import free_port, import_comfy, require_comfyui  # noqa: E402
if REPO not in sys.path:
    sys.path.append(REPO)  # precisecache_core; last, so that ComfyUI's top-level names (nodes) win
from precisecache_core.families import WAN  # noqa: E402  (pure torch)
from precisecache_core.trial import DEFAULT_TRIAL_DOWNSAMPLE as TRIAL_FACTORS  # noqa: E402
from precisecache_core.trial_inputs import token_grid  # noqa: E402


def _comfy(comfyui_dir: str):
    import_comfy(comfyui_dir, cpu=True)
    import comfy.model_management  # noqa: F401
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    return WanModel, comfy.ops.disable_weight_init


def _network(dim: int, layers: int, comfyui_dir: str):
    WanModel, ops = _comfy(comfyui_dir)
    torch.manual_seed(0)
    net = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=dim, ffn_dim=4 * dim, freq_dim=256,
                   text_dim=4096, out_dim=16, num_heads=dim // 128, num_layers=layers, device="cpu",
                   dtype=torch.float32, operations=ops)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(math.prod(p.shape[1:])) if p.ndim >= 2
                    else (torch.ones(p.shape) if not name.endswith("bias") else torch.zeros(p.shape)))
    return net.eval()


def _timed(fn, repeats: int) -> float:
    """Median over ``repeats`` of the slowest rank's time of one call (ranks start together)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        torch.distributed.barrier()
        t0 = time.perf_counter()
        fn()
        t = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        times.append(float(t))
    return statistics.median(times)


def _rank_main(rank: int, world: int, port: int, args, out_path: str) -> None:
    torch.set_num_threads(args.threads)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world, timeout=datetime.timedelta(minutes=10))
    sys.path.insert(0, os.path.join(REPO, "tests", "host"))
    import usp_wan
    usp_wan.setup(world, 1, rank, world)
    sharded = _network(args.dim, args.layers, args.comfyui)
    usp_wan.inject(sharded)
    plain = _network(args.dim, args.layers, args.comfyui)
    context = torch.randn(1, 16, 4096, generator=torch.Generator().manual_seed(1))
    rows = []
    for t, h, w in args.trial_sizes:
        trial = torch.randn(1, 16, t, h, w, generator=torch.Generator().manual_seed(2))
        ts = torch.tensor([500.0])
        call = lambda net, x: net(x, ts, context)  # noqa: E731
        with torch.no_grad():
            row = {"trial_latent": [1, 16, t, h, w], "trial_tokens": math.prod(token_grid(trial.shape, WAN.patch_size)),
                   "sharded_s": _timed(lambda: call(sharded, trial), args.repeats),
                   "unsharded_s": _timed(lambda: call(plain, trial), args.repeats)}
            full_shape = (1, 16, (t - 1) * TRIAL_FACTORS[0] + 1, h * TRIAL_FACTORS[1], w * TRIAL_FACTORS[2])
            full_tokens = math.prod(token_grid(full_shape, WAN.patch_size))
            if full_tokens <= args.max_full_tokens:
                full = torch.randn(full_shape, generator=torch.Generator().manual_seed(3))
                row.update(full_latent=list(full_shape), full_tokens=full_tokens,
                           full_sharded_s=_timed(lambda: call(sharded, full), max(1, args.repeats // 2)))
                row["trial_share_sharded"] = row["sharded_s"] / row["full_sharded_s"]
                row["trial_share_unsharded"] = row["unsharded_s"] / row["full_sharded_s"]
        row["faster"] = "sharded" if row["sharded_s"] < row["unsharded_s"] else "unsharded"
        rows.append(row)
        if rank == 0:
            print(json.dumps(row), flush=True)
    if rank == 0:
        result = {"world": world, "backend": "gloo", "device": "cpu", "threads_per_rank": args.threads,
                  "cpu_count": os.cpu_count(), "network": {"dim": args.dim, "layers": args.layers,
                                                           "heads": args.dim // 128},
                  "repeats": args.repeats, "rows": rows,
                  "note": "CPU + gloo only; GPUs with NCCL not measured"}
        with open(out_path, "w") as f:
            json.dump(result, f, indent=1)
    torch.distributed.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--trial-sizes", type=lambda s: [tuple(int(v) for v in x.split("x")) for x in s.split(",")],
                   default=[(3, 8, 8), (5, 16, 16), (9, 32, 32)], help="trial latent T x H x W, comma separated")
    p.add_argument("--max-full-tokens", type=int, default=1400, help="time the full forward up to this many tokens")
    p.add_argument("--comfyui", default=None, help="ComfyUI folder (default: COMFYUI_DIR, ../ComfyUI, /opt/ComfyUI)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    args.comfyui = require_comfyui(args.comfyui)
    port = free_port()
    out = args.json or os.path.join(REPO, ".sp_trial_timing.json")
    torch.multiprocessing.start_processes(_rank_main, args=(args.world, port, args, out), nprocs=args.world,
                                          join=True, start_method="spawn")
    with open(out) as f:
        result = json.load(f)
    print(f"\n{'trial tokens':>12} {'sharded ms':>11} {'unsharded ms':>13} {'full ms':>9} {'faster':>10}")
    for r in result["rows"]:
        full = f"{1000 * r['full_sharded_s']:9.1f}" if "full_sharded_s" in r else f"{'-':>9}"
        print(f"{r['trial_tokens']:>12} {1000 * r['sharded_s']:11.1f} {1000 * r['unsharded_s']:13.1f} {full} "
              f"{r['faster']:>10}")
    if not args.json:
        os.remove(out)


if __name__ == "__main__":
    main()
