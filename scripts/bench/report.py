"""What the benchmark writes: ``results.json`` (``write_results``: JSON without NaN / infinity),
``results.md`` (``write_markdown``: the method table, trial agreement, analysis and overhead tables),
``speedup_vs_psnr[_<scenario>].png`` (Pareto curves per method family, wall clock and counted work),
``open_points[_<scenario>].png``, and the console summary (``print_summary``).
"""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

from .common import REPO
from .methods import FLASH_L1_FAMILY, FLASH_TARGET_FAMILIES, MAIN_FAMILIES
from .metrics import FIDELITY_LEVELS, pareto


def _n(v, fmt="{:.2f}", none="–"):
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return fmt.format(v)


def method_table(rows) -> list[str]:
    """The per-method table of a scenario (Markdown lines)."""
    lines = ["| method | full fwd | trial fwd | blocks computed / reused | cache KiB | wall ratio | speedup wall | "
             "speedup CPU time | speedup counted | realized ÷ ideal (wall) | PSNR mean | PSNR worst | SSIM mean | "
             "SSIM worst | counts |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        psnr_mean = "∞ (identical)" if r["psnr_identical"] else _n(r["psnr_mean"])
        psnr_worst = "∞" if r["psnr_identical"] else _n(r["psnr_worst"])
        checks = ", ".join(r["count_check"])
        if r["input_mutations"]:
            checks += f"; input modified in {r['input_mutations']} calls"
        lines.append(
            f"| {r['label']} | {_n(r['full_forwards'], '{:.1f}')} | {_n(r['trial_forwards'], '{:.1f}')} | "
            f"{_n(r['blocks_computed'], '{:.0f}')} / {_n(r['blocks_reused'], '{:.0f}')} | "
            f"{_n(r['cache_bytes'] / 1024, '{:.0f}')} | {_n(r['wall_ratio_median'], '{:.3f}')} | "
            f"{_n(r['speedup_wall'])}x | {_n(r['speedup_cpu'])}x | {_n(r['speedup_ideal'])}x | "
            f"{_n(r['realized_over_ideal'])} | "
            f"{psnr_mean} | {psnr_worst} | {_n(r['ssim_mean'], '{:.4f}')} | {_n(r['ssim_worst'], '{:.4f}')} | {checks} |")
    return lines


def analysis_lines(an: dict) -> list[str]:
    """A scenario's analysis as Markdown: best speedup per fidelity level, the open points, the input check."""
    lines = []
    if an:
        lines += ["### Best speedup per fidelity level (mean PSNR ≥ level)", ""]
        for key in ("speedup_wall", "speedup_cpu", "speedup_ideal"):
            fr = an[f"frontier_{key}_psnr_mean"]
            title = {"speedup_wall": "Wall-clock", "speedup_cpu": "CPU-time", "speedup_ideal": "Counted-work"}[key]
            lines += [f"{title} speedup:", "",
                      "| PSNR ≥ | PreciseCache | EasyCache (copy-fixed) | LazyCache | PreciseCache vs peers |",
                      "|---:|---|---|---|---|"]
            for lvl in map(str, FIDELITY_LEVELS):
                cells = []
                for fam in ("PreciseCache", "EasyCache (copy-fixed)", "LazyCache"):
                    b = fr["levels"][fam][lvl]
                    cells.append(f"{_n(b['speedup'])}x ({b['method']})" if b["speedup"] else "–")
                lines.append(f"| {lvl} dB | " + " | ".join(cells) + f" | {fr['verdict'][lvl]} |")
            lines.append("")
        t = an["target_2p6x_at_30dB"]
        lines += [f"Best PreciseCache speedup at mean PSNR ≥ 30 dB: wall {_n(t['speedup_wall']['speedup'])}x "
                  f"({t['speedup_wall']['method']}), CPU time {_n(t['speedup_cpu']['speedup'])}x "
                  f"({t['speedup_cpu']['method']}), counted {_n(t['speedup_ideal']['speedup'])}x "
                  f"({t['speedup_ideal']['method']}).", ""]
        ops = an.get("open_points") or {}
        if ops:
            lines += ["### Open points (pairs: same settings but the one choice)", "",
                      "| point | setting | speedup wall | speedup CPU | speedup counted | PSNR mean | PSNR worst | SSIM mean | "
                      "full fwd | blocks reused |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for key, op in ops.items():
                for group in op["pairs"]:
                    for b in group:
                        lines.append(f"| {key} | {b['label']} | {_n(b['speedup_wall'])}x | {_n(b['speedup_cpu'])}x | "
                                     f"{_n(b['speedup_ideal'])}x | "
                                     f"{_n(b['psnr_mean'])} | {_n(b['psnr_worst'])} | {_n(b['ssim_mean'], '{:.4f}')} | "
                                     f"{_n(b['full_forwards'], '{:.1f}')} | {_n(b['blocks_reused'], '{:.1f}')} |")
            lines += ["", "Best speedup at mean PSNR ≥ level, baseline family vs variant family:", "",
                      "| point | speed | family | " + " | ".join(f"≥{lvl:g}" for lvl in FIDELITY_LEVELS) + " |",
                      "|---|---|---|" + "---:|" * len(FIDELITY_LEVELS)]
            for key, op in ops.items():
                for k, fams in (op.get("frontier") or {}).items():
                    for fam, levels in fams.items():
                        cells = [_n(levels[str(lvl)]["speedup"]) for lvl in FIDELITY_LEVELS]
                        lines.append(f"| {key} | {k.replace('speedup_', '').replace('ideal', 'counted')} | {fam} | "
                                     + " | ".join(cells) + " |")
            lines.append("")
        mut = an["input_mutations"]
        lines += [f"Calls whose apply_model input was modified in place: EasyCache copy-fixed {mut['easycache_copy_fixed']}, "
                  f"EasyCache as shipped {mut['easycache_as_shipped']}, LazyCache {mut['lazycache']}, "
                  f"PreciseCache {mut['precisecache']}.", ""]
    return lines


def write_markdown(results: dict, path: Path) -> None:
    """results.md: per scenario the method table, trial agreement and analysis; the overhead table."""
    meta = results["meta"]
    lines = ["# PreciseCache benchmark results", "",
             f"Generated by `{meta['command']}` on {meta['date']} (commit {meta['git_commit']}), "
             f"{meta['runtime_seconds'] / 60:.1f} min. Model: {meta['model']['source']} "
             f"({'trained demo model' if meta['model']['trained'] else 'RANDOM weights'}"
             + (f", training step {meta['model']['training'].get('step')}" if meta['model']['training'] else "")
             + f"). CPU, {meta['threads']} thread(s), torch {meta['torch']}, ComfyUI {meta['comfyui_version']}.", ""]
    for name, scen in results["scenarios"].items():
        c = scen["config"]
        lines += [f"## Scenario `{name}`: latent {tuple(c['latent_shape'])} ({c['size']}x{c['size']} px, "
                  f"{c['frames']} frames), euler/simple, {c['steps']} steps, CFG {c['cfg']}, "
                  f"{len(scen['pairs'])} seed x condition pairs, {c['repeats']} timing repeat(s)", ""]
        lines += ["Counts are means per run over the pairs; wall ratio = median over rounds of (method time ÷ "
                  "uncached time in the same round); speedup CPU time = the same with the process's CPU time "
                  "(less sensitive to other jobs on the machine); speedup counted = uncached forwards ÷ (full + trial work − "
                  "reused blocks ÷ blocks per forward; trial work: per trial, its token ratio × its share of the "
                  "step's batch); PSNR/SSIM of decoded frames vs the uncached output "
                  "(worst = lowest over pairs).", ""]
        lines += method_table(scen["methods"])
        if scen.get("determinism_failures"):
            lines += ["", f"**Non-deterministic repeats:** {scen['determinism_failures']}"]
        if scen.get("easycache_wrapper_order"):
            orders = {tuple(v) for v in scen["easycache_wrapper_order"].values()}
            lines += ["", "DIFFUSION_MODEL wrapper order (outermost first) of the EasyCache runs: " +
                      "; ".join(" → ".join(o) for o in sorted(orders))]
        lines.append("")
        ta = scen.get("trial_agreement")
        if ta:
            lines += [f"### Trial vs full-resolution LFD (uncached trajectories, {ta['pairs']} pairs, trial factors "
                      f"{'x'.join(map(str, ta['factors']))})", "",
                      "| trial operator | Spearman(Δ̃, Δ_full) mean | min | " +
                      " | ".join(f"decision agreement α={a:g}" for a in ta["alphas"]) + " | trial input std at step 0 |",
                      "|---|---:|---:|" + "---:|" * len(ta["alphas"]) + "---:|"]
            for name, o in ta["operators"].items():
                lines.append(f"| {name} | {o['spearman_mean']:.3f} | {o['spearman_min']:.3f} | " +
                             " | ".join(f"{100 * v:.1f}%" for v in o["decision_agreement_mean"].values()) +
                             f" | {o['trial_input_std_first_step']:.3f} (full: {ta['full_input_std_first_step']:.3f}) |")
            lines.append("")
        lines += analysis_lines(scen.get("analysis") or {})
    if results.get("overhead"):
        lines += ["## Trial + decision overhead (LFCache, measured inside the sampling path)", "",
                  "| latent | tokens | full forward ms | trial forward ms | pooling + LFD + bookkeeping ms | "
                  "LFD alone ms | overhead % of full forward | % of full step (uncached step wall) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for o in results["overhead"]:
            lines.append(f"| {tuple(o['latent_shape'])} | {o['tokens_full']} | {o['full_forward_ms']:.1f} | "
                         f"{o['trial_forward_ms']:.1f} | {o['wrapper_extra_ms']:.2f} | {o['lfd_ms']:.3f} | "
                         f"{o['overhead_pct_of_full_forward']:.1f} | {o['overhead_pct_of_full_step']:.1f} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def write_plots(results: dict, out_dir: Path) -> list[str]:
    """The plots of every scenario into ``out_dir``; their file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for scen_name, scen in results["scenarios"].items():
        written += _plot_scenario(plt, results, scen_name, scen, out_dir)
    return written


def _psnr_for_plot(row):
    """Mean PSNR, with identical outputs drawn at 60 dB."""
    return 60.0 if row["psnr_identical"] else row["psnr_mean"]


def _plot_scenario(plt, results, scen_name, main, out_dir) -> list[str]:
    """speedup_vs_psnr[_<scenario>].png, and open_points[_<scenario>].png where the scenario has variants."""
    written = []
    suffix = "" if scen_name == "main" else f"_{scen_name}"
    rows = main["methods"]
    styles = {
        "PreciseCache LFCache": ("tab:blue", "o", "-"), "PreciseCache Flash": ("tab:purple", "D", "-"),
        "PreciseCache BlockCache": ("tab:cyan", "s", "-"), "EasyCache (copy-fixed)": ("tab:orange", "^", "-"),
        "LazyCache": ("tab:green", "v", "-"), "EasyCache (as shipped)": ("tab:red", "x", ":"),
        "LFCache reuse=residual": ("tab:brown", "o", "--"), "BlockCache ranking=l2": ("tab:gray", "s", "--"),
        "Flash ranking=l2": ("tab:pink", "D", "--"), "LFCache avg-pool trial": ("olive", "o", "--"),
        FLASH_L1_FAMILY: ("tab:red", "D", "--"),
        FLASH_TARGET_FAMILIES[0]: ("indigo", "P", "-"), FLASH_TARGET_FAMILIES[1]: ("crimson", "*", "-"),
    }

    def draw(ax, families, key, title):
        unc = [r for r in rows if r["name"] == "uncached"]
        for fam in families:
            pts = [(r[key], _psnr_for_plot(r), r["name"]) for r in rows if r["family"] == fam
                   and r[key] is not None and _psnr_for_plot(r) is not None]
            if not pts:
                continue
            colour, marker, ls = styles.get(fam, ("black", "o", "--"))
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            ax.scatter(xs, ys, color=colour, marker=marker, s=28, alpha=0.55)
            worst = [r for r in rows if r["family"] == fam and r[key] is not None and r["psnr_worst"] is not None]
            for r in worst:
                ax.plot([r[key], r[key]], [r["psnr_worst"], r["psnr_mean"]], color=colour, lw=0.6, alpha=0.35)
            front = pareto(pts)
            ax.plot([p[0] for p in front], [p[1] for p in front], color=colour, ls=ls, lw=1.8, label=fam,
                    marker=marker, ms=5)
        if unc:
            ax.scatter([1.0], [60.0], color="black", marker="*", s=90, label="uncached (identical)", zorder=5)
        ax.axhline(30, color="gray", lw=0.8, ls=":")
        ax.axvline(2.6, color="gray", lw=0.8, ls=":")
        ax.set_xlabel(title)
        ax.set_ylabel("PSNR vs uncached, dB (mean over pairs; thin line down to worst)")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=max(0.0, min([_psnr_for_plot(r) or 60 for r in rows if r["family"] in families]
                                        + [r["psnr_worst"] or 60 for r in rows if r["family"] in families]) - 2),
                    top=62)
        ax.legend(fontsize=7, loc="upper right")

    c = main["config"]
    meta = results["meta"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    draw(axes[0], MAIN_FAMILIES, "speedup_wall", "speedup, wall clock (median ratio to interleaved uncached runs)")
    draw(axes[1], MAIN_FAMILIES, "speedup_ideal", "speedup, counted work (forwards, trials × token ratio, blocks)")
    fig.suptitle(f"Speedup vs fidelity, Pareto front per family: tiny trained Wan 2.1 "
                 f"({'demo model' if meta['model']['trained'] else 'RANDOM weights'}), CPU, latent "
                 f"{tuple(c['latent_shape'])}, {c['steps']} euler steps, CFG {c['cfg']}, {len(main['pairs'])} pairs "
                 f"(PSNR = 60 plotted for identical)", fontsize=9)
    fig.tight_layout()
    p = out_dir / f"speedup_vs_psnr{suffix}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p.name)

    open_fams = [f for f in dict.fromkeys(r["family"] for r in rows)
                 if f not in MAIN_FAMILIES and f != "uncached"]
    if open_fams:
        fig, axes = plt.subplots(1, 2, figsize=(14, 6))
        fams = ["PreciseCache LFCache", "PreciseCache Flash", "PreciseCache BlockCache"] + open_fams
        draw(axes[0], fams, "speedup_wall", "speedup, wall clock")
        draw(axes[1], fams, "speedup_ideal", "speedup, counted work")
        fig.suptitle("Open points: reuse mode (a), ranking norm (b), Δmax definition (c), trial downsampling (d), "
                     "Flash α (e)", fontsize=9)
        fig.tight_layout()
        p = out_dir / f"open_points{suffix}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p.name)
    return written


def _json_clean(v):
    """``v`` with non-finite floats as None (JSON has no NaN / infinity) and every key a string."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    return v


def git_commit() -> str:
    """The repository's short commit, "?" when git cannot tell."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def write_results(results: dict, out_dir: Path) -> list[Path]:
    """results.json, results.md and the plots into ``out_dir``; the paths written."""
    (out_dir / "results.json").write_text(json.dumps(_json_clean(results), indent=1, allow_nan=False) + "\n")
    write_markdown(results, out_dir / "results.md")
    pngs = write_plots(results, out_dir)
    return [out_dir / "results.json", out_dir / "results.md", *(out_dir / p for p in pngs)]


def print_summary(results: dict, log=print) -> None:
    """One line per method and scenario: counts, speedups, fidelity."""
    for name, scen in results["scenarios"].items():
        log(f"\n== scenario {name}: latent {tuple(scen['config']['latent_shape'])} ==")
        log(f"{'method':52s} {'full':>6s} {'trial':>6s} {'blk re':>7s} {'wall x':>7s} {'cpu x':>7s} {'ideal x':>7s} "
            f"{'r/i':>5s} {'PSNR':>7s} {'worst':>7s} {'SSIM':>7s}")
        for r in scen["methods"]:
            psnr = "inf" if r["psnr_identical"] else _n(r["psnr_mean"])
            worst = "inf" if r["psnr_identical"] else _n(r["psnr_worst"])
            log(f"{r['label'][:52]:52s} {r['full_forwards']:6.1f} {r['trial_forwards']:6.1f} {r['blocks_reused']:7.1f} "
                f"{_n(r['speedup_wall']):>7s} {_n(r['speedup_cpu']):>7s} {_n(r['speedup_ideal']):>7s} "
                f"{_n(r['realized_over_ideal']):>5s} "
                f"{psnr:>7s} {worst:>7s} {r['ssim_mean']:7.4f}")

