"""Several GPUs on one sample: tell PreciseCache which ranks cooperate, and where its trial runs.

``attach_sample_group(model, SampleGroup(group))`` (the explicit API; the Ray nodes call it inside
every actor) clones a model that already carries LFCache and/or BlockCache and stores the group in its
``transformer_options``: each sampling run then agrees its decisions over that group
(:mod:`precisecache_core.rank_sync`). No group (or a group of one rank) changes nothing.

The trial under sequence parallelism: the trial goes through the same ``diffusion_model`` as a full
forward, so under raylight's USP it runs **sharded** like the full forward (its ~32× fewer tokens
split again over the ranks, with every block's all-to-alls and the final all-gather). With
``unsharded_trial=True`` a DIFFUSION_MODEL wrapper runs the trial calls with the instance-level
method swaps of the USP injection set aside (raylight replaces ``forward_orig`` of the WanModel and
``forward`` of the attention modules per instance), so every rank runs the whole small trial itself:
no collective inside, its work duplicated on every rank. Which is faster depends on the collectives'
latency against the trial's compute: measured on the CPU with gloo (``scripts/sp_trial_timing.py``,
2 ranks, ``docs/sp_trial_timing.json``) the unsharded trial was as fast or up to 1.5x faster at 48
trial tokens (there the collectives dominate), the sharded one 1.4–2.7x faster at 320 tokens and
3.5–5x at 2304 (a Wan 2.1 14B trial at 480p has ~1000), so sharded is the default. Not measured on GPUs.

``sample_group_ranks(dp_ranks, fsdp)`` is the topology rule: the ranks that must decide alike are
those with the same data-parallel rank — except under FSDP, whose forwards gather weights across all
of its ranks, so that all of them must decide alike whatever their data.
"""
from __future__ import annotations

import contextlib
import types
from typing import Sequence

import comfy.patcher_extension

from ..precisecache_core.rank_sync import SAMPLE_GROUP_KEY, SampleGroup
from .hooks import TRIAL_KEY, _transformer_options, get_setup

UNSHARDED_TRIAL_KEY = "precisecache_unsharded_trial"
TRIAL_MODES = ("sharded", "unsharded")
DEFAULT_TRIAL_MODE = "sharded"
"""Chosen by measurement on CPU/gloo (2 ranks; see the module doc); not measured on GPUs."""


def attach_sample_group(model, sample_group: SampleGroup, unsharded_trial: bool = False):
    """Clone ``model`` (which carries PreciseCache) with its decisions agreed over ``sample_group``."""
    if get_setup(model) is None:
        raise ValueError("attach the sample group after LFCache / BlockCache (PreciseCache): this model has neither")
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    options[SAMPLE_GROUP_KEY] = sample_group
    wrappers = comfy.patcher_extension.WrappersMP
    patched.remove_wrappers_with_key(wrappers.DIFFUSION_MODEL, UNSHARDED_TRIAL_KEY)
    if unsharded_trial:  # added after our own DIFFUSION_MODEL wrapper: inside it, so it sees the trial calls
        patched.add_wrapper_with_key(wrappers.DIFFUSION_MODEL, UNSHARDED_TRIAL_KEY, unsharded_trial_wrapper)
    return patched


@contextlib.contextmanager
def instance_methods_set_aside(module):
    """Remove, for the duration, every ``forward`` / ``forward_orig`` bound to a module instance
    itself (how raylight's USP injection swaps them), so the class's own methods run; then restore."""
    saved = []
    for m in module.modules():
        for name in ("forward_orig", "forward"):
            value = vars(m).get(name)
            if isinstance(value, types.MethodType) and value.__self__ is m:
                saved.append((m, name, value))
    try:
        for m, name, _ in saved:
            delattr(m, name)
        yield len(saved)
    finally:
        for m, name, value in saved:
            setattr(m, name, value)


def unsharded_trial_wrapper(executor, *args, **kwargs):
    """DIFFUSION_MODEL wrapper: LFCache's trial calls run on this rank alone (see module doc)."""
    options = _transformer_options(args, kwargs)
    if not options or not options.get(TRIAL_KEY):
        return executor(*args, **kwargs)
    with instance_methods_set_aside(executor.class_obj):
        return executor(*args, **kwargs)


def sample_group_ranks(dp_ranks: Sequence[int], fsdp: bool = False) -> list[list[int]]:
    """Partition of the world's ranks into the groups that must decide alike.

    ``dp_ranks[r]``: the data-parallel rank of world rank r (ranks with the same one compute the
    same sample: sequence, CFG and pipeline parallel). Under FSDP, one group of every rank."""
    world = list(range(len(dp_ranks)))
    if fsdp:
        return [world]
    groups: dict[int, list[int]] = {}
    for r, dp in enumerate(dp_ranks):
        groups.setdefault(int(dp), []).append(r)
    return [groups[k] for k in sorted(groups)]
