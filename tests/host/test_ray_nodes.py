"""PreciseCache (Ray) nodes without raylight: stand-in actors with raylight 1.5.1's actor methods
(``model_function_runner``, ``model_function_runner_get_values``, ``get_parallel_dict``,
``get_exec_group_info``), each holding its own ComfyUI model, called through a stand-in ``ray``.

raylight cannot run here (its actors hard-code CUDA/NCCL); what these tests cover: registration only
with raylight present, the version and graph refusals, the topology → sample group rule, the same
configuration applied inside every actor (an earlier patch replaced, not stacked), fresh state per run,
and the report read from rank 0. Real collectives between actors: tests/host/test_sequence_parallel.py
(the same attach_sample_group the actors call) and tests/host/test_ray_local.py (local Ray, if installed).
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from cache_helpers import pack_module
from precisecache_core.config import LFCACHE_PRESETS


@pytest.fixture(scope="module")
def ray_mod(precisecache_pack):
    return pack_module(precisecache_pack, "nodes.ray_nodes")


class _Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)  # the "object ref" is the value itself


class FakeActor:
    """raylight 1.5.1's RayWorker surface, in process (``ray.get`` of a value is the value)."""

    def __init__(self, model, rank: int, parallel_dict: dict, dp_rank: int = 0):
        self.model = model
        self.rank, self.parallel_dict, self.dp_rank = rank, parallel_dict, dp_rank
        self.model_function_runner = _Remote(self._runner)
        self.model_function_runner_get_values = _Remote(lambda fn, *a, **k: fn(self.model, *a, **k))
        self.get_parallel_dict = _Remote(lambda: self.parallel_dict)
        self.get_exec_group_info = _Remote(lambda: {"global_rank": self.rank, "dp_rank": self.dp_rank,
                                                    "dp_degree": 1, "is_group_leader": self.rank == 0})

    def _runner(self, fn, *args, **kwargs):
        self.model = fn(self.model, *args, **kwargs)


class FakeRay:
    def __init__(self):
        self.by_value = []
        self.cloudpickle = self

    def register_pickle_by_value(self, module):
        self.by_value.append(module.__name__)

    @staticmethod
    def get(refs):
        return refs


def _calls(ray_mod, fake_ray):
    return lambda: ray_mod.ActorCalls(fake_ray)


def _prompt(*chain):
    """A prompt where node "1" (ours) feeds RAY_ACTORS along ``chain`` (class types)."""
    prompt = {"0": {"class_type": "RayUNETLoader", "inputs": {}},
              "1": {"class_type": "PreciseCacheRay", "inputs": {"ray_actors": ["0", 0]}}}
    for i, class_type in enumerate(chain, start=2):
        prompt[str(i)] = {"class_type": class_type, "inputs": {"ray_actors": [str(i - 1), 0], "seed": 3}}
    return prompt


def _execute(node, hidden_prompt, *args, **kwargs):
    """Run a V3 node's execute with its hidden inputs set (as ComfyUI does)."""
    from comfy_api.latest._io import HiddenHolder
    node.hidden = HiddenHolder(unique_id="1", prompt=hidden_prompt, extra_pnginfo=None, dynprompt=None,
                               auth_token_comfy_org=None, api_key_comfy_org=None)
    try:
        return node.execute(*args, **kwargs)
    finally:
        node.hidden = None


def test_nodes_are_registered_only_when_raylight_is_there(ray_mod, tmp_path, monkeypatch):
    assert ray_mod.raylight_source() is None and ray_mod.ray_nodes() == []
    package = tmp_path / "raylight" / "src" / "raylight"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "raylight" / "pyproject.toml").write_text('[project]\nname = "raylight"\nversion = "1.5.1"\n')
    monkeypatch.setattr(ray_mod, "_custom_node_dirs", lambda: [str(tmp_path)])
    monkeypatch.setattr(ray_mod, "_on_path", lambda name: name == "ray")
    assert ray_mod.raylight_source() == str(package)
    assert ray_mod.raylight_version() == "1.5.1"
    assert [n.define_schema().node_id for n in ray_mod.ray_nodes()] == ["PreciseCacheRay", "PreciseCacheRayReport"]
    monkeypatch.setattr(ray_mod, "_on_path", lambda name: False)  # raylight there, Ray itself missing
    assert ray_mod.ray_nodes() == []


