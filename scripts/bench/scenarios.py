"""What the benchmark samples: a scenario's latent size, steps, CFG and pairs, and the sweeps of
settings its methods are built from (``ScenarioConfig``); the scenarios of a command line
(``scenario_configs``: ``--smoke``, or ``main``, ``large``, ``xl``); the ``(seed, condition)`` pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

# demo vocabulary indices used for the pairs, spread over shapes, motions, backgrounds, camera pans
PAIR_CONDITIONS = (0, 2, 4, 6, 7, 8, 9, 11, 1, 3, 5, 10)


@dataclass
class ScenarioConfig:
    name: str
    size: int = 128
    frames: int = 9
    steps: int = 50
    cfg: float = 5.0
    pairs: int = 8
    repeats: int = 2
    alphas: tuple = (0.2, 0.3, 0.5, 0.7, 1.0, 1.25, 1.5, 2.0)
    targets: tuple = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
    drift_targets: tuple = (2.0, 3.0)
    all_stream_targets: tuple = (2.0, 3.0)
    flash_alphas: tuple = (0.3, 0.5, 0.7, 1.0)
    flash_targets: tuple = ((2.0, 0.4, 3),)
    """Static Flash on a speed target: (target, c, L)."""
    guided: tuple = ((2.0, 0.02, 0.0, 3),)
    """Trial-guided Flash: (target, τ, c, L)."""
    blocks: tuple = ((0.4, 3), (0.6, 3), (0.4, 1))
    easy_thresholds: tuple = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    lazy_thresholds: tuple = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    easy_shipped_thresholds: tuple = (0.1, 0.2)
    open_points: bool = True
    open_alphas: tuple = (0.5, 0.7, 1.0)
    dmax_first_k: int = 5
    avg_pool_alphas: tuple = (0.5, 0.7, 1.0, 1.5, 2.0)
    flash_l1_alphas: tuple = (0.5, 0.7)
    trial_agreement: bool = True
    only: tuple = ()

    @property
    def latent_shape(self) -> tuple:
        """Wan 2.1's latent of ``frames`` frames of ``size`` x ``size`` px (the demo's stand-in VAE)."""
        from precisecache_demo import latent_map
        side = self.size // latent_map.SPATIAL
        return (1, latent_map.LATENT_CHANNELS, latent_map.latent_frames(self.frames), side, side)


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def _flash_specs(text: str) -> tuple:
    """'2:0.4:3,2:0.1:0:20' → ((2.0, 0.4, 3), (2.0, 0.1, 0.0, 20)): target:c:L (static) or target:τ:c:L."""
    specs = []
    for item in (t for t in text.split(",") if t.strip()):
        v = [float(x) for x in item.split(":")]
        specs.append((*v[:-1], int(v[-1])))
    return tuple(specs)


def scenario_configs(args) -> list[ScenarioConfig]:
    """The scenarios of ``scripts/benchmark.py``'s parsed arguments."""
    only = tuple(s for s in (args.methods or "").split(",") if s)
    if args.smoke:
        return [ScenarioConfig("main", size=64, frames=args.frames or 9, steps=12, cfg=args.cfg, pairs=2, repeats=1,
                               alphas=(0.5, 1.5), targets=(2.0,), drift_targets=(), all_stream_targets=(),
                               flash_alphas=(0.5,), blocks=((0.4, 3),), flash_targets=(), guided=(),
                               easy_thresholds=(0.2,), lazy_thresholds=(0.2,), easy_shipped_thresholds=(0.2,),
                               open_points=False, avg_pool_alphas=(), only=only)]
    out = []
    names = [s for s in args.scenarios.split(",") if s]
    for name in names:
        if name == "main":
            out.append(ScenarioConfig("main", size=args.size, frames=args.frames, steps=args.steps, cfg=args.cfg,
                                      pairs=args.pairs, repeats=args.repeats, alphas=tuple(_floats(args.alphas)),
                                      flash_alphas=tuple(_floats(args.flash_alphas)),
                                      flash_targets=_flash_specs(args.flash_targets), guided=_flash_specs(args.guided),
                                      easy_thresholds=tuple(_floats(args.easy_thresholds)),
                                      lazy_thresholds=tuple(_floats(args.lazy_thresholds)),
                                      easy_shipped_thresholds=tuple(_floats(args.easy_shipped_thresholds)),
                                      open_points=not args.no_open_points, dmax_first_k=args.dmax_first_k, only=only))
        elif name == "large":
            out.append(ScenarioConfig("large", size=args.large_size, frames=args.frames, steps=args.steps,
                                      cfg=args.cfg, pairs=args.large_pairs, repeats=args.large_repeats,
                                      alphas=(0.5, 0.7, 1.0, 1.5), targets=(1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0), drift_targets=(),
                                      all_stream_targets=(), flash_alphas=(0.5,), blocks=((0.4, 3),),
                                      flash_targets=_flash_specs(args.flash_targets), guided=_flash_specs(args.guided),
                                      easy_thresholds=(0.05, 0.1, 0.2, 0.3, 0.5),
                                      lazy_thresholds=(0.05, 0.1, 0.2, 0.3, 0.5),
                                      easy_shipped_thresholds=(), open_points=False, avg_pool_alphas=(),
                                      trial_agreement=False, only=only))
        elif name == "xl":
            out.append(ScenarioConfig("xl", size=args.xl_size, frames=args.xl_frames, steps=args.steps,
                                      cfg=args.cfg, pairs=args.xl_pairs, repeats=1,
                                      alphas=(0.5, 0.7, 1.0), flash_alphas=(), blocks=(), flash_targets=(), guided=(),
                                      easy_thresholds=(0.2, 0.3), lazy_thresholds=(0.2, 0.3),
                                      easy_shipped_thresholds=(), open_points=False, avg_pool_alphas=(0.5, 0.7, 1.0),
                                      trial_agreement=False, only=only))
        else:
            raise SystemExit(f"unknown scenario {name!r} (main, large, xl)")
    return out


def pairs_for(n: int) -> list[tuple[int, str]]:
    """The first ``n`` (seed, condition) pairs: seeds 100, 101, ..., conditions spread over the vocabulary."""
    from precisecache_demo import conditioning
    vocab = conditioning.VOCABULARY
    return [(100 + i, vocab[PAIR_CONDITIONS[i % len(PAIR_CONDITIONS)]]) for i in range(n)]
