"""JSON bodies of the model repository extension: index, load and unload."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tidal.core.errors import InferenceError
from tidal.core.metadata import RepositoryEntry
from tidal.protocol.json_limits import check_json_depth

FILE_PREFIX = "file:"


@dataclass(frozen=True)
class LoadRequest:
    """What a load request carries besides the model name."""

    config: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)


def decode_index_request(body: bytes) -> bool:
    """The ``ready`` flag of an index request (false when the body is empty)."""
    request = _object(body, "registry index")
    ready = request.get("ready", False)
    if not isinstance(ready, bool):
        raise InferenceError.invalid("Invalid value for 'ready': expected a boolean")
    return ready


def decode_load_request(body: bytes) -> LoadRequest:
    """``parameters.config`` (a JSON model configuration, as a string) and the
    ``parameters["file:<path>"]`` entries (base64 file contents, decoded here)."""
    parameters = _parameters(_object(body, "load model"))
    config = None
    files: dict[str, bytes] = {}
    for name, value in parameters.items():
        if name == "config":
            if not isinstance(value, str):
                raise InferenceError.invalid(
                    "Config parameter 'config' must have string type for its value"
                )
            config = value
        elif name.startswith(FILE_PREFIX):
            if not isinstance(value, str):
                raise InferenceError.invalid(
                    f"File parameter '{name}' must have a base64 string for its value"
                )
            files[name] = _base64(name, value)
        else:
            raise InferenceError.invalid(
                f"Unrecognized load parameter '{name}' (expected 'config' or "
                f"'{FILE_PREFIX}<version>/<file name>')"
            )
    return LoadRequest(config, files)


def decode_unload_request(body: bytes) -> bool:
    """The ``parameters.unload_dependents`` flag of an unload request."""
    parameters = _parameters(_object(body, "unload model"))
    flag = parameters.get("unload_dependents", False)
    if not isinstance(flag, bool):
        raise InferenceError.invalid("Unable to parse 'unload_dependents': expected a boolean")
    return flag


def repository_index_json(entries: Sequence[RepositoryEntry]) -> list[dict[str, str]]:
    """Triton's index: ``name`` always; ``version``, ``state`` and ``reason`` when set."""
    out = []
    for entry in entries:
        item = {"name": entry.name}
        if entry.version:
            item["version"] = entry.version
        if entry.state:
            item["state"] = entry.state
        if entry.reason:
            item["reason"] = entry.reason
        out.append(item)
    return out


def _object(body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        return {}
    check_json_depth(body)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InferenceError.invalid(f"failed to parse the {what} request JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InferenceError.invalid(f"the {what} request body must be a JSON object")
    return value


def _parameters(request: dict[str, Any]) -> dict[str, Any]:
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InferenceError.invalid("'parameters' must be a JSON object")
    return parameters


def _base64(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InferenceError.invalid(
            f"File parameter '{name}' is not valid base64: cannot decode it"
        ) from None
