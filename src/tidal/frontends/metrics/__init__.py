"""Observability: Prometheus metrics on their own port and the JSON access log.

``service.MetricsHandlers`` answers ``/metrics`` (imported from its module: it depends on the
HTTP frontend, which itself uses ``access_log``).
"""

from tidal.frontends.metrics.access_log import AccessLog
from tidal.frontends.metrics.collector import ModelMetricsCollector

__all__ = ["AccessLog", "ModelMetricsCollector"]
