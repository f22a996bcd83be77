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

# The rapid-reset guard (CVE-2023-44487). Each stream the client resets, or that the server
# refuses or has to reset for the client's error, spends one credit of a per-connection bucket
# that refills at RESET_RATE credits a second up to RESET_BURST; an empty bucket earns GOAWAY
# ENHANCE_YOUR_CALM. The burst is MAX_STREAMS, so a client may cancel every call it can have
# open at once (a channel closed mid-flight, a wave of deadlines). The rate lets a client go on
# giving up 200 calls a second for ever: 200 concurrent calls that each time out after a second
# on an overloaded server. A flood resets tens of thousands of streams a second and is cut off
# within a fraction of a second, having cost at most a burst's worth of started calls.
RESET_BURST = MAX_STREAMS
RESET_RATE = 200.0
CALM_GRACE_SECONDS = 5.0  # after that GOAWAY: how long calls already running may finish

# Keepalive (grpc-core's server semantics). Once the server has sent max-pings-without-data
# pings with no headers or data in between, further keepalive pings are spaced at least this
# far apart (grpc-core's throttling, instead of stopping them and losing the liveness check).
THROTTLED_PING_SECONDS = 60.0
# With no call open and pings not permitted without calls, a client ping is early unless two
# hours passed since the one before (grpc-core's rule).
IDLE_PING_INTERVAL_SECONDS = 7200.0
MIN_TICK_SECONDS = 0.005  # the upkeep timer's shortest period, whatever the settings
