"""An entry script's source folder as a ConfigMap, mounted read-only at ``/app`` in the pod."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tidal.deploy.kubernetes.options import RenderError

__all__ = ["CONFIGMAP_LIMIT", "AppFiles", "collect_app"]

# The API server refuses a ConfigMap larger than 1 MiB; keep room for its metadata.
CONFIGMAP_LIMIT = 1024 * 1024 - 16 * 1024
_SKIPPED_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".venv", ".mypy_cache", ".pytest_cache"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]")


@dataclass(frozen=True)
class AppFiles:
    """ConfigMap ``data`` (UTF-8 text) and ``binaryData`` (base64), and where each key goes."""

    data: dict[str, str]
    binary_data: dict[str, str]
    items: tuple[tuple[str, str], ...]  # (key, relative path under /app)
    sha256: str  # of every path and its bytes: a pod annotation, so a change rolls the pods


def collect_app(source_directory: Path | None, entry_script: str) -> AppFiles:
    """Read the files the pod needs: the whole source folder, or the entry script alone."""
    if source_directory is None:
        script = Path(entry_script)
        if not script.is_file():
            raise RenderError(f"entry script '{entry_script}' is not a file")
        files = [(script.name, script)]
    else:
        files = sorted(_walk(source_directory))
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    items: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    total = 0
    for relpath, path in files:
        raw = path.read_bytes()
        total += len(raw)
        if total > CONFIGMAP_LIMIT:
            raise RenderError(
                f"the entry script's source folder holds more than {CONFIGMAP_LIMIT // 1024} KiB, "
                "more than a Kubernetes ConfigMap can carry: bake it into the image instead "
                "(see docs/kubernetes.md)"
            )
        key = _KEY_CHARS.sub("_", relpath.replace("/", "__"))
        if key in data or key in binary:
            raise RenderError(f"two files of the source folder map to one ConfigMap key: {key}")
        try:
            data[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(raw).decode("ascii")
        items.append((key, relpath))
        digest.update(relpath.encode() + b"\0" + hashlib.sha256(raw).digest())
    return AppFiles(data, binary, tuple(items), digest.hexdigest())


def _walk(root: Path) -> list[tuple[str, Path]]:
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in names:
            if name.endswith(_SKIPPED_SUFFIXES):
                continue
            path = Path(folder) / name
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return found
