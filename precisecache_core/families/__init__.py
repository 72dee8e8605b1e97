"""Per-family adapters (pure data): see :mod:`.base`. One file per model family."""
from .base import BlockSpec, FamilyAdapter
from .hunyuan import HUNYUAN
from .ltxv import LTXV
from .wan import WAN

FAMILIES: dict[str, FamilyAdapter] = {"wan": WAN, "hunyuan": HUNYUAN, "ltxv": LTXV}

__all__ = ["BlockSpec", "FAMILIES", "FamilyAdapter", "HUNYUAN", "LTXV", "WAN"]
