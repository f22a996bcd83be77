"""Composing the facade and its frontends into a running server, until a signal stops it."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

from tidal.config.settings import ServerSettings
from tidal.examples import example_repository
from tidal.frontends.http.handlers import HttpHandlers
from tidal.frontends.http.transport import HttpService
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

    try:
        http_socket = bind_socket(settings.http_address, settings.http_port)
    except OSError as exc:  # the port is taken, the address is not ours, ...
        logger.error("cannot listen on %s:%d: %s", settings.http_address, settings.http_port, exc)
        await server.stop()
        return 1
    http = await HttpService.start(HttpHandlers(server), http_socket)
    host, port = http.sockname[:2]
    logger.info("Started HTTPService at %s:%d", host, port)
    _log_how_to_call(host, port, server)

    await stop.wait()
    logger.info("shutting down: finishing accepted requests")
    await http.shutdown(timeout=GRACEFUL_SHUTDOWN_SECONDS)
    await server.stop()
    logger.info("stopped")
    return 0


def bind_socket(address: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one, read back with ``getsockname``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


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
