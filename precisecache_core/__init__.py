"""PreciseCache core: pure torch, no ComfyUI import. The rooms, in the order a model call meets them:

Settings
- :mod:`settings`       the description (default, range, tooltip) of each user setting, on its config field
- :mod:`config`         LFCacheConfig / BlockCacheConfig, presets, validation
- :mod:`preset_store`, :mod:`preset_origin`, :mod:`calibration`, :mod:`quality`   calibrated presets, the setup
                        each was measured on, and how they are measured

One run (:mod:`run` ties these together; one PreciseCacheRun per sampling run)
- :mod:`schedule`       model call → sampler step and slot
- :mod:`trial`, :mod:`trial_inputs`   the downsampled trial call; :mod:`trial_cost` what it costs
- :mod:`lowpass`        the low-frequency difference the decision reads
- :mod:`step_policy`    LFCache: trial or not, skip or compute (rules: :mod:`step_decision` α,
                        :mod:`speed_target` budget; :mod:`rank_sync` agrees them over ranks)
- :mod:`step_cache`     the stored predictions a skipped step returns
- :mod:`block_schedule` BlockCache's phase per computed step; :mod:`block_cache` the residuals;
                        :mod:`block_guidance` the trial-guided per-block rule
- :mod:`step_record`    what happened per step → :mod:`report` the run report

Per model family
- :mod:`families`       block patch points, in-place blocks, trial rules (Wan, HunyuanVideo, LTX-Video)
"""
from .block_cache import BlockResidualCache, select_pivotal
from .config import (FLASH_BLOCKCACHE, LFCACHE_PRESETS, SAMPLER_PRESETS, BlockCacheConfig, LFCacheConfig)
from .lowpass import low_frequency_distance, low_pass, lowpass_mask
from .report import RunReport
from .run import CallPlan, PreciseCacheRun
from .schedule import StepClock
from .step_decision import StepDecider
from .trial import check_factors_fit, pool

__all__ = [
    "BlockCacheConfig", "BlockResidualCache", "CallPlan", "FLASH_BLOCKCACHE", "LFCACHE_PRESETS", "LFCacheConfig",
    "PreciseCacheRun", "RunReport", "SAMPLER_PRESETS", "StepClock", "StepDecider", "check_factors_fit",
    "low_frequency_distance", "low_pass", "lowpass_mask", "pool", "select_pivotal",
]
