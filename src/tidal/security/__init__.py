"""Bearer-key authentication and TLS settings shared by every tidal frontend."""

from tidal.security.auth import DEFAULT_OPEN_PATHS, BearerAuth
from tidal.security.keys import KeyHashes, generate_key, hash_key, load_keys_file, write_keys_file

__all__ = [
    "DEFAULT_OPEN_PATHS",
    "BearerAuth",
    "KeyHashes",
    "generate_key",
    "hash_key",
    "load_keys_file",
    "write_keys_file",
]
