"""The registry's tables in ``TIDAL_HOME/tidal.db`` and the two ways to use them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tidal.home import connect

__all__ = ["SCHEMA", "ensure_schema", "read", "write"]

# ``service_models`` belongs to the deployments; both sides create it with the same statement.
SCHEMA = """
CREATE TABLE IF NOT EXISTS model_names (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    framework TEXT NOT NULL,
    framework_version TEXT,
    tags TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    root_name TEXT NOT NULL,
    is_dir INTEGER NOT NULL,
    file_count INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS model_files (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (name, version, path),
    FOREIGN KEY (name, version) REFERENCES models (name, version) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS model_files_sha256 ON model_files (sha256);
CREATE TABLE IF NOT EXISTS service_models (
    service TEXT NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (service, model, version));
"""


def ensure_schema(home: Path) -> None:
    with write(home) as connection:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)


@contextmanager
def read(home: Path) -> Iterator[sqlite3.Connection]:
    """A connection for queries, closed afterwards."""
    connection = connect(home)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def write(home: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction taken up front (``BEGIN IMMEDIATE``): writers queue, never interleave.

    Committed when the block ends, rolled back when it raises (Ctrl-C included).
    """
    connection = connect(home)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        connection.close()
