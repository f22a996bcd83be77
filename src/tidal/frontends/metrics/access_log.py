"""An optional JSON access log: one line per request, for log shippers and ``jq``."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import BinaryIO

import orjson

logger = logging.getLogger(__name__)


class AccessLog:
    """Writes ``{"time", "method", "path", "status", "duration_ms", "model", "version",
    "bytes_in", "bytes_out"}`` per request to a file (appended) or to standard output.

    Each line goes out in one unbuffered write, so lines from a crash are not lost and an
    appended file stays line-aligned under log rotation.
    """

    def __init__(self, stream: BinaryIO, *, owned: bool) -> None:
        self._stream = stream
        self._owned = owned
        self._failed = False

    @classmethod
    def open(cls, target: str) -> AccessLog:
        """``-`` for standard output, else a file path (created if missing, appended to)."""
        if target == "-":
            return cls(sys.stdout.buffer, owned=False)
        path = os.path.expanduser(target)
        return cls(open(path, "ab", buffering=0), owned=True)

    def write(
        self,
        method: str,
        path: str,
        status: int,
        duration_ns: int,
        *,
        model: str | None = None,
        version: int | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
    ) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        record = {
            "time": f"{stamp}.{int(now * 1000) % 1000:03d}Z",
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_ns / 1e6, 3),
            "model": model,
            "version": version,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
        }
        try:
            self._stream.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            if not self._owned:
                self._stream.flush()
        except (OSError, ValueError) as exc:  # a full disk or closed stream: say so once
            if not self._failed:
                self._failed = True
                logger.error("cannot write the access log: %s", exc)

    def close(self) -> None:
        if self._owned:
            self._stream.close()
