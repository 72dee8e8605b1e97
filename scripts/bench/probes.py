"""Measurements beside the method comparison, inside the real sampling path: how well the trial's
low-frequency change tracks the full-resolution one (``measure_trial_agreement``, open point d), and
what the trial and the decision cost relative to a full forward (``measure_overhead``).
"""
from __future__ import annotations

import gc
import math
import time

from .common import fmt, mean, median
from .runner import Bench
from .scenarios import ScenarioConfig


def measure_trial_agreement(bench: Bench, cfg: ScenarioConfig, pairs, alphas=(0.5, 0.7, 1.0), log=print) -> dict:
    """How well the trial's Δ̃ tracks the full-resolution Δ, for each downsampling operator (open point d).

    On the uncached trajectory of each pair, every denoiser call also runs the trial forward on the
    average-pooled and on the strided-subsampled input (through the pack's own trial-argument
    builder). Per step: Δ_full = LFD of consecutive full predictions, Δ̃ = LFD of consecutive trial
    predictions. Reported: Spearman correlation of Δ̃ with Δ_full, and the share of steps where the
    decision rule (running max, α) fed with Δ̃ takes the same decision as fed with Δ_full
    (open loop: both on the same uncached trajectory).
    """
    import torch
    from scipy.stats import spearmanr
    lfd = bench.lowpass_mod.low_frequency_distance
    factors = bench.trial_mod.effective_factors(bench.trial_mod.DEFAULT_TRIAL_DOWNSAMPLE, cfg.latent_shape,
                                                bench.families_mod.WAN.patch_size)  # as the pack's run does
    operators = ("strided", "avg_pool")
    calls: list[tuple] = []
    input_std: dict[str, list[float]] = {name: [] for name in operators}

    def wrapper(executor, *args, **kwargs):
        options = bench.hooks._transformer_options(args, kwargs)
        full = executor(*args, **kwargs)
        trials = {}
        for name in operators:
            targs, tkwargs = bench.trial_inputs_mod.trial_call(bench.families_mod.WAN, args, kwargs, factors, name,
                                                               bench.hooks._trial_options(options))
            if not calls:  # the pair's first call (calls is cleared per pair)
                input_std[name].append(float(targs[0].float().std()))
            with torch.no_grad():
                trials[name] = executor(*targs, **tkwargs).detach().clone()
        calls.append((full.detach().clone(), trials, float(args[0].float().std())))
        return full

    model = bench.model.clone()
    model.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_trial_agreement", wrapper)
    decider_cls = bench.policy_mod.StepDecider

    def decisions(series, alpha):
        d = decider_cls(alpha)
        return [d.decide(v, True) for v in series]

    per_pair = []
    first_step_input_std = []
    for seed, cond in pairs:
        calls.clear()
        bench.sample(model, seed, cond, cfg)
        first_step_input_std.append(calls[0][2])
        fulls = [c[0] for c in calls]
        full_series = [None] + [float(lfd(fulls[i], fulls[i - 1])) for i in range(1, len(fulls))]
        row = {}
        for name in operators:
            tr = [c[1][name] for c in calls]
            series = [None] + [float(lfd(tr[i], tr[i - 1])) for i in range(1, len(tr))]
            rho = spearmanr(series[1:], full_series[1:]).statistic
            agree = {}
            for a in alphas:
                x, y = decisions(series, a), decisions(full_series, a)
                agree[fmt(a)] = sum(1 for u, v in zip(x, y) if u == v) / len(x)
            row[name] = {"spearman": float(rho), "decision_agreement": agree}
        per_pair.append(row)
    out = {"pairs": len(pairs), "alphas": list(alphas), "factors": list(factors),
           "full_input_std_first_step": mean(first_step_input_std),
           "operators": {}}
    for name in operators:
        out["operators"][name] = {
            "spearman_mean": mean([r[name]["spearman"] for r in per_pair]),
            "spearman_min": min(r[name]["spearman"] for r in per_pair),
            "decision_agreement_mean": {fmt(a): mean([r[name]["decision_agreement"][fmt(a)] for r in per_pair])
                                        for a in alphas},
            "trial_input_std_first_step": mean(input_std[name]),
        }
        o = out["operators"][name]
        log(f"[trial agreement] {name}: Spearman(Δ̃, Δ_full) mean {o['spearman_mean']:.3f} (min {o['spearman_min']:.3f}), "
            f"decision agreement " + ", ".join(f"α={a}: {100 * v:.0f}%" for a, v in o["decision_agreement_mean"].items())
            + f"; trial input std at step 0 {o['trial_input_std_first_step']:.3f} (full {out['full_input_std_first_step']:.3f})")
    out["per_pair"] = per_pair
    return out


