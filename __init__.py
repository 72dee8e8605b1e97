"""PreciseCache for ComfyUI: LFCache (step-wise) and BlockCache (block-wise) caching for video
diffusion models. ComfyUI loads this file; the nodes are in ``nodes/``, the math in
``precisecache_core/`` (pure torch, importable without ComfyUI)."""
import sys

__all__ = []

if "comfy.model_patcher" in sys.modules:
    # Imported by ComfyUI (which has loaded its own modules by then). A plain import outside ComfyUI,
    # e.g. pytest collecting this folder, gets the pure-torch core only.
    from .nodes.extension import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
