"""Through the real server (comfy_server fixture) and the nodes in-process (issue 6, items 3-5):

* bad widget values: HTTP 400 at POST /prompt, node_errors naming the input: ComfyUI's own check
  against the schema for one input's range or options, our message (naming what is allowed) for the
  rules between inputs; NaN, which ComfyUI's range check lets through, refused by name when the node
  runs, before sampling; the server keeps serving;
* latent-dependent errors (trial factor larger than the latent, latent too small): a clear
  execution_error raised before sampling starts; the server keeps serving;
* one patched MODEL shared by several queued prompts and by two samplers in one graph, with
  different sizes, batch sizes and CFG: every run equals the same prompt run alone;
* POST /interrupt mid-sampling: the next prompt equals a fresh run.
"""
from __future__ import annotations

import json
import math
import time

import pytest
import torch

import harness
from cache_helpers import BLOCK_DEFAULTS, LF_DEFAULTS, count_work, pack_module, with_lfcache

LF = "PreciseCacheLFCache"
BLOCK = "PreciseCacheBlockCache"
STEPS = 12


def _graph(lf=None, block=None, seed=0, steps=STEPS, cfg=5.0, latent=None, prefix="reliability_server"):
    chain = [(LF, {**LF_DEFAULTS, "alpha": 1.5, **(lf or {})}),
             (BLOCK, {**BLOCK_DEFAULTS, "pivotal_ratio": 0.5, **(block or {})})]
    return harness.sample_graph("wan", seed=seed, steps=steps, cfg=cfg, model_chain=chain, latent=latent,
                                filename_prefix=f"latents/{prefix}")


def _post_raw(server, graph):
    """POST /prompt; (status, body) also for HTTP errors. NaN goes out as JSON's NaN literal."""
    response = server.request("POST", "/prompt", {"prompt": graph, "client_id": server.client_id})
    return response.status_code, json.loads(response.content)


OURS = "custom_validation_failed"
"""ComfyUI's error type for a message of a node's own validate_inputs."""
AT_RUN = None
"""POST /prompt accepts the value (ComfyUI's min/max check lets NaN through); the node refuses it when it runs."""

BAD_WIDGETS = [  # (node, values, the input named, what our message allows, how POST /prompt answers)
    (LF, {"preset": "custom", "alpha": -0.5}, "alpha", "[0.0, 2.0]", "value_smaller_than_min"),
    (LF, {"preset": "custom", "alpha": math.nan}, "alpha", "[0.0, 2.0]", AT_RUN),
    (LF, {"preset": "Turbo", "alpha": math.nan}, "alpha", "[0.0, 2.0]", AT_RUN),  # unused by the preset, still refused
    (LF, {"preset": "custom", "speed_target": 0.5}, "speed_target", "[1.1, 6.0]", OURS),  # 0 or 1.1..6
    (LF, {"preset": "Turbo", "speed_target": 7.0}, "speed_target", "[1.1, 6.0]", OURS),
    (LF, {"lowpass_radius": 0.0}, "lowpass_radius", "(0, 0.5]", "value_smaller_than_min"),
    (LF, {"lowpass_radius": 0.75}, "lowpass_radius", "(0, 0.5]", "value_bigger_than_max"),
    (LF, {"trial_downsample_h": 0}, "trial_downsample_h", "1..16", "value_smaller_than_min"),
    (LF, {"trial_downsample_t": 17}, "trial_downsample_t", "1..16", "value_bigger_than_max"),
    (LF, {"start_percent": 0.8, "end_percent": 0.3}, "start_percent", "smaller than end_percent", OURS),
    (LF, {"start_percent": 0.5, "end_percent": 0.5}, "start_percent", "smaller than end_percent", OURS),
    (LF, {"end_percent": 1.5}, "end_percent", "[0.0, 1.0]", OURS),  # named by our validate_inputs: our range check
    (LF, {"max_consecutive_skips": -1}, "max_consecutive_skips", "0..100", "value_smaller_than_min"),
    (LF, {"reuse": "both"}, "reuse", "choose one of", "value_not_in_list"),
    (BLOCK, {"pivotal_ratio": 1.5}, "pivotal_ratio", "[0.0, 1.0]", "value_bigger_than_max"),
    (BLOCK, {"refresh_interval": 0}, "refresh_interval", "1..20", "value_smaller_than_min"),
    (BLOCK, {"start_percent": 0.9, "end_percent": 0.1}, "start_percent", "smaller than end_percent", OURS),
    (BLOCK, {"memory_budget_mb": -1.0}, "memory_budget_mb", "[0.0, 10000000.0]", "value_smaller_than_min"),
    (BLOCK, {"residual_location": "disk"}, "residual_location", "choose one of", "value_not_in_list"),
    (BLOCK, {"change_threshold": 2.5}, "change_threshold", "[0.0, 2.0]", "value_bigger_than_max"),
]


