"""TLS for the HTTP and gRPC services from a PEM certificate chain and private key."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc


def http_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 and up); ``ValueError`` when the files are unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot use certificate '{certfile}' with key '{keyfile}': {_reason(exc)}"
        ) from None
    return context


def grpc_server_credentials(certfile: str, keyfile: str) -> grpc.ServerCredentials:
    """gRPC server credentials from the same files; ``ValueError`` when unreadable."""
    try:
        chain = Path(certfile).read_bytes()
        key = Path(keyfile).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read TLS file: {_reason(exc)}") from None
    return grpc.ssl_server_credentials([(key, chain)])


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: '{exc.filename}'" if exc.filename else exc.strerror
    return str(exc)
