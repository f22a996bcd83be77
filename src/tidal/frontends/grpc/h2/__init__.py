"""tidal's own HTTP/2 transport for gRPC on asyncio: frames, HPACK, gRPC message framing and
flow control in small modules, serving the same ``InferenceServicer`` as ``grpc.aio``."""

from tidal.frontends.grpc.h2.bounds import Bounds
from tidal.frontends.grpc.h2.server import TidalGrpcService
from tidal.frontends.grpc.h2.upkeep import Keepalive

__all__ = ["Bounds", "Keepalive", "TidalGrpcService"]
