"""Composing the facade and its frontends into a running server, until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from tidal.config.settings import ServerSettings
from tidal.examples import example_repository
from tidal.frontends.http import HttpFrontend
from tidal.server.facade import InferenceServer

logger = logging.getLogger("tidal")

GRACEFUL_SHUTDOWN_SECONDS = 30


def run(settings: ServerSettings) -> int:
    """Serve until SIGINT or SIGTERM; return the process exit code."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))


async def serve(settings: ServerSettings) -> int:
    """Load the models, start the frontends, wait for a stop signal, shut down cleanly."""
    repositories = [Path(p) for p in settings.model_repository] or [example_repository()]
    server = InferenceServer(settings, repositories)
    logger.info("loading models from %s", ", ".join(str(p) for p in repositories))
    try:
        failed = await server.start()
    except ValueError as exc:  # an unusable repository (missing folder, duplicate model)
        logger.error("%s", exc)
        return 1
    if failed and settings.exit_on_error:
        logger.error(
            "exiting: %d model(s) failed to load (use --exit-on-error=false to serve the rest)",
            len(failed),
        )
        await server.stop()
        return 1
    _log_model_table(server)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    http_socket = bind_socket(settings.http_address, settings.http_port)
    http = _EmbeddedUvicorn(
        uvicorn.Config(
            HttpFrontend(server),
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
    while not http.started and not http_task.done():
        await asyncio.sleep(0.01)
    if http_task.done():
        http_task.result()  # re-raise what stopped it
        return 1
    host, port = http_socket.getsockname()[:2]
    logger.info("Started HTTPService at %s:%d", host, port)
    _log_how_to_call(host, port, server)

    await stop.wait()
    logger.info("shutting down: finishing accepted requests")
    http.should_exit = True
    await http_task
    await server.stop()
    logger.info("stopped")
    return 0


def bind_socket(address: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one, read back with ``getsockname``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn serving inside tidal's loop: tidal owns the signals and the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _log_model_table(server: InferenceServer) -> None:
    for record in server.repository.records():
        versions = (
            ", ".join(f"{v}:{r.state.value}" for v, r in sorted(record.versions.items()))
            or record.state.value
        )
        logger.info(
            "model %-24s %s%s", record.name, versions, f"  ({record.reason})" * bool(record.reason)
        )


def _log_how_to_call(host: str, port: int, server: InferenceServer) -> None:
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    logger.info(
        "health:  curl -s -o /dev/null -w '%%{http_code}\\n' http://%s:%d/v2/health/ready",
        shown,
        port,
    )
    records = server.repository.records()
    if records:
        logger.info("a model: curl http://%s:%d/v2/models/%s", shown, port, records[0].name)
