"""PreciseCache (Ray): LFCache + BlockCache inside every actor of raylight (github komikndr/raylight).

raylight runs one Ray actor per GPU, each with its own ComfyUI ModelPatcher, and passes the actors
through the graph as ``RAY_ACTORS`` (``{"workers": [actor, …], …}``). A patch reaches every actor
through ``actor.model_function_runner.remote(fn, *args)``, which does ``self.model = fn(self.model,
*args)`` (raylight's own EasyCache / TeaCache (Ray) nodes work the same way). Our ``fn``:

1. takes any earlier PreciseCache patch off the actor's model (the actors keep their model between
   prompts), applies the configured LFCache / BlockCache (``hooks.apply_setup``: state is made fresh
   for every sampling run, in every actor, by the OUTER_SAMPLE wrapper);
2. attaches the actor's sample group (``multigpu.attach_sample_group``): the ranks that compute one
   sample and must therefore decide alike. From raylight's topology, read from the actors
   (``get_parallel_dict``, ``get_exec_group_info``): under xDiT (USP / CFG-parallel) the ranks with the
   same data-parallel rank; under FSDP, or with one process group per sample
   (``use_group_process_group``), the actor's whole default group; without either, every actor samples
   on its own and nothing is agreed.

ComfyUI imports this pack under its folder path, which Ray's workers cannot import: the pack is sent
by value (``ray.cloudpickle.register_pickle_by_value``). ``PreciseCache Report (Ray)`` fetches the
latest run's report from rank 0 (``model_function_runner_get_values``).

Refused, with a message, before anything is sent to the actors: an output that does not reach one of
raylight's samplers or guiders (then no sampler would use the patch, or an unexpected one would), and
a raylight version other than those this code was checked against (an override input exists).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import sys
from typing import Callable, Sequence

import comfy.patcher_extension
from comfy_api.latest import io

from ..precisecache_core import LFCACHE_PRESETS, BlockCacheConfig, RunReport
from ..precisecache_core.config import DEFAULT_LFCACHE_PRESET
from ..precisecache_core.rank_sync import SAMPLE_GROUP_KEY, SampleGroup
from .hooks import SETUP_KEY, WRAPPER_KEY, apply_setup, get_setup
from .inputs import CATEGORY, config_inputs, validation_result
from .multigpu import DEFAULT_TRIAL_MODE, TRIAL_MODES, UNSHARDED_TRIAL_KEY, attach_sample_group, sample_group_ranks
from .report_image import report_image_tensor

TESTED_RAYLIGHT_VERSIONS = ("1.5.1",)
"""raylight versions whose actor API and USP injection this code was written and checked against
(source snapshot c049571; exercised here with CPU stand-ins of its actors, not on GPUs)."""

RAYLIGHT_SAMPLERS = frozenset({
    "XFuserKSamplerAdvanced", "UnifiedParallelSampler", "DPKSamplerAdvanced",
    "XFuserSamplerCustom", "UnifiedParallelSamplerCustom", "DPSamplerCustom",
    "RayBasicGuider", "RayCFGGuider", "RayDualCFGGuider",
})
"""raylight 1.5.1's nodes that sample with the actors' model (samplers, and guiders for the custom
advanced samplers)."""

RAY_ACTORS = io.Custom("RAY_ACTORS")
LF_CHOICES = ["off", *LFCACHE_PRESETS]
RAY_BLOCK = BlockCacheConfig()
"""The node's BlockCache defaults: the paper's static rule (the trial-guided rule is not offered here)."""
RAY_CATEGORY = f"{CATEGORY}/raylight"


class RaylightRefused(ValueError):
    pass


# -- is raylight there, which version --------------------------------------------------------------
def _custom_node_dirs() -> list[str]:
    try:
        import folder_paths
        return list(folder_paths.get_folder_paths("custom_nodes"))
    except Exception:  # outside ComfyUI
        return []


def raylight_source() -> str | None:
    """The folder of raylight's package (``…/src/raylight``), importable or among the custom nodes."""
    if _on_path("raylight"):
        spec = importlib.util.find_spec("raylight")
        if spec.origin:
            return os.path.dirname(spec.origin)
    for base in _custom_node_dirs():
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else ():
            candidate = os.path.join(base, name, "src", "raylight")
            if os.path.isfile(os.path.join(candidate, "__init__.py")):
                return candidate
    return None


