"""The pack's ComfyUI extension: the list of nodes it registers."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import ComfyExtension, io

from .blockcache_node import BlockCacheNode
from .calibrate_node import CalibrateNode
from .demo_nodes import DEMO_NODES
from .lfcache_node import LFCacheNode
from .ray_nodes import ray_nodes
from .report_node import ReportNode
from .sampler_node import PreciseCacheSamplerNode


DEMO_MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def register_demo_model_folder() -> None:
    """List the pack's own models/ folder (the trained demo model) under diffusion_models, so the
    demo workflow runs straight from the template list: no copy, no link, no download."""
    if os.path.isdir(DEMO_MODEL_DIR):
        folder_paths.add_model_folder_path("diffusion_models", DEMO_MODEL_DIR, is_default=False)


class PreciseCacheExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LFCacheNode, BlockCacheNode, PreciseCacheSamplerNode, ReportNode, CalibrateNode, *DEMO_NODES,
                *ray_nodes()]  # only when raylight is installed


async def comfy_entrypoint() -> PreciseCacheExtension:
    register_demo_model_folder()  # ComfyUI 0.8.0 does not call ComfyExtension.on_load
    return PreciseCacheExtension()
