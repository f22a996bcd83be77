"""Registry value types: the model version record, ids, names, frameworks and the one error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FRAMEWORKS",
    "ErrorKind",
    "ModelVersion",
    "RegistryError",
    "canonical_framework",
    "parse_model_id",
    "validate_name",
]

# Azure ML's ``Model.Framework`` spellings; input is matched case-insensitively.
FRAMEWORKS: tuple[str, ...] = (
    "Custom",
    "Multi",
    "Onnx",
    "PyTorch",
    "ScikitLearn",
    "TensorFlow",
    "TfKeras",
)
_FRAMEWORK_BY_LOWER = {name.lower(): name for name in FRAMEWORKS}

# Azure ML's model name rule (the v1 SDK and CLI check the same expression).
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-._]{0,254}")

ErrorKind = Literal["invalid", "not_found", "in_use", "corrupt"]


class RegistryError(Exception):
    """A registry operation that cannot be done; ``kind`` says why, the message names the thing."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


def name_problem(name: object, kind: str) -> str | None:
    """Why ``name`` breaks Azure's rule for model and service names (``kind`` says which);
    None when it follows it."""
    if isinstance(name, str) and _NAME_RE.fullmatch(name):
        return None
    return (
        f"invalid {kind} name {name!r}: it must only consist of letters, numbers, dashes, "
        "periods, or underscores, start with a letter or number, and be between 1 and 255 "
        "characters long"
    )


def validate_name(name: str) -> str:
    """Return ``name`` if it follows Azure's model name rule, else raise ``invalid``."""
    problem = name_problem(name, "model")
    if problem is not None:
        raise RegistryError("invalid", problem)
    return name


def canonical_framework(framework: str) -> str:
    """Azure's spelling of ``framework`` (any case accepted), else raise ``invalid``."""
    canonical = _FRAMEWORK_BY_LOWER.get(str(framework).strip().lower())
    if canonical is None:
        raise RegistryError(
            "invalid", f"unknown model framework {framework!r}: use one of {', '.join(FRAMEWORKS)}"
        )
    return canonical


def parse_model_id(text: str) -> tuple[str, int | None]:
    """``"name:3"`` -> ``("name", 3)``; ``"name"`` -> ``("name", None)`` (the latest)."""
    name, colon, version_text = str(text).partition(":")
    validate_name(name)
    if not colon:
        return name, None
    if not version_text.isdecimal() or int(version_text) < 1:
        raise RegistryError(
            "invalid",
            f"invalid model id {text!r}: the version after ':' must be a whole number from 1",
        )
    return name, int(version_text)


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model: what was stored and how it was described."""

    name: str
    version: int
    framework: str
    framework_version: str | None
    tags: dict[str, str]
    description: str | None
    created_at: str  # ISO 8601, UTC
    root_name: str  # the registered file's or folder's own name
    is_dir: bool
    file_count: int
    size_bytes: int

    @property
    def id(self) -> str:
        """``name:version``, the form every command takes."""
        return f"{self.name}:{self.version}"

    def to_json(self) -> dict[str, Any]:
        """The record as ``-o json`` prints it (Azure CLI's camelCase keys first)."""
        return {
            "name": self.name,
            "version": self.version,
            "id": self.id,
            "framework": self.framework,
            "frameworkVersion": self.framework_version,
            "tags": dict(self.tags),
            "description": self.description,
            "createdTime": self.created_at,
            "rootName": self.root_name,
            "isDirectory": self.is_dir,
            "fileCount": self.file_count,
            "sizeBytes": self.size_bytes,
        }
