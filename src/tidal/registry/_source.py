"""What a register call will copy: the files under the given path, checked before any copy."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tidal.registry.model import RegistryError

__all__ = ["SourceFile", "SourceTree", "scan_source"]


@dataclass(frozen=True)
class SourceFile:
    relpath: str  # POSIX path under the registered folder; the file's own name for a single file
    path: Path
    size: int


@dataclass(frozen=True)
class SourceTree:
    root_name: str
    is_dir: bool
    files: list[SourceFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def scan_source(path: str | os.PathLike[str]) -> SourceTree:
    """List the regular files of ``path`` (a file or a folder), sorted, or raise RegistryError.

    Symbolic links to files are followed (their bytes are stored); links to folders and special
    files (sockets, pipes, devices) are refused rather than silently skipped.
    """
    source = Path(os.path.abspath(path))  # abspath, not resolve: a linked folder keeps its name
    try:
        info = source.stat()
    except FileNotFoundError:
        raise RegistryError("not_found", f"model path '{path}' does not exist") from None
    except OSError as exc:
        raise RegistryError("invalid", f"cannot read '{path}': {exc.strerror}") from None
    if not source.name:
        raise RegistryError("invalid", f"cannot register the filesystem root '{path}'")
    if stat.S_ISREG(info.st_mode):
        return SourceTree(source.name, False, [SourceFile(source.name, source, info.st_size)])
    if not stat.S_ISDIR(info.st_mode):
        raise RegistryError("invalid", f"'{path}' is neither a regular file nor a folder")
    files = sorted(_walk(source), key=lambda f: f.relpath)
    if not files:
        raise RegistryError("invalid", f"model folder '{path}' holds no files")
    return SourceTree(source.name, True, files)


def _walk(root: Path) -> list[SourceFile]:
    found: list[SourceFile] = []

    def fail(exc: OSError) -> None:
        raise RegistryError("invalid", f"cannot read '{exc.filename}': {exc.strerror}")

    for folder, dirnames, filenames in os.walk(root, onerror=fail):
        base = Path(folder)
        for name in dirnames:
            if (base / name).is_symlink():
                raise RegistryError(
                    "invalid", f"'{base / name}' links to a folder; copy it in or remove the link"
                )
        for name in filenames:
            item = base / name
            try:
                info = item.stat()
            except FileNotFoundError:
                raise RegistryError("not_found", f"'{item}' is a broken link or vanished") from None
            except OSError as exc:
                raise RegistryError("invalid", f"cannot read '{item}': {exc.strerror}") from None
            if not stat.S_ISREG(info.st_mode):
                raise RegistryError("invalid", f"'{item}' is not a regular file")
            found.append(SourceFile(item.relative_to(root).as_posix(), item, info.st_size))
    return found
