"""``ScoreSettings``: what ``tidal score`` was asked to run, resolved once from flags and env."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_PORT = 5001
DEFAULT_SCORING_TIMEOUT_MS = 3_600_000
DEFAULT_WORKER_TIMEOUT_S = 300.0
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024  # as `tidal serve --http-max-input-size`
MAX_BODY_SIZE_ENV = "TIDAL_SCORE_MAX_BODY_SIZE"


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
    """Everything a supervisor and its workers need; workers get it as JSON."""

    entry_script: str
    model_dir: str = ""
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    worker_count: int = 1
    scoring_timeout_ms: int = DEFAULT_SCORING_TIMEOUT_MS
    worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S
    cors_origins: tuple[str, ...] = ()
    service_path_prefix: str = ""
    auth_keys_file: str = ""
    model_repository: tuple[str, ...] = ()
    serve_args: tuple[str, ...] = ()  # extra flags for the inference server child
    log_verbose: int = 0
    listen_fd: int = -1  # serve on this inherited listening socket instead of binding the port
    server_listen_fd: int = -1  # hand this listening socket to the inference server child
    max_concurrent_requests: int = 0  # per service, shared out over the workers; 0: no limit
    shutdown_delay_s: float = 0.0  # after SIGTERM, serve on with connection: close this long
    auth_open_health: bool = True  # with keys, GET / still answers without one
    max_body_size: int = DEFAULT_MAX_BODY_SIZE  # larger request bodies are refused with 413

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ScoreSettings:
        values = json.loads(text)
        for name in ("cors_origins", "model_repository", "serve_args"):
            values[name] = tuple(values[name])
        return cls(**values)


def resolve(
    entry_script: str,
    *,
    model_dir: str | None,
    port: int | None,
    worker_count: int | None,
    max_body_size: int | None = None,
    env: Mapping[str, str] = os.environ,
    **rest: object,
) -> ScoreSettings:
    """Flags win over the Azure ML variables (WORKER_COUNT, SCORING_TIMEOUT_MS, ...) and
    TIDAL_SCORE_MAX_BODY_SIZE."""
    script = Path(entry_script).expanduser().resolve()
    if not script.is_file():
        raise ValueError(f"entry script '{entry_script}' does not exist")
    if model_dir is None:
        model_dir = env.get("AZUREML_MODEL_DIR") or str(script.parent)
    folder = Path(model_dir).expanduser().resolve()
    if worker_count is None:
        worker_count = _int(env, "WORKER_COUNT", 1)
    if worker_count < 1:
        raise ValueError("the worker count must be at least 1")
    prefix = env.get("SERVICE_PATH_PREFIX", "").strip().strip("/")
    origins = tuple(o.strip() for o in env.get("AML_CORS_ORIGINS", "").split(",") if o.strip())
    timeout_ms = _int(env, "SCORING_TIMEOUT_MS", DEFAULT_SCORING_TIMEOUT_MS)
    if timeout_ms <= 0:
        raise ValueError("SCORING_TIMEOUT_MS must be positive")
    if max_body_size is None:
        max_body_size = _int(env, MAX_BODY_SIZE_ENV, DEFAULT_MAX_BODY_SIZE)
    if max_body_size <= 0:
        raise ValueError(f"--max-request-body-size ({MAX_BODY_SIZE_ENV}) must be greater than 0")
    return ScoreSettings(
        entry_script=str(script),
        model_dir=str(folder),
        port=DEFAULT_PORT if port is None else port,
        worker_count=worker_count,
        scoring_timeout_ms=timeout_ms,
        worker_timeout_s=float(_int(env, "WORKER_TIMEOUT", int(DEFAULT_WORKER_TIMEOUT_S))),
        cors_origins=origins,
        service_path_prefix=f"/{prefix}" if prefix else "",
        max_body_size=max_body_size,
        **rest,  # type: ignore[arg-type]
    )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an integer") from None
