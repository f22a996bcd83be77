"""Composing a model version's scheduler from its configuration, once, at load time."""

from __future__ import annotations

from tidal.config.model_config import ModelConfig
from tidal.scheduling.base import Scheduler
from tidal.scheduling.direct import DirectScheduler
from tidal.scheduling.instance_pool import InstancePool


def build_scheduler(config: ModelConfig, pool: InstancePool) -> Scheduler:
    """The scheduler for a model version: requests run as they come, across instances."""
    return DirectScheduler(pool, config.name)
