"""Server settings: one object whose field names are the CLI flags and the TIDAL_* variables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Latency histogram bucket bounds in seconds: 100 us to 10 s, about 2.5x apart.
DEFAULT_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                           0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip


def _opt(help_text: str, **extra: object) -> dict[str, object]:
    """A field's metadata: its help text and extra argparse settings (``metavar``...)."""
    return {"help": help_text, **extra}


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``tidal serve`` can be told. Flag ``--http-port`` is field ``http_port``
    and environment variable ``TIDAL_HTTP_PORT``."""

    model_repository: tuple[str, ...] = field(
        default=(),
        metadata=_opt("Path of a model repository (repeatable). Default: the built-in example."),
    )
    http_port: int = field(default=8000, metadata=_opt("HTTP port (0 picks a free port)."))
    http_address: str = field(default="0.0.0.0", metadata=_opt("Address the HTTP service binds."))
    http_listen_fd: int = field(
        default=-1,
        metadata=_opt(
            "Serve HTTP on this inherited, already listening socket instead of binding "
            "--http-port; several processes given the same socket share its accept queue, so "
            "one can replace another without refusing a connection (-1: bind).",
            metavar="FD",
        ),
    )
    grpc_port: int = field(default=8001, metadata=_opt("gRPC port (0 picks a free port)."))
    grpc_address: str = field(default="0.0.0.0", metadata=_opt("Address the gRPC service binds."))
    allow_grpc: bool = field(default=True, metadata=_opt("Serve the gRPC inference service."))
    grpc_transport: str = field(
        default="tidal",
        metadata=_opt(
            "gRPC transport: 'tidal' (tidal's own HTTP/2 server, fast) or 'aio' (grpc.aio)."
        ),
    )
    grpc_keepalive_time: int = field(
        default=7_200_000,
        metadata=_opt("Milliseconds without input before the server pings a gRPC client."),
    )
    grpc_keepalive_timeout: int = field(
        default=20_000,
        metadata=_opt("Milliseconds to wait for a keepalive ping's ACK before closing."),
    )
    grpc_keepalive_permit_without_calls: bool = field(
        default=False,
        metadata=_opt(
            "Keepalive pings (both ways) are allowed on gRPC connections with no call open."
        ),
    )
    grpc_http2_max_pings_without_data: int = field(
        default=2,
        metadata=_opt(
            "Keepalive pings the server sends with no data in between before it spaces them "
            "a minute apart (0 = no limit)."
        ),
    )
    grpc_http2_min_recv_ping_interval_without_data: int = field(
        default=300_000,
        metadata=_opt(
            "Milliseconds expected between two client pings while the server sends no data; "
            "an earlier ping is a strike."
        ),
    )
    grpc_http2_max_ping_strikes: int = field(
        default=2,
        metadata=_opt(
            "Ping strikes tolerated before GOAWAY ENHANCE_YOUR_CALM 'too_many_pings' "
            "(0 = no limit)."
        ),
    )
    grpc_max_connection_idle_ms: int = field(
        default=0,
        metadata=_opt(
            "Close a gRPC connection (GOAWAY, then close) this many milliseconds after its "
            "last call ended (0 = never)."
        ),
    )
    metrics_port: int = field(
        default=8002,
        metadata=_opt("Prometheus metrics port, serving /metrics (0 picks a free port)."),
    )
    metrics_address: str = field(
        default="", metadata=_opt("Address the metrics service binds. Default: the HTTP address.")
    )
    allow_metrics: bool = field(default=True, metadata=_opt("Serve Prometheus metrics."))
    allow_cpu_metrics: bool = field(
        default=True, metadata=_opt("Include process and host CPU and memory metrics.")
    )
    metrics_latency_buckets: str = field(
        default=",".join(f"{b:g}" for b in DEFAULT_LATENCY_BUCKETS),
        metadata=_opt("Latency histogram bucket bounds in seconds, comma-separated ('' for none)."),
    )
    access_log: str = field(
        default="", metadata=_opt("Write a JSON line per HTTP request to this file ('-': stdout).")
    )
    disable_auto_complete_config: bool = field(
        default=False,
        metadata=_opt("Do not complete missing model configuration from the model file."),
    )
    strict_model_config: bool | None = field(
        default=None,
        metadata=_opt("Old spelling: true requires a complete config.pbtxt, false auto-completes."),
    )
    exit_on_error: bool = field(
        default=True, metadata=_opt("Exit when a model fails to load at start-up.")
    )
    strict_readiness: bool = field(
        default=True, metadata=_opt("Report ready only when every model is ready.")
    )
    model_control_mode: str = field(
        default="none",
        metadata=_opt(
            "none: load every model at start-up; poll: also follow changes on disk; "
            "explicit: load and unload through the repository API."
        ),
    )
    load_model: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "In explicit mode, a model to load at start-up (repeatable; '*' loads all).",
            metavar="NAME",
        ),
    )
    repository_poll_secs: float = field(
        default=15.0, metadata=_opt("Seconds between two polls of the repositories in poll mode.")
    )
    exit_timeout_secs: int = field(
        default=30,
        metadata=_opt(
            "Seconds to let accepted requests finish after SIGTERM before cancelling them."
        ),
    )
    shutdown_delay_secs: float = field(
        default=0.0,
        metadata=_opt(
            "Seconds to go on serving after SIGTERM with readiness false, every response "
            "closing its connection, so load balancers and keep-alive clients move to other "
            "replicas before new requests are refused (on --http-listen-fd new connections "
            "are left to the processes sharing the socket at once). 0: refuse at once."
        ),
    )
    http_max_input_size: int = field(
        default=64 * 1024 * 1024,
        metadata=_opt("Largest HTTP request body in bytes, also after decompression."),
    )
    http_header_timeout_secs: float = field(
        default=15.0,
        metadata=_opt(
            "Seconds an HTTP client has to send a request's line and headers, from the "
            "request's first byte; a slower connection is closed. 0: no limit."
        ),
    )
    grpc_header_timeout_secs: float = field(
        default=15.0,
        metadata=_opt(
            "Seconds a gRPC client has to send the HTTP/2 preface and SETTINGS after it "
            "connects, and each call's complete HEADERS block; a slower connection is closed. "
            "0: no limit."
        ),
    )
    http_idle_timeout_secs: float = field(
        default=75.0,
        metadata=_opt(
            "Seconds an HTTP/1.1 keep-alive connection may stay idle between requests before "
            "it is closed. 0: no limit."
        ),
    )
    http_max_connections: int = field(
        default=2048,
        metadata=_opt(
            "Most HTTP connections open at once; further ones are closed on accept while the "
            "open ones are served. 0: no limit."
        ),
    )
    grpc_max_connections: int = field(
        default=2048,
        metadata=_opt(
            "Most gRPC connections open at once; further ones are closed on accept. 0: no limit."
        ),
    )
    grpc_max_message_size: int = field(
        default=64 * 1024 * 1024,
        metadata=_opt(
            "Largest gRPC request message in bytes, both as received and after decompression; "
            "a larger one fails with RESOURCE_EXHAUSTED before it is inflated past the cap."
        ),
    )
    allow_symlinks_out_of_model_dir: bool = field(
        default=False,
        metadata=_opt(
            "Follow symbolic links in a model's folder that point outside it (by default a "
            "model's files must resolve inside its own folder)."
        ),
    )
    log_verbose: int = field(
        default=0,
        metadata=_opt(
            "Verbose logging: 1 logs tidal's debug messages and each request, 2 and up also "
            "the libraries' (0 = off)."
        ),
    )

    auth_keys_file: str = field(
        default="",
        metadata=_opt(
            "Require 'Authorization: Bearer <key>' on HTTP and gRPC, checked against this keys "
            "file (from 'tidal keys generate'). Default: no authentication.",
            metavar="PATH",
        ),
    )
    auth_open_path: tuple[str, ...] = field(
        default=("/", "/v2/health/live", "/v2/health/ready"),
        metadata=_opt(
            "With --auth-keys-file, an HTTP path served without a key (repeatable; replaces "
            "the default health paths; '' for none).",
            metavar="PATH",
        ),
    )
    http_restricted_api: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "As Triton: serve the HTTP API categories APIS (comma-separated: health, metadata, "
            "inference, shared-memory, model-config, model-repository, statistics, trace, "
            "logging) only to requests with the header KEY: VALUE; others get 403 "
            "(repeatable).",
            metavar="APIS:KEY=VALUE",
            env_separator=";",  # the value holds ':'
        ),
    )
    grpc_restricted_protocol: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "As Triton: serve the gRPC API categories APIS only to calls with the metadata "
            "'triton-grpc-protocol-KEY: VALUE'; others fail with UNAVAILABLE (repeatable).",
            metavar="APIS:KEY=VALUE",
            env_separator=";",  # the value holds ':'
        ),
    )
    ssl_certfile: str = field(
        default="", metadata=_opt("Serve HTTP and gRPC over TLS with this PEM certificate chain.")
    )
    ssl_keyfile: str = field(
        default="", metadata=_opt("The PEM private key of --ssl-certfile.", metavar="PATH")
    )

    def __post_init__(self) -> None:
        _check_model_control(self)
        _check_security(self)
        _check_grpc_transport(self)
        _check_grpc_keepalive(self)
        self.latency_buckets  # noqa: B018 - a bad list stops start-up with its reason

    @property
    def latency_buckets(self) -> tuple[float, ...]:
        """``metrics_latency_buckets`` as numbers; ``()`` means no latency histograms."""
        return parse_buckets(self.metrics_latency_buckets)

    @property
    def auto_complete_config(self) -> bool:
        """Whether missing model configuration is completed from the model file."""
        if self.disable_auto_complete_config:
            return False
        return self.strict_model_config is not True


MODEL_CONTROL_MODES = ("none", "poll", "explicit")


def _check_model_control(settings: ServerSettings) -> None:
    """Reject model-control and limit settings that cannot work, the way Triton does."""
    mode = settings.model_control_mode.strip().lower()  # Triton takes NONE, Poll, ...
    if mode not in MODEL_CONTROL_MODES:
        raise ValueError(
            f"--model-control-mode must be one of {', '.join(MODEL_CONTROL_MODES)}, "
            f"got '{settings.model_control_mode}'"
        )
    object.__setattr__(settings, "model_control_mode", mode)
    if "*" in settings.load_model and len(settings.load_model) > 1:
        raise ValueError(
            "Wildcard model name '*' must be the ONLY startup model if specified at all."
        )
    if mode == "poll" and settings.repository_poll_secs <= 0:
        raise ValueError("--repository-poll-secs must be greater than 0 in poll mode")
    if settings.exit_timeout_secs < 0:
        raise ValueError("--exit-timeout-secs must not be negative")
    if not 0 <= settings.shutdown_delay_secs < math.inf:  # also refuses nan
        raise ValueError("--shutdown-delay-secs must be a number of seconds, 0 or more")
    if settings.http_max_input_size <= 0:
        raise ValueError("--http-max-input-size must be greater than 0")
    _check_connection_limits(settings)
    if settings.http_listen_fd < -1:
        raise ValueError("--http-listen-fd must be a file descriptor number, or -1")


def _check_connection_limits(settings: ServerSettings) -> None:
    for flag, seconds in (
        ("--http-header-timeout-secs", settings.http_header_timeout_secs),
        ("--http-idle-timeout-secs", settings.http_idle_timeout_secs),
        ("--grpc-header-timeout-secs", settings.grpc_header_timeout_secs),
    ):
        if not 0 <= seconds < math.inf:
            raise ValueError(f"{flag} must be a number of seconds, 0 or more")
    for flag, count in (
        ("--http-max-connections", settings.http_max_connections),
        ("--grpc-max-connections", settings.grpc_max_connections),
    ):
        if count < 0:
            raise ValueError(f"{flag} must be 0 (no limit) or more")
    if settings.grpc_max_message_size <= 0:
        raise ValueError("--grpc-max-message-size must be greater than 0")


GRPC_TRANSPORTS = ("tidal", "aio")


def _check_grpc_transport(settings: ServerSettings) -> None:
    transport = settings.grpc_transport.strip().lower()
    if transport not in GRPC_TRANSPORTS:
        raise ValueError(
            f"--grpc-transport must be one of {', '.join(GRPC_TRANSPORTS)}, "
            f"got '{settings.grpc_transport}'"
        )
    object.__setattr__(settings, "grpc_transport", transport)


def _check_grpc_keepalive(settings: ServerSettings) -> None:
    """Keepalive times must be positive, the counts and other times 0 or more."""
    for name in ("grpc_keepalive_time", "grpc_keepalive_timeout"):
        if getattr(settings, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1 (milliseconds)")
    for name in (
        "grpc_http2_max_pings_without_data",
        "grpc_http2_min_recv_ping_interval_without_data",
        "grpc_http2_max_ping_strikes",
        "grpc_max_connection_idle_ms",
    ):
        if getattr(settings, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative")


def _check_security(settings: ServerSettings) -> None:
    """TLS needs both files; stray empty open paths (``--auth-open-path ''``) are dropped."""
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise ValueError("--ssl-certfile and --ssl-keyfile must be given together")
    object.__setattr__(settings, "auth_open_path", tuple(p for p in settings.auth_open_path if p))


def parse_buckets(text: str) -> tuple[float, ...]:
    """Bucket bounds from ``"0.001,0.01,0.1"`` (seconds); raise ``ValueError`` naming a bound
    that is not a positive, finite number above the one before it."""
    bounds: list[float] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"latency bucket '{part}' is not a number of seconds") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"latency bucket '{part}' must be a positive number of seconds")
        if bounds and value <= bounds[-1]:
            raise ValueError(f"latency buckets must increase: {part} follows {bounds[-1]:g}")
        bounds.append(value)
    return tuple(bounds)
