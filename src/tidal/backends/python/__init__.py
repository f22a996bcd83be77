"""Triton-style Python models (``model.py`` with ``TritonPythonModel``), one process per instance.

The backend is :class:`tidal.backends.python.backend.PythonBackend`; this package imports nothing
on its own, so the server can import :mod:`.bls` cheaply.
"""