def _on_path(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def raylight_available() -> bool:
    """Register the Ray nodes only when raylight (and Ray) can be used in this ComfyUI."""
    return raylight_source() is not None and _on_path("ray")


def raylight_version(source: str | None = None) -> str | None:
    """raylight's version from its pyproject.toml (two folders above the package), else its metadata."""
    source = source or raylight_source()
    if source:
        pyproject = os.path.join(os.path.dirname(os.path.dirname(source)), "pyproject.toml")
        if os.path.isfile(pyproject):
            with open(pyproject, encoding="utf-8") as f:
                match = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
            if match:
                return match.group(1)
    try:
        from importlib.metadata import version
        return version("raylight")
    except Exception:
        return None


def check_raylight_version(found: str | None, allow_untested: bool) -> None:
    if found in TESTED_RAYLIGHT_VERSIONS or allow_untested:
        return
    raise RaylightRefused(
        f"PreciseCache (Ray) was checked against raylight {', '.join(TESTED_RAYLIGHT_VERSIONS)}, but this ComfyUI has "
        f"raylight {found or '(version unknown)'}. Its actor API or sequence-parallel code may differ, and a cache "
        f"that decides differently on two GPUs hangs the job. Install raylight "
        f"{TESTED_RAYLIGHT_VERSIONS[-1]}, or set allow_untested_raylight to try it anyway.")


# -- does our output reach a Ray sampler -----------------------------------------------------------
def _return_types(class_type: str) -> tuple:
    try:
        import nodes
        cls = nodes.NODE_CLASS_MAPPINGS.get(class_type)
        return tuple(getattr(cls, "RETURN_TYPES", ()) or ()) if cls is not None else ()
    except Exception:
        return ()


def check_reaches_ray_sampler(prompt: dict | None, node_id: str | None,
                              return_types: Callable[[str], tuple] = _return_types) -> None:
    """Follow RAY_ACTORS links from this node's output (through other nodes that pass RAY_ACTORS on)
    to one of raylight's samplers or guiders; refuse when none is reached."""
    if not prompt or node_id is None:
        return  # not run from a prompt (e.g. a direct call): nothing to check
    frontier, seen, reached = {(str(node_id), 0)}, set(), []
    while frontier:
        source = frontier.pop()
        seen.add(source)
        for consumer, spec in prompt.items():
            links = [v for v in (spec.get("inputs") or {}).values() if isinstance(v, list) and len(v) == 2]
            if not any((str(a), int(b)) == source for a, b in links):
                continue
            class_type = spec.get("class_type", "")
            if class_type in RAYLIGHT_SAMPLERS:
                reached.append(class_type)
                continue
            for index, kind in enumerate(return_types(class_type)):
                if kind == "RAY_ACTORS" and (str(consumer), index) not in seen:
                    frontier.add((str(consumer), index))
    if not reached:
        raise RaylightRefused(
            "PreciseCache (Ray): its ray_actors output does not reach a raylight sampler or guider "
            f"({', '.join(sorted(RAYLIGHT_SAMPLERS))}), directly or through other Ray patch nodes. The cache is "
            "applied inside the actors, so it must sit between the Ray model loader and the sampler that uses it: "
            "connect this node's ray_actors output to the sampler's (or guider's) ray_actors input.")


# -- what runs inside each actor --------------------------------------------------------------------
def strip_precisecache(model):
    """A clone of ``model`` without any PreciseCache patch (our wrappers, block patches, group)."""
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    options.pop(SETUP_KEY, None)
    options.pop(SAMPLE_GROUP_KEY, None)
    wrappers = comfy.patcher_extension.WrappersMP
    for kind in (wrappers.OUTER_SAMPLE, wrappers.DIFFUSION_MODEL, wrappers.SAMPLER_SAMPLE):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)
    patched.remove_wrappers_with_key(wrappers.DIFFUSION_MODEL, UNSHARDED_TRIAL_KEY)
    dit = options.get("patches_replace", {}).get("dit")
    if dit:
        dit = dict(dit)
        for key, patch in list(dit.items()):
            while type(patch).__name__ == "BlockPatch" and hasattr(patch, "block_key"):
                patch = patch.previous
            if patch is None:
                del dit[key]
            else:
                dit[key] = patch
        options["patches_replace"] = {**options["patches_replace"], "dit": dit}
    return patched


@dataclasses.dataclass(frozen=True)
class Topology:
    """Which ranks decide together: ``mode`` 'none' (each actor alone), 'world' (the actor's default
    process group), or 'groups' (``groups``: world ranks per sample, created with new_group)."""

    mode: str
    groups: tuple[tuple[int, ...], ...] = ()
    description: str = ""


