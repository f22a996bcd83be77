"""The server facade every frontend calls."""

from tidal.server.facade import InferenceServer
from tidal.server.metadata import ModelMetadata, ServerMetadata, TensorMetadata

__all__ = ["InferenceServer", "ModelMetadata", "ServerMetadata", "TensorMetadata"]
