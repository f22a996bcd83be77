"""tidal: a fast, Triton-compatible model inference server.

``import tidal`` stays light: it imports no model runtime and no web stack.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
