"""A local service's folder, ``TIDAL_HOME/services/<name>/``: its file names, JSON and log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tidal.deploy.errors import ServiceError
from tidal.deploy.host import HOST_FILE, KEYS_FILE

__all__ = [
    "APP_DIR",
    "AUTH_KEYS_FILE",
    "HOST_FILE",
    "KEYS_FILE",
    "LOG_FILE",
    "MODELS_DIR",
    "SERVICES_DIR",
    "read_json",
    "read_log",
    "write_json",
]

SERVICES_DIR = "services"
AUTH_KEYS_FILE = "auth-keys.json"
LOG_FILE = "service.log"
APP_DIR = "app"
MODELS_DIR = "azureml-models"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``ServiceError("corrupt")`` when it cannot be read."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ServiceError("corrupt", f"cannot read '{path}': {exc}") from None
    if not isinstance(data, dict):
        raise ServiceError("corrupt", f"cannot read '{path}': not a JSON object")
    return data


def read_log(path: Path, tail: int | None = None) -> str:
    """The log's text ("" when there is none yet), or its last ``tail`` lines."""
    try:
        text = path.read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    if tail is not None:
        lines = text.splitlines(keepends=True)
        text = "".join(lines[-tail:]) if tail > 0 else ""
    return text
