"""The v2 HTTP/REST frontend."""

from tidal.frontends.http.asgi import HttpFrontend

__all__ = ["HttpFrontend"]
