"""The SDK's one error type and the translation of registry and service errors into it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["WebserviceException", "translated"]


class WebserviceException(Exception):
    """A model or service call that failed, as Azure ML's SDK raises it.

    ``kind`` is the registry's or service manager's reason (``invalid``, ``not_found``,
    ``in_use``, ``failed`` ...), so callers can branch without parsing the message.
    """

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise ``RegistryError`` / ``ServiceError`` as ``WebserviceException`` (same kind)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, _lower_layer_errors()):
            raise WebserviceException(str(exc), getattr(exc, "kind", "failed")) from exc
        raise


def _lower_layer_errors() -> tuple[type[Exception], ...]:
    # Imported when an error happens, so model calls never import the deployment layer.
    from tidal.registry import RegistryError

    if "tidal.deploy.service" not in sys.modules:
        return (RegistryError,)
    return (RegistryError, sys.modules["tidal.deploy.service"].ServiceError)
