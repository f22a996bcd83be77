"""The repository index: every model folder and every loaded model, per version."""

from __future__ import annotations

from tidal.core.metadata import RepositoryEntry
from tidal.core.states import ModelState
from tidal.repository.layout import list_model_folders
from tidal.repository.manager import ModelRepository

# Triton's reason for a model found in more than one repository.
DUPLICATE_REASON = "model appears in two or more repositories"


def repository_index(repository: ModelRepository, ready_only: bool) -> list[RepositoryEntry]:
    """Triton's index: one entry per version of each model in the table, one name-only entry
    per folder never loaded; with ``ready_only``, the READY versions alone. Models loaded from
    files sent with the load request are listed too, though no folder holds them."""
    folders, _ = list_model_folders(repository.paths)
    names = sorted(set(folders) | {record.name for record in repository.records()})
    entries: list[RepositoryEntry] = []
    for name in names:
        record = repository.get(name)
        if record is None:
            if len(folders[name]) > 1:
                entries.append(RepositoryEntry(name, "", "UNAVAILABLE", DUPLICATE_REASON))
            elif not ready_only:
                entries.append(RepositoryEntry(name))
            continue
        if not record.versions:
            entries.append(RepositoryEntry(name, "", record.state.value, record.reason))
        for version, entry in sorted(record.versions.items()):
            entries.append(RepositoryEntry(name, str(version), entry.state.value, entry.reason))
    if ready_only:
        entries = [e for e in entries if e.state == ModelState.READY.value]
    return entries
