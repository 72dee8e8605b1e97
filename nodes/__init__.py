"""ComfyUI nodes of PreciseCache (thin: the math lives in precisecache_core)."""
