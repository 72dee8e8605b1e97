"""PreciseCache for ComfyUI: LFCache (step-wise) and BlockCache (block-wise) caching for video
diffusion models. ComfyUI loads this file; the nodes are in ``nodes/``, the math in
``precisecache_core/`` (pure torch)."""
from .nodes.extension import comfy_entrypoint

WEB_DIRECTORY = None
__all__ = ["comfy_entrypoint"]
