"""``TIDAL_HOME``: the folder holding the model registry and the local services.

Everything the registry and the deployments keep lives under one folder (default
``~/.tidal``, or ``$TIDAL_HOME``): one SQLite database and the files it points at.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["DATABASE_NAME", "connect", "tidal_home"]

DATABASE_NAME = "tidal.db"
# Several CLIs and service supervisors may write at once; wait rather than fail on a lock.
_BUSY_TIMEOUT_S = 30.0


def tidal_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home folder: ``home`` if given, else ``$TIDAL_HOME``, else ``~/.tidal``; created."""
    chosen = home if home is not None else os.environ.get("TIDAL_HOME") or "~/.tidal"
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def connect(home: Path) -> sqlite3.Connection:
    """A connection to the home's database in WAL mode with foreign keys on.

    Used as a context manager it commits (or rolls back) one transaction; close it yourself.
    """
    connection = sqlite3.connect(
        home / DATABASE_NAME, timeout=_BUSY_TIMEOUT_S, isolation_level="DEFERRED"
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection
