"""What the benchmark compares: one ``Method`` per cache setting, and ``build_methods`` (a scenario's
sweeps → its methods).

Methods: uncached; LFCache α sweep (Base α 0.5, Turbo α 0.7 among them) and speed targets (with the
pack's preset names); BlockCache alone; Flash (LFCache + BlockCache) α sweep and on a speed target,
static or trial-guided; ComfyUI's EasyCache and LazyCache (their nodes' ``execute``) with a threshold
sweep; and the variants that settle the paper's open points:

  (a) ``reuse='residual'`` vs ``'output'`` on skipped steps           (LFCacheConfig.reuse)
  (b) BlockCache ranking ``'l2'`` vs ``'relative_l2'``                   (BlockCacheConfig.ranking)
  (c) Δ̃_max = max over the first k steps instead of the running max   (StepDecider subclass, patched
      into the pack's ``precisecache_core.step_policy`` for those runs only: ``runner.Bench.variant``)
  (d) average pooling instead of the default strided subsampling for the trial (LFCacheConfig.
      trial_operator; measured, as the default was chosen by this benchmark)
  (e) Flash's α                                                          (Flash α sweep)

A method's ``family`` is its curve in the plots and its group in the analysis; the families are named here.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .common import REPO, fmt
from .scenarios import ScenarioConfig

FLASH_TARGET_FAMILIES = ("PreciseCache Flash (target, static)", "PreciseCache Flash (target, trial-guided)")
PRECISECACHE_FAMILIES = (*FLASH_TARGET_FAMILIES, "PreciseCache target", "PreciseCache LFCache", "PreciseCache Flash",
                         "PreciseCache BlockCache")
MAIN_FAMILIES = (*PRECISECACHE_FAMILIES, "EasyCache (copy-fixed)", "LazyCache", "EasyCache (as shipped)")
PEER_WINDOW = (0.15, 0.95)
"""start_percent, end_percent of every EasyCache / LazyCache run."""


@dataclass
class Method:
    name: str
    label: str
    family: str
    kind: str                       # uncached | precisecache | easycache | lazycache
    groups: tuple = ("main",)
    lf: dict | None = None          # LFCacheConfig fields
    block: dict | None = None       # BlockCacheConfig fields
    variant: str | None = None      # in-process prototype: "dmax_first<k>" | "avg_pool" (a config choice)
    threshold: float | None = None  # EasyCache / LazyCache reuse_threshold
    copy_fix: bool = False          # EasyCache: protect the input with an outer cloning wrapper

    def params(self) -> dict:
        out = {}
        if self.lf is not None:
            out["lf"] = self.lf
        if self.block is not None:
            out["block"] = self.block
        if self.variant:
            out["variant"] = self.variant
        if self.threshold is not None:
            out["reuse_threshold"] = self.threshold
            out["start_percent"], out["end_percent"] = PEER_WINDOW
            out["copy_fix"] = self.copy_fix
        return out


def _pack_config():
    """The pack's ``precisecache_core.config`` (pure-torch core, imported as a package)."""
    sys.path.insert(0, str(REPO))
    from precisecache_core import config
    return config


_CONFIG = _pack_config()
FLASH_BLOCK = {"pivotal_ratio": _CONFIG.FLASH_BLOCKCACHE.pivotal_ratio,
               "refresh_interval": _CONFIG.FLASH_BLOCKCACHE.refresh_interval}
"""The paper's Flash BlockCache setting (c = 40 %, L = 3), from the pack's preset."""
RANKING = _CONFIG.FLASH_BLOCKCACHE.ranking
"""BlockCache's block ranking in every method but the open point's ranking=l2 ones (the pack's: relative_l2)."""
FLASH_L1_FAMILY = f"Flash c={fmt(FLASH_BLOCK['pivotal_ratio'])} L=1"
"""Open point e: the Flash preset with BlockCache refreshing every other computed step."""
FLASH_PRESET_ALPHA = _CONFIG.PAPER_BASE.alpha
"""α of the paper's Flash preset (LFCache Base + BlockCache)."""
PRESET_NAMES = {0.5: "paper's Base", 0.7: "paper's Turbo"}
TARGET_PRESET_NAMES = {config.speed_target: name for name, config in _CONFIG.LFCACHE_PRESETS.items()}
"""speed target → preset name, from the pack's own presets."""


