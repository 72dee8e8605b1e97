"""What every module of the benchmark shares: the repository's paths, the models ``--model`` names,
the number format of method names, and the mean / median that skip missing values.

Standard library only: ``scripts/benchmark.py --help`` imports this without torch.
"""
from __future__ import annotations

import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST_DIR = REPO / "tests" / "host"
DEFAULT_MODEL = REPO / "models" / "precisecache_demo_wan.safetensors"
# --model shortcuts: the demo model (4 blocks, 9 frames) and the deep benchmark model (12 blocks,
# trained at 17 frames; README "The deep benchmark model")
MODEL_SHORTCUTS = {"demo": DEFAULT_MODEL, "deep": REPO / "models" / "precisecache_deep_wan.safetensors"}


def resolve_model(value: str | None) -> Path:
    """--model value -> path: None is the default demo model (its absence is handled by Bench), a
    shortcut name its file, else a path relative to the current directory or the repository, which
    must exist."""
    if value is None:
        return DEFAULT_MODEL
    if value in MODEL_SHORTCUTS:
        path = MODEL_SHORTCUTS[value]
    else:
        path = Path(value)
        if not path.is_absolute() and not path.exists() and (REPO / path).exists():
            path = REPO / path
    if not path.is_file():
        raise SystemExit(f"--model {value}: no such file {path}")
    return path


def fmt(v: float) -> str:
    """A number as method names and labels show it: 0.5, 2, 1.25."""
    return f"{v:g}"


def median(xs):
    """Median of the values that are not None; None when there are none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mean(xs):
    """Mean of the values that are not None; None when there are none."""
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None
