"""BlockCache node: inside computed steps, reuse the residuals of non-pivotal transformer blocks."""
from __future__ import annotations

from comfy_api.latest import io

from ..precisecache_core import BlockCacheConfig
from ..precisecache_core.config import TRIAL_GUIDED_BLOCKCACHE, check_inputs
from .hooks import apply_setup
from .inputs import CATEGORY, config_inputs, config_values, model_input, validation_result

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
                *config_inputs(DEFAULT, "pivotal_ratio", "refresh_interval", "start_percent", "end_percent",
                               "ranking", "memory_budget_mb", "residual_location", "mode", "change_threshold"),
            ],
            outputs=[io.Model.Output(tooltip="The model with BlockCache; connect it to any sampler.")],
        )

    @classmethod
    def validate_inputs(cls, start_percent=None, end_percent=None) -> bool | str:
        """What ComfyUI's own checks against the schema cannot judge (it leaves the inputs named here to us
        and checks every other one): start_percent < end_percent. None: an input linked from another node,
        checked when the node runs."""
        return validation_result(check_inputs, BlockCacheConfig,
                                 dict(start_percent=start_percent, end_percent=end_percent))

    @classmethod
    def execute(cls, model, **inputs) -> io.NodeOutput:
        return io.NodeOutput(apply_setup(model, block=config_from_inputs(**inputs)))


def config_from_inputs(**inputs) -> BlockCacheConfig:
    """The validated BlockCache config for the node's inputs by name (ValueError naming the bad input);
    one not given takes the node's default; anything else is ignored."""
    return BlockCacheConfig(**config_values(DEFAULT, inputs)).validate()
