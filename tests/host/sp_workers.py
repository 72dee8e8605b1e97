"""Workers of the sequence-parallel tests: each spawned rank imports ComfyUI (CPU) and our pack the way
ComfyUI loads it, builds the same tiny Wan 2.1 (2 heads, so Ulysses can split them), injects USP
(``usp_wan``: raylight's injection on yunchang) and samples with KSampler.

``sp_run`` returns, per rank: the output latent; with PreciseCache also the run report's numbers, the
pivotal sets every ranking chose, and the residual buffers stored at the first refresh (cloned);
rank 0 also makes the single-process references (same model, no USP, no process group): uncached,
and PreciseCache replaying the parallel run's decisions (its step skips and pivotal sets).
"""
from __future__ import annotations


import torch

STEPS, CFG, SEED = 12, 5.0, 3
LATENT = (1, 16, 5, 16, 16)  # 5 x 8 x 8 = 320 tokens after the 1x2x2 patch embedding; trial 3 x 2 x 2 = 12
DIM, HEADS, LAYERS = 256, 2, 4


def tiny_wan_state_dict(seed: int = 0) -> dict:
    """ComfyUI's WanModel, T2V, small; weights ~ N(0, 1/fan_in), norms 1, biases N(0, 0.02²)
    (as tests/host/tiny_models.py; dim 256 → detection gives 2 heads)."""
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    net = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=DIM, ffn_dim=2 * DIM, freq_dim=256,
                   text_dim=4096, out_dim=16, num_heads=HEADS, num_layers=LAYERS, device="cpu", dtype=torch.float32,
                   operations=comfy.ops.disable_weight_init)
    from tiny_models import random_weights
    return random_weights(net.state_dict(), seed)


def _load_model():
    import comfy.sd
    return comfy.sd.load_diffusion_model_state_dict(tiny_wan_state_dict())


def _sample(comfy, model):
    import harness
    cond = harness.conditioning_module()
    pos = cond.make_conditioning("wan", seed=1, variant="positive")
    neg = cond.make_conditioning("wan", seed=1, variant="negative")
    return comfy.nodes.KSampler().sample(model, SEED, STEPS, CFG, "euler", "simple", pos, neg,
                                         {"samples": torch.zeros(LATENT)})[0]["samples"]


def _cached(pack, model, lf_kwargs: dict, block_kwargs: dict):
    from cache_helpers import pack_module
    hooks = pack_module(pack, "nodes.hooks")
    core = pack_module(pack, "precisecache_core")
    return hooks.apply_setup(model, lf=core.LFCacheConfig(**lf_kwargs).validate(),
                             block=core.BlockCacheConfig(**block_kwargs).validate())


class _Recorder:
    """Pivotal sets chosen (in order) and residual buffers stored at the first refresh (per slot, block)."""

    def __init__(self, pack):
        from cache_helpers import pack_module
        self.rank_sync = pack_module(pack, "precisecache_core.rank_sync")
        self.block_cache = pack_module(pack, "precisecache_core.block_cache")
        self.pivotal: list[list] = []
        self.first_residuals: dict = {}
        self.buffer_shapes: set = set()
        self.replay: list[set] | None = None
        self._saved = []

    def __enter__(self):
        rs, bc = self.rank_sync.RankSync, self.block_cache.BlockResidualCache
        pivotal_blocks, record, rank, buffer = rs.pivotal_blocks, bc._record, bc._rank, bc._buffer
        rec = self

        def recording_pivotal(sync, scores, ratio):
            chosen = pivotal_blocks(sync, scores, ratio)
            rec.pivotal.append(sorted(chosen))
            return chosen

        def recording_record(cache, state, block, args, out, snapshot):
            record(cache, state, block, args, out, snapshot)
            for (b, name), buf in state.residuals.items():
                if b == block and (id(state), b, name) not in rec.first_residuals:
                    rec.first_residuals[id(state), b, name] = buf.detach().clone()

        def replaying_rank(cache, state):
            if cache.pivotal_sync is not None:  # the parallel run: recorded by recording_pivotal
                return rank(cache, state)
            chosen = rank(cache, state) if rec.replay is None else rec.replay.pop(0)
            rec.pivotal.append(sorted(chosen))
            return set(chosen)

        def recording_buffer(cache, state, key, like):
            rec.buffer_shapes.add(tuple(like.shape))
            return buffer(cache, state, key, like)

        for owner, name, fn in ((rs, "pivotal_blocks", recording_pivotal), (bc, "_record", recording_record),
                                (bc, "_rank", replaying_rank), (bc, "_buffer", recording_buffer)):
            self._saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, fn)
        return self

    def __exit__(self, *exc):
        for owner, name, fn in reversed(self._saved):
            setattr(owner, name, fn)
        return False

    def residuals(self) -> dict:
        """block → the first residual stored for it (one call slot: cond and uncond batched together)."""
        return {b: t for (_, b, _), t in self.first_residuals.items()}


