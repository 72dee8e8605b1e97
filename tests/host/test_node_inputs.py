"""The cache nodes' inputs against the configs they mirror (issue 14), in-process:

* every node's validate_inputs names only the inputs of rules between inputs (no ``**kwargs``), so
  ComfyUI's own checks against the schema stay on for all the others;
* each numeric input mirrored from a config field: the node's own config builder accepts its
  default, and refuses by name a value one step beyond the widget's min or max (schema and our
  validation read the same range).
"""
from __future__ import annotations

import inspect

import pytest

from cache_helpers import pack_module

LF, BLOCK, RAY = "PreciseCacheLFCache", "PreciseCacheBlockCache", "PreciseCacheRay"
OWN_RULES = {
    LF: ["preset", "speed_target", "start_percent", "end_percent"],
    BLOCK: ["start_percent", "end_percent"],
    RAY: ["lfcache", "pivotal_ratio"],
    "PreciseCacheSampler": ["preset"],
    "PreciseCacheCalibrate": ["speed_targets", "preset_name"],
}
"""The inputs each node's validate_inputs takes (ComfyUI leaves exactly these to it)."""


@pytest.fixture(scope="module")
def nodes(comfy, precisecache_pack):
    classes = {name: comfy.node(name) for name in OWN_RULES if name != RAY}
    classes[RAY] = pack_module(precisecache_pack, "nodes.ray_nodes").PreciseCacheRayNode  # registered with raylight
    return classes


@pytest.fixture(scope="module")
def builders(precisecache_pack):
    """Per node: its inputs by name -> the config(s) it would apply (ValueError naming a bad input)."""
    lf = pack_module(precisecache_pack, "nodes.lfcache_node")
    block = pack_module(precisecache_pack, "nodes.blockcache_node")
    ray = pack_module(precisecache_pack, "nodes.ray_nodes")
    return {LF: lambda values: lf.config_from_inputs(**{"preset": "custom", **values}),
            BLOCK: lambda values: block.config_from_inputs(**values),
            RAY: lambda values: ray.configs_from_inputs(
                "Turbo", values.get("pivotal_ratio", 0.4), values.get("refresh_interval", 3))}


@pytest.mark.parametrize("name", sorted(OWN_RULES))
def test_validate_inputs_takes_only_the_inputs_of_its_own_rules(nodes, name):
    spec = inspect.getfullargspec(nodes[name].validate_inputs)
    assert spec.varkw is None, f"{name}.validate_inputs takes **{spec.varkw}: ComfyUI would skip every own check"
    assert spec.args[1:] == OWN_RULES[name]  # args[0]: cls


@pytest.mark.parametrize("name", [LF, BLOCK, RAY])
def test_config_validation_reads_the_schemas_ranges(nodes, builders, name):
    inputs = nodes[name].INPUT_TYPES()
    numeric = {key: options for group in ("required", "optional") for key, (kind, options) in
               ((k, v[:2]) for k, v in inputs.get(group, {}).items()) if kind in ("INT", "FLOAT")}
    assert numeric, name
    build = builders[name]
    for key, options in numeric.items():
        build({key: options["default"]})
        step = 1 if isinstance(options["min"], int) else options["step"]
        for beyond in (options["min"] - step, options["max"] + step):
            with pytest.raises(ValueError) as info:
                build({key: beyond})
            assert str(info.value).startswith(f"{key} = ") and "out of range" in str(info.value), str(info.value)
