"""The metrics endpoint: ``GET /metrics`` in Prometheus text on its own port.

It reuses the HTTP/1.1 transport of the inference frontend with a handler that knows one
path; a scrape reads the models' statistics on the event loop, so it sees a consistent
snapshot without locks.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

from tidal.core.reply import Reply, error_reply
from tidal.frontends.metrics.collector import ModelMetricsCollector, StatisticsSource
from tidal.frontends.metrics.exposition import CONTENT_TYPE, render
from tidal.frontends.metrics.system import HostMetricsCollector
from tidal.http1.transport import HttpService

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
MAX_BODY_SIZE = 64 * 1024  # scrapes send no body


def default_collectors(source: StatisticsSource, *, cpu_metrics: bool = True) -> list[Collector]:
    """The model metrics, plus the process's and the host's CPU and memory when asked."""
    collectors: list[Collector] = [ModelMetricsCollector(source)]
    if cpu_metrics:
        # registry=None: these are rendered by this service, not by a global registry
        collectors += [
            ProcessCollector(registry=None),
            PlatformCollector(registry=None),
            HostMetricsCollector(),
        ]
    return collectors


class MetricsHandlers:
    """Answers ``GET``/``HEAD /metrics``; every other request gets a JSON error."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        if path.rstrip("/") != METRICS_PATH:
            return error_reply(404, f"no endpoint at {path}: metrics are served at {METRICS_PATH}")
        if method not in ("GET", "HEAD"):
            reply = error_reply(405, f"method {method} is not allowed on {path}")
            reply.headers.append(("allow", "GET"))
            return reply
        try:
            text = render(self.collectors)
        except Exception as exc:  # a broken collector must not take the endpoint down
            logger.exception("collecting metrics failed")
            return error_reply(500, f"collecting metrics failed: {exc}")
        return Reply(200, text, CONTENT_TYPE)


async def start_metrics_service(
    source: StatisticsSource, sock: socket.socket, *, cpu_metrics: bool = True
) -> HttpService:
    """Serve ``/metrics`` on ``sock`` (bound and listening) from the running loop."""
    handlers = MetricsHandlers(default_collectors(source, cpu_metrics=cpu_metrics))
    return await HttpService.start(handlers, sock, max_body_size=MAX_BODY_SIZE)
