"""What a calibrated preset was measured on, as a config carries it into a run (pure Python).

:class:`RecordedSetup` is the setup a preset was measured on (written into its file by
:mod:`.preset_store`); :class:`PresetOrigin` is what an LFCache config made from the preset carries
(``LFCacheConfig.calibration``), so the run's report can say when its own setup differs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RecordedSetup:
    """What a preset was measured on."""

    model: str
    """The model class and family, e.g. 'WAN21 (Wan 2.1)'."""
    parameters: int
    """Parameter count of the diffusion model (tells a 1.3B from a 14B of the same class)."""
    latent_shape: tuple[int, ...]
    steps: int
    """Sampler steps in the schedule."""
    sampler: str
    sampler_function: str
    """The sampling function behind ``sampler`` (what a run can see; '' if unknown)."""
    scheduler: str
    cfg: float
    denoise: float

    def describe(self) -> str:
        return (f"{self.model}, {self.parameters:,} parameters, latent {_shape(self.latent_shape)}, {self.steps} steps, "
                f"{self.sampler}/{self.scheduler}, cfg {self.cfg:g}, denoise {self.denoise:g}")

    def differences(self, *, model: str, parameters: int, latent_shape, steps: int,
                    sampler_function: str | None = None, cfg: float | None = None) -> list[str]:
        """What differs between this setup and a run's: 'what: recorded → this run' per item.

        The batch size is not compared (it does not change each video's trajectory); the sampler and
        CFG only when the run's are known; the scheduler cannot be seen from a run and is not compared."""
        found = []
        if model != self.model or parameters != self.parameters:
            found.append(f"model {self.model} with {self.parameters:,} parameters → {model} with {parameters:,}")
        shape = tuple(int(s) for s in latent_shape)
        if shape[1:] != tuple(self.latent_shape[1:]):
            found.append(f"latent {_shape(self.latent_shape)} → {_shape(shape)}")
        if steps != self.steps:
            found.append(f"steps {self.steps} → {steps}")
        if sampler_function and self.sampler_function and sampler_function != self.sampler_function:
            found.append(f"sampler {self.sampler} ({self.sampler_function}) → {sampler_function}")
        if cfg is not None and not math.isclose(float(cfg), self.cfg, rel_tol=1e-6, abs_tol=1e-9):
            found.append(f"cfg {self.cfg:g} → {float(cfg):g}")
        return found


@dataclass(frozen=True)
class PresetOrigin:
    """What a config made from a calibrated preset carries into the run (for the report)."""

    name: str
    setup: RecordedSetup
    quality_floor_db: float
    psnr_db: float | None
    """PSNR measured at calibration (None: identical to uncached)."""
    measured_on: str

    def mismatch_note(self, differences: list[str]) -> str | None:
        if not differences:
            return None
        measured = "identical to uncached" if self.psnr_db is None else f"{self.psnr_db:.1f} dB"
        return (f"calibrated preset '{self.name}' was recorded on a different setup ({'; '.join(differences)}): "
                f"its quality there ({measured} vs uncached on the {self.measured_on}, floor "
                f"{self.quality_floor_db:g} dB) is not measured for this run; run PreciseCache Calibrate on this "
                f"setup to know it")


def _shape(shape) -> str:
    return "×".join(str(int(s)) for s in shape)
