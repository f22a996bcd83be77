"""The one error type every layer raises, with Triton's error codes."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Triton's error codes; each frontend maps them to its own status table."""

    UNKNOWN = "UNKNOWN"
    INTERNAL = "INTERNAL"
    NOT_FOUND = "NOT_FOUND"
    INVALID_ARG = "INVALID_ARG"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CANCELLED = "CANCELLED"


class InferenceError(Exception):
    """An error with a Triton error code and a message meant for the client."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"InferenceError({self.code.name}, {self.message!r})"

    @classmethod
    def invalid(cls, message: str) -> InferenceError:
        return cls(ErrorCode.INVALID_ARG, message)

    @classmethod
    def not_found(cls, message: str) -> InferenceError:
        return cls(ErrorCode.NOT_FOUND, message)

    @classmethod
    def unavailable(cls, message: str) -> InferenceError:
        return cls(ErrorCode.UNAVAILABLE, message)

    @classmethod
    def internal(cls, message: str) -> InferenceError:
        return cls(ErrorCode.INTERNAL, message)

    @classmethod
    def unsupported(cls, message: str) -> InferenceError:
        return cls(ErrorCode.UNSUPPORTED, message)
