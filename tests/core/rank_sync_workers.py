"""Real collectives on the CPU: N processes, gloo over tcp://127.0.0.1, torch.multiprocessing spawn.

``spawn(fn, world, *args)`` runs ``fn(rank, world, *args)`` in ``world`` fresh processes that share a
default gloo process group and returns each rank's return value (through torch.save files). Every
collective waits at most ``TIMEOUT_S``: a test whose ranks issue different collectives fails with
gloo's timeout instead of hanging. ``count_all_reduces()`` counts this process's all-reduces.

The workers below drive the core (StepPolicy, PreciseCacheRun, BlockResidualCache) as the ComfyUI
glue does, each rank with its own data. Kept out of test modules so that spawned children import it
by name (the parent's sys.path travels with spawn).
"""
from __future__ import annotations

import datetime
import os
import socket
import tempfile
from typing import Callable

import torch

TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, out_dir: str, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        result = fn(rank, world, *args)
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def spawn(fn: Callable, world: int, *args) -> list:
    """``[fn(0, world, *args), …, fn(world-1, world, *args)]``, each run in its own process."""
    with tempfile.TemporaryDirectory() as out_dir:
        torch.multiprocessing.start_processes(_entry, args=(world, free_port(), out_dir, fn, args), nprocs=world,
                                              join=True, start_method="spawn")
        return [torch.load(os.path.join(out_dir, f"{r}.pt"), weights_only=False) for r in range(world)]


class count_all_reduces:
    """Context manager: counts this process's ``torch.distributed.all_reduce`` calls (``.n``) and
    refuses every other collective (the sync layer uses all-reduces only)."""

    OTHERS = ("broadcast", "all_gather", "all_gather_object", "reduce", "barrier", "all_to_all", "gather", "scatter")

    def __enter__(self):
        self.n = 0
        dist = torch.distributed
        self._saved = {name: getattr(dist, name) for name in ("all_reduce",) + self.OTHERS}
        original = self._saved["all_reduce"]

        def counting(*args, **kwargs):
            self.n += 1
            return original(*args, **kwargs)

        def refused(*args, **kwargs):
            raise AssertionError("the sync layer issued a collective other than all_reduce")

        dist.all_reduce = counting
        for name in self.OTHERS:
            setattr(dist, name, refused)
        return self

    def __exit__(self, *exc):
        for name, value in self._saved.items():
            setattr(torch.distributed, name, value)
        return False


# -- workers ----------------------------------------------------------------------------------
def _sync(synced: bool):
    from precisecache_core.rank_sync import SampleGroup, for_run
    return for_run(SampleGroup(description="test group")) if synced else None


def _policy(steps: int, rule: dict, sync):
    from precisecache_core.step_policy import StepPolicy
    return StepPolicy([True] * steps, alpha=rule.get("alpha", 0.0), speed_target=rule.get("speed_target", 0.0),
                      metric=rule.get("metric", "accumulated"), lowpass_radius=0.2,
                      max_consecutive_skips=rule.get("max_consecutive_skips", 0), trial_cost=1 / 32, sync=sync)


def _trial(gen: torch.Generator, base: torch.Tensor, step: int, noise: float) -> torch.Tensor:
    """A trial prediction whose change shrinks along the run, like a denoising trajectory."""
    return base + torch.randn(base.shape, generator=gen) * noise / (1 + step) ** 0.5


def policy_run(rank: int, world: int, steps: int, rules: list[dict], seeds: list[int], synced: bool,
               noise: float = 1.0) -> dict:
    """Drive one StepPolicy per rank as ``PreciseCacheRun.begin_call`` / ``decide`` do (a trial only
    where ``wants_trial``), with this rank's own rule and data. Returns the decisions, the all-reduces
    issued per step and the rule's final state."""
    rule, seed = rules[rank % len(rules)], seeds[rank % len(seeds)]
    sync = _sync(synced)
    policy = _policy(steps, rule, sync)
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 4, 3, 4, 4, generator=gen)
    decisions, per_step = [], []
    with count_all_reduces() as counter:
        for step in range(steps):
            before = counter.n
            trial = _trial(gen, base, step, noise) if policy.wants_trial(step) else None
            d = policy.decide(step, trial)
            per_step.append(counter.n - before)
            decisions.append((d.skip, d.trial, d.delta, d.metric, d.threshold))
    target = policy.target
    state = ((target.spent, target.consecutive_skips, target.delta_max, target.trial_cost) if target is not None else
             (policy.alpha_rule.accumulated, policy.alpha_rule.running_max, policy.alpha_rule.consecutive_skips))
    return {"decisions": decisions, "per_step": per_step, "state": state,
            "overruled": sync.overruled if sync is not None else 0}


def _schedule(n: int) -> list[float]:
    return [1.0 - i / n for i in range(n)] + [0.0]


