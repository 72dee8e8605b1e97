"""The pack's ComfyUI extension: the list of nodes it registers."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .blockcache_node import BlockCacheNode
from .lfcache_node import LFCacheNode
from .report_node import ReportNode
from .sampler_node import PreciseCacheSamplerNode


def _demo_nodes() -> list[type[io.ComfyNode]]:
    try:
        from .demo_nodes import DEMO_NODES
    except ImportError:
        return []
    return list(DEMO_NODES)


class PreciseCacheExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LFCacheNode, BlockCacheNode, PreciseCacheSamplerNode, ReportNode, *_demo_nodes()]


async def comfy_entrypoint() -> PreciseCacheExtension:
    return PreciseCacheExtension()
