"""What ``tidal serve`` needs from its security settings, built once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ssl import SSLContext

import grpc

from tidal.config.settings import ServerSettings
from tidal.core.reply import Reply, RequestGate
from tidal.security.auth import BearerAuth
from tidal.security.restricted import (
    GrpcRestriction,
    HttpRestriction,
    RestrictedProtocolInterceptor,
)
from tidal.security.tls import grpc_server_credentials, http_ssl_context


@dataclass(frozen=True)
class Security:
    """Authentication, restricted APIs and TLS for the HTTP and gRPC services (all off by
    default)."""

    auth: BearerAuth | None = None
    ssl_context: SSLContext | None = None
    grpc_credentials: grpc.ServerCredentials | None = None
    grpc_interceptors: tuple[grpc.aio.ServerInterceptor, ...] = field(default=())
    # TLS for tidal's own gRPC transport: the same files, offering ALPN "h2"
    grpc_ssl_context: SSLContext | None = None
    # --http-restricted-api and --grpc-restricted-protocol (None when not given)
    http_restriction: HttpRestriction | None = None
    grpc_restriction: GrpcRestriction | None = None

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Security:
        """Read the keys file and TLS files, parse the restricted APIs; ``ValueError``
        saying which one is unusable."""
        auth = None
        interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()
        if settings.auth_keys_file:
            from tidal.security.grpc_auth import BearerAuthInterceptor

            auth = BearerAuth.from_file(settings.auth_keys_file, settings.auth_open_path)
            interceptors = (BearerAuthInterceptor(auth),)
        http_restriction = HttpRestriction.from_flags(settings.http_restricted_api)
        grpc_restriction = GrpcRestriction.from_flags(settings.grpc_restricted_protocol)
        if grpc_restriction is not None:  # after the key check, as for HTTP
            interceptors += (RestrictedProtocolInterceptor(grpc_restriction),)
        context = credentials = grpc_context = None
        if settings.ssl_certfile:
            context = http_ssl_context(settings.ssl_certfile, settings.ssl_keyfile)
            credentials = grpc_server_credentials(settings.ssl_certfile, settings.ssl_keyfile)
            grpc_context = http_ssl_context(settings.ssl_certfile, settings.ssl_keyfile)
            grpc_context.set_alpn_protocols(["h2"])
        return cls(
            auth,
            context,
            credentials,
            interceptors,
            grpc_context,
            http_restriction,
            grpc_restriction,
        )

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def http_gate(self) -> RequestGate | None:
        """What the HTTP handlers check before routing: the key (401), then the restricted
        APIs (403); None when neither is on."""
        gates = [g for g in (self.auth, self.http_restriction) if g is not None]
        if len(gates) < 2:
            return gates[0] if gates else None
        return _Gates(tuple(gates))


class _Gates:
    """Several gates, in order: the first refusal is the answer."""

    def __init__(self, gates: tuple[RequestGate, ...]) -> None:
        self._gates = gates

    def check(self, path: str, headers: Mapping[str, str]) -> Reply | None:
        for gate in self._gates:
            refusal = gate.check(path, headers)
            if refusal is not None:
                return refusal
        return None