def _fake_model(x: torch.Tensor, sigma: float, perturb: float = 0.0) -> torch.Tensor:
    """A smooth deterministic denoiser stand-in (shape-preserving, any size)."""
    return torch.tanh(1.5 * x) * (0.5 + sigma) + 0.1 * torch.sin(3 * x + sigma) + perturb * torch.cos(x)


def run_fake(rank: int, world: int, steps: int, lf_kwargs: dict, synced: bool, perturb: list[float],
             fail_at: int | None = None, trial_seconds: list[float] | None = None) -> dict:
    """A whole PreciseCacheRun on a fake denoiser, driven like the DIFFUSION_MODEL wrapper does (trial
    at a step's first call, reuse or compute, store), every rank from the same start latent; rank r's
    denoiser adds ``perturb[r]`` · cos(x) (different data per rank). ``fail_at``: the step at which
    rank 1's trial fails (``stop_lf``), ``trial_seconds[r]``: rank r's measured trial time."""
    from precisecache_core import LFCacheConfig, PreciseCacheRun
    from precisecache_core.trial import pool
    lf = LFCacheConfig(**lf_kwargs).validate()
    sigmas = _schedule(steps)
    run = PreciseCacheRun(lf, None, sigmas, (1, 4, 4, 8, 8), lambda p: 1.0 - p, sync=_sync(synced))
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    p = perturb[rank % len(perturb)]
    per_step = []
    with count_all_reduces() as counter:
        for i, sigma in enumerate(sigmas[:-1]):
            before = counter.n
            plan = run.begin_call(("cond",), sigma)
            timing = run.needs_timing
            if plan.needs_trial:
                if fail_at == i and rank == 1:
                    run.stop_lf(plan, "trial failed on this rank (test)")
                else:
                    trial_x = pool(x, lf.trial_downsample, lf.trial_operator)
                    run.decide(plan, _fake_model(trial_x, sigma, p))
                    if timing and trial_seconds is not None:
                        run.record_seconds(plan, trial_seconds[rank], trial=True)
            out = run.reuse(plan, x) if run.should_skip(plan) else None
            if out is None:
                out = _fake_model(x, sigma, p)
                if timing and trial_seconds is not None:
                    run.record_seconds(plan, 1.0, trial=False)
                run.store(plan, x, out)
            x = x + (sigmas[i + 1] - sigma) * out
            per_step.append(counter.n - before)
    report = run.finish()
    return {"x": x, "skipped": report.skipped_steps, "lfd": report.lfd, "notes": report.notes,
            "per_step": per_step, "full": report.full_forwards, "trials": report.trial_forwards}


def blocks_run(rank: int, world: int, n_blocks: int, ratio: float, budget_block: int | None, synced: bool) -> dict:
    """BlockResidualCache on each rank's own token shard: a refresh step, then a reuse step. Rank r's
    blocks change its shard by rank-dependent amounts (different scores per rank). ``budget_block``:
    a block whose residual rank 1 cannot keep (dropped as by the memory budget)."""
    from precisecache_core import BlockCacheConfig, BlockResidualCache
    sync = _sync(synced)
    cache = BlockResidualCache(BlockCacheConfig(pivotal_ratio=ratio, refresh_interval=2))
    if sync is not None:
        sync.block_keys = [("double_block", j) for j in range(n_blocks)]
        cache.pivotal_sync = sync.pivotal_blocks
    gen = torch.Generator().manual_seed(11 + rank)
    gains = torch.rand(n_blocks, generator=gen) + 0.1
    x0 = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(rank))  # [B, N/world, D]: this rank's shard
    computed: list[list[int]] = []
    with count_all_reduces() as counter:
        for phase in ("refresh", "reuse"):
            x, ran = x0.clone(), []
            for j in range(n_blocks):
                def compute(a, j=j):
                    ran.append(j)
                    return {"img": a["img"] * (1 + gains[j])}
                x = cache.run_block("slot", phase, ("double_block", j), {"img": x}, compute)["img"]
                if phase == "refresh" and rank == 1 and j == budget_block:
                    cache._drop_block(cache._slots["slot"], ("double_block", j))
            computed.append(ran)
    state = cache._slots["slot"]
    shapes = {k: tuple(v.shape) for k, v in state.residuals.items()}
    return {"computed": computed, "pivotal": sorted(state.pivotal, key=repr), "all_reduces": counter.n,
            "shapes": shapes, "local_scores": {k: float(v) for k, v in state.scores.items()}}


def one_rank_groups(rank: int, world: int) -> bool:
    """Groups of one rank each (every rank creates every group, as torch requires): no sync."""
    from precisecache_core.rank_sync import SampleGroup, for_run
    groups = [torch.distributed.new_group([r]) for r in range(world)]
    return for_run(SampleGroup(groups[rank])) is None


def scenarios(rank: int, world: int, specs: list[tuple[str, tuple]]) -> list:
    """Several workers in one spawn (a spawn costs seconds): ``specs`` = [(worker name, args)]."""
    return [globals()[name](rank, world, *args) for name, args in specs]
