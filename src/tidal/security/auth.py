"""Bearer-key authentication for HTTP routes: ``Authorization: Bearer <key>`` or 401."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from tidal.frontends.http.handlers import Reply, error_reply
from tidal.security.keys import KeyHashes, load_keys_file

# Probes (load balancers, Kubernetes) call these without keys.
DEFAULT_OPEN_PATHS: tuple[str, ...] = ("/", "/v2/health/live", "/v2/health/ready")

CHALLENGE = ("www-authenticate", "Bearer")
MISSING = "missing key: send the header 'Authorization: Bearer <key>'"
WRONG = "invalid key"


class BearerAuth:
    """Checks that a request carries the service's primary or secondary key.

    Paths in ``open_paths`` (exact, a trailing slash ignored) need no key.
    """

    def __init__(self, hashes: KeyHashes, open_paths: Iterable[str] = DEFAULT_OPEN_PATHS) -> None:
        self.hashes = hashes
        self.open_paths = frozenset(_normal(p) for p in open_paths if p)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], open_paths: Iterable[str] = DEFAULT_OPEN_PATHS
    ) -> BearerAuth:
        """From a keys file (see ``tidal.security.keys``); ``ValueError`` when unusable."""
        return cls(load_keys_file(path), open_paths)

    def is_open(self, path: str) -> bool:
        """Whether ``path`` is served without a key."""
        return _normal(path) in self.open_paths

    def verdict(self, authorization: str | None) -> str | None:
        """None when ``authorization`` (the header's value) holds a valid key, else why not."""
        if not authorization:
            return MISSING
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return MISSING
        return None if self.hashes.matches(key) else WRONG

    def check(self, path: str, headers: Mapping[str, str]) -> Reply | None:
        """None when the request may go on; else the 401 reply to send.

        ``headers`` has lower-case names, as the HTTP transports give them.
        """
        if self.is_open(path):
            return None
        reason = self.verdict(headers.get("authorization"))
        if reason is None:
            return None
        reply = error_reply(401, reason)
        reply.headers.append(CHALLENGE)
        return reply


def _normal(path: str) -> str:
    return path.rstrip("/") or "/"
