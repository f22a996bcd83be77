"""What the server and its models say about themselves: the values the protocol layer writes
out for metadata and repository-index requests."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelMetadata", "RepositoryEntry", "ServerMetadata", "TensorMetadata"]


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class RepositoryEntry:
    """One line of the repository index. A model never loaded has only a name (empty
    ``version``, ``state`` and ``reason``); a model without versions has an empty ``version``."""

    name: str
    version: str = ""
    state: str = ""
    reason: str = ""