@pytest.fixture(scope="module")
def server(comfy_server):
    return comfy_server


def _bad_graph(node, values, seed=0):
    return _graph(lf=values if node == LF else None, block=values if node == BLOCK else None, seed=seed)


def test_bad_widget_values_are_refused_with_400_naming_the_input(server):
    for node, values, name, allowed, answer in BAD_WIDGETS:
        if answer is AT_RUN:
            continue
        node_id = "10" if node == LF else "11"
        status, body = _post_raw(server, _bad_graph(node, values))
        assert status == 400, (node, values, body)
        assert set(body["node_errors"]) == {node_id}, body["node_errors"]  # only the bad node is blamed
        errors = body["node_errors"][node_id]["errors"]
        details = " ".join(e["details"] for e in errors)
        if answer == OURS:
            # ComfyUI files a custom validation message under every input our validate_inputs takes; each names
            # the bad one and what is allowed
            assert all(e["type"] == OURS and name in e["details"] and allowed in e["details"] for e in errors), \
                (values, details)
        else:  # ComfyUI's own check against the schema: on for every input our validate_inputs does not take
            assert [(e["type"], e["extra_info"]["input_name"]) for e in errors] == [(answer, name)], (values, errors)
            assert errors[0]["details"].startswith(name), (values, errors)
    # the server keeps serving
    entry = server.run_prompt(_graph(seed=1, prefix="after_bad_widgets"))
    assert torch.isfinite(server.load_saved_latent(entry)).all()


def test_nan_passes_comfyuis_range_check_and_is_refused_by_name_when_the_node_runs(server):
    for node, values, name, allowed, answer in BAD_WIDGETS:
        if answer is not AT_RUN:
            continue
        with pytest.raises(harness.PromptFailed) as info:
            server.run_prompt(_bad_graph(node, values))
        message = str(info.value)
        assert f"{name} = nan is out of range" in message and allowed in message, message
        assert f"({node})" in message and "ValueError" in message, message  # raised by our node, before sampling
    entry = server.run_prompt(_graph(seed=3, prefix="after_nan"))
    assert torch.isfinite(server.load_saved_latent(entry)).all()


def test_latent_dependent_errors_come_at_execution_start_and_server_keeps_serving(server):
    cases = [
        # 64x64 video -> 8x8 latent cells: a height factor of 16 does not fit
        (_graph(lf={"trial_downsample_h": 16}), r"trial_downsample_h = 16 does not fit this latent: it has 8 latent "
                                                r"height.*allowed 1\.\.8"),
        # 80x48 video -> 10 latent cells wide: a width factor of 12 does not fit
        (_graph(lf={"trial_downsample_w": 12},
                latent=("EmptyHunyuanLatentVideo", {"width": 80, "height": 48, "length": 5, "batch_size": 1})),
         r"trial_downsample_w = 12 does not fit this latent: it has 10 latent width.*allowed 1\.\.10"),
    ]
    for graph, message in cases:
        with pytest.raises(harness.PromptFailed, match=message) as info:
            server.run_prompt(graph)
        assert "KSampler" in str(info.value) and "ValueError" in str(info.value)
        entry = server.run_prompt(_graph(seed=2, prefix="after_exec_error"))
        assert torch.isfinite(server.load_saved_latent(entry)).all()


def test_latent_error_is_raised_before_the_model_runs(comfy, tiny_models, precisecache_pack):
    model = comfy.load_model("wan")
    patched = with_lfcache(comfy, model, trial_downsample_w=16)
    counter = count_work(model)
    try:
        with pytest.raises(ValueError, match=r"trial_downsample_w = 16 does not fit"):
            comfy.sample(patched, "wan", steps=STEPS, cfg=5.0)
        assert counter.entry_sizes == []
    finally:
        counter.close()


def test_single_cell_latent_is_refused_before_the_model_runs(comfy, tiny_models, precisecache_pack):
    """No ComfyUI latent node makes a latent this small (16 px minimum); a custom one could."""
    model = comfy.load_model("wan")
    patched = with_lfcache(comfy, model, trial_downsample_t=1, trial_downsample_h=1, trial_downsample_w=1)
    counter = count_work(model)
    try:
        with pytest.raises(ValueError, match=r"latent \(1, 16, 3, 1, 1\) is too small for a trial forward"):
            comfy.sample(patched, "wan", steps=STEPS, cfg=5.0, latent=torch.zeros(1, 16, 3, 1, 1))
        assert counter.entry_sizes == []
    finally:
        counter.close()


