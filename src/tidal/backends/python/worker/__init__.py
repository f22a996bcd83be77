"""Code that runs inside a Python-model worker process.

The modules here import only the standard library, numpy and each other (relatively), so a
worker can run under another interpreter (``EXECUTION_ENV_PATH``) that has no tidal installed.
The server imports :mod:`.channel` from here too, so both ends share one wire format.
"""
