"""What a model family declares so that generic code never guesses its shapes.

A :class:`FamilyAdapter` is pure data, one per model family (``wan.py``, ``hunyuan.py``,
``ltxv.py``), in the spirit of diffusers' per-family ``TransformerBlockRegistry``:

* its transformer blocks: the ``patches_replace["dit"]`` key type of each block list, which
  tensors a block receives in ``args`` and returns, and whether it updates them **in place**
  (HunyuanVideo's ``img +=``, LTX-Video's ``x +=``), in which case a residual must be taken
  against a snapshot of the input made *before* the block ran;
* the names of the positional arguments the ``DIFFUSION_MODEL`` wrapper receives;
* for every forward input, how the trial makes it small (a :data:`TrialRule`), so the trial's
  inputs stay aligned with its downsampled latent. An input with no rule refuses the trial, by
  name, before sampling;
* which forward inputs are **shared by the CFG streams** of a batched call (``shared_inputs``).
  ComfyUI's ``calc_cond_batch`` runs cond and uncond in one call: ``transformer_options
  ["cond_or_uncond"]`` lists one entry per stream (0 = cond, 1 = uncond), and every input built
  from a ``CONDRegular`` / ``CONDCrossAttn`` / ``CONDNoiseShape`` / ``CONDList`` cond (and ``x``,
  the timestep, ControlNet hints) is the concatenation of one equal chunk per stream along dim 0.
  ``CONDConstant`` conds (LTX-Video's ``frame_rate``, Wan VACE's ``vace_strength``, HunyuanVideo's
  ``disable_time_r``) and ``transformer_options`` are passed once for all streams. Every input with
  a trial rule that is not in ``shared_inputs`` is batched per stream (see
  :func:`..trial_inputs.select_stream`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# -- how one forward input is made small for the trial ------------------------------------------
LATENT = "latent"
"""[B, C, T, H, W] or [B, C, H, W] on the latent's grid (its own T may differ): pooled like the latent."""
STACKED_LATENT = "stacked_latent"
"""[B, n, C, T, H, W]: n latent-shaped tensors stacked on dim 1 (Wan VACE's ``vace_context``)."""
TIMESTEP = "timestep"
"""[B] kept; [B, T] one timestep per latent frame (Wan 2.2 with a noise mask) pooled along T;
[B, N(, 1)] one per token (LTX-Video with a noise mask) pooled on the token grid."""
PIXELS = "pixels"
"""[B, C, T, s·H, s·W] at pixel resolution, s = the family's ``pixel_scale`` (Wan camera
control's Plücker embedding): pooled in whole s×s pixel cells, like the latent cell they belong to."""
TOKEN_HINTS = "token_hints"
"""ControlNet hints added to the image tokens: a dict of lists of [B, N, D] (or None entries) on the
token grid, pooled on that grid."""
KEYFRAME_COORDS = "keyframe_coords"
"""[B, 3, N, 2] pixel coordinates (t, h, w; start, end) of the tokens of frames appended after the
video's frames (LTX-Video's ``keyframe_idxs``, written by LTXVAddGuide): the tokens of the kept cells,
their coordinates mapped into the trial's coordinate system (see
:func:`..trial_inputs.map_keyframe_coords`)."""
KEEP = "keep"
"""Not aligned with the latent (text embeddings, pooled vectors, text masks, scalars): passed as is."""
OPTIONS = "transformer_options"
"""ComfyUI's per-call options dict (the glue replaces it for the trial)."""

TRIAL_RULES = (LATENT, STACKED_LATENT, TIMESTEP, PIXELS, TOKEN_HINTS, KEYFRAME_COORDS, KEEP, OPTIONS)

CONSUMED_BY_HOST = ("c_crossattn", "c_concat")
"""Model conds that ComfyUI's ``apply_model`` folds into the latent (``c_concat``, concatenated on the
channel axis) or the context argument before the diffusion model is called."""