def lf_method(alpha, reuse="output", variant=None, groups=("main",), family="PreciseCache LFCache", tag=""):
    preset = PRESET_NAMES.get(alpha)
    label = f"LFCache α={fmt(alpha)}" + (f" ({preset})" if preset and not tag else "") + tag
    name = f"lf_a{fmt(alpha)}" + ("" if reuse == "output" else f"_{reuse}") + (f"_{variant}" if variant else "")
    return Method(name, label, family, "precisecache", groups, lf={"alpha": alpha, "reuse": reuse,
                  "trial_operator": "avg_pool" if variant == "avg_pool" else "strided"}, variant=variant)


def target_method(target, metric="accumulated", streams="cond", groups=("main",), family=None):
    preset = TARGET_PRESET_NAMES.get(target) if (metric, streams) == ("accumulated", "cond") else None
    variant = [v for v in (metric if metric != "accumulated" else "", "all-stream trial" if streams == "all" else "") if v]
    name = f"target_{fmt(target)}" + "".join(f"_{v.split()[0].split('-')[0]}" for v in variant)
    label = f"LFCache target {fmt(target)}x" + "".join(f", {v}" for v in variant) + (f" ({preset})" if preset else "")
    return Method(name, label, family or "PreciseCache target" + (f" ({', '.join(variant)})" if variant else ""),
                  "precisecache", groups, lf={"speed_target": target, "metric": metric, "trial_streams": streams})


def flash_method(alpha, ranking=RANKING, groups=("main",), family="PreciseCache Flash"):
    preset = alpha == FLASH_PRESET_ALPHA and ranking == RANKING
    tag = " (Flash preset)" if preset else ""
    rank = "" if ranking == RANKING else f", ranking={ranking}"
    name = f"flash_a{fmt(alpha)}" + ("" if ranking == RANKING else f"_{ranking}")
    return Method(name, f"Flash α={fmt(alpha)}{rank}{tag}", family, "precisecache", groups,
                  lf={"alpha": alpha}, block={**FLASH_BLOCK, "ranking": ranking})


def flash_target_method(target, pivotal, interval, threshold=None, groups=("main",)):
    """LFCache speed target + BlockCache, static (the paper's top-c % / L) or trial-guided (``threshold`` τ)."""
    guided = threshold is not None
    name = f"flash_t{fmt(target)}" + (f"_tg{fmt(threshold)}" if guided else "") + f"_c{fmt(pivotal)}_L{interval}"
    rule = f"trial-guided τ={fmt(threshold)}" if guided else "static"
    block = {"pivotal_ratio": pivotal, "refresh_interval": interval, "mode": "trial_guided" if guided else "static",
             **({"change_threshold": threshold} if guided else {})}
    return Method(name, f"Flash target {fmt(target)}x + BlockCache {rule} c={fmt(pivotal)} L={interval}",
                  FLASH_TARGET_FAMILIES[guided], "precisecache", groups, lf={"speed_target": target}, block=block)


def block_method(pivotal, interval, ranking=RANKING, groups=("main",), family="PreciseCache BlockCache"):
    name = f"block_c{fmt(pivotal)}_L{interval}" + ("" if ranking == RANKING else f"_{ranking}")
    rank = "" if ranking == RANKING else f", ranking={ranking}"
    return Method(name, f"BlockCache c={fmt(pivotal)} L={interval}{rank}", family, "precisecache", groups,
                  block={"pivotal_ratio": pivotal, "refresh_interval": interval, "ranking": ranking})


