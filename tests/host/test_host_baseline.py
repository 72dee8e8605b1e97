"""Baseline: the host harness itself works (no PreciseCache code involved).

Tiny models of each architecture are detected by ComfyUI's loader, sample in-process with
KSampler, run through ComfyUI's execution engine, and run through a headless server over HTTP.
"""
import os

import pytest
import torch

import harness
import tiny_models as tm

KINDS = sorted(tm.MODEL_KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_model_detected_by_comfyui_loader(comfy, tiny_models, kind):
    spec = tm.MODEL_KINDS[kind]
    assert os.path.isfile(os.path.join(harness.diffusion_models_dir(comfy.base_dir), tiny_models[kind]))
    assert tiny_models[kind] in comfy.folder_paths.get_filename_list("diffusion_models")
    model = comfy.load_model(kind)
    assert type(model.model.model_config).__name__ == tm.expected_model_class(kind) == spec.config_class
    assert type(model.model).__name__ == spec.model_class
    assert model.model.latent_format.latent_channels == spec.latent_channels
    # every written weight loaded unchanged, nothing missing or extra
    written, _ = tm.tiny_state_dict(kind, seed=0)
    loaded = model.model.diffusion_model.state_dict()
    assert sorted(loaded) == sorted(written)
    assert all(torch.equal(loaded[k], written[k]) for k in written)


def test_tiny_weights_are_deterministic(comfy):
    a, _ = tm.tiny_state_dict("wan", seed=0)
    b, _ = tm.tiny_state_dict("wan", seed=0)
    c, _ = tm.tiny_state_dict("wan", seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.head.weight"], c["head.head.weight"])


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_model_samples_in_process(comfy, tiny_models, kind):
    spec = tm.MODEL_KINDS[kind]
    model = comfy.load_model(kind)
    out1 = comfy.sample(model, kind, seed=3, steps=3, cfg=1.0)
    out5 = comfy.sample(model, kind, seed=3, steps=3, cfg=5.0)
    again = comfy.sample(model, kind, seed=3, steps=3, cfg=5.0)
    for out in (out1, out5):
        assert tuple(out.shape) == spec.latent_shape
        assert torch.isfinite(out).all()
        assert out.abs().max() > 0
    assert torch.equal(out5, again)           # deterministic
    assert not torch.allclose(out1, out5)     # positive != negative, so CFG changes the result


def test_required_conditioning_extras(comfy, tiny_models):
    model = comfy.load_model("ltxv")
    pos = comfy.conditioning("ltxv")
    pos[0][1].pop("attention_mask")
    with pytest.raises(TypeError, match="attention_mask"):
        comfy.sample(model, "ltxv", steps=1, positive=pos, negative=pos)
    model = comfy.load_model("hunyuan")
    pos = comfy.conditioning("hunyuan")
    pos[0][1].pop("pooled_output")
    with pytest.raises(KeyError, match="pooled_output"):
        comfy.sample(model, "hunyuan", steps=1, positive=pos, negative=pos)


def test_test_conditioning_node_in_process(comfy):
    node = comfy.node("PreciseCacheTestConditioning")()
    (pos,) = node.build("hunyuan", 7, 5, 4096, "positive")
    (neg,) = node.build("hunyuan", 7, 5, 4096, "negative")
    (pos2,) = node.build("hunyuan", 7, 5, 4096, "positive")
    assert pos[0][0].shape == (1, 5, 4096)
    assert pos[0][1]["pooled_output"].shape == (1, 768)
    assert torch.equal(pos[0][0], pos2[0][0])
    assert not torch.equal(pos[0][0], neg[0][0])
    assert torch.equal(pos[0][1]["pooled_output"], neg[0][1]["pooled_output"])


def test_execution_engine_in_process(comfy, tiny_models):
    executor = comfy.new_executor()
    graph = harness.sample_graph("wan", seed=5, steps=2, cfg=5.0)
    first = comfy.run_graph(graph, executor)
    assert set(first.executed) == set(graph)
    latent = comfy.load_saved_latent(first.outputs)
    assert tuple(latent.shape) == tm.MODEL_KINDS["wan"].latent_shape and torch.isfinite(latent).all()
    # unchanged graph: ComfyUI serves every node from its output cache
    second = comfy.run_graph(graph, executor)
    assert second.executed == set() and set(second.cached) == set(graph)
    with pytest.raises(harness.PromptRejected):
        comfy.run_graph(harness.sample_graph("wan", unet_name="no_such_model.safetensors"), executor)


def test_server_object_info_lists_test_nodes(comfy_server):
    info = comfy_server.object_info()
    for name in ("PreciseCacheTestConditioning", "UNETLoader", "KSampler", "SaveLatent",
                 "EmptyHunyuanLatentVideo", "EmptyLTXVLatentVideo"):
        assert name in info, name
    assert info["PreciseCacheTestConditioning"]["python_module"].endswith(harness.TEST_NODES_LINK_NAME)
    unets = info["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert set(unets) >= {s.filename for s in tm.MODEL_KINDS.values()}


@pytest.mark.parametrize("kind,cfg", [("wan", 5.0), ("wan_i2v", 5.0), ("wan22", 1.0), ("hunyuan", 1.0), ("ltxv", 5.0)])
def test_server_runs_sample_graph(comfy_server, kind, cfg):
    entry = comfy_server.run_prompt(harness.sample_graph(kind, seed=11, steps=2, cfg=cfg), timeout=60)
    assert entry["status"]["status_str"] == "success"
    assert harness.GRAPH_IDS["save"] in entry["outputs"]
    latent = comfy_server.load_saved_latent(entry)
    assert latent.ndim == 5 and latent.shape[1] == tm.MODEL_KINDS[kind].latent_channels
    assert torch.isfinite(latent).all()


def test_server_reports_rejected_and_failed_prompts(comfy_server):
    with pytest.raises(harness.PromptRejected, match="unet_name"):
        comfy_server.post_prompt(harness.sample_graph("wan", unet_name="no_such_model.safetensors"))
    # valid graph that fails at run time: Wan text width 4096 is fixed, 77 is wrong
    graph = harness.sample_graph("wan", seed=12, steps=1)
    for role in ("positive", "negative"):
        graph[harness.GRAPH_IDS[role]]["inputs"]["width"] = 77
    with pytest.raises(harness.PromptFailed, match="KSampler"):
        comfy_server.run_prompt(graph, timeout=60)