def topology_of(parallel_dict: dict, group_infos: Sequence[dict]) -> Topology:
    """From raylight's ``get_parallel_dict()`` (rank 0) and every actor's ``get_exec_group_info()``."""
    xdit, fsdp = bool(parallel_dict.get("is_xdit")), bool(parallel_dict.get("is_fsdp"))
    n = len(group_infos)
    if parallel_dict.get("use_group_process_group"):
        return Topology("world", description=f"raylight: one process group per sample ({n} actors)")
    if fsdp:
        return Topology("world", description=f"raylight FSDP over {n} actors (forwards share weight gathers)")
    if not xdit:
        return Topology("none", description="raylight: every actor samples on its own")
    ordered = sorted(group_infos, key=lambda info: int(info["global_rank"]))
    groups = sample_group_ranks([int(info["dp_rank"]) for info in ordered])
    if len(groups) == 1:
        return Topology("world", description=f"raylight xDiT over {n} actors")
    return Topology("groups", tuple(tuple(g) for g in groups),
                    description=f"raylight xDiT, {len(groups)} data-parallel groups of {len(groups[0])} actors")


def _sample_group(topology: Topology) -> SampleGroup | None:
    import torch.distributed as dist
    if topology.mode == "none" or not dist.is_available() or not dist.is_initialized():
        return None
    if topology.mode == "world":
        return SampleGroup(None, topology.description)
    rank, mine = dist.get_rank(), None
    for ranks in topology.groups:  # every rank creates every group, in the same order (torch's rule)
        group = dist.new_group(list(ranks))
        if rank in ranks:
            mine = group
    return SampleGroup(mine, topology.description)


def patch_actor_model(model, lf, block, topology: Topology, trial_mode: str):
    """Runs inside every actor (``model_function_runner``): see the module doc."""
    model = apply_setup(strip_precisecache(model), lf=lf, block=block)
    group = _sample_group(topology)
    if group is not None:
        model = attach_sample_group(model, group, unsharded_trial=trial_mode == "unsharded")
    return model


def latest_report_dict(model) -> dict | None:
    """Runs inside rank 0 (``model_function_runner_get_values``): the latest run's report as plain data."""
    setup = get_setup(model)
    report = setup.reports.latest if setup is not None else None
    return dataclasses.asdict(report) if report is not None else None


# -- talking to the actors ------------------------------------------------------------------------
class ActorCalls:
    """The few Ray calls the nodes make (a test may pass stand-in actors and a stand-in ``ray``)."""

    def __init__(self, ray_module=None):
        if ray_module is None:
            import ray as ray_module
        self.ray = ray_module

    def send_pack_by_value(self) -> None:
        top = sys.modules[__package__.rsplit(".", 1)[0]]
        self.ray.cloudpickle.register_pickle_by_value(top)

    def get(self, refs):
        return self.ray.get(refs)

    def call(self, actor, method: str, *args):
        fn = getattr(actor, method, None)
        if fn is None:
            raise RaylightRefused(f"PreciseCache (Ray): raylight's actor has no method {method!r}: this raylight "
                                  f"is not one PreciseCache was checked against ({', '.join(TESTED_RAYLIGHT_VERSIONS)})")
        return fn.remote(*args)


def apply_to_actors(ray_actors: dict, lf, block, trial_mode: str, calls: ActorCalls) -> Topology:
    workers = list(ray_actors["workers"])
    parallel_dict = calls.get(calls.call(workers[0], "get_parallel_dict"))
    infos = calls.get([calls.call(a, "get_exec_group_info") for a in workers])
    topology = topology_of(parallel_dict, infos)
    calls.send_pack_by_value()
    calls.get([calls.call(a, "model_function_runner", patch_actor_model, lf, block, topology, trial_mode)
               for a in workers])
    return topology


def configs_from_inputs(lfcache: str, pivotal_ratio: float, refresh_interval: int):
    if lfcache not in LF_CHOICES:
        raise ValueError(f"lfcache = {lfcache!r} is not allowed: choose one of {LF_CHOICES}")
    lf = None if lfcache == "off" else LFCACHE_PRESETS[lfcache]
    block = BlockCacheConfig(pivotal_ratio=pivotal_ratio, refresh_interval=refresh_interval).validate()
    block = block if block.pivotal_ratio < 1.0 else None
    if lf is None and block is None:
        raise ValueError("PreciseCache (Ray): LFCache is off and BlockCache's pivotal_ratio is 1 (off): nothing to apply")
    return lf, block