@dataclass(frozen=True)
class BlockSpec:
    """One list of transformer blocks of a family."""

    patch_type: str
    """Key type in ``patches_replace["dit"]``: ``"double_block"`` or ``"single_block"``."""
    module_list: str
    """Attribute of the diffusion model holding the blocks (``blocks``, ``double_blocks``, …)."""
    tensors: tuple[str, ...]
    """Names in the block patch's ``args`` that the block transforms and returns, each [B, N, D]."""
    in_place: bool
    """True when the block updates those tensors in place and returns the same objects."""


@dataclass(frozen=True)
class FamilyAdapter:
    """Everything generic code needs to know about one model family (see module doc)."""

    name: str
    model_classes: tuple[str, ...]
    """ComfyUI ``model_base`` classes of this family that the test suite covers; others are refused."""
    blocks: tuple[BlockSpec, ...]
    forward_args: tuple[str, ...]
    """Names of the positional arguments of the family's ``DIFFUSION_MODEL`` wrapper call."""
    trial_rules: Mapping[str, str]
    """Forward input name → trial rule. Inputs not listed refuse the trial."""
    patch_size: tuple[int, int, int]
    """Latent cells per token along T, H, W (the token grid is the latent grid ÷ this)."""
    pixel_scale: int = 8
    """Pixels per latent cell along H and W, for :data:`PIXELS` inputs."""
    appended_frames: str | None = None
    """Input whose presence means frames are appended to the latent's T axis after the video's own
    (LTX-Video: ``keyframe_idxs``, one [3, 2] coordinate pair per appended token). While it is given,
    every latent-aligned input is pooled in two parts along T: the video's frames with the trial's
    factors, the appended frames on H and W only (every appended frame is kept)."""
    model_geometry: tuple[str, ...] = ()
    """Attributes of the diffusion model that the trial needs (LTX-Video: ``vae_scale_factors``,
    ``causal_temporal_positioning``, to map pixel coordinates): the glue records them in
    ``transformer_options`` before the first step (:func:`..trial_inputs.record_model_geometry`)."""
    shared_inputs: frozenset[str] = frozenset({"transformer_options"})
    """Forward inputs passed once for all CFG streams of a batched call (``CONDConstant`` conds,
    ``transformer_options``). Every other input with a trial rule is batched per stream: its dim 0,
    and that of every tensor nested in it (ControlNet hint lists, ``CONDList`` lists), is the
    concatenation of one equal chunk per entry of ``cond_or_uncond``."""

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.trial_rules.items() if v not in TRIAL_RULES}
        if bad:
            raise ValueError(f"{self.name}: unknown trial rules {bad}")
        missing = [a for a in self.forward_args if a not in self.trial_rules]
        if missing:
            raise ValueError(f"{self.name}: positional forward args without a trial rule: {missing}")
        if self.appended_frames is not None and self.trial_rules.get(self.appended_frames) != KEYFRAME_COORDS:
            raise ValueError(f"{self.name}: appended_frames input {self.appended_frames!r} needs the "
                             f"{KEYFRAME_COORDS!r} rule")
        unknown = sorted(n for n in self.shared_inputs if n not in self.trial_rules)
        if unknown:
            raise ValueError(f"{self.name}: shared inputs without a trial rule: {unknown}")

    def rule(self, name: str) -> str | None:
        return self.trial_rules.get(name)

    def batched_per_stream(self, name: str) -> bool | None:
        """True: dim 0 holds one chunk per CFG stream; False: shared by all streams; None: unknown input."""
        if name not in self.trial_rules:
            return None
        return name not in self.shared_inputs

    def refused_trial_inputs(self, names) -> list[str]:
        """Human-readable reasons for every input in ``names`` the trial cannot make small."""
        reasons = []
        for name in sorted(set(names)):
            if name not in CONSUMED_BY_HOST and name not in self.trial_rules:
                reasons.append(f"'{name}' (the trial does not know how to downsample it)")
        return reasons
