"""The v2 REST endpoints: decode, call the facade, encode. No model logic lives here."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import orjson

from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.reply import Reply, RequestGate, RequestHandler, error_reply
from tidal.frontends.http.compression import choose_encoding, compress_body, decompress_body
from tidal.frontends.http.routes import METHODS, Route, match_route, route_method
from tidal.protocol.http_request import decode_infer_request, decode_raw_binary_request
from tidal.protocol.http_response import encode_infer_response
from tidal.protocol.json_views import (
    model_config_json,
    model_metadata_json,
    server_metadata_json,
    statistics_json,
)
from tidal.protocol.repository_json import (
    decode_index_request,
    decode_load_request,
    decode_unload_request,
    repository_index_json,
)
from tidal.scheduling.statistics import RequestTiming
from tidal.server.facade import InferenceServer

logger = logging.getLogger(__name__)

__all__ = ["HttpHandlers", "Reply", "RequestGate", "RequestHandler", "error_reply"]

OCTET_STREAM = "application/octet-stream"
HEADER_LENGTH = "inference-header-content-length"

# Triton's table from error code to HTTP status.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INTERNAL: 500,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUPPORTED: 501,
}


class RequestLog(Protocol):
    """Where each answered request is written (``tidal.frontends.metrics.AccessLog``)."""

    def write(
        self,
        method: str,
        path: str,
        status: int,
        ns: int,
        *,
        model: str | None,
        version: int | None,
        bytes_in: int,
        bytes_out: int,
    ) -> None: ...


class HttpHandlers:
    """Answers one HTTP request at a time; the transport adapter owns the sockets."""

    def __init__(
        self,
        server: InferenceServer,
        access_log: RequestLog | None = None,
        gate: RequestGate | None = None,
    ) -> None:
        self.server = server
        self.access_log = access_log
        self.gate = gate  # checked before routing: a refused request learns nothing more
        self._verbose = logger.isEnabledFor(logging.DEBUG)  # read once: --log-verbose

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """Route, run and encode one request; every failure becomes ``{"error": ...}``.

        Every reply carries a ``Server-Timing`` header: the time spent in the server, and
        for inference the request's queue and compute time (milliseconds).
        """
        started = time.perf_counter_ns()
        route: Route | None = None
        timing = None
        try:
            refusal = self.gate.check(path, headers) if self.gate is not None else None
            matched = _route(method, path) if refusal is None else refusal
            if isinstance(matched, Reply):
                reply = matched
            elif (route := matched).name == "model_infer":
                timing = RequestTiming()
                reply = await self._infer(route, headers, body, timing)
            else:
                reply = await self._ROUTES[route.name](self, route, headers, body)
        except InferenceError as exc:
            reply = error_reply(HTTP_STATUS.get(exc.code, 400), exc.message)
        except Exception as exc:  # the server must answer and keep serving, whatever broke
            logger.exception("unexpected error handling %s %s", method, path)
            reply = error_reply(500, f"internal error: {exc}")
        reply = _maybe_compress(reply, headers.get("accept-encoding", ""))
        elapsed = time.perf_counter_ns() - started
        reply.headers.append(("server-timing", server_timing(timing, elapsed)))
        if self.access_log is not None or self._verbose:
            self._log(method, path, route, reply, len(body), elapsed)
        return reply

    def _log(
        self, method: str, path: str, route: Route | None, reply: Reply, size: int, ns: int
    ) -> None:
        sent = 0 if method == "HEAD" else len(reply.body)
        if self.access_log is not None:
            model = (route.model or None) if route is not None else None
            version = route.version if route is not None else None
            self.access_log.write(
                method,
                path,
                reply.status,
                ns,
                model=model,
                version=version,
                bytes_in=size,
                bytes_out=sent,
            )
        if self._verbose:
            logger.debug(
                "%s %s -> %d (%d bytes in, %d out) in %.3f ms",
                method,
                path,
                reply.status,
                size,
                sent,
                ns / 1e6,
            )

    def allowed_methods(self, path: str) -> str | None:
        """The methods the endpoint at ``path`` answers (the transport's 405 asks)."""
        return route_method(path)

    async def _health_live(self, route: Route, headers: Mapping[str, str], body: bytes) -> Reply:
        return Reply(200 if self.server.is_live() else 400)

    async def _health_ready(self, route: Route, headers: Mapping[str, str], body: bytes) -> Reply:
        return Reply(200 if self.server.is_ready() else 400)

    async def _server_metadata(
        self, route: Route, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        return _json(server_metadata_json(self.server.metadata()))

    async def _model_metadata(self, route: Route, headers: Mapping[str, str], body: bytes) -> Reply:
        metadata = self.server.model_metadata(route.model, route.version)
        return _json(model_metadata_json(metadata))

    async def _model_ready(self, route: Route, headers: Mapping[str, str], body: bytes) -> Reply:
        return Reply(200 if self.server.model_ready(route.model, route.version) else 400)

    async def _model_config(self, route: Route, headers: Mapping[str, str], body: bytes) -> Reply:
        return _json(model_config_json(self.server.model_config(route.model, route.version)))

    async def _model_statistics(
        self, route: Route, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        stats = self.server.model_statistics(route.model, route.version)
        return _json(statistics_json(stats))

    async def _repository_index(
        self, route: Route, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        ready = decode_index_request(self._inflate(headers, body))
        return _json(repository_index_json(await self.server.repository_index(ready)))

    async def _repository_load(
        self, route: Route, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        load = decode_load_request(self._inflate(headers, body))
        await self.server.load_model(route.model, config=load.config, files=load.files or None)
        return Reply(200)

    async def _repository_unload(
        self, route: Route, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        dependents = decode_unload_request(self._inflate(headers, body))
        await self.server.unload_model(route.model, unload_dependents=dependents)
        return Reply(200)

    _ROUTES: dict[str, Callable[..., Awaitable[Reply]]] = {
        "health_live": _health_live,
        "health_ready": _health_ready,
        "server_metadata": _server_metadata,
        "model_metadata": _model_metadata,
        "model_ready": _model_ready,
        "model_config": _model_config,
        "model_statistics": _model_statistics,
        "repository_index": _repository_index,
        "repository_load": _repository_load,
        "repository_unload": _repository_unload,
    }

    def _inflate(self, headers: Mapping[str, str], body: bytes) -> bytes:
        """The body without its content encoding, within --http-max-input-size."""
        limit = self.server.settings.http_max_input_size
        return decompress_body(body, headers.get("content-encoding", ""), limit)

    async def _infer(
        self, route: Route, headers: Mapping[str, str], body: bytes, timing: RequestTiming
    ) -> Reply:
        body = self._inflate(headers, body)
        header_length = _header_length(headers.get(HEADER_LENGTH))
        if header_length == 0:
            config = self.server.model_config(route.model, route.version)
            request = decode_raw_binary_request(body, config, route.version)
        else:
            request = decode_infer_request(body, header_length, route.model, route.version)
        response = await self.server.infer(request, timing)
        encoded = encode_infer_response(response, request)
        if encoded.header_length is None:
            return Reply(200, encoded.body)
        return Reply(
            200,
            encoded.body,
            OCTET_STREAM,
            [("inference-header-content-length", str(encoded.header_length))],
        )


def _route(method: str, path: str) -> Route | Reply:
    """The route for ``method path``, or its 404 or 405. A method the route does not serve is
    405 also where the path's version or repository part would be refused, as in Triton."""
    try:
        route = match_route(path)
    except InferenceError:
        allowed = route_method(path)
        if allowed is not None and not _serves(allowed, method):
            return _not_allowed(method, path, allowed)
        raise
    if route is None:
        return error_reply(404, f"no endpoint at {path}")
    allowed = METHODS[route.name]
    if not _serves(allowed, method):
        return _not_allowed(method, path, allowed)
    return route


def _serves(allowed: str, method: str) -> bool:
    return method == allowed or (method == "HEAD" and allowed == "GET")


def _not_allowed(method: str, path: str, allowed: str) -> Reply:
    reply = error_reply(405, f"method {method} is not allowed on {path}")
    reply.headers.append(("allow", allowed))
    return reply


def server_timing(timing: RequestTiming | None, total_ns: int) -> str:
    """``Server-Timing`` value: ``queue;dur=0.012, compute;dur=0.300, total;dur=0.400``
    (milliseconds); only ``total`` for requests that run no model."""
    if timing is None:
        return "total;dur=%.3f" % (total_ns * 1e-6)
    # %-formatting: measurably cheaper than f-strings with float format specs
    return "queue;dur=%.3f, compute;dur=%.3f, total;dur=%.3f" % (  # noqa: UP031
        timing.queue_ns * 1e-6,
        timing.compute_ns * 1e-6,
        total_ns * 1e-6,
    )


def _json(payload: object) -> Reply:
    return Reply(200, orjson.dumps(payload))


def _header_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise InferenceError.invalid(
            f"Inference-Header-Content-Length must be an integer, got '{value}'"
        ) from None
    if length < 0:
        raise InferenceError.invalid("Inference-Header-Content-Length must not be negative")
    return length


def _maybe_compress(reply: Reply, accept_encoding: str) -> Reply:
    if not reply.body or not accept_encoding:
        return reply
    encoding = choose_encoding(accept_encoding)
    if encoding is not None:
        reply.body = compress_body(reply.body, encoding)
        reply.headers.append(("content-encoding", encoding))
    return reply
