"""The server facade every frontend calls."""

from tidal.core.metadata import ModelMetadata, ServerMetadata, TensorMetadata
from tidal.server.facade import InferenceServer

__all__ = ["InferenceServer", "ModelMetadata", "ServerMetadata", "TensorMetadata"]
