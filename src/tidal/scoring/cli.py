"""``tidal score``: the command-line entry of the scoring server."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from tidal.scoring.settings import DEFAULT_MAX_BODY_SIZE, DEFAULT_PORT, MAX_BODY_SIZE_ENV, resolve

__all__ = ["add_score_command"]


def add_score_command(commands: Any) -> None:
    """Register ``score`` on the ``tidal`` sub-command parser."""
    score = commands.add_parser(
        "score",
        help="serve an Azure ML-style entry script (score.py) at /score",
        description="Serve an entry script with init() and run() at /score from several worker "
        "processes sharing one port; with --model-repository, start the inference server too. "
        "Reads WORKER_COUNT, SCORING_TIMEOUT_MS, WORKER_TIMEOUT, AML_CORS_ORIGINS, "
        "SERVICE_PATH_PREFIX and AZUREML_MODEL_DIR as Azure ML's server does.",
    )
    score.add_argument("--entry_script", "--entry-script", dest="entry_script", required=True)
    score.add_argument(
        "--model_dir", "--model-dir", dest="model_dir", help="AZUREML_MODEL_DIR for the script"
    )
    score.add_argument("--port", type=int, help=f"the scoring port (default {DEFAULT_PORT})")
    score.add_argument("--host", default="0.0.0.0", help="the address to listen on")
    score.add_argument(
        "--worker_count", "--worker-count", dest="worker_count", type=int, help="[env WORKER_COUNT]"
    )
    score.add_argument(
        "--model-repository",
        "--model_repository",
        dest="model_repository",
        action="append",
        default=[],
        help="also serve this model repository with `tidal serve` (repeatable)",
    )
    score.add_argument(
        "--serve-arg",
        dest="serve_args",
        action="append",
        default=[],
        metavar="FLAG",
        help="a flag for the inference server, e.g. --serve-arg=--http-port=8000 (repeatable)",
    )
    score.add_argument(
        "--auth-keys-file", dest="auth_keys_file", default="", help="require these bearer keys"
    )
    score.add_argument("--log-verbose", dest="log_verbose", type=int, default=0)
    score.add_argument(
        "--listen-fd",
        dest="listen_fd",
        type=int,
        default=-1,
        metavar="FD",
        help="serve /score on this inherited listening socket instead of binding --port",
    )
    score.add_argument(
        "--server-listen-fd",
        dest="server_listen_fd",
        type=int,
        default=-1,
        metavar="FD",
        help="give this inherited listening socket to the inference server (--http-listen-fd)",
    )
    score.add_argument(
        "--max-concurrent-requests",
        dest="max_concurrent_requests",
        type=int,
        default=0,
        help="requests scored at once (shared out over the workers); more get 503 (0: no limit)",
    )
    score.add_argument(
        "--max-request-body-size",
        dest="max_body_size",
        type=_size,
        metavar="BYTES",
        help="largest request body; a larger one is answered 413 from its headers, before "
        f"the body is read (default {DEFAULT_MAX_BODY_SIZE}) [env {MAX_BODY_SIZE_ENV}]",
    )
    score.add_argument(
        "--auth-open-health",
        dest="auth_open_health",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --auth-keys-file, answer the health route GET / without a key",
    )
    score.add_argument(
        "--shutdown-delay-secs",
        dest="shutdown_delay_s",
        type=float,
        default=0.0,
        help="after SIGTERM, stop accepting but answer keep-alive clients this long, each "
        "response closing its connection, so processes sharing the socket take over",
    )
    score.set_defaults(command="score", handler=_score)


def _size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes") from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"{size} is not greater than 0")
    return size


def _score(args: argparse.Namespace) -> int:
    try:
        settings = resolve(
            args.entry_script,
            model_dir=args.model_dir,
            port=args.port,
            worker_count=args.worker_count,
            max_body_size=args.max_body_size,
            host=args.host,
            model_repository=tuple(args.model_repository),
            serve_args=tuple(args.serve_args),
            auth_keys_file=args.auth_keys_file,
            log_verbose=args.log_verbose,
            listen_fd=args.listen_fd,
            server_listen_fd=args.server_listen_fd,
            max_concurrent_requests=args.max_concurrent_requests,
            shutdown_delay_s=args.shutdown_delay_s,
            auth_open_health=args.auth_open_health,
        )
        if settings.max_concurrent_requests < 0 or not 0 <= settings.shutdown_delay_s < 3600:
            raise ValueError("--max-concurrent-requests and --shutdown-delay-secs must be >= 0")
        if settings.auth_keys_file:  # a bad keys file is a usage error, before any worker
            from tidal.security.auth import BearerAuth

            BearerAuth.from_file(settings.auth_keys_file)
    except ValueError as exc:
        print(f"tidal score: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if settings.log_verbose else logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    from tidal.scoring.supervisor import Supervisor

    return Supervisor(settings).run()
