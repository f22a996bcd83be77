"""Composing a model version's scheduler from its configuration, once, at load time."""

from __future__ import annotations

from tidal.config.model_config import ModelConfig
from tidal.scheduling.base import Scheduler
from tidal.scheduling.direct import DirectScheduler
from tidal.scheduling.dynamic_batcher import DynamicBatchScheduler
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import ModelStatistics


def build_scheduler(config: ModelConfig, pool: InstancePool, stats: ModelStatistics) -> Scheduler:
    """Dynamic batching when the config asks for it on a batching model; otherwise each
    request runs as it comes, concurrently across the instances."""
    if config.dynamic_batching is not None and config.max_batch_size > 0:
        return DynamicBatchScheduler(pool, config, stats)
    return DirectScheduler(pool, config, stats)
