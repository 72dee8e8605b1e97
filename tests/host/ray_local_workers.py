"""A CPU stand-in for raylight's RayWorker (raylight 1.5.1's method names), for tests with local Ray.

Each actor joins a gloo process group, imports ComfyUI (not our pack: like raylight's workers, it gets
PreciseCache only by value, through ``model_function_runner``), builds the tiny 2-head Wan 2.1 of
``sp_workers`` with raylight's USP injection (``usp_wan``) and samples with KSampler.
"""
from __future__ import annotations

import datetime


class LocalRayWorker:
    def __init__(self, rank: int, world: int, port: int, comfyui_dir: str, base_dir: str):
        import torch
        torch.set_num_threads(1)
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                             world_size=world, timeout=datetime.timedelta(seconds=120))
        import harness
        import sp_workers
        import usp_wan
        self.comfy = harness.import_comfy(comfyui_dir, base_dir)
        usp_wan.setup(world, 1, rank, world)
        self.model = sp_workers._load_model()
        usp_wan.inject(self.model.model.diffusion_model)
        self.rank, self.world = rank, world
        self.parallel_dict = {"is_xdit": True, "is_fsdp": False, "ulysses_degree": world, "ring_degree": 1,
                              "global_world_size": world}

    # raylight 1.5.1's RayWorker methods used by PreciseCache (Ray)
    def model_function_runner(self, fn, *args, **kwargs):
        self.model = fn(self.model, *args, **kwargs)

    def model_function_runner_get_values(self, fn, *args, **kwargs):
        return fn(self.model, *args, **kwargs)

    def get_parallel_dict(self):
        return self.parallel_dict

    def get_exec_group_info(self):
        return {"global_rank": self.rank, "dp_rank": 0, "dp_degree": 1, "is_group_leader": self.rank == 0}

    # what a Ray sampler node makes every actor do
    def sample(self):
        import sp_workers
        return sp_workers._sample(self.comfy, self.model)

    def pack_imported(self) -> bool:
        """Whether any module of our pack was imported by name here (it must not need to be)."""
        import sys
        return any("PreciseCache" in name for name in sys.modules)
