"""Bearer-key authentication for HTTP routes: ``Authorization: Bearer <key>`` or 401."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping

from tidal.core.reply import Reply, error_reply
from tidal.security.keys import KeyHashes, load_keys_file

# Probes (load balancers, Kubernetes) call these without keys.
DEFAULT_OPEN_PATHS: tuple[str, ...] = ("/", "/v2/health/live", "/v2/health/ready")

CHALLENGE = ("www-authenticate", "Bearer")
MISSING = "missing key: send the header 'Authorization: Bearer <key>'"
WRONG = "invalid key"
# How often a keys file is looked at for a change: a regenerated key takes effect in every
# process serving the file (and on connections already open) within this many seconds.
RELOAD_CHECK_SECONDS = 1.0

logger = logging.getLogger("tidal.security")


class BearerAuth:
    """Checks that a request carries the service's primary or secondary key.

    Paths in ``open_paths`` (exact, a trailing slash ignored) need no key. Made
    ``from_file``, it follows the file: a rewritten keys file (``tidal service regen-key``)
    replaces the keys within ``RELOAD_CHECK_SECONDS``; an unreadable rewrite keeps the old ones.
    """

    def __init__(self, hashes: KeyHashes, open_paths: Iterable[str] = DEFAULT_OPEN_PATHS) -> None:
        self.hashes = hashes
        self.open_paths = frozenset(_normal(p) for p in open_paths if p)
        self._path: str | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = float("inf")

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], open_paths: Iterable[str] = DEFAULT_OPEN_PATHS
    ) -> BearerAuth:
        """From a keys file (see ``tidal.security.keys``); ``ValueError`` when unusable."""
        path = os.fspath(path)
        stamp = _stamp(path)
        auth = cls(load_keys_file(path), open_paths)
        auth._path, auth._stamp = path, stamp
        auth._next_check = time.monotonic() + RELOAD_CHECK_SECONDS
        return auth

    def _follow_file(self, now: float) -> None:
        self._next_check = now + RELOAD_CHECK_SECONDS
        assert self._path is not None
        stamp = _stamp(self._path)
        if stamp is None or stamp == self._stamp:
            return
        try:
            self.hashes = load_keys_file(self._path)
        except ValueError as exc:  # half written, or broken: keep serving with the old keys
            logger.warning("keeping the current keys: %s", exc)
            return
        self._stamp = stamp
        logger.info("keys reloaded from %s", self._path)

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
        return None if self.current().matches(key) else WRONG

    def current(self) -> KeyHashes:
        """The keys in force now (the keys file is looked at when it is time to)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._follow_file(now)
        return self.hashes

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


def _stamp(path: str) -> tuple[int, int, int] | None:
    """What changes when a file is rewritten or replaced; None when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _normal(path: str) -> str:
    return path.rstrip("/") or "/"
