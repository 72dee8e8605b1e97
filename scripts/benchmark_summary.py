#!/usr/bin/env python3
"""Side-by-side summary of several benchmark runs (models × sizes × step counts).

Reads the ``results.json`` files that ``scripts/benchmark.py`` wrote (default: every
``docs/benchmark/runs/*/results.json``) and writes ``summary.md`` and ``summary.json`` next to them:

* **speed targets**: per target, the work saved that was reached (mean over pairs and the range of
  single runs), the wall-clock speed-up, PSNR / SSIM vs uncached;
* **presets**: the same rows under the preset names of ``precisecache_core.config.LFCACHE_PRESETS``;
* **peers at matched work**: EasyCache's and LazyCache's PSNR interpolated (linearly in work saved,
  within their measured sweep) at the work each target reached;
* **work at a fidelity level**: per method family, the most work saved whose mean PSNR ≥ 30 / 35 dB
  (linear interpolation between neighbouring measured points, sorted by work saved), and our ratio to
  the best peer;
* **targets** of the issues checked, each said met or missed, and by how much.

Nothing is measured here: every number comes from the result files.

    python3 scripts/benchmark_summary.py [results.json ...] [--out docs/benchmark/summary.md]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from precisecache_core.config import DEFAULT_LFCACHE_PRESET, LFCACHE_PRESETS, PRESET_FIDELITY_DB  # noqa: E402

OURS = "PreciseCache target"
PEERS = ("EasyCache (copy-fixed)", "LazyCache")
LEVELS = (30.0, 35.0)
TARGET_TOLERANCE = 0.10


def _runs(paths: list[Path]) -> list[dict]:
    runs = []
    for path in paths:
        data = json.loads(path.read_text())
        model = Path(data["meta"]["model"]["source"]).stem
        for name, scen in data["scenarios"].items():
            c = scen["config"]
            runs.append({"path": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
                         "model": model, "blocks": data["meta"].get("blocks_per_forward"),
                         "scenario": name, "size": c["size"], "frames": c["frames"], "steps": c["steps"],
                         "cfg": c["cfg"], "pairs": len(scen["pairs"]), "methods": scen["methods"]})
    return runs


def _front(rows: list[dict]) -> list[tuple[float, float]]:
    """(work saved, mean PSNR) points of a family sorted by work saved, identical runs as 99 dB."""
    pts = [(r["speedup_ideal"], r["psnr_mean"] if r["psnr_mean"] is not None else 99.0)
           for r in rows if r.get("speedup_ideal")]
    return sorted(pts)


def psnr_at_work(points: list[tuple[float, float]], work: float) -> float | None:
    """PSNR interpolated linearly at ``work`` inside the measured range, else None."""
    for (w0, p0), (w1, p1) in zip(points, points[1:]):
        if w0 <= work <= w1:
            return p0 if w1 == w0 else p0 + (p1 - p0) * (work - w0) / (w1 - w0)
    if points and math.isclose(points[-1][0], work, rel_tol=1e-3):
        return points[-1][1]
    return None


def work_at_level(points: list[tuple[float, float]], level: float) -> float | None:
    """The most work saved with mean PSNR ≥ ``level`` (interpolated on the segment that crosses it)."""
    best = None
    for w, p in points:
        if p >= level:
            best = max(best or 0.0, w)
    for (w0, p0), (w1, p1) in zip(points, points[1:]):
        if p0 >= level > p1:
            best = max(best or 0.0, w0 + (w1 - w0) * (p0 - level) / (p0 - p1))
    return best


def _target(row: dict) -> float | None:
    return (row.get("params", {}).get("lf") or {}).get("speed_target") if row["family"] == OURS else None


def _fmt(v, f="{:.2f}") -> str:
    return "–" if v is None else f.format(v)


def summarize(runs: list[dict]) -> dict:
    preset_of = {cfg.speed_target: name for name, cfg in LFCACHE_PRESETS.items()}
    out = {"runs": [], "checks": []}
    for run in runs:
        rows = run["methods"]
        fams: dict[str, list[dict]] = {}
        for r in rows:
            fams.setdefault(r["family"], []).append(r)
        targets = []
        for r in sorted((r for r in rows if _target(r)), key=_target):
            t = _target(r)
            per_run = [w for i, w in enumerate(r.get("work_speedup_per_pair") or [])
                       if i not in (r.get("stepped_aside_pairs") or [])]
            peers = {p: psnr_at_work(_front(fams.get(p, [])), r["speedup_ideal"]) for p in PEERS}
            targets.append({"target": t, "preset": preset_of.get(t), "work": r["speedup_ideal"],
                            "work_min": min(per_run, default=None), "work_max": max(per_run, default=None),
                            "stepped_aside_runs": len(r.get("stepped_aside_pairs") or []),
                            "wall": r.get("speedup_wall"), "psnr": r["psnr_mean"], "psnr_worst": r["psnr_worst"],
                            "ssim": r["ssim_mean"], "peers_psnr_at_same_work": peers})
        levels = {}
        for level in LEVELS:
            ours = work_at_level(_front(fams.get(OURS, [])), level)
            peer = {p: work_at_level(_front(fams.get(p, [])), level) for p in PEERS}
            best_peer = max((v for v in peer.values() if v), default=None)
            levels[str(level)] = {"ours": ours, "peers": peer,
                                  "ratio_to_best_peer": (ours / best_peer) if ours and best_peer else None}
        by_name = {r["name"]: r for r in rows}
        variants = []
        for r in rows:  # the decision's variants at equal work: drift metric, trial on both CFG streams
            base = by_name.get(r["name"].rsplit("_", 1)[0]) if r["family"].startswith(OURS + " (") else None
            if base is None:
                continue
            a, b = base.get("skipped_step_indices_per_pair") or [], r.get("skipped_step_indices_per_pair") or []
            agree = [sum((i in set(x)) == (i in set(y)) for i in range(run["steps"])) / run["steps"]
                     for x, y in zip(a, b)]
            variants.append({"variant": r["label"], "work": r["speedup_ideal"], "psnr": r["psnr_mean"],
                             "default_work": base["speedup_ideal"], "default_psnr": base["psnr_mean"],
                             "decision_agreement": sum(agree) / len(agree) if agree else None})
        out["runs"].append({**{k: run[k] for k in ("path", "model", "blocks", "scenario", "size", "frames",
                                                    "steps", "cfg", "pairs")},
                            "targets": targets, "work_at_level": levels, "variants": variants})
    out["checks"] = _checks(out["runs"])
    return out


def _checks(runs: list[dict]) -> list[dict]:
    checks = []
    misses = [(r["model"], r["size"], r["steps"], t["target"], t["work_min"], t["work_max"]) for r in runs
              for t in r["targets"] if t["work_min"] is not None and
              (abs(t["work_min"] / t["target"] - 1) > TARGET_TOLERANCE or
               abs(t["work_max"] / t["target"] - 1) > TARGET_TOLERANCE)]
    checks.append({"check": f"every run reaches its speed target within ±{TARGET_TOLERANCE:.0%} of work",
                   "met": not misses, "detail": f"{len(misses)} target rows outside: {misses}" if misses else
                   f"{sum(len(r['targets']) for r in runs)} target rows, every run inside"})
    for name, level in PRESET_FIDELITY_DB.items():
        target = LFCACHE_PRESETS[name].speed_target
        rows = [(r["model"], r["size"], r["steps"], t) for r in runs for t in r["targets"] if t["target"] == target]
        # a run where LFCache stepped aside computed every step: identical output (no PSNR), the level holds
        bad = [(m, s, n, t["psnr"]) for m, s, n, t in rows if t["psnr"] is not None and t["psnr"] < level]
        checks.append({"check": f"preset {name} ({target:g}x) keeps mean PSNR ≥ {level:g} dB on every setting",
                       "met": bool(rows) and not bad,
                       "detail": "; ".join(f"{m} {s}px {n} steps: {p:.1f} dB" for m, s, n, p in bad) or
                       "lowest: " + ", ".join(f"{m} {s}px {n} steps {t['psnr']:.1f} dB" for m, s, n, t in
                                              sorted((x for x in rows if x[3]["psnr"] is not None),
                                                     key=lambda x: x[3]["psnr"])[:1])})
    default = LFCACHE_PRESETS[DEFAULT_LFCACHE_PRESET].speed_target
    rows = [(r["model"], r["size"], r["steps"], t) for r in runs for t in r["targets"] if t["target"] == default]
    # as for the presets: no PSNR means an output identical to uncached (LFCache stepped aside)
    bad = [(m, s, n, round(t["work"], 2), _fmt(t["psnr"], "{:.1f}")) for m, s, n, t in rows
           if not (t["work"] >= 2.0 * (1 - TARGET_TOLERANCE) and (t["psnr"] is None or t["psnr"] >= 35.0))]
    checks.append({"check": f"default preset ({DEFAULT_LFCACHE_PRESET}, {default:g}x) saves ≥ 2x work at ≥ 35 dB mean "
                            f"on every benchmark model and setting",
                   "met": bool(rows) and not bad,
                   "detail": "; ".join(f"{m} {s}px {n} steps: {w}x at {p} dB" for m, s, n, w, p in bad) or
                   f"{len(rows)} settings, all met"})
    for level in LEVELS:
        ratios = [(r["model"], r["size"], r["steps"], r["work_at_level"][str(level)]["ratio_to_best_peer"])
                  for r in runs]
        known = [x for x in ratios if x[3] is not None]
        checks.append({"check": f"at mean PSNR ≥ {level:g} dB: ≥ 1.5x the best peer's work saved",
                       "met": bool(known) and all(x[3] >= 1.5 for x in known),
                       "detail": "; ".join(f"{m} {s}px {n} steps: {x:.2f}x" for m, s, n, x in known) or "not measured"})
    return checks


def write_markdown(summary: dict, path: Path) -> None:
    lines = ["# Benchmark summary: speed targets, presets and peers side by side", "",
             "Made by `scripts/benchmark_summary.py` from the result files listed per section; every number "
             "was measured by `scripts/benchmark.py` (CPU, in-process ComfyUI, euler/simple, CFG 5, PSNR/SSIM "
             "of decoded frames vs the uncached run of the same seed and prompt). *Work saved* = uncached "
             "forwards ÷ counted forwards (trials included), *wall* = measured wall-clock ratio to uncached runs "
             "interleaved in the same process.", ""]
    lines += ["## Targets", "", "| target | met | detail |", "|---|---|---|"]
    for c in summary["checks"]:
        lines.append(f"| {c['check']} | {'yes' if c['met'] else '**no**'} | {c['detail']} |")
    lines.append("")
    for run in summary["runs"]:
        lines += [f"## {run['model']} ({run['blocks']} blocks): {run['size']} px × {run['frames']} frames, "
                  f"{run['steps']} steps, {run['pairs']} pairs (`{run['path']}`)", "",
                  "| target (preset) | work saved: mean (runs min–max) | wall | PSNR mean / worst | SSIM | "
                  "EasyCache PSNR at same work | LazyCache PSNR at same work |", "|---|---|---|---|---|---|---|"]
        for t in run["targets"]:
            name = f"{t['target']:g}x" + (f" ({t['preset']})" if t["preset"] else "")
            aside = f", {t['stepped_aside_runs']} run(s) stepped aside" if t["stepped_aside_runs"] else ""
            peers = t["peers_psnr_at_same_work"]
            lines.append(f"| {name} | {_fmt(t['work'])}x ({_fmt(t['work_min'])}–{_fmt(t['work_max'])}{aside}) | "
                         f"{_fmt(t['wall'])}x | {_fmt(t['psnr'], '{:.1f}')} / {_fmt(t['psnr_worst'], '{:.1f}')} dB | "
                         f"{_fmt(t['ssim'], '{:.4f}')} | {_fmt(peers.get(PEERS[0]), '{:.1f}')} | "
                         f"{_fmt(peers.get(PEERS[1]), '{:.1f}')} |")
        lines += ["", "| mean PSNR ≥ | PreciseCache target: work saved | EasyCache | LazyCache | ours ÷ best peer |",
                  "|---|---|---|---|---|"]
        for level, v in run["work_at_level"].items():
            lines.append(f"| {float(level):g} dB | {_fmt(v['ours'])}x | {_fmt(v['peers'].get(PEERS[0]))}x | "
                         f"{_fmt(v['peers'].get(PEERS[1]))}x | {_fmt(v['ratio_to_best_peer'])} |")
        if run["variants"]:
            lines += ["", "| decision variant (vs the default at the same target) | work saved | PSNR | default: work, PSNR "
                      "| steps decided alike |", "|---|---|---|---|---|"]
            for v in run["variants"]:
                lines.append(f"| {v['variant']} | {_fmt(v['work'])}x | {_fmt(v['psnr'], '{:.1f}')} dB | "
                             f"{_fmt(v['default_work'])}x, {_fmt(v['default_psnr'], '{:.1f}')} dB | "
                             f"{_fmt(v['decision_agreement'] and 100 * v['decision_agreement'], '{:.0f}')} % |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmark" / "summary.md")
    args = ap.parse_args(argv)
    paths = args.results or sorted((REPO / "docs" / "benchmark" / "runs").glob("*/results.json"))
    if not paths:
        raise SystemExit("no results.json given or found under docs/benchmark/runs/")
    summary = summarize(_runs([p.resolve() for p in paths]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_markdown(summary, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    for c in summary["checks"]:
        print(f"{'MET ' if c['met'] else 'MISS'} {c['check']}: {c['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
