"""Calibrated presets: named speed targets measured on one setup, kept as JSON files (pure Python).

A preset is written by the PreciseCache Calibrate node and offered by the cache nodes' preset lists
as ``"calibrated: <name>"``. The file records what it was measured on (:class:`RecordedSetup`), so
a run on another setup can say so in its report (:meth:`RecordedSetup.differences`, in
:mod:`.preset_origin`).

Where: ``<ComfyUI user directory>/default/precisecache/presets/<name>.json`` (:class:`PresetStore`;
ComfyUI's own user files, such as saved workflows, live in ``<user>/default/`` too, and its
``/userdata`` API lists them). Nothing is read or written outside the user directory:

* a name is a slug — 1 to 64 letters, digits, spaces, ``.``, ``_``, ``-``, starting and ending
  with a letter or digit — so it cannot hold a path separator or ``..``; anything else is refused
  with a ValueError naming the input;
* the file's path is resolved (symbolic links followed) and must lie in the preset directory,
  which must itself resolve inside the user directory;
* a file that is not a preset (bad JSON, wrong fields, too large, a newer version) is refused with a
  :class:`PresetError` naming the file, never half-read.

Writing is atomic (a temporary file in the same directory, then ``os.replace``).
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import SPEED_TARGET_RANGE
from .preset_origin import PresetOrigin, RecordedSetup

FORMAT = "PreciseCache calibrated preset"
VERSION = 1
SUBDIRECTORY = ("default", "precisecache", "presets")
"""Path of the preset directory below ComfyUI's user directory."""
CALIBRATED_PREFIX = "calibrated: "
"""How the cache nodes' preset lists show a calibrated preset."""
MAX_FILE_BYTES = 1 << 20
NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9])?")
NAME_RULE = ("1 to 64 letters, digits, spaces, '.', '_' or '-', starting and ending with a letter or digit "
             "(no path separators)")


class PresetError(ValueError):
    """A preset that cannot be used: unknown, damaged, or outside the preset directory."""


def check_name(name: Any, input_name: str = "preset_name") -> str:
    """``name`` if it is a valid preset name, else a ValueError naming ``input_name`` and the rule."""
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise ValueError(f"{input_name} = {name!r} is not allowed: a preset name is {NAME_RULE}")
    return name


