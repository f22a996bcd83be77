"""Composing the facade and its frontends into a running server, until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from pathlib import Path
from typing import Any

from tidal.config.settings import ServerSettings
from tidal.core.child_process import end_children
from tidal.core.sockets import bind_socket, inherited_socket
from tidal.examples import example_repository
from tidal.frontends.grpc.h2 import Bounds, Keepalive, TidalGrpcService
from tidal.frontends.grpc.server import GrpcService
from tidal.frontends.http.handlers import HttpHandlers
from tidal.frontends.metrics.access_log import AccessLog
from tidal.frontends.metrics.service import start_metrics_service
from tidal.http1.transport import HttpService
from tidal.security.setup import Security
from tidal.server.facade import InferenceServer

logger = logging.getLogger("tidal")

# After the exit timeout: how long cancelled requests get to send their error, and how long
# the models get to close before the process leaves without them.
_ANSWER_GRACE_SECONDS = 2.0
_UNLOAD_GRACE_SECONDS = 5.0
# How long child processes (Python-model workers) get between SIGTERM and SIGKILL at the end.
_CHILD_GRACE_SECONDS = 3.0


def run(settings: ServerSettings) -> int:
    """Serve until SIGINT or SIGTERM; return the process exit code."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))


async def serve(settings: ServerSettings) -> int:
    """Start the frontends, load the models, serve until a stop signal, shut down cleanly.

    The frontends listen while the start-up models load, so liveness answers true and
    readiness false until they are loaded; "Started HTTPService" is logged then, as Triton
    does. A stop signal turns readiness false and refuses new requests at once, lets the
    accepted ones finish for up to --exit-timeout-secs, cancels what is left with an error,
    and exits 0 (1 when requests had to be cancelled). With --shutdown-delay-secs, requests
    are still served for that long after the signal, with readiness false, before that.
    """
    _apply_log_verbose(settings.log_verbose)
    opened = _open_log_and_security(settings)
    if opened is None:
        return 1
    access_log, security = opened
    repositories = [Path(p) for p in settings.model_repository] or [example_repository()]
    server = InferenceServer(settings, repositories)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    frontends = _Frontends()
    try:
        http = await frontends.start(server, settings, access_log, security)
    except OSError:  # a port is taken, an address is not ours, ...
        await frontends.shutdown(timeout=0)
        return 1
    host, port = http.sockname[:2]
    if settings.http_listen_fd >= 0:
        logger.info("HTTP on the inherited socket %s:%d once the models are loaded", host, port)
    else:
        logger.info("HTTP listening at %s:%d while the models load", host, port)

    logger.info("loading models from %s", ", ".join(str(p) for p in repositories))
    stopping = asyncio.ensure_future(stop.wait())
    loaded = await _load_unless_stopped(server, settings, stopping)
    if loaded is None:  # stopped while loading
        return await _shut_down(server, frontends, settings.exit_timeout_secs, access_log)
    if not loaded:
        stopping.cancel()
        await _shut_down(server, frontends, 0, access_log)
        return 1
    _log_model_table(server)
    _tune_garbage_collector()
    await http.serve()  # accepting already, unless on an inherited socket
    logger.info("Started HTTPService at %s:%d", host, port)
    _log_how_to_call(host, port, server, security.scheme)

    await stopping
    if settings.shutdown_delay_secs > 0:
        await _delay_shutdown(server, frontends, settings, stop)
    return await _shut_down(server, frontends, settings.exit_timeout_secs, access_log)


def _open_log_and_security(
    settings: ServerSettings,
) -> tuple[AccessLog | None, Security] | None:
    """The access log and the keys/TLS setup; ``None`` (logged) when one cannot be opened."""
    try:
        access_log = AccessLog.open(settings.access_log) if settings.access_log else None
    except OSError as exc:
        logger.error("cannot open the access log '%s': %s", settings.access_log, exc)
        return None
    try:
        security = Security.from_settings(settings)
    except ValueError as exc:  # an unreadable keys file, certificate or key
        logger.error("%s", exc)
        return None
    if security.auth is not None:
        logger.info("bearer-key authentication on, keys from %s", settings.auth_keys_file)
    if security.ssl_context is not None:
        logger.info("TLS on for HTTP and gRPC, certificate %s", settings.ssl_certfile)
    return access_log, security


async def _load_unless_stopped(
    server: InferenceServer, settings: ServerSettings, stopping: asyncio.Future[Any]
) -> bool | None:
    """Load the start-up models; ``None`` when a stop signal came first, else whether the
    server may serve (it may not when the repository is unusable, or a model failed and
    --exit-on-error is on)."""
    loading = asyncio.ensure_future(server.start())
    await asyncio.wait((loading, stopping), return_when=asyncio.FIRST_COMPLETED)
    if not loading.done():
        logger.info("stop signal while the models load: stopping")
        loading.cancel()
        await asyncio.wait((loading,))
        return None
    try:
        failed = loading.result()
    except ValueError as exc:  # an unusable repository (missing folder, duplicate model)
        logger.error("%s", exc)
        return False
    if failed and settings.exit_on_error:
        logger.error(
            "exiting: %d model(s) failed to load (use --exit-on-error=false to serve the rest)",
            len(failed),
        )
        return False
    return True


