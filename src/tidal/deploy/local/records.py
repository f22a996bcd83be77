"""Service records: a service's ``services`` row read as ``ServiceInfo``, and its changes.

Reading a record checks the host's pid, so a service whose host was killed reads (and is
recorded as) Failed.
"""

from __future__ import annotations

import builtins
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tidal.deploy import state
from tidal.deploy.errors import ServiceError
from tidal.deploy.local.files import LOG_FILE, SERVICES_DIR
from tidal.deploy.processes import host_alive

__all__ = ["ServiceInfo", "ServiceRecords"]

ModelIds = Sequence[tuple[str, int]]


@dataclass(frozen=True)
class ServiceInfo:
    """What ``show`` prints about a service."""

    name: str
    state: str
    scoring_uri: str
    swagger_uri: str | None
    port: int
    grpc_port: int | None
    pid: int | None
    models: list[str] = field(default_factory=list)
    compute_type: str = "local"
    auth_enabled: bool = True
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""
    log_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "scoringUri": self.scoring_uri,
            "swaggerUri": self.swagger_uri,
            "port": self.port,
            "grpcPort": self.grpc_port,
            "pid": self.pid,
            "models": list(self.models),
            "computeType": self.compute_type,
            "authEnabled": self.auth_enabled,
            "error": self.error,
            "createdTime": self.created_at,
            "updatedTime": self.updated_at,
            "logPath": self.log_path,
        }


class ServiceRecords:
    """The services of one home folder: their rows and folders."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / SERVICES_DIR
        with self._connection():
            pass  # creates the tables

    def directory(self, name: str) -> Path:
        return self.root / name

    def row(self, name: str) -> tuple[sqlite3.Row, list[str]] | None:
        """The raw row and ``name:version`` models of service ``name``, or None."""
        with self._connection() as connection:
            return state.fetch(connection, name)

    def raw(self, name: str) -> sqlite3.Row:
        """The raw row of service ``name``; ``not_found`` when there is none."""
        found = self.row(name)
        if found is None:
            raise ServiceError("not_found", f"service '{name}' not found")
        return found[0]

    def get(self, name: str) -> ServiceInfo:
        found = self.row(name)
        if found is None:
            raise ServiceError("not_found", f"service '{name}' not found")
        return self.info(*found)

    def all(self) -> builtins.list[ServiceInfo]:
        with self._connection() as connection:
            rows = state.fetch_all(connection)
        return [self.info(row, models) for row, models in rows]

    def insert(self, name: str, models: ModelIds, **columns: Any) -> None:
        """The new service's row and its model rows, in one transaction."""
        with self._connection() as connection, connection:
            state.insert(connection, name, models, **columns)

    def set_models(self, name: str, models: ModelIds) -> None:
        with self._connection() as connection, connection:
            state.set_models(connection, name, models)

    def update(self, name: str, **columns: Any) -> None:
        state.update(self.home, name, **columns)

    def forget(self, name: str) -> None:
        """Remove the service's folder and rows."""
        shutil.rmtree(self.directory(name), ignore_errors=True)
        with self._connection() as connection, connection:
            state.delete(connection, name)

    def info(self, row: sqlite3.Row, models: list[str]) -> ServiceInfo:
        current, error = row["state"], row["error"]
        pid = row["pid"]
        if current != "Failed" and pid and not host_alive(pid):
            # the host died without a word (killed): say so, and remember it
            current = "Failed"
            error = f"the service process {pid} is no longer running (killed or crashed)"
            self.update(row["name"], state=current, error=error)
        base = f"http://localhost:{row['port']}"
        scoring = f"{base}/score" if row["mode"] == "score" else f"{base}/"
        return ServiceInfo(
            name=row["name"],
            state=current,
            scoring_uri=scoring,
            swagger_uri=f"{base}/swagger.json" if row["mode"] == "score" else None,
            port=row["port"],
            grpc_port=row["grpc_port"],
            pid=pid,
            models=models,
            compute_type=row["compute_type"],
            auth_enabled=bool(row["auth_enabled"]),
            error=error,
            created_at=_iso(row["created_at"]),
            updated_at=_iso(row["updated_at"]),
            log_path=str(self.directory(row["name"]) / LOG_FILE),
        )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = state.open_db(self.home)
        try:
            yield connection
        finally:
            connection.close()


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")