def test_untested_raylight_versions_are_refused_by_name(ray_mod):
    ray_mod.check_raylight_version("1.5.1", False)
    for found in ("1.6.0", None):
        with pytest.raises(ray_mod.RaylightRefused, match=r"checked against raylight 1\.5\.1.*allow_untested_raylight"):
            ray_mod.check_raylight_version(found, False)
    ray_mod.check_raylight_version("1.6.0", True)


def test_output_must_reach_a_ray_sampler_or_guider(ray_mod):
    types = {"RayEasyCache": ("RAY_ACTORS",), "RayKill": (), "XFuserKSamplerAdvanced": ("LATENT", "RAY_ACTORS")}
    check = lambda prompt: ray_mod.check_reaches_ray_sampler(prompt, "1", lambda c: types.get(c, ()))  # noqa: E731
    check(_prompt("XFuserKSamplerAdvanced"))
    check(_prompt("RayEasyCache", "RayCFGGuider"))  # through another Ray patch node, to a guider
    for bad in (_prompt(), _prompt("RayKill"), _prompt("RayEasyCache")):
        with pytest.raises(ray_mod.RaylightRefused, match="does not reach a raylight sampler or guider"):
            check(bad)


def test_topology_gives_the_group_of_ranks_that_make_one_sample(ray_mod):
    infos = lambda dps: [{"global_rank": r, "dp_rank": d} for r, d in enumerate(dps)]  # noqa: E731
    assert ray_mod.topology_of({"is_xdit": True}, infos([0, 0, 0, 0])).mode == "world"
    t = ray_mod.topology_of({"is_xdit": True}, infos([0, 0, 1, 1]))
    assert t.mode == "groups" and t.groups == ((0, 1), (2, 3))  # never across data-parallel ranks
    assert ray_mod.topology_of({"is_xdit": True, "is_fsdp": True}, infos([0, 0, 1, 1])).mode == "world"  # FSDP
    assert ray_mod.topology_of({"use_group_process_group": True}, infos([0, 1])).mode == "world"
    assert ray_mod.topology_of({}, infos([0, 1])).mode == "none"  # plain data parallel: each alone


