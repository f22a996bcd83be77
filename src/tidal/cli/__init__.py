"""The ``tidal`` command line: parse, call, print."""
