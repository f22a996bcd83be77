"""tidal's HTTP/1.1 server transport: connections, parsing, bounds and response bytes.

It knows requests and ``Reply`` objects (``tidal.core.reply``), nothing of inference: the
inference frontend, the metrics endpoint and the ``/score`` workers each serve their own
handler on it.
"""