@dataclass(frozen=True)
class CalibratedPreset:
    name: str
    speed_target: float
    quality_floor_db: float
    measured_on: str
    """'latent' or 'decoded frames': where PSNR and SSIM were measured."""
    setup: RecordedSetup
    psnr_db: float | None
    """The chosen run's PSNR vs uncached (None: identical)."""
    ssim: float | None
    rows: tuple[dict, ...] = field(default=(), hash=False)
    """The measured table, one dict per run (uncached first)."""
    lfcache: dict = field(default_factory=dict, hash=False, compare=False)
    """The LFCache settings the runs used besides the speed target (for reference)."""
    created: str = ""

    @property
    def origin(self) -> PresetOrigin:
        return PresetOrigin(self.name, self.setup, self.quality_floor_db, self.psnr_db, self.measured_on)

    def to_dict(self) -> dict:
        s = self.setup
        return {
            "format": FORMAT, "version": VERSION, "name": self.name, "speed_target": self.speed_target,
            "quality_floor_db": self.quality_floor_db, "measured_on": self.measured_on,
            "psnr_db": self.psnr_db, "ssim": self.ssim, "created": self.created,
            "setup": {**asdict(s), "latent_shape": list(s.latent_shape)},
            "lfcache": dict(self.lfcache), "table": [dict(r) for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: Any, name: str) -> "CalibratedPreset":
        """Parse a preset file's content (ValueError with the reason when it is not a valid preset)."""
        if not isinstance(data, dict):
            raise ValueError(f"the top level is a {type(data).__name__}, not an object")
        if data.get("format") != FORMAT:
            raise ValueError(f"'format' is {data.get('format')!r}, not {FORMAT!r}")
        version = data.get("version")
        if not _is_int(version) or version < 1:
            raise ValueError(f"'version' is {version!r}, not a positive integer")
        if version > VERSION:
            raise ValueError(f"it was written by a newer PreciseCache (preset version {version}; this one reads "
                             f"version {VERSION})")
        low, high = SPEED_TARGET_RANGE
        target = _number(data, "speed_target")
        if not low <= target <= high:
            raise ValueError(f"'speed_target' {target!r} is outside [{low}, {high}]")
        setup = data.get("setup")
        if not isinstance(setup, dict):
            raise ValueError("'setup' is missing or not an object")
        shape = setup.get("latent_shape")
        if not isinstance(shape, list) or not 3 <= len(shape) <= 6 or not all(_is_int(v) and v > 0 for v in shape):
            raise ValueError(f"'setup.latent_shape' is {shape!r}, not a list of 3 to 6 positive integers")
        steps = setup.get("steps")
        if not _is_int(steps) or steps < 1:
            raise ValueError(f"'setup.steps' is {steps!r}, not a positive integer")
        parameters = setup.get("parameters")
        if not _is_int(parameters) or parameters < 0:
            raise ValueError(f"'setup.parameters' is {parameters!r}, not a non-negative integer")
        recorded = RecordedSetup(
            model=_text(setup, "model", "setup."), parameters=parameters, latent_shape=tuple(shape), steps=steps,
            sampler=_text(setup, "sampler", "setup."), sampler_function=_text(setup, "sampler_function", "setup."),
            scheduler=_text(setup, "scheduler", "setup."), cfg=_number(setup, "cfg", "setup."),
            denoise=_number(setup, "denoise", "setup."))
        table = data.get("table", [])
        if not isinstance(table, list) or not all(isinstance(r, dict) for r in table):
            raise ValueError("'table' is not a list of objects")
        lfcache = data.get("lfcache", {})
        if not isinstance(lfcache, dict):
            raise ValueError("'lfcache' is not an object")
        psnr_db = data.get("psnr_db")
        ssim = data.get("ssim")
        for key, value in (("psnr_db", psnr_db), ("ssim", ssim)):
            if value is not None and not _is_number(value):
                raise ValueError(f"'{key}' is {value!r}, not a number or null")
        return cls(name=name, speed_target=float(target), quality_floor_db=_number(data, "quality_floor_db"),
                   measured_on=_text(data, "measured_on"), setup=recorded,
                   psnr_db=None if psnr_db is None else float(psnr_db), ssim=None if ssim is None else float(ssim),
                   rows=tuple(table), lfcache=lfcache, created=str(data.get("created", "")))


class PresetStore:
    """The preset directory below a ComfyUI user directory (see the module doc)."""

    def __init__(self, user_directory: str):
        self.user_directory = os.path.realpath(user_directory)
        self.directory = os.path.join(self.user_directory, *SUBDIRECTORY)

    def path(self, name: str, input_name: str = "preset_name") -> str:
        """The file of preset ``name``, checked to resolve inside the preset directory."""
        check_name(name, input_name)
        path = os.path.join(self.directory, name + ".json")
        real_dir = os.path.realpath(self.directory)
        if not _inside(real_dir, self.user_directory):
            raise PresetError(f"the preset directory {self.directory} resolves to {real_dir}, outside ComfyUI's "
                              f"user directory {self.user_directory}: refused")
        real = os.path.realpath(path)
        if os.path.dirname(real) != real_dir:
            raise PresetError(f"preset file {path} resolves to {real}, outside the preset directory {real_dir}: "
                              f"refused")
        return path

    def names(self) -> list[str]:
        """Names of the preset files present (valid names only; content not checked), sorted."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return []
        found = []
        for entry in entries:
            stem, ext = os.path.splitext(entry)
            if ext != ".json" or NAME_RE.fullmatch(stem) is None:
                continue
            try:
                path = self.path(stem)
            except ValueError:
                continue
            if os.path.isfile(path):
                found.append(stem)
        return sorted(found, key=lambda n: (n.lower(), n))

    def save(self, preset: CalibratedPreset) -> str:
        """Write ``preset`` (replacing one of the same name); returns the file's path."""
        path = self.path(preset.name)
        text = json.dumps(preset.to_dict(), indent=2, allow_nan=False, ensure_ascii=False)
        os.makedirs(self.directory, exist_ok=True)
        self.path(preset.name)  # again, now that the directories exist
        handle, temporary = tempfile.mkstemp(prefix=f".{preset.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return path

    def load(self, name: str, input_name: str = "preset") -> CalibratedPreset:
        """Read preset ``name``; PresetError naming the file if it is missing or damaged."""
        path = self.path(name, input_name)
        if not os.path.isfile(path):
            known = self.names()
            raise PresetError(f"{input_name}: there is no calibrated preset {name!r} (no file {path}); saved presets: "
                              f"{', '.join(known) if known else 'none'}")
        try:
            size = os.path.getsize(path)
            if size > MAX_FILE_BYTES:
                raise ValueError(f"it is {size} bytes, more than a preset's {MAX_FILE_BYTES}")
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
            try:
                data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
            except UnicodeDecodeError as e:
                raise ValueError(f"it is not UTF-8 text ({e.reason} at byte {e.start})") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"it is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
            return CalibratedPreset.from_dict(data, name)
        except OSError as e:
            raise PresetError(f"{input_name}: preset file {path} cannot be read ({e.strerror or e})") from None
        except ValueError as e:
            raise PresetError(f"{input_name}: preset file {path} is damaged: {e}. Delete it, or run PreciseCache "
                              f"Calibrate again with the name {name!r}") from None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _refuse_constant(token: str):
    raise ValueError(f"it holds {token}, which is not a JSON number")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(data: dict, key: str, where: str = "") -> float:
    value = data.get(key)
    if not _is_number(value):
        raise ValueError(f"'{where}{key}' is {value!r}, not a number")
    return float(value)


def _text(data: dict, key: str, where: str = "") -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"'{where}{key}' is {value!r}, not a string")
    return value
