"""A service's keys: the plain pair for its owner (mode 0600), the digests for its servers."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tidal.deploy.errors import ServiceError
from tidal.deploy.local.files import AUTH_KEYS_FILE, KEYS_FILE, write_json
from tidal.security.keys import KeyHashes, generate_key

__all__ = ["KEY_NAMES", "new_keys", "read_keys", "regenerated", "write_keys"]

KEY_NAMES = ("primary", "secondary")


def new_keys() -> tuple[str, str]:
    """A fresh random (primary, secondary) pair."""
    return generate_key(), generate_key()


def regenerated(keys: tuple[str, str], which: str) -> tuple[str, str]:
    """``keys`` with the ``"primary"`` or ``"secondary"`` one replaced by a new random key."""
    if which not in KEY_NAMES:
        raise ServiceError("invalid", f"key must be primary or secondary, got '{which}'")
    primary, secondary = keys
    if which == "primary":
        return generate_key(), secondary
    return primary, generate_key()


def write_keys(directory: Path, keys: tuple[str, str]) -> None:
    """Write the plain keys (owner only, for ``keys``/``get_keys``) and their digests (the
    only key file the servers read)."""
    primary, secondary = keys
    plain = directory / KEYS_FILE
    tmp = plain.with_suffix(".tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"primary": primary, "secondary": secondary}, handle)
    tmp.replace(plain)
    write_json(directory / AUTH_KEYS_FILE, KeyHashes.of(primary, secondary).to_json())


def read_keys(directory: Path, name: str) -> tuple[str, str]:
    """The plain (primary, secondary) keys of service ``name``."""
    try:
        data = json.loads((directory / KEYS_FILE).read_text("utf-8"))
        return data["primary"], data["secondary"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServiceError("corrupt", f"service '{name}': cannot read its keys: {exc}") from None