@pytest.mark.parametrize("node, values, name, allowed, answer", BAD_WIDGETS)
def test_node_validation_messages_in_process(comfy, precisecache_pack, node, values, name, allowed, answer):
    """Our Python API refuses every bad value by name; the node's validate_inputs the rules it owns."""
    defaults = LF_DEFAULTS if node == LF else BLOCK_DEFAULTS
    module = pack_module(precisecache_pack, "nodes.lfcache_node" if node == LF else "nodes.blockcache_node")
    with pytest.raises(ValueError) as info:
        module.config_from_inputs(**{**defaults, **values})
    assert str(info.value).startswith(name) and allowed in str(info.value), str(info.value)
    if answer == OURS:
        message = comfy.node(node).validate_inputs(**values)
        assert isinstance(message, str) and message.startswith(name) and allowed in message


# -- one patched model, many runs ----------------------------------------------------------------
def _two_sampler_graph(seed_a, seed_b, prefix):
    """Graph with two KSamplers fed by the same patched model: 64x64x9 batch 1 cfg 5, and
    80x48x5 batch 2 cfg 1."""
    g = _graph(seed=seed_a, prefix=f"{prefix}_a")
    g["7"] = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 80, "height": 48, "length": 5,
                                                                   "batch_size": 2}}
    g["8"] = {"class_type": "KSampler", "inputs": {**g["5"]["inputs"], "seed": seed_b, "cfg": 1.0,
                                                   "latent_image": ["7", 0]}}
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": f"latents/{prefix}_b"}}
    return g


def _outputs(server, entry, ids):
    return [server.load_saved_latent(entry, node_id) for node_id in ids]


def test_queued_prompts_and_two_samplers_share_one_patched_model(server):
    prompts = [
        (_two_sampler_graph(1, 2, "share1"), ["6", "9"]),
        (_graph(seed=3, cfg=3.0, latent=("EmptyHunyuanLatentVideo", {"width": 48, "height": 80, "length": 9,
                                                                     "batch_size": 2}), prefix="share2"), ["6"]),
        (_two_sampler_graph(4, 5, "share3"), ["6", "9"]),
    ]
    server.free()
    ids = [server.post_prompt(g) for g, _ in prompts]  # queued together, run one after another
    together = []
    for pid, (_, outs) in zip(ids, prompts):
        entry = server.wait_history(pid, timeout=120)
        together.append(_outputs(server, entry, outs))
    # the later prompts reused the cached loader and patched model (same MODEL object)
    cached = [server.get_json(f"/history/{pid}")[pid]["status"]["messages"] for pid in ids[1:]]
    for messages in cached:
        nodes_from_cache = next(d["nodes"] for e, d in messages if e == "execution_cached")
        assert "10" in nodes_from_cache and "11" in nodes_from_cache
    for (graph, outs), outputs in zip(prompts, together):
        server.free()  # fresh loader and patched model: the prompt runs alone
        alone = _outputs(server, server.run_prompt(graph, timeout=120), outs)
        for a, b in zip(outputs, alone):
            assert a.shape == b.shape and torch.equal(a, b)
    assert together[0][1].shape[0] == 2 and together[1][0].shape[0] == 2


def test_post_interrupt_mid_sampling_then_next_prompt_is_fresh(server):
    steps = 400  # long enough that the interrupt, sent once sampling is seen under way, lands well inside it
    big = _graph(seed=11, steps=steps, latent=("EmptyHunyuanLatentVideo", {"width": 256, "height": 256,
                                                                           "length": 33, "batch_size": 1}),
                 prefix="big")
    small = _graph(seed=12, prefix="after_interrupt")
    server.run_prompt(_graph(seed=13, prefix="warm"))  # loader and patched model cached
    mark = server.log_size()
    pid = server.post_prompt(big)
    ended = lambda: pid in server.get_json(f"/history/{pid}")  # noqa: E731
    # sampling is under way once the sampler's progress bar shows a finished step (not a timed guess)
    server.wait_for_log(rf"\b[1-9]\d*/{steps} \[", since=mark, timeout=120, until=ended)
    server.post_json("/interrupt", {})
    with pytest.raises(harness.PromptFailed, match="interrupted"):
        server.wait_history(pid, timeout=120)
    log = server.log_since(mark)  # this prompt's lines only
    assert f"{steps}/{steps} [" not in log and "[run did not complete]" in log  # stopped mid-sampling, said so
    after = server.load_saved_latent(server.run_prompt(small))
    server.free()
    fresh = server.load_saved_latent(server.run_prompt(small))
    assert torch.equal(after, fresh)
