"""BlockCache node: inside computed steps, reuse the residuals of non-pivotal transformer blocks."""
from __future__ import annotations

from comfy_api.latest import io

from ..precisecache_core import BlockCacheConfig
from ..precisecache_core.config import BLOCK_MODES, CHANGE_THRESHOLD_RANGE, RANKING_NORMS, RESIDUAL_LOCATIONS
from .hooks import apply_setup
from .inputs import CATEGORY, model_input, validation_result, window_inputs

DEFAULT = BlockCacheConfig()


class BlockCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheBlockCache",
            display_name="BlockCache (PreciseCache)",
            category=CATEGORY,
            description="Inside the steps that are computed, the top pivotal_ratio of transformer blocks (largest "
                        "input-output change) are always run; the others reuse their cached residual for "
                        "refresh_interval computed steps, then everything is re-measured.",
            inputs=[
                model_input(),
                io.Float.Input("pivotal_ratio", default=0.4, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of blocks always computed (paper: 0.4). 1.0 = BlockCache off."),
                io.Int.Input("refresh_interval", default=3, min=1, max=20,
                             tooltip="Computed steps that reuse residuals after each full refresh (paper: L = 3)."),
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
                               tooltip="static: the paper's rule (the top pivotal_ratio of blocks always run, the "
                                       "others reuse their residual for refresh_interval computed steps, then all "
                                       "are refreshed). trial_guided: each block reuses its residual only while its "
                                       "residual in LFCache's small trial forward changed by less than "
                                       "change_threshold since it was stored, else that block alone is recomputed; "
                                       "needs LFCache on the model (without it: static, and the report says so)."),
                io.Float.Input("change_threshold", default=DEFAULT.change_threshold, min=CHANGE_THRESHOLD_RANGE[0],
                               max=CHANGE_THRESHOLD_RANGE[1], step=0.01, optional=True,
                               tooltip="trial_guided only: largest relative change |r_now - r_stored| / |r_stored| "
                                       "of a block's trial residual for which its cached residual is still reused "
                                       "(0 = never reuse where a trial ran; larger = more reuse, less fidelity)."),
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


def config_from_inputs(pivotal_ratio: float = 0.4, refresh_interval: int = 3, start_percent: float = 0.0,
                       end_percent: float = 1.0, ranking: str = "relative_l2", memory_budget_mb: float = 0.0,
                       residual_location: str = "gpu", mode: str = DEFAULT.mode,
                       change_threshold: float = DEFAULT.change_threshold, **_ignored) -> BlockCacheConfig:
    """The validated BlockCache config for the node's inputs (ValueError naming the bad input)."""
    return BlockCacheConfig(pivotal_ratio=pivotal_ratio, refresh_interval=refresh_interval,
                            start_percent=start_percent, end_percent=end_percent, ranking=ranking,
                            memory_budget_mb=memory_budget_mb, residual_location=residual_location, mode=mode,
                            change_threshold=change_threshold).validate()
