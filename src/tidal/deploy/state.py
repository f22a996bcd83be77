"""The ``services`` table: one row per local service, written by the manager and its host.

The manager inserts the row (and the ``service_models`` rows the registry reads to refuse
deleting a model in use) in one transaction; the host process updates the state columns as the
service starts, serves, rolls to a new generation or fails.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidal.home import connect

__all__ = ["SCHEMA", "delete", "fetch", "fetch_all", "insert", "open_db", "update"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    compute_type TEXT NOT NULL DEFAULT 'local',
    port INTEGER NOT NULL,
    grpc_port INTEGER,
    pid INTEGER,
    auth_enabled INTEGER NOT NULL,
    error TEXT,
    generation INTEGER NOT NULL DEFAULT 1,
    active_generation INTEGER NOT NULL DEFAULT 0,
    failed_generation INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS service_models (
    service TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (service, model, version)
);
"""

_COLUMNS = frozenset(
    {
        "state",
        "mode",
        "compute_type",
        "port",
        "grpc_port",
        "pid",
        "auth_enabled",
        "error",
        "generation",
        "active_generation",
        "failed_generation",
    }
)


def open_db(home: Path) -> sqlite3.Connection:
    """A connection with both tables created."""
    connection = connect(home)
    connection.executescript(SCHEMA)
    return connection


def insert(
    connection: sqlite3.Connection,
    name: str,
    models: Sequence[tuple[str, int]],
    **values: Any,
) -> None:
    """Insert (or replace) the service row and its model rows; the caller commits."""
    now = time.time()
    row = {"name": name, "created_at": now, "updated_at": now, **values}
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    connection.execute(
        f"INSERT OR REPLACE INTO services ({names}) VALUES ({marks})", tuple(row.values())
    )
    set_models(connection, name, models)


def set_models(
    connection: sqlite3.Connection, name: str, models: Sequence[tuple[str, int]]
) -> None:
    connection.execute("DELETE FROM service_models WHERE service = ?", (name,))
    connection.executemany(
        "INSERT OR IGNORE INTO service_models (service, model, version) VALUES (?, ?, ?)",
        [(name, model, version) for model, version in models],
    )


def update(home: Path, name: str, **values: Any) -> None:
    """Set some columns of one service's row (and ``updated_at``)."""
    unknown = set(values) - _COLUMNS
    if unknown:
        raise ValueError(f"unknown service columns: {sorted(unknown)}")
    values["updated_at"] = time.time()
    assignments = ", ".join(f"{column} = ?" for column in values)
    connection = open_db(home)
    try:
        with connection:
            connection.execute(
                f"UPDATE services SET {assignments} WHERE name = ?", (*values.values(), name)
            )
    finally:
        connection.close()


def fetch(connection: sqlite3.Connection, name: str) -> tuple[sqlite3.Row, list[str]] | None:
    """The row and the ``name:version`` models of one service, or None."""
    row = connection.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    return row, _models(connection, name)


def fetch_all(connection: sqlite3.Connection) -> list[tuple[sqlite3.Row, list[str]]]:
    rows = connection.execute("SELECT * FROM services ORDER BY name").fetchall()
    return [(row, _models(connection, row["name"])) for row in rows]


def delete(connection: sqlite3.Connection, name: str) -> None:
    connection.execute("DELETE FROM service_models WHERE service = ?", (name,))
    connection.execute("DELETE FROM services WHERE name = ?", (name,))


def _models(connection: sqlite3.Connection, name: str) -> list[str]:
    rows = connection.execute(
        "SELECT model, version FROM service_models WHERE service = ? ORDER BY model, version",
        (name,),
    ).fetchall()
    return [f"{row['model']}:{row['version']}" for row in rows]
