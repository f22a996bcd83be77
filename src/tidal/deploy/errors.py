"""The error every service operation raises."""

from __future__ import annotations

from typing import Literal

__all__ = ["ErrorKind", "ServiceError"]

ErrorKind = Literal["invalid", "not_found", "in_use", "corrupt", "failed", "timeout"]


class ServiceError(Exception):
    """A service operation that cannot be done; ``kind`` says why, like ``RegistryError``."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