def _keepalive(settings: ServerSettings) -> Keepalive:
    """The gRPC keepalive, ping-policing and idle settings (Triton's flags)."""
    return Keepalive(
        time_ms=settings.grpc_keepalive_time,
        timeout_ms=settings.grpc_keepalive_timeout,
        permit_without_calls=settings.grpc_keepalive_permit_without_calls,
        max_pings_without_data=settings.grpc_http2_max_pings_without_data,
        min_recv_ping_interval_without_data_ms=settings.grpc_http2_min_recv_ping_interval_without_data,
        max_ping_strikes=settings.grpc_http2_max_ping_strikes,
        max_connection_idle_ms=settings.grpc_max_connection_idle_ms,
    )


def _bounds(settings: ServerSettings) -> Bounds:
    """The gRPC header-read timeout and connection cap."""
    return Bounds(settings.grpc_header_timeout_secs, settings.grpc_max_connections)


class _Frontends:
    """The gRPC, metrics and HTTP services, started in that order and stopped together."""

    def __init__(self) -> None:
        self.grpc: GrpcService | TidalGrpcService | None = None
        self.metrics: HttpService | None = None
        self.http: HttpService | None = None

    async def start(
        self,
        server: InferenceServer,
        settings: ServerSettings,
        access_log: AccessLog | None,
        security: Security | None = None,
    ) -> HttpService:
        """Start every service and return the HTTP one; log and raise ``OSError`` when one
        cannot listen."""
        # gRPC first, as Triton does: once HTTP announces itself, both protocols answer.
        if settings.allow_grpc:
            try:
                if settings.grpc_transport == "aio":
                    self.grpc = await GrpcService.start(
                        server,
                        settings.grpc_address,
                        settings.grpc_port,
                        interceptors=security.grpc_interceptors if security else (),
                        credentials=security.grpc_credentials if security else None,
                        options=_keepalive(settings).channel_options()
                        + _bounds(settings).channel_options(),
                        max_message_bytes=settings.grpc_max_message_size,
                    )
                else:
                    self.grpc = await TidalGrpcService.start(
                        server,
                        settings.grpc_address,
                        settings.grpc_port,
                        auth=security.auth if security else None,
                        restriction=security.grpc_restriction if security else None,
                        ssl=security.grpc_ssl_context if security else None,
                        keepalive=_keepalive(settings),
                        bounds=_bounds(settings),
                        max_message_bytes=settings.grpc_max_message_size,
                    )
            except OSError as exc:
                logger.error(
                    "cannot listen on %s:%d: %s", settings.grpc_address, settings.grpc_port, exc
                )
                raise
            logger.info(
                "Started GRPCInferenceService at %s:%d", settings.grpc_address, self.grpc.port
            )
            logger.info("gRPC transport: %s (--grpc-transport)", settings.grpc_transport)
        # Metrics before HTTP too: once HTTP announces itself, /metrics answers.
        if settings.allow_metrics:
            metrics_address = settings.metrics_address or settings.http_address  # as Triton
            try:
                metrics_socket = bind_socket(metrics_address, settings.metrics_port)
            except OSError as exc:
                logger.error(
                    "cannot listen on %s:%d: %s", metrics_address, settings.metrics_port, exc
                )
                raise
            self.metrics = await start_metrics_service(
                server.model_statistics, metrics_socket, cpu_metrics=settings.allow_cpu_metrics
            )
            logger.info("Started Metrics Service at %s:%d", *self.metrics.sockname[:2])
        try:
            if settings.http_listen_fd >= 0:
                http_socket = inherited_socket(settings.http_listen_fd)
            else:
                http_socket = bind_socket(settings.http_address, settings.http_port)
        except OSError as exc:
            if settings.http_listen_fd >= 0:
                logger.error(
                    "cannot serve on --http-listen-fd %d: %s", settings.http_listen_fd, exc
                )
            else:
                logger.error(
                    "cannot listen on %s:%d: %s", settings.http_address, settings.http_port, exc
                )
            raise
        self.http = await HttpService.start(
            HttpHandlers(server, access_log, security.http_gate if security else None),
            http_socket,
            max_body_size=settings.http_max_input_size,
            header_timeout=settings.http_header_timeout_secs,
            idle_timeout=settings.http_idle_timeout_secs,
            max_connections=settings.http_max_connections,
            ssl=security.ssl_context if security else None,
            # A shared socket's connections would reach this server before it can answer
            # them: leave them to the processes sharing it until the models are loaded.
            start_serving=settings.http_listen_fd < 0,
        )
        return self.http

    async def shutdown(self, timeout: float) -> None:
        """Stop HTTP and gRPC (requests in flight get ``timeout`` seconds); metrics stay up
        until :meth:`shutdown_metrics`, so that the drain can be watched."""
        stops = []
        if self.http is not None:
            stops.append(self.http.shutdown(timeout=timeout))
        if self.grpc is not None:
            stops.append(self.grpc.shutdown(timeout=timeout))
        await asyncio.gather(*stops)
        await self.shutdown_metrics()

    async def shutdown_metrics(self) -> None:
        if self.metrics is not None:
            await self.metrics.shutdown(timeout=1)
            self.metrics = None


