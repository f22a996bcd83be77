"""Server settings: one object whose field names are the CLI flags and the TIDAL_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field


def _opt(help_text: str, **extra: object) -> dict[str, object]:
    return {"metadata": {"help": help_text, **extra}}


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``tidal serve`` can be told. Flag ``--http-port`` is field ``http_port``
    and environment variable ``TIDAL_HTTP_PORT``."""

    model_repository: tuple[str, ...] = field(
        default=(),
        **_opt("Path of a model repository (repeatable). Default: the built-in example."),
    )
    http_port: int = field(default=8000, **_opt("HTTP port (0 picks a free port)."))
    http_address: str = field(default="0.0.0.0", **_opt("Address the HTTP service binds."))
    grpc_port: int = field(default=8001, **_opt("gRPC port (0 picks a free port)."))
    metrics_port: int = field(default=8002, **_opt("Prometheus metrics port."))
    disable_auto_complete_config: bool = field(
        default=False, **_opt("Do not complete missing model configuration from the model file.")
    )
    strict_model_config: bool | None = field(
        default=None,
        **_opt("Old spelling: true requires a complete config.pbtxt, false auto-completes."),
    )
    exit_on_error: bool = field(
        default=True, **_opt("Exit when a model fails to load at start-up.")
    )
    strict_readiness: bool = field(
        default=True, **_opt("Report ready only when every model is ready.")
    )
    log_verbose: int = field(default=0, **_opt("Verbose logging level (0 = off)."))

    @property
    def auto_complete_config(self) -> bool:
        """Whether missing model configuration is completed from the model file."""
        if self.disable_auto_complete_config:
            return False
        return self.strict_model_config is not True
