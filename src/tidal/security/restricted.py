"""Restricted APIs, as Triton's ``--http-restricted-api`` and ``--grpc-restricted-protocol``.

Each flag value is ``<apis>:<header>=<value>``: the comma-separated API categories (``health``,
``metadata``, ``inference``, ``shared-memory``, ``model-config``, ``model-repository``,
``statistics``, ``trace``, ``logging``) are served only to requests carrying that header with
exactly that value. Unrestricted categories stay open. What Triton 2.51 answers, and so tidal:

- HTTP: ``403`` and ``{"error": "This API is restricted, expecting header '<header>'"}``,
  before routing and method checks (an unknown model of a restricted category is 403 too);
- gRPC: ``UNAVAILABLE`` and ``This protocol is restricted, expecting header
  'triton-grpc-protocol-<header>'``: over gRPC the metadata key carries that prefix.

A category may appear in one group only; an unknown category or a malformed value stops
start-up (``ValueError``).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from tidal.core.reply import Reply, error_reply

CATEGORIES = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"

_SERVICE = "/inference.GRPCInferenceService/"
GRPC_CATEGORIES: dict[str, str] = {
    _SERVICE + rpc: category
    for category, rpcs in (
        ("health", ("ServerLive", "ServerReady", "ModelReady")),
        ("metadata", ("ServerMetadata", "ModelMetadata")),
        ("inference", ("ModelInfer", "ModelStreamInfer")),
        ("model-config", ("ModelConfig",)),
        ("statistics", ("ModelStatistics",)),
        ("model-repository", ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")),
        (
            "shared-memory",
            tuple(
                f"{kind}SharedMemory{action}"
                for kind in ("System", "Cuda")
                for action in ("Status", "Register", "Unregister")
            ),
        ),
        ("trace", ("TraceSetting",)),
        ("logging", ("LogSettings",)),
    )
    for rpc in rpcs
}

# the last part of /v2/models/{m}[/versions/{v}]/<action> -> its category
_MODEL_ACTIONS = {
    "ready": "health",
    "config": "model-config",
    "infer": "inference",
    "generate": "inference",
    "generate_stream": "inference",
    "stats": "statistics",
    "trace": "trace",
}
_TOP_LEVEL = {
    "health": "health",
    "repository": "model-repository",
    "systemsharedmemory": "shared-memory",
    "cudasharedmemory": "shared-memory",
    "trace": "trace",
    "logging": "logging",
}
_PATH_CACHE_LIMIT = 1024


def http_category(path: str) -> str | None:
    """The API category of a v2 HTTP path, as Triton groups its endpoints; None for a path
    that is no v2 endpoint (left to routing: 404)."""
    parts = path.strip("/").split("/")
    if parts[0] != "v2":
        return None
    if len(parts) == 1:
        return "metadata"
    if parts[1] != "models":
        return _TOP_LEVEL.get(parts[1])
    if len(parts) == 2 or not parts[2]:
        return None
    if len(parts) == 3:
        return "statistics" if parts[2] == "stats" else "metadata"
    tail = parts[3:]
    if tail[0] == "versions" and len(tail) >= 2:
        tail = tail[2:]
    if not tail:
        return "metadata"
    return _MODEL_ACTIONS.get(tail[0])


@dataclass(frozen=True, slots=True)
class Rule:
    """A header a restricted category needs, and its value."""

    header: str  # lower case, as transports give header names
    value: bytes

    def allows(self, value: str | bytes | None) -> bool:
        if value is None:
            return False
        given = value.encode("latin-1") if isinstance(value, str) else value
        return hmac.compare_digest(given, self.value)


def parse_rules(values: Iterable[str], flag: str, what: str = "api") -> dict[str, Rule]:
    """Category -> rule from the values of ``flag`` (``<apis>:<header>=<value>`` each);
    ``ValueError`` in Triton's words for a malformed value, an unknown category, or a
    category in two groups."""
    rules: dict[str, Rule] = {}
    for text in values:
        apis, colon, setting = text.partition(":")
        header, equals, value = setting.partition("=")
        if not (colon and equals and apis and header.strip() and value):
            raise ValueError(
                f"{flag} option format is '<config name>:<setting>=<value>'. Got {text}"
            )
        rule = Rule(header.strip().lower(), value.encode("latin-1"))
        for api in (a.strip() for a in apis.split(",")):
            if api not in CATEGORIES:
                raise ValueError(f"unknown restricted {what} '{api}' (in {flag}={text})")
            if api in rules:
                raise ValueError(
                    f"restricted {what} '{api}' can not be specified in multiple config groups"
                )
            rules[api] = rule
    return rules


class HttpRestriction:
    """The HTTP gate of ``--http-restricted-api``: ``check(path, headers)`` returns None or
    the 403 reply (the ``RequestGate`` the HTTP handlers call before routing)."""

    def __init__(self, rules: Mapping[str, Rule]) -> None:
        self.rules = dict(rules)
        self._by_path: dict[str, Rule | None] = {}  # paths repeat: classified once each

    @classmethod
    def from_flags(cls, values: Sequence[str]) -> HttpRestriction | None:
        rules = parse_rules(values, "--http-restricted-api")
        return cls(rules) if rules else None

    def rule_for(self, path: str) -> Rule | None:
        try:
            return self._by_path[path]
        except KeyError:
            pass
        category = http_category(path)
        rule = self.rules.get(category) if category is not None else None
        if len(self._by_path) >= _PATH_CACHE_LIMIT:  # many model names: start again
            self._by_path.clear()
        self._by_path[path] = rule
        return rule

    def check(self, path: str, headers: Mapping[str, str]) -> Reply | None:
        rule = self.rule_for(path)
        if rule is None or rule.allows(headers.get(rule.header)):
            return None
        return error_reply(403, f"This API is restricted, expecting header '{rule.header}'")


class GrpcRestriction:
    """``--grpc-restricted-protocol`` for both gRPC transports."""

    def __init__(self, rules: Mapping[str, Rule]) -> None:
        self.by_method = {
            method: Rule(GRPC_HEADER_PREFIX + rules[category].header, rules[category].value)
            for method, category in GRPC_CATEGORIES.items()
            if category in rules
        }

    @classmethod
    def from_flags(cls, values: Sequence[str]) -> GrpcRestriction | None:
        rules = parse_rules(values, "--grpc-restricted-protocol", "protocol")
        return cls(rules) if rules else None

    def refusal(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> str | None:
        """Why a call to ``method`` (``/package.Service/Rpc``) with ``metadata`` is refused
        (with ``UNAVAILABLE``), or None when it may go on."""
        rule = self.by_method.get(method)
        if rule is None:
            return None
        for key, value in metadata or ():
            if key == rule.header and rule.allows(value):
                return None
        return f"This protocol is restricted, expecting header '{rule.header}'"


class RestrictedProtocolInterceptor(grpc.aio.ServerInterceptor):
    """The ``grpc.aio`` transport's check: restricted RPCs fail with ``UNAVAILABLE``."""

    def __init__(self, restriction: GrpcRestriction) -> None:
        self._restriction = restriction

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        reason = self._restriction.refusal(details.method, details.invocation_metadata)
        if reason is None:
            return handler
        return _unavailable(handler, reason)


def _unavailable(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that fails with UNAVAILABLE."""

    async def unary(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, reason)

    async def streaming(request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        await context.abort(grpc.StatusCode.UNAVAILABLE, reason)
        yield  # pragma: no cover - makes this an async generator

    kinds = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, *kinds)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, *kinds)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, *kinds)
    return grpc.stream_stream_rpc_method_handler(streaming, *kinds)
