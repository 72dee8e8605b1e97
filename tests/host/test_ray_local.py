"""PreciseCache (Ray) through real Ray on the CPU: 2 local actors (raylight 1.5.1's actor methods,
``ray_local_workers``), each with a sequence-parallel tiny Wan 2.1 over gloo; the node is run in this
process (ComfyUI's side) and patches the actors through ``model_function_runner`` with the pack sent
by value. Skipped when Ray is not installed (it is not in requirements-test.txt: ~20 s of install,
~1 min of test; ``pip install ray`` to run it).
"""
from __future__ import annotations

import os

import pytest
import torch

import harness
from cache_helpers import pack_module

ray = pytest.importorskip("ray")
pytest.importorskip("yunchang")

HOST_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def actors(comfyui_dir, comfy_base_dir, precisecache_pack):
    from ray_local_workers import LocalRayWorker
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": HOST_DIR}})
    try:
        port = harness.comfy_host.free_port()
        remote = ray.remote(num_cpus=1)(LocalRayWorker)
        workers = [remote.remote(r, 2, port, comfyui_dir, comfy_base_dir) for r in range(2)]
        ray.get([w.get_parallel_dict.remote() for w in workers])  # both joined the process group
        yield workers
    finally:
        ray.shutdown()


def test_the_ray_node_patches_every_actor_and_ranks_decide_alike(actors, precisecache_pack, monkeypatch):
    ray_nodes = pack_module(precisecache_pack, "nodes.ray_nodes")
    node, report_node = ray_nodes.PreciseCacheRayNode, ray_nodes.PreciseCacheRayReportNode
    monkeypatch.setattr(node, "version_probe", staticmethod(lambda: "1.5.1"), raising=False)
    import dataclasses  # no stepping aside on measured times (a loaded CPU could make both ranks step aside)
    monkeypatch.setitem(ray_nodes.LFCACHE_PRESETS, "Turbo",
                        dataclasses.replace(ray_nodes.LFCACHE_PRESETS["Turbo"], step_aside=False))
    from comfy_api.latest._io import HiddenHolder
    prompt = {"1": {"class_type": "PreciseCacheRay", "inputs": {}},
              "2": {"class_type": "XFuserKSamplerAdvanced", "inputs": {"ray_actors": ["1", 0]}}}
    node.hidden = HiddenHolder(unique_id="1", prompt=prompt, extra_pnginfo=None, dynprompt=None,
                               auth_token_comfy_org=None, api_key_comfy_org=None)
    ray_actors = {"workers": actors}
    try:
        node.execute(ray_actors, "Turbo", 0.5, 2, "sharded", False)
    finally:
        node.hidden = None
    assert not any(ray.get([a.pack_imported.remote() for a in actors]))  # the pack arrived by value only
    outs = ray.get([a.sample.remote() for a in actors])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)  # all-gathered: the same video on both
    reports = ray.get([a.model_function_runner_get_values.remote(ray_nodes.latest_report_dict) for a in actors])
    assert reports[0]["skipped_steps"] == reports[1]["skipped_steps"] and reports[0]["skipped_steps"]
    assert reports[0]["blocks_reused"] == reports[1]["blocks_reused"] > 0
    assert any("agreed over 2 ranks" in n for n in reports[0]["notes"])
    text, _, _ = report_node.execute(ray_actors).args
    assert "skipped" in text
