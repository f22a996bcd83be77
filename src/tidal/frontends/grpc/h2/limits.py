"""What tidal's HTTP/2 server advertises to its peers, and its other fixed limits."""

from __future__ import annotations

# What the server advertises. Large windows keep big tensors moving without a round trip per
# 64 KiB; large frames mean fewer frames for Python to parse.
STREAM_WINDOW = 16 * 1024 * 1024
CONNECTION_WINDOW = 64 * 1024 * 1024
MAX_FRAME_SIZE = 4 * 1024 * 1024
MAX_STREAMS = 1000
MAX_HEADER_BLOCK = 256 * 1024  # a header block across CONTINUATION frames
WRITE_JOIN_LIMIT = 256 * 1024  # output up to this size is joined into one bytes for write
LINGER_SECONDS = 1.0  # after a connection error: how long input is drained before the close