def measure_overhead(bench: Bench, sizes: list[int], frames: int, cfg_scale: float, steps_for, log=print) -> list[dict]:
    """Trial + decision overhead inside the real sampling path, per latent size.

    Timing wrappers around the diffusion model: one outside ours (whole call) and one inside ours
    (each executor call: the trial or the full forward). An LFCache run with α = 0.01 computes every
    step and runs every trial; an uncached run gives the plain full forward and full step.
    """
    import torch
    from precisecache_demo import conditioning
    out = []
    for size in sizes:
        steps = steps_for(size)
        scen = ScenarioConfig("overhead", size=8 * size, frames=frames, steps=steps, cfg=cfg_scale)
        inner: list[tuple[bool, float]] = []
        outer: list[tuple[float, int]] = []
        trial_key = bench.hooks.TRIAL_KEY

        def inner_wrapper(executor, *args, **kwargs):
            options = bench.hooks._transformer_options(args, kwargs)
            t0 = time.perf_counter()
            r = executor(*args, **kwargs)
            inner.append((bool(options and options.get(trial_key)), time.perf_counter() - t0))
            return r

        def outer_wrapper(executor, *args, **kwargs):
            n0 = len(inner)
            t0 = time.perf_counter()
            r = executor(*args, **kwargs)
            outer.append((time.perf_counter() - t0, len(inner) - n0))
            return r

        plain = bench.model.clone()
        plain.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_inner", inner_wrapper)
        timed = bench.model.clone()
        timed.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_outer", outer_wrapper)
        lf = bench.config_mod.LFCacheConfig(alpha=0.01).validate()
        timed = bench.hooks.apply_setup(timed, lf=lf)
        timed.add_wrapper_with_key(bench.wrappers.DIFFUSION_MODEL, "precisecache_bench_inner", inner_wrapper)
        assert bench.wrapper_order(timed) == ["precisecache_bench_outer", "precisecache", "precisecache_bench_inner"]
        cond = conditioning.VOCABULARY[0]
        unc_steps, lf_steps, full_unc = [], [], []
        trial_t, full_t, extra_t = [], [], []
        for rep in range(2):  # interleaved: uncached, LFCache, uncached, LFCache
            inner.clear()
            _, secs = bench.sample(plain, 7, cond, scen)
            unc_steps.append(secs / steps)
            full_unc += [t for is_trial, t in inner[1:]]
            inner.clear()
            outer.clear()
            _, secs = bench.sample(timed, 7, cond, scen)
            lf_steps.append(secs / steps)
            pos = 0
            for total, n_inner in outer:
                calls = inner[pos:pos + n_inner]
                pos += n_inner
                tr = [t for is_trial, t in calls if is_trial]
                fu = [t for is_trial, t in calls if not is_trial]
                trial_t += tr
                full_t += fu
                if tr and fu:
                    extra_t.append(total - sum(tr) - sum(fu))
        report = bench.latest_report(timed)
        # the metric alone, on the trial prediction's shape
        factors = bench.trial_mod.effective_factors(bench.trial_mod.DEFAULT_TRIAL_DOWNSAMPLE, scen.latent_shape,
                                                    bench.families_mod.WAN.patch_size)
        shape = (2, scen.latent_shape[1]) + tuple(-(-d // f) for d, f in zip(scen.latent_shape[2:], factors))
        a, b = torch.randn(shape), torch.randn(shape)
        for _ in range(5):
            bench.lowpass_mod.low_frequency_distance(a, b)
        lfd = []
        for _ in range(200):
            t0 = time.perf_counter()
            float(bench.lowpass_mod.low_frequency_distance(a, b))
            lfd.append(time.perf_counter() - t0)
        full_fwd = median(full_unc)
        row = {
            "size": size, "latent_shape": list(scen.latent_shape), "steps": steps,
            "tokens_full": math.prod(bench.trial_inputs_mod.token_grid(scen.latent_shape,
                                                                       bench.families_mod.WAN.patch_size)),
            "trial_token_ratio": report.trial_token_ratio,
            "full_forward_ms": 1e3 * full_fwd,
            "full_forward_in_lf_run_ms": 1e3 * median(full_t),
            "trial_forward_ms": 1e3 * median(trial_t),
            "wrapper_extra_ms": 1e3 * median(extra_t),
            "lfd_ms": 1e3 * median(lfd),
            "uncached_step_ms": 1e3 * median(unc_steps),
            "lf_every_step_step_ms": 1e3 * median(lf_steps),
            "samples": {"trial": len(trial_t), "full": len(full_unc)},
            "lf_run_skipped_steps": len(report.skipped_steps),
        }
        row["trial_pct_of_full_forward"] = 100 * row["trial_forward_ms"] / row["full_forward_ms"]
        row["overhead_pct_of_full_forward"] = 100 * (row["trial_forward_ms"] + row["wrapper_extra_ms"]) / row["full_forward_ms"]
        row["overhead_pct_of_full_step"] = 100 * (row["trial_forward_ms"] + row["wrapper_extra_ms"]) / row["uncached_step_ms"]
        row["measured_step_increase_pct"] = 100 * (row["lf_every_step_step_ms"] / row["uncached_step_ms"] - 1)
        log(f"[overhead] latent {scen.latent_shape}: full forward {row['full_forward_ms']:.1f} ms, trial "
            f"{row['trial_forward_ms']:.1f} ms, pooling+LFD+bookkeeping {row['wrapper_extra_ms']:.2f} ms "
            f"(LFD alone {row['lfd_ms']:.3f} ms) -> overhead {row['overhead_pct_of_full_forward']:.1f}% of a full "
            f"forward, {row['overhead_pct_of_full_step']:.1f}% of a full step")
        out.append(row)
        gc.collect()
    return out


