"""The v2 gRPC frontend: Triton's ``GRPCInferenceService`` on the one facade."""

from tidal.frontends.grpc.server import GrpcService
from tidal.frontends.grpc.service import InferenceServicer

__all__ = ["GrpcService", "InferenceServicer"]
