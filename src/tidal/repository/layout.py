"""Finding models and their version folders in Triton-layout repositories."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tidal.config.pbtxt import ConfigError

# Triton serves only plain decimal version folders: "1", "20" — never "01" or "v1".
_VERSION_DIR = re.compile(r"^(0|[1-9][0-9]*)$")


def scan_repositories(repositories: Iterable[Path]) -> dict[str, Path]:
    """Model name -> model folder across every repository; a name in two is an error."""
    models: dict[str, Path] = {}
    for repository in repositories:
        if not repository.is_dir():
            raise ConfigError(f"model repository {repository} is not a directory")
        for entry in sorted(repository.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if entry.name in models:
                raise ConfigError(
                    f"model '{entry.name}' appears in two repositories: {models[entry.name]} "
                    f"and {entry}"
                )
            models[entry.name] = entry
    return models


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """Version number -> folder, for the numeric subfolders of a model folder."""
    return {
        int(entry.name): entry
        for entry in model_dir.iterdir()
        if entry.is_dir() and _VERSION_DIR.match(entry.name)
    }


def list_model_folders(repositories: Iterable[Path]) -> tuple[dict[str, list[Path]], list[str]]:
    """Every model folder per name (several when a name is in two repositories), and one
    message per repository that cannot be listed. Never raises: the index and the poller
    must keep working while an operator edits the repositories."""
    folders: dict[str, list[Path]] = {}
    problems: list[str] = []
    for repository in repositories:
        try:
            entries = sorted(repository.iterdir())
        except OSError as exc:
            problems.append(f"failed to poll model repository '{repository}': {exc}")
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            folders.setdefault(entry.name, []).append(entry)
    return folders, problems
