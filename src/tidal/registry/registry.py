"""``ModelRegistry``: register, look up, download and delete model versions under TIDAL_HOME."""

from __future__ import annotations

import builtins
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from tidal.home import tidal_home
from tidal.registry import _db
from tidal.registry._source import SourceTree, scan_source
from tidal.registry._store import ObjectStore
from tidal.registry.model import (
    ModelVersion,
    RegistryError,
    canonical_framework,
    validate_name,
)

__all__ = ["ModelRegistry", "Progress"]

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)

_MODEL_COLUMNS = (
    "name, version, framework, framework_version, tags, description, created_at, root_name, "
    "is_dir, file_count, size_bytes"
)


class ModelRegistry:
    """Versioned models in one home folder: metadata in SQLite, bytes in a content store.

    Every method opens its own short-lived connection, so one registry object may be shared by
    threads, and several processes may use the same home at once.
    """

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = tidal_home(home)
        self._store = ObjectStore(self.home / "objects")
        _db.ensure_schema(self.home)

    # -- register -------------------------------------------------------------------------

    def register(
        self,
        name: str,
        path: Path | str,
        *,
        framework: str = "Custom",
        framework_version: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Copy the file or folder at ``path`` in as the next version of ``name``.

        The rows are written in one transaction only after every file is stored, so a failure
        (missing or unreadable file, Ctrl-C, disk full) leaves no version behind.
        """
        validate_name(name)
        framework = canonical_framework(framework)
        clean_tags = _check_tags(tags or {})
        tree = scan_source(path)
        report = _Counter(tree.total_bytes, progress)
        stored: list[tuple[str, str, int]] = []
        created: list[str] = []
        try:
            for item in tree.files:
                sha, size, new = self._store.put(item.path, report.add)
                stored.append((item.relpath, sha, size))
                if new:
                    created.append(sha)
            with _db.write(self.home) as connection:
                self._restore_collected(connection, tree, stored)
                version = _next_version(connection, name)
                record = ModelVersion(
                    name=name,
                    version=version,
                    framework=framework,
                    framework_version=framework_version,
                    tags=clean_tags,
                    description=description,
                    created_at=datetime.now(timezone.utc).isoformat(),
                    root_name=tree.root_name,
                    is_dir=tree.is_dir,
                    file_count=len(stored),
                    size_bytes=sum(size for _, _, size in stored),
                )
                _insert(connection, record, stored)
        except BaseException:
            self._discard(created)
            raise
        report.finish()
        return record

    def _restore_collected(
        self, connection: sqlite3.Connection, tree: SourceTree, stored: list[tuple[str, str, int]]
    ) -> None:
        # A delete running between our copy and this transaction may have collected an object
        # we deduplicated against. Deletes collect inside their own write transaction, so this
        # check under ours is final; copy any such file again.
        sources = {item.relpath: item.path for item in tree.files}
        for relpath, sha, _ in stored:
            if self._store.exists(sha):
                continue
            again, _, _ = self._store.put(sources[relpath], lambda _n: None)
            if again != sha:
                raise RegistryError("invalid", f"'{sources[relpath]}' changed while it was copied")

    def _discard(self, created: list[str]) -> None:
        """Best effort: drop the objects a failed register added that nothing references."""
        if not created:
            return
        try:
            with _db.write(self.home) as connection:
                for sha in created:
                    if not _referenced(connection, sha):
                        self._store.remove(sha)
        except (OSError, sqlite3.Error):
            pass  # an orphan object wastes space but breaks nothing

    # -- look up --------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """One version, or the latest when ``version`` is None; ``not_found`` if absent."""
        query = f"SELECT {_MODEL_COLUMNS} FROM models WHERE name = ?"
        args: tuple[object, ...] = (name,)
        if version is not None:
            query += " AND version = ?"
            args += (int(version),)
        with _db.read(self.home) as connection:
            row = connection.execute(query + " ORDER BY version DESC LIMIT 1", args).fetchone()
        if row is None:
            shown = name if version is None else f"{name}:{version}"
            raise RegistryError("not_found", f"model '{shown}' not found")
        return _record(row)

    def list(
        self, name: str | None = None, tags: Mapping[str, str | None] | None = None
    ) -> list[ModelVersion]:
        """Every version, by name then newest first; ``tags`` keeps those holding every pair.

        A tag value of None matches any value of that key.
        """
        query = f"SELECT {_MODEL_COLUMNS} FROM models"
        args: tuple[object, ...] = ()
        if name is not None:
            query += " WHERE name = ?"
            args = (name,)
        with _db.read(self.home) as connection:
            rows = connection.execute(query + " ORDER BY name, version DESC", args).fetchall()
        records = [_record(row) for row in rows]
        if tags:
            records = [r for r in records if _tags_match(r.tags, tags)]
        return records

    def files(self, name: str, version: int) -> builtins.list[tuple[str, str, int]]:
        """``(path, sha256, size)`` per file, sorted by path.

        Paths are POSIX and relative to the registered folder; a registered single file has one
        entry whose path is its own name.
        """
        self.get(name, version)
        with _db.read(self.home) as connection:
            rows = connection.execute(
                "SELECT path, sha256, size FROM model_files WHERE name = ? AND version = ? "
                "ORDER BY path",
                (name, int(version)),
            ).fetchall()
        return [(row["path"], row["sha256"], row["size"]) for row in rows]

    def usage(self, name: str, version: int) -> builtins.list[str]:
        """The services recorded as using ``name:version``, sorted."""
        with _db.read(self.home) as connection:
            return _services(connection, name, int(version))

    # -- download -------------------------------------------------------------------------

    def download(
        self,
        name: str,
        version: int,
        target_dir: str | os.PathLike[str],
        *,
        link: bool = False,
        progress: Progress | None = None,
    ) -> Path:
        """Write the model to ``target_dir/<root_name>`` and return that path.

        Every file's sha256 is checked (``corrupt`` on a mismatch). With ``link`` files are hard
        links into the read-only store where the filesystem allows. The model is assembled in a
        hidden folder beside the target and renamed into place, so a failure leaves nothing; an
        existing ``target_dir/<root_name>`` is never overwritten (``invalid``).
        """
        record = self.get(name, version)
        entries = self.files(name, record.version)
        target_root = Path(target_dir)
        target_root.mkdir(parents=True, exist_ok=True)
        final = target_root / record.root_name
        if final.exists() or final.is_symlink():
            raise RegistryError("invalid", f"'{final}' already exists; choose another folder")
        report = _Counter(sum(size for _, _, size in entries), progress)
        staging = Path(tempfile.mkdtemp(prefix=".tidal-download-", dir=target_root))
        try:
            built = staging / record.root_name
            if record.is_dir:
                built.mkdir()
            for relpath, sha, _ in entries:
                target = built / _safe_relpath(relpath) if record.is_dir else built
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    actual = self._store.export(sha, target, link=link, on_bytes=report.add)
                except FileNotFoundError:
                    raise RegistryError(
                        "corrupt",
                        f"model '{record.id}': '{relpath}' is missing from the store "
                        f"({self._store.path(sha)})",
                    ) from None
                if actual != sha:
                    raise RegistryError(
                        "corrupt",
                        f"model '{record.id}': '{relpath}' does not match its sha256; the store "
                        f"object {self._store.path(sha)} is damaged",
                    )
            if final.exists() or final.is_symlink():
                raise RegistryError("invalid", f"'{final}' already exists; choose another folder")
            os.rename(built, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        report.finish()
        return final

    # -- delete ---------------------------------------------------------------------------

    def delete(self, name: str, version: int) -> None:
        """Remove ``name:version`` and the stored files no other version shares.

        Refused (``in_use``) while a service records that it uses the version.
        """
        model_id = f"{name}:{version}"
        with _db.write(self.home) as connection:
            found = connection.execute(
                "SELECT 1 FROM models WHERE name = ? AND version = ?", (name, int(version))
            ).fetchone()
            if found is None:
                raise RegistryError("not_found", f"model '{model_id}' not found")
            services = _services(connection, name, int(version))
            if services:
                raise RegistryError(
                    "in_use",
                    f"model '{model_id}' is used by service {', '.join(services)}; "
                    "delete or update the service first",
                )
            shas = [
                row[0]
                for row in connection.execute(
                    "SELECT DISTINCT sha256 FROM model_files WHERE name = ? AND version = ?",
                    (name, int(version)),
                )
            ]
            connection.execute(
                "DELETE FROM model_files WHERE name = ? AND version = ?", (name, int(version))
            )
            connection.execute(
                "DELETE FROM models WHERE name = ? AND version = ?", (name, int(version))
            )
            # Collected while the write lock is held, so no register can be about to use them.
            for sha in shas:
                if not _referenced(connection, sha):
                    self._store.remove(sha)


# -- helpers ------------------------------------------------------------------------------


class _Counter:
    """Turns per-chunk byte counts into ``progress(done, total)`` calls."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self._progress = progress
        if progress is not None:
            progress(0, total)

    def add(self, count: int) -> None:
        self.done += count
        if self._progress is not None:
            self._progress(self.done, max(self.total, self.done))

    def finish(self) -> None:
        if self._progress is not None and self.done != self.total:
            self._progress(self.done, self.done)


def _check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise RegistryError("invalid", f"tag key {key!r} must be a non-empty string")
        if not isinstance(value, str):
            raise RegistryError("invalid", f"tag {key!r}: the value must be a string")
        clean[key] = value
    return clean


def _tags_match(have: Mapping[str, str], want: Mapping[str, str | None]) -> bool:
    return all(key in have and (value is None or have[key] == value) for key, value in want.items())


def _next_version(connection: sqlite3.Connection, name: str) -> int:
    # A per-name counter, so a deleted version's number is never handed out again (a service
    # that recorded name:3 must not silently get different bytes).
    row = connection.execute(
        "SELECT MAX(COALESCE((SELECT last_version FROM model_names WHERE name = ?), 0), "
        "COALESCE((SELECT MAX(version) FROM models WHERE name = ?), 0))",
        (name, name),
    ).fetchone()
    version = int(row[0]) + 1
    connection.execute(
        "INSERT INTO model_names (name, last_version) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version",
        (name, version),
    )
    return version


def _insert(
    connection: sqlite3.Connection, record: ModelVersion, stored: list[tuple[str, str, int]]
) -> None:
    connection.execute(
        f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.name,
            record.version,
            record.framework,
            record.framework_version,
            json.dumps(record.tags, sort_keys=True),
            record.description,
            record.created_at,
            record.root_name,
            int(record.is_dir),
            record.file_count,
            record.size_bytes,
        ),
    )
    connection.executemany(
        "INSERT INTO model_files (name, version, path, sha256, size) VALUES (?, ?, ?, ?, ?)",
        [(record.name, record.version, path, sha, size) for path, sha, size in stored],
    )


def _record(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        name=row["name"],
        version=row["version"],
        framework=row["framework"],
        framework_version=row["framework_version"],
        tags=json.loads(row["tags"]),
        description=row["description"],
        created_at=row["created_at"],
        root_name=row["root_name"],
        is_dir=bool(row["is_dir"]),
        file_count=row["file_count"],
        size_bytes=row["size_bytes"],
    )


def _referenced(connection: sqlite3.Connection, sha: str) -> bool:
    return (
        connection.execute("SELECT 1 FROM model_files WHERE sha256 = ? LIMIT 1", (sha,)).fetchone()
        is not None
    )


def _services(connection: sqlite3.Connection, name: str, version: int) -> list[str]:
    rows = connection.execute(
        "SELECT service FROM service_models WHERE model = ? AND version = ? ORDER BY service",
        (name, version),
    ).fetchall()
    return [row[0] for row in rows]


def _safe_relpath(relpath: str) -> PurePosixPath:
    # The rows came from our own walk, but a hand-edited database must not write outside.
    parts = PurePosixPath(relpath)
    if parts.is_absolute() or ".." in parts.parts or not parts.parts:
        raise RegistryError("corrupt", f"stored path '{relpath}' is not a relative path")
    return parts
