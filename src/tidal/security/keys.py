"""Service keys: generated at random, stored only as SHA-256 digests, checked in constant time.

A keys file is JSON::

    {"primary_key_sha256": "<64 hex digits>", "secondary_key_sha256": "<64 hex digits>"}

Two keys let a client move to a new key while the old one still works (rotate one at a time).
The plain keys are shown once, when they are made, and never written to disk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32  # 256 bits of randomness: 43 URL-safe characters
FIELDS = ("primary_key_sha256", "secondary_key_sha256")


def generate_key() -> str:
    """A new random key, URL-safe text."""
    return secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The SHA-256 digest of ``key`` as 64 lower-case hex digits."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyHashes:
    """The digests of a service's primary and secondary keys."""

    primary_sha256: str
    secondary_sha256: str

    def __post_init__(self) -> None:
        for name, value in zip(FIELDS, (self.primary_sha256, self.secondary_sha256), strict=True):
            if not _is_digest(value):
                raise ValueError(f"{name} must be 64 hex digits (a SHA-256 digest)")
        object.__setattr__(self, "primary_sha256", self.primary_sha256.lower())
        object.__setattr__(self, "secondary_sha256", self.secondary_sha256.lower())

    @classmethod
    def of(cls, primary: str, secondary: str) -> KeyHashes:
        """The digests of two plain keys."""
        return cls(hash_key(primary), hash_key(secondary))

    def matches(self, key: str) -> bool:
        """Whether ``key`` is the primary or the secondary key.

        Both digests are compared, each with ``hmac.compare_digest``, so the time taken says
        neither which key matched nor how much of a wrong key was right.
        """
        presented = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        primary = hmac.compare_digest(presented, bytes.fromhex(self.primary_sha256))
        secondary = hmac.compare_digest(presented, bytes.fromhex(self.secondary_sha256))
        return primary | secondary

    def to_json(self) -> dict[str, str]:
        return {FIELDS[0]: self.primary_sha256, FIELDS[1]: self.secondary_sha256}


def load_keys_file(path: str | os.PathLike[str]) -> KeyHashes:
    """Read a keys file; raise ``ValueError`` saying what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the keys file '{path}': {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"keys file '{path}' is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"keys file '{path}' must hold a JSON object with {', '.join(FIELDS)}")
    missing = [name for name in FIELDS if not isinstance(data.get(name), str)]
    if missing:
        raise ValueError(f"keys file '{path}' lacks {', '.join(missing)} (hex SHA-256 digests)")
    try:
        return KeyHashes(data[FIELDS[0]], data[FIELDS[1]])
    except ValueError as exc:
        raise ValueError(f"keys file '{path}': {exc}") from None


def write_keys_file(
    path: str | os.PathLike[str], hashes: KeyHashes, *, force: bool = False
) -> None:
    """Write ``hashes`` to ``path``, readable by its owner only.

    Raises ``FileExistsError`` when the file exists and ``force`` is false.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(hashes.to_json(), out, indent=2)
        out.write("\n")


def _is_digest(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 64:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
