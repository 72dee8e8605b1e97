"""Calibrated preset files: names, where they may be read and written, damaged files, round trip."""
import json
import os

import pytest

from precisecache_core.preset_store import (CALIBRATED_PREFIX, SUBDIRECTORY, VERSION, CalibratedPreset, PresetError,
                                            PresetStore, RecordedSetup, check_name)

SETUP = RecordedSetup(model="WAN21 (Wan)", parameters=1_105_344, latent_shape=(1, 16, 3, 32, 32), steps=12,
                      sampler="euler", sampler_function="sample_euler", scheduler="simple", cfg=5.0, denoise=1.0)


def _preset(name="wan_480p", target=2.0, psnr=34.5):
    rows = ({"speed_target": None, "psnr_db": None, "identical": True},
            {"speed_target": target, "psnr_db": psnr, "identical": False})
    return CalibratedPreset(name=name, speed_target=target, quality_floor_db=33.0, measured_on="latent", setup=SETUP,
                            psnr_db=psnr, ssim=0.95, rows=rows, lfcache={"trial_downsample": [2, 4, 4]},
                            created="2026-01-01T00:00:00+00:00")


@pytest.fixture
def store(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    return PresetStore(str(user))


@pytest.mark.parametrize("name", ["a", "wan_480p", "Wan 2.1 T2V 14B", "x-1.5", "A" * 64, "0"])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../evil", "..", ".", "a/b", "a\\b", "/etc/passwd", ".hidden", "trailing.",
                                  " lead", "trail ", "A" * 65, "nul\0byte", "line\nbreak", "ünïcode", "a:b", 5, None])
def test_invalid_names_are_refused_naming_the_input(name):
    with pytest.raises(ValueError, match=r"^preset_name = .* is not allowed: a preset name is 1 to 64 letters"):
        check_name(name)
    with pytest.raises(ValueError, match=r"^preset = "):
        check_name(name, "preset")


def test_round_trip_and_file_layout(store, tmp_path):
    preset = _preset()
    path = store.save(preset)
    assert path == os.path.join(os.path.realpath(tmp_path / "user"), *SUBDIRECTORY, "wan_480p.json")
    data = json.loads(open(path, encoding="utf-8").read())
    assert data["version"] == VERSION and data["speed_target"] == 2.0
    assert data["setup"] == {"model": "WAN21 (Wan)", "parameters": 1_105_344, "latent_shape": [1, 16, 3, 32, 32],
                             "steps": 12, "sampler": "euler", "sampler_function": "sample_euler",
                             "scheduler": "simple", "cfg": 5.0, "denoise": 1.0}
    loaded = store.load("wan_480p")
    assert loaded == preset
    assert loaded.origin.setup == SETUP and loaded.origin.name == "wan_480p"
    assert store.names() == ["wan_480p"]
    assert not [f for f in os.listdir(store.directory) if f != "wan_480p.json"], "temporary file left behind"


def test_saving_again_replaces_and_file_name_wins(store):
    store.save(_preset(target=2.0))
    store.save(_preset(target=3.0))
    assert store.load("wan_480p").speed_target == 3.0
    os.rename(os.path.join(store.directory, "wan_480p.json"), os.path.join(store.directory, "copy.json"))
    assert store.load("copy").name == "copy"  # a copied or renamed file is that name's preset


def test_an_identical_run_is_stored_as_null_not_infinity(store):
    preset = _preset(psnr=None)
    text = open(store.save(preset), encoding="utf-8").read()
    assert "Infinity" not in text and store.load("wan_480p").psnr_db is None


def test_names_lists_only_preset_files(store):
    for name in ("b", "A", "c d"):
        store.save(_preset(name=name))
    for junk in (".A.x.tmp", "notes.txt", "bad name!.json", ".hidden.json"):
        open(os.path.join(store.directory, junk), "w").write("{}")
    os.mkdir(os.path.join(store.directory, "folder.json"))
    assert store.names() == ["A", "b", "c d"]
    assert PresetStore(str(store.user_directory) + "/missing").names() == []


def test_traversal_and_links_out_of_the_directory_are_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text(json.dumps(_preset().to_dict()))
    for name in ("../../outside/secret", "../x", "/tmp/x"):
        with pytest.raises(ValueError, match="is not allowed"):
            store.load(name)
        with pytest.raises(ValueError, match="is not allowed"):
            store.save(_preset(name=name))
    store.save(_preset(name="inside"))
    os.symlink(outside / "secret.json", os.path.join(store.directory, "linked.json"))
    with pytest.raises(PresetError, match=r"linked\.json resolves to .*outside the preset directory"):
        store.load("linked")
    with pytest.raises(PresetError, match="outside the preset directory"):
        store.save(_preset(name="linked"))
    assert os.path.islink(os.path.join(store.directory, "linked.json"))  # the user's link is left alone
    assert store.names() == ["inside"]
    os.symlink(os.path.join(store.directory, "inside.json"), os.path.join(store.directory, "alias.json"))
    assert store.load("alias").speed_target == 2.0  # a link within the directory stays inside


