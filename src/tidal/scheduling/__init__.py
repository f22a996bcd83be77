"""Queues and instance workers between the facade and the model instances."""

from tidal.scheduling.base import Scheduler
from tidal.scheduling.direct import DirectScheduler
from tidal.scheduling.instance_pool import InstancePool

__all__ = ["DirectScheduler", "InstancePool", "Scheduler"]
