"""Session fixtures for host tests; see harness.py's docstring for the API."""
import os

import pytest

import harness
import tiny_models as tm


@pytest.fixture(scope="session")
def comfyui_dir():
    host = harness.find_comfyui()
    if host.path is None:
        pytest.skip(host.reason)
    return host.path


@pytest.fixture(scope="session")
def comfy_base_dir(comfyui_dir, tmp_path_factory):
    return harness.make_base_dir(tmp_path_factory.mktemp("comfy_base"))


@pytest.fixture(scope="session")
def comfy(comfyui_dir, comfy_base_dir):
    return harness.import_comfy(comfyui_dir, comfy_base_dir)


@pytest.fixture(scope="session")
def tiny_models(comfy, comfy_base_dir):
    directory = harness.diffusion_models_dir(comfy_base_dir)
    return {kind: tm.write_tiny_model(kind, directory, seed=0) for kind in tm.MODEL_KINDS}


@pytest.fixture(scope="session")
def precisecache_pack(comfy):
    try:
        return comfy.load_pack()
    except harness.PackLoadError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def comfy_server(comfyui_dir, comfy_base_dir, tiny_models, tmp_path_factory):
    log_path = os.path.join(tmp_path_factory.mktemp("comfy_server"), "comfyui_server.log")
    server = harness.ComfyServer(comfyui_dir, comfy_base_dir, log_path)
    try:
        server.start(timeout=90)
        yield server
    finally:
        server.stop()