def easy_method(threshold, copy_fix=True, groups=("main",)):
    if copy_fix:
        return Method(f"easy_fixed_t{fmt(threshold)}", f"EasyCache t={fmt(threshold)} (copy-fixed)",
                      "EasyCache (copy-fixed)", "easycache", groups, threshold=threshold, copy_fix=True)
    return Method(f"easy_shipped_t{fmt(threshold)}", f"EasyCache t={fmt(threshold)} (as shipped, reference)",
                  "EasyCache (as shipped)", "easycache", groups, threshold=threshold, copy_fix=False)


def lazy_method(threshold, groups=("main",)):
    return Method(f"lazy_t{fmt(threshold)}", f"LazyCache t={fmt(threshold)}", "LazyCache", "lazycache", groups,
                  threshold=threshold)


def build_methods(cfg: ScenarioConfig) -> list[Method]:
    methods = [Method("uncached", "uncached", "uncached", "uncached")]
    methods += [lf_method(a) for a in cfg.alphas]
    methods += [target_method(t) for t in cfg.targets]
    methods += [target_method(t, metric="drift", groups=("drift",)) for t in cfg.drift_targets]
    methods += [target_method(t, streams="all", groups=("streams",)) for t in cfg.all_stream_targets]
    methods += [block_method(c, L) for c, L in cfg.blocks]
    methods += [flash_method(a, groups=("main", "open_e")) for a in cfg.flash_alphas]
    methods += [flash_target_method(t, c, L) for t, c, L in cfg.flash_targets]
    methods += [flash_target_method(t, c, L, threshold=tau) for t, tau, c, L in cfg.guided]
    methods += [easy_method(t) for t in cfg.easy_thresholds]
    methods += [lazy_method(t) for t in cfg.lazy_thresholds]
    methods += [easy_method(t, copy_fix=False, groups=("reference",)) for t in cfg.easy_shipped_thresholds]
    avg_pool = [lf_method(a, variant="avg_pool", groups=("open_d",), family="LFCache avg-pool trial",
                          tag=", avg-pool trial") for a in cfg.avg_pool_alphas]
    if not cfg.open_points:  # only the trial operator (open point d), where asked for
        methods += avg_pool
    if cfg.open_points:
        oa = cfg.open_alphas
        methods += [lf_method(a, reuse="residual", groups=("open_a",), family="LFCache reuse=residual",
                              tag=", reuse=residual") for a in oa]
        methods += [block_method(c, L, ranking="l2", groups=("open_b",),
                                 family="BlockCache ranking=l2") for c, L in cfg.blocks]
        if FLASH_PRESET_ALPHA in cfg.flash_alphas:
            methods += [flash_method(FLASH_PRESET_ALPHA, ranking="l2", groups=("open_b",), family="Flash ranking=l2")]
        k = cfg.dmax_first_k
        methods += [lf_method(a, variant=f"dmax_first{k}", groups=("open_c",), family=f"LFCache Δmax=max(first {k})",
                              tag=f", Δmax=max(first {k})") for a in oa]
        methods += avg_pool
        methods += [Method(f"flash_a{fmt(a)}_L1", f"Flash α={fmt(a)}, BlockCache L=1", FLASH_L1_FAMILY,
                           "precisecache", ("open_e",), lf={"alpha": a},
                           block={**FLASH_BLOCK, "refresh_interval": 1, "ranking": RANKING})
                    for a in cfg.flash_l1_alphas]
    seen = set()
    unique = []
    for m in methods:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    if cfg.only:
        keep = set(cfg.only) | {"uncached"}
        unknown = set(cfg.only) - {m.name for m in unique}
        if unknown:
            raise SystemExit(f"unknown method(s) {sorted(unknown)}; known: {[m.name for m in unique]}")
        unique = [m for m in unique if m.name in keep]
    return unique

