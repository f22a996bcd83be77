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
# Write back-pressure: above WRITE_HIGH_WATER bytes in the transport's buffer (the peer does
# not read), no DATA is produced and no input read until it drains below WRITE_LOW_WATER.
# Output queued in one loop turn is written as soon as it reaches the high-water mark, so the
# transport sees it and pauses us before more is produced.
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024
# How many streams reset (by either side) are remembered, to tell a late frame on one (ignored
# after our reset, STREAM_CLOSED after the peer's) from one on a stream that ended normally.
RESET_MEMORY = 1024
SKIP_MEMORY = 16  # ranges of stream ids the client skipped (never opened), remembered
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
CALM_GRACE_SECONDS = 5.0
# SETTINGS floods (CVE-2019-9515) get the same kind of budget: SETTINGS_BURST frames, refilled
# at SETTINGS_RATE a second. A client sends one at the start and a few more when it retunes its
# windows; thousands are a flood, answered GOAWAY ENHANCE_YOUR_CALM.
SETTINGS_BURST = 100
SETTINGS_RATE = 20.0  # after that GOAWAY: how long calls already running may finish

# Keepalive (grpc-core's server semantics). Once the server has sent max-pings-without-data
# pings with no headers or data in between, further keepalive pings are spaced at least this
# far apart (grpc-core's throttling, instead of stopping them and losing the liveness check).
THROTTLED_PING_SECONDS = 60.0
# With no call open and pings not permitted without calls, a client ping is early unless two
# hours passed since the one before (grpc-core's rule).
IDLE_PING_INTERVAL_SECONDS = 7200.0
MIN_TICK_SECONDS = 0.005  # the upkeep timer's shortest period, whatever the settings
