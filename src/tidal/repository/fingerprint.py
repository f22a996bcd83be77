"""A model folder's fingerprint: what changed on disk since it was loaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def folder_fingerprint(folder: Path) -> str:
    """A digest of every file and folder under ``folder``: relative path, size, mtime, inode.

    Triton compares modification times only. Those come from a coarse kernel clock (a few
    milliseconds), so two writes in one tick look alike: sizes catch a changed length, the inode
    number a file replaced by rename (how editors and deploy tools write), and the paths a file
    deleted without touching anything else.
    An unreadable entry counts as changed, so a load is tried and reports the real reason.
    """
    digest = hashlib.blake2b(digest_size=16)
    for relative, size, mtime_ns, inode in _walk(folder):
        line = f"{relative}\0{size}\0{mtime_ns}\0{inode}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _walk(root: Path) -> list[tuple[str, int, int, int]]:
    entries: list[tuple[str, int, int, int]] = []
    pending = [root]
    seen: set[tuple[int, int]] = set()  # folders already walked: symlinks may loop
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as scan:
                children = list(scan)
        except OSError as exc:
            entries.append((f"{folder}: {exc}", -1, -1, -1))
            continue
        for child in children:
            try:
                stat = child.stat(follow_symlinks=True)
                is_dir = child.is_dir(follow_symlinks=True)
            except OSError:
                entries.append((os.path.relpath(child.path, root), -1, -1, -1))
                continue
            relative = os.path.relpath(child.path, root)
            entries.append((relative, stat.st_size, stat.st_mtime_ns, stat.st_ino))
            if is_dir and (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                pending.append(Path(child.path))
    entries.sort()
    return entries