def test_a_preset_directory_that_leads_out_of_the_user_directory_is_refused(tmp_path):
    user, outside = tmp_path / "user", tmp_path / "elsewhere"
    (user / "default").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, user / "default" / "precisecache")
    store = PresetStore(str(user))
    with pytest.raises(PresetError, match="outside ComfyUI's user directory"):
        store.save(_preset())
    with pytest.raises(PresetError, match="outside ComfyUI's user directory"):
        store.load("wan_480p")
    assert list(outside.iterdir()) == []  # nothing was created out there
    assert store.names() == []


def _damage(store, name, content: bytes):
    os.makedirs(store.directory, exist_ok=True)
    path = os.path.join(store.directory, name + ".json")
    with open(path, "wb") as f:
        f.write(content)
    return path


def _valid_dict(**changes):
    data = _preset().to_dict()
    for key, value in changes.items():
        target = data
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return data


DAMAGED = [
    (b"{not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[1, 2]", "top level is a list"),
    (json.dumps(_valid_dict(format="something else")).encode(), "'format'"),
    (json.dumps(_valid_dict(version=VERSION + 1)).encode(), "newer PreciseCache"),
    (json.dumps(_valid_dict(version="1")).encode(), "'version'"),
    (json.dumps(_valid_dict(speed_target=KeyError)).encode(), "'speed_target'"),
    (json.dumps(_valid_dict(speed_target=99)).encode(), "outside \\[1.1, 6.0\\]"),
    (json.dumps(_valid_dict(speed_target=True)).encode(), "'speed_target'"),
    (json.dumps(_valid_dict(setup=KeyError)).encode(), "'setup'"),
    (json.dumps(_valid_dict(**{"setup.latent_shape": [1, -16]})).encode(), "latent_shape"),
    (json.dumps(_valid_dict(**{"setup.steps": 0})).encode(), "setup.steps"),
    (json.dumps(_valid_dict(**{"setup.model": 3})).encode(), "setup.model"),
    (json.dumps(_valid_dict(table={"a": 1})).encode(), "'table'"),
    (json.dumps(_valid_dict(psnr_db="high")).encode(), "'psnr_db'"),
    (b'{"format": "PreciseCache calibrated preset", "version": 1, "speed_target": NaN}', "NaN"),
    (b"{" + b" " * (1 << 20) + b"}", "more than a preset's"),
]


@pytest.mark.parametrize("content, reason", DAMAGED)
def test_damaged_files_are_refused_by_name(store, content, reason):
    path = _damage(store, "broken", content)
    with pytest.raises(PresetError) as info:
        store.load("broken", "preset")
    message = str(info.value)
    assert message.startswith(f"preset: preset file {path} is damaged: ")
    assert "calibrate again with the name 'broken'" in message.replace("Calibrate", "calibrate")
    import re
    assert re.search(reason, message), message
    assert store.names() == ["broken"]  # still listed: choosing it gives this message, never a crash


def test_a_missing_preset_names_the_saved_ones(store):
    store.save(_preset(name="one"))
    with pytest.raises(PresetError, match=r"no calibrated preset 'two' \(no file .*two\.json\); saved presets: one"):
        store.load("two")


def test_differences_name_what_changed():
    same = dict(model="WAN21 (Wan)", parameters=1_105_344, latent_shape=(2, 16, 3, 32, 32), steps=12,
                sampler_function="sample_euler", cfg=5.0)
    assert SETUP.differences(**same) == []  # the batch size is not compared
    assert SETUP.differences(**{**same, "sampler_function": None, "cfg": None}) == []  # unknown: not compared
    changed = SETUP.differences(model="WAN22 (Wan)", parameters=5, latent_shape=(1, 16, 3, 24, 32), steps=20,
                                sampler_function="sample_heun", cfg=3.5)
    assert changed == ["model WAN21 (Wan) with 1,105,344 parameters → WAN22 (Wan) with 5",
                       "latent 1×16×3×32×32 → 1×16×3×24×32", "steps 12 → 20",
                       "sampler euler (sample_euler) → sample_heun", "cfg 5 → 3.5"]
    note = _preset().origin.mismatch_note(changed[1:2])
    assert note.startswith("calibrated preset 'wan_480p' was recorded on a different setup (latent 1×16×3×32×32 → ")
    assert "34.5 dB vs uncached on the latent, floor 33 dB" in note
    assert _preset().origin.mismatch_note([]) is None


def test_prefix_is_what_the_node_lists_show():
    assert CALIBRATED_PREFIX == "calibrated: "