async def _delay_shutdown(
    server: InferenceServer,
    frontends: _Frontends,
    settings: ServerSettings,
    stop: asyncio.Event,
) -> None:
    """--shutdown-delay-secs: readiness false at once, requests still served for that long.

    This is the window in which load balancers (a Kubernetes Service, a proxy) take the server
    out of rotation: what still reaches it is answered, and each HTTP response closes its
    connection so that keep-alive clients reconnect to another replica. On an inherited socket
    the processes sharing it take new connections at once. A second stop signal ends the
    delay early.
    """
    delay = settings.shutdown_delay_secs
    server.withdraw()
    inherited = settings.http_listen_fd >= 0
    open_connections = 0
    if frontends.http is not None:
        open_connections = frontends.http.end_keep_alive(stop_accepting=inherited)
    if isinstance(frontends.grpc, TidalGrpcService):
        told = frontends.grpc.ask_clients_to_leave()
        logger.info("gRPC: GOAWAY sent to %d connection(s); their calls in flight go on", told)
    logger.info(
        "shutting down in %s s (--shutdown-delay-secs): readiness false, still serving; "
        "%d HTTP connection(s) close after their next response%s",
        delay,
        open_connections,
        "; new connections left to the processes sharing the socket" if inherited else "",
    )
    stop.clear()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
        logger.info("second stop signal: ending the shutdown delay early")
    busy = idle = 0
    if frontends.http is not None:
        busy = len(frontends.http.connections)
        idle = frontends.http.close_idle()  # quiet since the delay began: no race to fear
        busy -= idle
    logger.info("shutdown delay over: closed %d idle HTTP connection(s), %d still busy", idle, busy)


async def _shut_down(
    server: InferenceServer,
    frontends: _Frontends,
    exit_timeout: float,
    access_log: AccessLog | None,
) -> int:
    """Readiness false and new requests refused at once; the accepted ones finish within
    ``exit_timeout`` seconds, the rest are cancelled with an error; then every model unloads.
    Returns the exit code: 0, or 1 when requests had to be cancelled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + exit_timeout
    server.begin_shutdown()
    code = 0
    if exit_timeout:
        logger.info("shutting down: finishing accepted requests (up to %s s)", exit_timeout)
    if not await server.drain(exit_timeout):
        cancelled = server.cancel_inflight()
        logger.warning(
            "exit timeout (%s s): cancelled %d request(s) still running", exit_timeout, cancelled
        )
        await server.drain(_ANSWER_GRACE_SECONDS)  # they answer with an error
        code = 1
    await frontends.shutdown(timeout=max(deadline - loop.time(), _ANSWER_GRACE_SECONDS))
    try:
        await asyncio.wait_for(
            server.stop(), timeout=max(deadline - loop.time(), 0) + _UNLOAD_GRACE_SECONDS
        )
    except asyncio.TimeoutError:
        # A model still computing a cancelled request cannot be interrupted, and Python
        # would wait for its thread at exit: leave now, as Triton does (exit code 1).
        logger.error("models still busy after the exit timeout: exiting without unloading them")
        _end_children()
        if access_log is not None:
            access_log.close()
        logging.shutdown()
        os._exit(1)
    await frontends.shutdown_metrics()
    _end_children()
    if access_log is not None:
        access_log.close()
    logger.info("stopped")
    return code


def _end_children() -> None:
    """No child process outlives the server: SIGTERM, then SIGKILL after a grace."""
    killed = end_children(_CHILD_GRACE_SECONDS)
    if killed:
        logger.warning("killed %d child process(es) still running: %s", len(killed), killed)


def _tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the request path.

    What is alive after start-up (modules, models, configs) lives as long as the process:
    ``gc.freeze`` takes it out of every later collection. Each request makes a few hundred
    short-lived containers, so the default young-generation threshold (700) ran a collection
    every few requests; profiles of the JSON path showed it at about 7% of the event loop.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _apply_log_verbose(level: int) -> None:
    """``--log-verbose 1``: tidal's debug messages only; 2 and up: every library's too."""
    if level == 1:
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("tidal").setLevel(logging.DEBUG)


def _log_model_table(server: InferenceServer) -> None:
    for record in server.repository.records():
        versions = (
            ", ".join(f"{v}:{r.state.value}" for v, r in sorted(record.versions.items()))
            or record.state.value
        )
        logger.info(
            "model %-24s %s%s", record.name, versions, f"  ({record.reason})" * bool(record.reason)
        )


def _log_how_to_call(host: str, port: int, server: InferenceServer, scheme: str = "http") -> None:
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    logger.info(
        "health:  curl -s -o /dev/null -w '%%{http_code}\\n' %s://%s:%d/v2/health/ready",
        scheme,
        shown,
        port,
    )
    records = server.repository.records()
    if records:
        logger.info("a model: curl %s://%s:%d/v2/models/%s", scheme, shown, port, records[0].name)
