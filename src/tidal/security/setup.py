"""What ``tidal serve`` needs from its security settings, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from ssl import SSLContext

import grpc

from tidal.config.settings import ServerSettings
from tidal.security.auth import BearerAuth
from tidal.security.tls import grpc_server_credentials, http_ssl_context


@dataclass(frozen=True)
class Security:
    """Authentication and TLS for the HTTP and gRPC services (all off by default)."""

    auth: BearerAuth | None = None
    ssl_context: SSLContext | None = None
    grpc_credentials: grpc.ServerCredentials | None = None
    grpc_interceptors: tuple[grpc.aio.ServerInterceptor, ...] = field(default=())
    # TLS for tidal's own gRPC transport: the same files, offering ALPN "h2"
    grpc_ssl_context: SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Security:
        """Read the keys file and TLS files; ``ValueError`` saying which one is unusable."""
        auth = None
        interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()
        if settings.auth_keys_file:
            from tidal.security.grpc_auth import BearerAuthInterceptor

            auth = BearerAuth.from_file(settings.auth_keys_file, settings.auth_open_path)
            interceptors = (BearerAuthInterceptor(auth),)
        context = credentials = None
        if settings.ssl_certfile:
            context = http_ssl_context(settings.ssl_certfile, settings.ssl_keyfile)
            credentials = grpc_server_credentials(settings.ssl_certfile, settings.ssl_keyfile)
            grpc_context = http_ssl_context(settings.ssl_certfile, settings.ssl_keyfile)
            grpc_context.set_alpn_protocols(["h2"])
            return cls(auth, context, credentials, interceptors, grpc_context)
        return cls(auth, context, credentials, interceptors)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"
