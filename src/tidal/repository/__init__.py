"""Model repositories: scanning, version policy, loading, and the model state table."""

from tidal.repository.manager import ModelRepository
from tidal.repository.model_table import LoadedVersion, ModelRecord, VersionRecord

__all__ = ["LoadedVersion", "ModelRecord", "ModelRepository", "VersionRecord"]
