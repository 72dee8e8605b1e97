"""From runs to numbers: PSNR and SSIM of the decoded frames against the uncached output
(``video_metrics``), a scenario's per-method summary (``summarize``: counts, speedups, fidelity), and
the analysis of the summaries (``analyze``: Pareto fronts, the best speedup per fidelity level, the
open points, the input-mutation check).

Speedups: wall = 1 ÷ the median over rounds of (method time ÷ uncached time in the same round); CPU
the same with the process's CPU time; counted ("ideal") = uncached forwards ÷ (full + trial work −
reused blocks ÷ blocks per forward; trial work: per trial, its token ratio × its share of the step's
batch, as the run report counts it), summed over the pairs; realized ÷ ideal their ratio.
"""
from __future__ import annotations

import dataclasses
import math

from .common import fmt, mean, median
from .methods import FLASH_L1_FAMILY, PRECISECACHE_FAMILIES
from .runner import Bench, RunRecord, ScenarioRuns

FIDELITY_LEVELS = (25.0, 27.5, 30.0, 32.5, 35.0, 37.5, 40.0, 42.5)


def video_metrics(decoded, reference) -> tuple[float, float]:
    """PSNR (whole clip) and SSIM (mean over frames) of decoded frames [1, 3, F, H, W] in [0, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
    a = decoded[0].permute(1, 0, 2, 3).contiguous().float()   # [F, 3, H, W]
    b = reference[0].permute(1, 0, 2, 3).contiguous().float()
    psnr = float(peak_signal_noise_ratio(a.double(), b.double(), data_range=1.0))
    ssim = float(structural_similarity_index_measure(a, b, data_range=1.0))  # float32: float64 is ~10x slower
    return psnr, ssim


def summarize(bench: Bench, runs: ScenarioRuns) -> dict:
    """A scenario's summary: per method, the counts (means per run over the pairs of repeat 0), times,
    speedups and fidelity (decoding every output); with the config, the pairs and the checks."""
    cfg, methods, pairs, outputs = runs.cfg, runs.methods, runs.pairs, runs.outputs
    by_method: dict[str, list[RunRecord]] = {}
    for r in runs.records:
        by_method.setdefault(r.method, []).append(r)
    unc = {r.round: r.seconds for r in by_method["uncached"]}
    unc_cpu = {r.round: r.cpu_seconds for r in by_method["uncached"]}
    unc_full = {r.pair: r.full_forwards for r in by_method["uncached"]}
    refs = {pi: bench.decode(outputs[("uncached", pi)]) for pi in range(len(pairs))}
    rows = []
    for m in methods:
        recs = by_method[m.name]
        first = [r for r in recs if r.repeat == 0]
        ratios = [r.seconds / unc[r.round] for r in recs]
        ratio = median(ratios)
        cpu_ratios = [r.cpu_seconds / unc_cpu[r.round] for r in recs if unc_cpu[r.round] > 0]
        cpu_ratio = median(cpu_ratios)
        psnrs, ssims = [], []
        for pi in range(len(pairs)):
            if m.name == "uncached":
                psnrs.append(math.inf)
                ssims.append(1.0)
                continue
            p, s = video_metrics(bench.decode(outputs[(m.name, pi)]), refs[pi])
            psnrs.append(p)
            ssims.append(s)
        # counted work, summed over pairs (repeat 0; later repeats are identical runs)
        tot_unc = sum(unc_full[r.pair] for r in first)
        cost = sum(r.cost(bench.blocks_per_forward) for r in first)
        ideal = tot_unc / cost if cost > 0 else None
        speedup = 1.0 / ratio if ratio else None
        n = len(first)
        finite = [p for p in psnrs if math.isfinite(p)]
        rows.append({
            "name": m.name, "label": m.label, "family": m.family, "kind": m.kind, "groups": list(m.groups),
            "params": m.params(),
            "full_forwards": sum(r.full_forwards for r in first) / n,
            "trial_forwards": sum(r.trial_forwards for r in first) / n,
            "reused_forwards": sum(r.reused_forwards for r in first) / n,
            "skipped_steps": sum(r.skipped_steps for r in first) / n,
            "blocks_computed": sum(r.blocks_computed for r in first) / n,
            "blocks_reused": sum(r.blocks_reused for r in first) / n,
            "uncached_forwards": tot_unc / n,
            "trial_token_ratio": max((r.token_ratio for r in first), default=0.0),
            "cache_bytes": max((r.cache_bytes for r in recs), default=0),
            "count_check": sorted({r.count_check for r in recs}),
            "input_mutations": sum(r.input_mutations for r in recs),
            "model_calls_per_run": sum(r.model_calls for r in first) / n,
            "seconds_median": median([r.seconds for r in recs]),
            "wall_ratio_median": ratio,
            "wall_ratio_per_round": ratios,
            "speedup_wall": speedup,
            "speedup_ideal": ideal,
            "realized_over_ideal": (speedup / ideal) if (speedup and ideal) else None,
            "cpu_seconds_median": median([r.cpu_seconds for r in recs]),
            "cpu_ratio_median": cpu_ratio,
            "speedup_cpu": (1.0 / cpu_ratio) if cpu_ratio else None,
            "realized_over_ideal_cpu": (1.0 / cpu_ratio / ideal) if (cpu_ratio and ideal) else None,
            "report_estimated_speedup_mean": mean([r.report_speedup for r in first]),
            "work_speedup_per_pair": [unc_full[r.pair] / r.cost(bench.blocks_per_forward) for r in first],
            "skipped_step_indices_per_pair": [r.skipped_step_indices for r in first],
            "stepped_aside_pairs": [r.pair for r in first if r.stepped_aside],
            "psnr_identical": m.name == "uncached" or (len(finite) == 0),
            "psnr_identical_pairs": len(psnrs) - len(finite),
            "psnr_mean": mean(finite),
            "psnr_worst": min(psnrs) if finite else None,
            "psnr_per_pair": [p if math.isfinite(p) else None for p in psnrs],
            "ssim_mean": mean(ssims),
            "ssim_worst": min(ssims),
            "ssim_per_pair": ssims,
        })
    return {
        "config": dataclasses.asdict(cfg) | {"latent_shape": list(cfg.latent_shape)},
        "pairs": [{"seed": s, "condition": c} for s, c in pairs],
        "methods": rows,
        "easycache_wrapper_order": runs.order_check,
        "determinism_failures": runs.determinism_failures,
        "sampling_seconds": runs.sampling_seconds,
    }


def pareto(points):
    """Points (speedup, psnr, name) not dominated (higher speedup and higher PSNR), by speedup."""
    pts = sorted(points, key=lambda p: (-p[0], -p[1]))
    front, best = [], -math.inf
    for p in pts:
        if p[1] > best:
            front.append(p)
            best = p[1]
    return sorted(front)


def best_at_levels(rows, families, key, levels=FIDELITY_LEVELS, metric="psnr_mean"):
    """Per fidelity level: the fastest (by ``key``) method of ``families`` whose ``metric`` reaches it."""
    out = {}
    for lvl in levels:
        cand = [r for r in rows if r["family"] in families and r[key] is not None and r[metric] is not None
                and r[metric] >= lvl]
        best = max(cand, key=lambda r: r[key], default=None)
        out[str(lvl)] = {"speedup": best[key] if best else None, "method": best["name"] if best else None}
    return out


def analyze(main: dict, overhead: list[dict]) -> dict:
    """A scenario summary's analysis: PreciseCache vs its peers per fidelity level, the realized ÷
    ideal ratios, the overhead, the open points (baseline vs variant) and the input-mutation counts."""
    rows = main["methods"]
    get = {r["name"]: r for r in rows}
    analysis = {}
    for key in ("speedup_wall", "speedup_cpu", "speedup_ideal"):
        for metric in ("psnr_mean", "psnr_worst"):
            levels = {fam: best_at_levels(rows, fams, key, metric=metric)
                      for fam, fams in (("PreciseCache", PRECISECACHE_FAMILIES),
                                        ("EasyCache (copy-fixed)", ("EasyCache (copy-fixed)",)),
                                        ("LazyCache", ("LazyCache",)))}
            verdict = {}
            for lvl in map(str, FIDELITY_LEVELS):
                ours = levels["PreciseCache"][lvl]["speedup"]
                theirs = [levels[f][lvl]["speedup"] for f in ("EasyCache (copy-fixed)", "LazyCache")]
                theirs = [t for t in theirs if t is not None]
                if ours is None:
                    verdict[lvl] = "no PreciseCache point" if theirs else "no point of any method"
                elif not theirs:
                    verdict[lvl] = "above (no peer point)"
                else:
                    best = max(theirs)
                    verdict[lvl] = ("tie" if abs(ours - best) < 0.005 else "above" if ours > best
                                    else f"below by {best - ours:.2f}x ({100 * (1 - ours / best):.0f}%)")
            analysis[f"frontier_{key}_{metric}"] = {"levels": levels, "verdict": verdict}
    target_30 = {key: best_at_levels(rows, PRECISECACHE_FAMILIES, key, levels=(30.0,))["30.0"]
                 for key in ("speedup_wall", "speedup_cpu", "speedup_ideal")}
    analysis["target_2p6x_at_30dB"] = target_30
    presets = {n: get[n] for n in ("lf_a0.5", "lf_a0.7", "flash_a0.5") if n in get}
    analysis["realized_over_ideal_presets"] = {n: r["realized_over_ideal"] for n, r in presets.items()}
    analysis["realized_over_ideal_cpu_presets"] = {n: r["realized_over_ideal_cpu"] for n, r in presets.items()}
    ours = [r for r in rows if r["kind"] == "precisecache" and r["realized_over_ideal"] is not None]
    analysis["realized_over_ideal_precisecache_range"] = (
        [min(r["realized_over_ideal"] for r in ours), max(r["realized_over_ideal"] for r in ours)] if ours else None)
    if overhead:
        analysis["overhead"] = [{k: o[k] for k in ("size", "latent_shape", "overhead_pct_of_full_forward",
                                                   "overhead_pct_of_full_step", "trial_pct_of_full_forward")}
                                for o in overhead]

    def pair(a, b):
        return [_brief(get[a]), _brief(get[b])] if a in get and b in get else None

    def by_variant(pred):
        return [pair(f"lf_a{fmt(r['params']['lf']['alpha'])}", r["name"]) for r in rows if pred(r)]

    opens = {
        "a_reuse": {"baseline": "PreciseCache LFCache", "variant": "LFCache reuse=residual",
                    "pairs": by_variant(lambda r: r["name"].endswith("_residual"))},
        "b_ranking": {"baseline": "PreciseCache BlockCache", "variant": "BlockCache ranking=l2",
                      "pairs": [pair(r["name"][:-3], r["name"]) for r in rows if r["name"].endswith("_l2")]},
        "c_dmax": {"baseline": "PreciseCache LFCache",
                   "variant": next((r["family"] for r in rows if r["params"].get("variant", "").startswith("dmax")), None),
                   "pairs": by_variant(lambda r: r["params"].get("variant", "").startswith("dmax"))},
        "d_downsample": {"baseline": "PreciseCache LFCache", "variant": "LFCache avg-pool trial",
                         "pairs": by_variant(lambda r: r["params"].get("variant") == "avg_pool")},
        "e_flash_alpha": {"baseline": "PreciseCache Flash",
                          "variant": FLASH_L1_FAMILY if any(r["family"] == FLASH_L1_FAMILY for r in rows) else None,
                          "pairs": [[_brief(r)] for r in rows if r["family"] in ("PreciseCache Flash", FLASH_L1_FAMILY)]},
    }
    for key, op in opens.items():
        op["pairs"] = [p for p in op["pairs"] if p]
        if op["variant"] and op["pairs"]:
            op["frontier"] = {k: {fam: best_at_levels(rows, (fam,), k) for fam in (op["baseline"], op["variant"])}
                              for k in ("speedup_wall", "speedup_cpu", "speedup_ideal")}
    analysis["open_points"] = {k: v for k, v in opens.items() if v["pairs"]}
    easy_fixed_mut = sum(r["input_mutations"] for r in rows if r["family"] == "EasyCache (copy-fixed)")
    easy_shipped_mut = sum(r["input_mutations"] for r in rows if r["family"] == "EasyCache (as shipped)")
    ours_mut = sum(r["input_mutations"] for r in rows if r["kind"] == "precisecache")
    analysis["input_mutations"] = {"easycache_copy_fixed": easy_fixed_mut, "easycache_as_shipped": easy_shipped_mut,
                                   "precisecache": ours_mut, "lazycache": sum(
                                       r["input_mutations"] for r in rows if r["kind"] == "lazycache")}
    return analysis


def _brief(r):
    """The few numbers of a method the open-point tables show."""
    return {"name": r["name"], "label": r["label"], "speedup_wall": r["speedup_wall"], "speedup_cpu": r["speedup_cpu"],
            "speedup_ideal": r["speedup_ideal"],
            "psnr_mean": r["psnr_mean"], "psnr_worst": r["psnr_worst"], "ssim_mean": r["ssim_mean"],
            "full_forwards": r["full_forwards"], "blocks_reused": r["blocks_reused"]}


