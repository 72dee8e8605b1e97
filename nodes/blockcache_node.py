"""BlockCache node: inside computed steps, reuse the residuals of non-pivotal transformer blocks."""
from __future__ import annotations

from comfy_api.latest import io

from ..precisecache_core import BlockCacheConfig
from ..precisecache_core.config import (BLOCK_MODES, CHANGE_THRESHOLD_RANGE, RANKING_NORMS, RESIDUAL_LOCATIONS,
                                        TRIAL_GUIDED_BLOCKCACHE)
from .hooks import apply_setup
from .inputs import CATEGORY, model_input, validation_result, window_inputs

DEFAULT = TRIAL_GUIDED_BLOCKCACHE
"""The node's defaults: trial-guided (measured better than the paper's static rule at equal work)."""


class BlockCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheBlockCache",
            display_name="BlockCache (PreciseCache)",
            category=CATEGORY,
            description="Inside the steps that are computed, reuse transformer blocks' cached residuals. "
                        "trial_guided (default, needs LFCache): a block's residual is reused while LFCache's small "
                        "trial forward shows that block changed little since it was stored; else that block alone "
                        "is recomputed. static (the paper's): the top pivotal_ratio of blocks are always run, the "
                        "others reuse their residual for refresh_interval computed steps, then all are re-measured.",
            inputs=[
                model_input(),
                io.Float.Input("pivotal_ratio", default=DEFAULT.pivotal_ratio, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of blocks always computed (those whose residual changes the "
                                       "features most). static: the paper uses 0.4. trial_guided: 0 (measured "
                                       "best; the trial picks the blocks to recompute; without LFCache the static "
                                       "fallback then uses 0.4). 1.0 = BlockCache off."),
                io.Int.Input("refresh_interval", default=DEFAULT.refresh_interval, min=1, max=20,
                             tooltip="static: computed steps that reuse residuals after each full refresh (paper: "
                                     "L = 3). trial_guided: the most computed steps in a row a block may reuse "
                                     "its residual."),
                *window_inputs("block reuse"),
                io.Combo.Input("ranking", options=list(RANKING_NORMS), default="relative_l2", optional=True,
                               tooltip="How blocks are ranked: relative_l2 = |out - in| / |in|, l2 = |out - in|."),
                io.Float.Input("memory_budget_mb", default=0.0, min=0.0, max=1.0e7, step=64.0, optional=True,
                               tooltip="Cap on cached residual memory in MB (0 = no cap). Over the cap, fewer "
                                       "blocks are reused (computed instead); never runs out of memory on its own."),
                io.Combo.Input("residual_location", options=list(RESIDUAL_LOCATIONS), default="gpu", optional=True,
                               tooltip="Keep cached residuals on the GPU (fastest) or in pinned CPU memory "
                                       "(saves VRAM, costs transfers)."),
                io.Combo.Input("mode", options=list(BLOCK_MODES), default=DEFAULT.mode, optional=True,
                               tooltip="trial_guided (default; measured 0.5-1.9 dB better than static at equal work "
                                       "on a 12-block model): each block reuses its residual only while its residual "
                                       "in LFCache's small trial forward changed by less than change_threshold since "
                                       "it was stored, else that block alone is recomputed; a step without a trial "
                                       "computes every block. Needs LFCache on the model: without it the static rule "
                                       "runs and the report says so. static: the paper's rule (the top pivotal_ratio "
                                       "of blocks always run, the others reuse their residual for refresh_interval "
                                       "computed steps, then all are refreshed)."),
                io.Float.Input("change_threshold", default=DEFAULT.change_threshold, min=CHANGE_THRESHOLD_RANGE[0],
                               max=CHANGE_THRESHOLD_RANGE[1], step=0.005, optional=True,
                               tooltip="trial_guided only: a block's cached residual is reused while its trial "
                                       "residual changed by less than this since it was stored, relative to the "
                                       "block's input: |r_now - r_stored| / |input|. 0 = never reuse; larger = more "
                                       "reuse, less fidelity (12-block model: 0.015 / 0.02 / 0.03 saved 2 / 7 / 23 % "
                                       "more work at -0.3 / -1.1 / -3.7 dB)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with BlockCache; connect it to any sampler.")],
        )

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        return validation_result(config_from_inputs, **kwargs)

    @classmethod
    def execute(cls, model, pivotal_ratio: float, refresh_interval: int, start_percent: float, end_percent: float,
                ranking: str = "relative_l2", memory_budget_mb: float = 0.0,
                residual_location: str = "gpu", mode: str = DEFAULT.mode,
                change_threshold: float = DEFAULT.change_threshold) -> io.NodeOutput:
        config = config_from_inputs(pivotal_ratio=pivotal_ratio, refresh_interval=refresh_interval,
                                    start_percent=start_percent, end_percent=end_percent, ranking=ranking,
                                    memory_budget_mb=memory_budget_mb, residual_location=residual_location,
                                    mode=mode, change_threshold=change_threshold)
        return io.NodeOutput(apply_setup(model, block=config))


def config_from_inputs(pivotal_ratio: float = DEFAULT.pivotal_ratio, refresh_interval: int = DEFAULT.refresh_interval,
                       start_percent: float = 0.0,
                       end_percent: float = 1.0, ranking: str = "relative_l2", memory_budget_mb: float = 0.0,
                       residual_location: str = "gpu", mode: str = DEFAULT.mode,
                       change_threshold: float = DEFAULT.change_threshold, **_ignored) -> BlockCacheConfig:
    """The validated BlockCache config for the node's inputs (ValueError naming the bad input)."""
    return BlockCacheConfig(pivotal_ratio=pivotal_ratio, refresh_interval=refresh_interval,
                            start_percent=start_percent, end_percent=end_percent, ranking=ranking,
                            memory_budget_mb=memory_budget_mb, residual_location=residual_location, mode=mode,
                            change_threshold=change_threshold).validate()