def test_same_configuration_inside_every_actor_fresh_per_run_report_from_rank_zero(comfy, tiny_models, ray_mod,
                                                                                   precisecache_pack, monkeypatch):
    hooks = pack_module(precisecache_pack, "nodes.hooks")
    # no stepping aside on measured time (a loaded test machine would make that differ between runs)
    monkeypatch.setitem(ray_mod.LFCACHE_PRESETS, "Turbo",
                        dataclasses.replace(ray_mod.LFCACHE_PRESETS["Turbo"], step_aside=False))
    fake_ray = FakeRay()
    actors = [FakeActor(comfy.load_model("wan"), r, {"is_xdit": True, "ulysses_degree": 2}) for r in range(2)]
    ray_actors = {"workers": actors}
    node, report_node = ray_mod.PreciseCacheRayNode, ray_mod.PreciseCacheRayReportNode
    monkeypatch.setattr(node, "calls_factory", _calls(ray_mod, fake_ray))
    monkeypatch.setattr(report_node, "calls_factory", _calls(ray_mod, fake_ray))
    monkeypatch.setattr(node, "version_probe", staticmethod(lambda: "1.5.1"))
    with pytest.raises(ray_mod.RaylightRefused):
        _execute(node, _prompt("RayKill"), ray_actors, "Turbo", 0.5, 2, "sharded", False)
    assert all(hooks.get_setup(a.model) is None for a in actors)  # refused before anything was sent
    _execute(node, _prompt("XFuserKSamplerAdvanced"), ray_actors, "Base", 1.0, 2, "sharded", False)
    out = _execute(node, _prompt("XFuserKSamplerAdvanced"), ray_actors, "Turbo", 0.5, 2, "unsharded", False)
    assert out.result[0] is ray_actors
    assert fake_ray.by_value and all(name == fake_ray.by_value[0] for name in fake_ray.by_value)
    setups = [hooks.get_setup(a.model) for a in actors]
    assert all(s.lf == setups[0].lf and s.block == setups[0].block for s in setups)
    assert setups[0].lf.speed_target == LFCACHE_PRESETS["Turbo"].speed_target and setups[0].block.pivotal_ratio == 0.5  # the second patch
    for a in actors:  # the first patch was taken off, not stacked under the second
        dit = a.model.model_options["transformer_options"]["patches_replace"]["dit"]
        assert all(type(p).__name__ == "BlockPatch" and p.previous is None for p in dit.values())
    outs = [[comfy.sample(a.model, "wan", seed=2, steps=12, cfg=5.0) for a in actors] for _ in range(2)]
    text, _, report_json = _execute(report_node, None, ray_actors).result
    reports = hooks.get_setup(actors[0].model).reports
    assert reports.runs == 2 and "skipped" in text
    first, second = reports.reports[0], reports.reports[1]
    assert first.skipped_steps == second.skipped_steps and first.skipped_steps  # fresh state each run
    assert first.blocks_reused == second.blocks_reused > 0
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][0], outs[0][1])
    # what every actor computes is the pack's own LFCache + BlockCache with those settings on a fresh model
    lf, block = ray_mod.configs_from_inputs("Turbo", 0.5, 2)
    direct = hooks.apply_setup(comfy.load_model("wan"), lf=lf, block=block)
    assert torch.equal(outs[0][0], comfy.sample(direct, "wan", seed=2, steps=12, cfg=5.0))


def test_report_node_says_what_to_connect_when_rank_zero_has_no_run(comfy, tiny_models, ray_mod, monkeypatch):
    actors = [FakeActor(comfy.load_model("wan"), 0, {})]
    monkeypatch.setattr(ray_mod.PreciseCacheRayReportNode, "calls_factory", _calls(ray_mod, FakeRay()))
    with pytest.raises(ValueError, match="rank 0 has no PreciseCache run yet"):
        _execute(ray_mod.PreciseCacheRayReportNode, None, {"workers": actors})



def test_what_is_sent_to_the_actors_pickles_by_value(comfy, tiny_models, ray_mod, precisecache_pack):
    """Ray sends the patch function with the pack by value (workers cannot import it by its folder
    path): everything it reaches must pickle — e.g. no functools.cached_property (a lock in Python
    3.11), no logger or lock held by value. Checked with cloudpickle, which Ray vendors; the round trip
    applies the patch to a model like an actor would, and its output equals the pack's own LFCache +
    BlockCache applied directly. The full path with Ray: test_ray_local.py."""
    cloudpickle = pytest.importorskip("cloudpickle")
    top = precisecache_pack.module
    cloudpickle.register_pickle_by_value(top)
    try:
        topology = ray_mod.Topology("none")
        lf, block = ray_mod.configs_from_inputs("Turbo", 0.5, 2)
        lf = dataclasses.replace(lf, step_aside=False)  # no decision on measured time: both runs decide alike
        sent = cloudpickle.dumps((ray_mod.patch_actor_model, lf, block, topology, "sharded"))
        report_fn = cloudpickle.dumps(ray_mod.latest_report_dict)
    finally:
        cloudpickle.unregister_pickle_by_value(top)
    fn, *args = cloudpickle.loads(sent)
    model = fn(comfy.load_model("wan"), *args)
    out = comfy.sample(model, "wan", seed=2, steps=10, cfg=5.0)
    report = cloudpickle.loads(report_fn)(model)
    assert report["steps"] == 10 and report["full_forwards"] > 0
    direct = pack_module(precisecache_pack, "nodes.hooks").apply_setup(comfy.load_model("wan"), lf=lf, block=block)
    assert torch.equal(out, comfy.sample(direct, "wan", seed=2, steps=10, cfg=5.0))