def _report(pack, model) -> dict:
    from cache_helpers import latest_report
    r = latest_report(pack, model)
    return {"skipped": list(r.skipped_steps), "lfd": list(r.lfd), "blocks_reused": r.blocks_reused,
            "blocks_computed": r.blocks_computed, "full": r.full_forwards, "trials": r.trial_forwards,
            "notes": list(r.notes), "cache_bytes_peak": r.cache_bytes_peak}


def sp_run(rank: int, world: int, comfyui_dir: str, base_dir: str, layouts: list[tuple[int, int, str]],
           lf_kwargs: dict, block_kwargs: dict) -> dict:
    """``layouts``: (Ulysses degree, ring degree, trial mode) per parallel run, all in this one spawn
    (ComfyUI's import costs seconds). Returns {layout: that run's results} and rank 0's references."""
    import importlib

    import harness
    import usp_wan
    torch.set_num_threads(1)
    comfy = harness.import_comfy(comfyui_dir, base_dir)
    pack = comfy.load_pack()
    from cache_helpers import pack_module
    rank_sync = pack_module(pack, "precisecache_core.rank_sync")
    multigpu = importlib.import_module(f"{pack.module.__name__}.nodes.multigpu")
    out: dict = {}
    single = _load_model() if rank == 0 else None
    if rank == 0:  # single-process references: the same model without USP or process group
        out["single_uncached"] = _sample(comfy, single)
        single_cached = _cached(pack, single, lf_kwargs, block_kwargs)
        with _Recorder(pack) as natural:
            out["single_natural"] = _sample(comfy, single_cached)
        out["single_natural_report"] = _report(pack, single_cached)
        out["single_natural_pivotal"] = natural.pivotal
    for ulysses, ring, trial_mode in layouts:
        usp_wan.setup(ulysses, ring, rank, world)
        result: dict = {}
        sp_model = _load_model()
        usp_wan.inject(sp_model.model.diffusion_model)
        result["uncached"] = _sample(comfy, sp_model)
        cached = _cached(pack, sp_model, lf_kwargs, block_kwargs)
        group = rank_sync.SampleGroup(description=f"test: Ulysses {ulysses} x ring {ring}, {trial_mode} trial")
        cached = multigpu.attach_sample_group(cached, group, unsharded_trial=trial_mode == "unsharded")
        with _Recorder(pack) as rec:
            result["cached"] = _sample(comfy, cached)
        result["report"] = _report(pack, cached)
        result["pivotal"] = rec.pivotal
        result["residuals"] = rec.residuals()
        result["buffer_shapes"] = sorted(rec.buffer_shapes)
        if rank == 0:  # the single-process run with this run's decisions (its pivotal sets replayed)
            with _Recorder(pack) as replay:
                replay.replay = [set(p) for p in rec.pivotal]
                result["single_cached"] = _sample(comfy, single_cached)
            result["single_report"] = _report(pack, single_cached)
            result["single_residuals"] = replay.residuals()
        out[ulysses, ring, trial_mode] = result
    return out
