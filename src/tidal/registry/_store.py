"""The content-addressed file store: ``objects/<sha[:2]>/<sha>``, read-only, shared by versions."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tidal.registry.model import RegistryError

__all__ = ["ObjectStore"]

_CHUNK = 1 << 20
_READ_ONLY = 0o444


class ObjectStore:
    """Files named by the sha256 of their bytes. Written whole or not at all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Temp files live inside the store so the final rename never crosses a filesystem.
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, source: Path, on_bytes: Callable[[int], None]) -> tuple[str, int, bool]:
        """Copy ``source`` in; returns ``(sha256, size, newly_created)``.

        Unreadable or vanished sources raise ``RegistryError``; store-side failures (disk full)
        raise ``OSError``. Either way no temp file stays behind.
        """
        try:
            reader = open(source, "rb")  # noqa: SIM115 - closed below, errors mapped first
        except OSError as exc:
            raise _source_error(source, exc) from None
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            digest = hashlib.sha256()
            size = 0
            with reader, os.fdopen(fd, "wb") as writer:
                while True:
                    try:
                        chunk = reader.read(_CHUNK)
                    except OSError as exc:
                        raise _source_error(source, exc) from None
                    if not chunk:
                        break
                    digest.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
                    on_bytes(len(chunk))
                writer.flush()
                os.fsync(writer.fileno())
            os.chmod(tmp_name, _READ_ONLY)
            sha = digest.hexdigest()
            final = self.path(sha)
            if final.is_file():
                return sha, size, False  # already stored by an earlier version: keep one copy
            final.parent.mkdir(exist_ok=True)
            os.rename(tmp_name, final)  # atomic; a racing writer of the same bytes is harmless
            _fsync_dir(final.parent)
            return sha, size, True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def export(self, sha: str, target: Path, *, link: bool, on_bytes: Callable[[int], None]) -> str:
        """Write object ``sha`` to ``target`` (a hard link when ``link`` and possible).

        Returns the sha256 of the bytes actually found, for the caller to compare; a missing
        object raises ``FileNotFoundError``.
        """
        source = self.path(sha)
        if link:
            try:
                os.link(source, target)
            except FileNotFoundError:
                raise
            except OSError:
                pass  # another filesystem or no hard links there: copy instead
            else:
                return _hash_file(source, on_bytes)
        digest = hashlib.sha256()
        with open(source, "rb") as reader, open(target, "xb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                on_bytes(len(chunk))
        return digest.hexdigest()

    def remove(self, sha: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(sha))


def _hash_file(path: Path, on_bytes: Callable[[int], None]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            on_bytes(len(chunk))
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse to open folders: not fatal.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _source_error(source: Path, exc: OSError) -> RegistryError:
    if isinstance(exc, FileNotFoundError):
        return RegistryError("not_found", f"'{source}' disappeared while it was being copied")
    return RegistryError("invalid", f"cannot read '{source}': {exc.strerror or exc}")
