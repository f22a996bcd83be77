"""Model runtimes behind one small interface, found by name."""

from tidal.backends.base import Backend, ModelInstance
from tidal.backends.registry import backend_name_for, get_backend

__all__ = ["Backend", "ModelInstance", "backend_name_for", "get_backend"]