# -- the nodes -------------------------------------------------------------------------------------
class PreciseCacheRayNode(io.ComfyNode):
    calls_factory: Callable[[], ActorCalls] = ActorCalls
    version_probe: Callable[[], str | None] = staticmethod(raylight_version)

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheRay",
            display_name="PreciseCache (Ray)",
            category=RAY_CATEGORY,
            description="LFCache and BlockCache inside every raylight actor (sequence parallel, CFG-parallel, FSDP): "
                        "the ranks that compute one video agree on every skipped step and every reused block. "
                        "Place it between the Ray model loader and a Ray sampler or guider.",
            inputs=[
                RAY_ACTORS.Input("ray_actors", tooltip="The Ray actors from raylight's model loader (or another Ray "
                                                       "patch node)."),
                io.Combo.Input("lfcache", options=LF_CHOICES, default=DEFAULT_LFCACHE_PRESET,
                               tooltip="LFCache preset (speed target: " + ", ".join(
                                   f"{k} {v.speed_target:g}x" for k, v in LFCACHE_PRESETS.items()) + "), or off."),
                *config_inputs(RAY_BLOCK, "pivotal_ratio", "refresh_interval", tooltips={
                    "pivotal_ratio": "BlockCache: fraction of blocks always computed (1.0 = BlockCache off).",
                    "refresh_interval": "BlockCache: computed steps that reuse residuals after each refresh."}),
                io.Combo.Input("trial", options=list(TRIAL_MODES), default=DEFAULT_TRIAL_MODE,
                               tooltip="sharded: LFCache's small trial forward is split over the GPUs like the full "
                                       "forward (measured faster on CPU); unsharded: every GPU runs the whole trial "
                                       "alone, no communication inside it."),
                io.Boolean.Input("allow_untested_raylight", default=False,
                                 tooltip="Run with a raylight version PreciseCache was not checked against."),
            ],
            outputs=[RAY_ACTORS.Output(display_name="ray_actors", tooltip="The same actors, patched.")],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, lfcache=None, pivotal_ratio=None) -> bool | str:
        """What ComfyUI's own checks against the schema cannot judge (it leaves the inputs named here to us
        and checks every other one): lfcache off with pivotal_ratio 1 leaves nothing to apply. None: an
        input linked from another node, checked when the node runs. refresh_interval is ComfyUI's to check:
        its default stands in."""
        if lfcache is None or pivotal_ratio is None:
            return True
        return validation_result(configs_from_inputs, lfcache, pivotal_ratio, RAY_BLOCK.refresh_interval)

    @classmethod
    def execute(cls, ray_actors, lfcache: str, pivotal_ratio: float, refresh_interval: int, trial: str,
                allow_untested_raylight: bool) -> io.NodeOutput:
        check_raylight_version(cls.version_probe(), allow_untested_raylight)
        check_reaches_ray_sampler(cls.hidden.prompt if cls.hidden else None,
                                  cls.hidden.unique_id if cls.hidden else None)
        lf, block = configs_from_inputs(lfcache, pivotal_ratio, refresh_interval)
        if trial not in TRIAL_MODES:
            raise ValueError(f"trial = {trial!r} is not allowed: choose one of {list(TRIAL_MODES)}")
        apply_to_actors(ray_actors, lf, block, trial, cls.calls_factory())
        return io.NodeOutput(ray_actors)


class PreciseCacheRayReportNode(io.ComfyNode):
    calls_factory: Callable[[], ActorCalls] = ActorCalls

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheRayReport",
            display_name="PreciseCache Report (Ray)",
            category=RAY_CATEGORY,
            description="The report of the latest run made with PreciseCache (Ray), from rank 0 (every rank of a "
                        "sample takes the same decisions). Connect the Ray sampler's ray_actors output.",
            is_output_node=True,
            inputs=[RAY_ACTORS.Input("ray_actors", tooltip="The Ray sampler's ray_actors output (so the report "
                                                           "is read after sampling).")],
            outputs=[io.String.Output(display_name="report"), io.Image.Output(display_name="plot"),
                     io.String.Output(display_name="report_json")],
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, ray_actors) -> io.NodeOutput:
        calls = cls.calls_factory()
        calls.send_pack_by_value()
        data = calls.get(calls.call(ray_actors["workers"][0], "model_function_runner_get_values", latest_report_dict))
        if data is None:
            raise ValueError("PreciseCache Report (Ray): rank 0 has no PreciseCache run yet. Put PreciseCache (Ray) "
                             "before the Ray sampler, and connect that sampler's ray_actors output here.")
        report = RunReport(**data)
        text = report.to_text()
        return io.NodeOutput(text, report_image_tensor(report), json.dumps(report.to_dict()))


def ray_nodes() -> list[type[io.ComfyNode]]:
    """The Ray nodes, when raylight is installed in this ComfyUI; else none."""
    return [PreciseCacheRayNode, PreciseCacheRayReportNode] if raylight_available() else []
