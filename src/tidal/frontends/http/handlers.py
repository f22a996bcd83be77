"""The v2 REST endpoints: decode, call the facade, encode. No model logic lives here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from tidal.core.errors import ErrorCode, InferenceError
from tidal.frontends.http.compression import choose_encoding, compress_body, decompress_body
from tidal.frontends.http.routes import METHODS, Route, match_route
from tidal.protocol.http_request import decode_infer_request, decode_raw_binary_request
from tidal.protocol.http_response import encode_infer_response
from tidal.protocol.json_views import (
    model_config_json,
    model_metadata_json,
    server_metadata_json,
    statistics_json,
)
from tidal.server.facade import InferenceServer

logger = logging.getLogger(__name__)

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
HEADER_LENGTH = "inference-header-content-length"

# Triton's table from error code to HTTP status.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INTERNAL: 500,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUPPORTED: 501,
}


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, orjson.dumps({"error": message}))


class HttpHandlers:
    """Answers one HTTP request at a time; the transport adapter owns the sockets."""

    def __init__(self, server: InferenceServer) -> None:
        self.server = server

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """Route, run and encode one request; every failure becomes ``{"error": ...}``."""
        try:
            route = match_route(path)
            if route is None:
                return error_reply(404, f"no endpoint at {path}")
            allowed = METHODS[route.name]
            if method != allowed and not (method == "HEAD" and allowed == "GET"):
                reply = error_reply(405, f"method {method} is not allowed on {path}")
                reply.headers.append(("allow", allowed))
                return reply
            reply = await self._dispatch(route, headers, body)
        except InferenceError as exc:
            reply = error_reply(HTTP_STATUS.get(exc.code, 400), exc.message)
        except Exception as exc:  # the server must answer and keep serving, whatever broke
            logger.exception("unexpected error handling %s %s", method, path)
            reply = error_reply(500, f"internal error: {exc}")
        return _maybe_compress(reply, headers.get("accept-encoding", ""))

    async def _dispatch(self, route: Route, headers: Mapping[str, str], body: bytes) -> Reply:
        server = self.server
        name = route.name
        if name == "model_infer":
            return await self._infer(route, headers, body)
        if name == "health_live":
            return Reply(200 if server.is_live() else 400)
        if name == "health_ready":
            return Reply(200 if server.is_ready() else 400)
        if name == "server_metadata":
            return _json(server_metadata_json(server.metadata()))
        if name == "model_metadata":
            return _json(model_metadata_json(server.model_metadata(route.model, route.version)))
        if name == "model_ready":
            return Reply(200 if server.model_ready(route.model, route.version) else 400)
        if name == "model_config":
            return _json(model_config_json(server.model_config(route.model, route.version)))
        if name == "model_statistics":
            return _json(statistics_json(server.model_statistics(route.model, route.version)))
        raise AssertionError(f"route {name} has no handler")

    async def _infer(self, route: Route, headers: Mapping[str, str], body: bytes) -> Reply:
        body = decompress_body(body, headers.get("content-encoding", ""))
        header_length = _header_length(headers.get(HEADER_LENGTH))
        if header_length == 0:
            config = self.server.model_config(route.model, route.version)
            request = decode_raw_binary_request(body, config, route.version)
        else:
            request = decode_infer_request(body, header_length, route.model, route.version)
        response = await self.server.infer(request)
        encoded = encode_infer_response(response, request)
        if encoded.header_length is None:
            return Reply(200, encoded.body)
        return Reply(
            200,
            encoded.body,
            OCTET_STREAM,
            [("inference-header-content-length", str(encoded.header_length))],
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
