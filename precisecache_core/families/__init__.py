"""Per-family adapters (pure data): see :mod:`.base`. One file per model family."""
from .base import BlockSpec, FamilyAdapter
from .hunyuan import HUNYUAN
from .hunyuan15 import HUNYUAN15
from .ltxv import LTXV
from .wan import WAN

FAMILIES: dict[str, FamilyAdapter] = {"wan": WAN, "hunyuan": HUNYUAN, "hunyuan15": HUNYUAN15, "ltxv": LTXV}

__all__ = ["BlockSpec", "FAMILIES", "FamilyAdapter", "HUNYUAN", "HUNYUAN15", "LTXV", "WAN"]
