"""The v2 HTTP/REST frontend: ``HttpService`` serves it, ``HttpFrontend`` is an ASGI adapter."""

from tidal.frontends.http.asgi import HttpFrontend
from tidal.frontends.http.handlers import HttpHandlers
from tidal.http1.transport import HttpService

__all__ = ["HttpFrontend", "HttpHandlers", "HttpService"]
