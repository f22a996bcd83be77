"""``tidal score``: the command-line entry of the scoring server."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from tidal.scoring.settings import DEFAULT_PORT, resolve

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
    score.set_defaults(command="score", handler=_score)


def _score(args: argparse.Namespace) -> int:
    try:
        settings = resolve(
            args.entry_script,
            model_dir=args.model_dir,
            port=args.port,
            worker_count=args.worker_count,
            host=args.host,
            model_repository=tuple(args.model_repository),
            serve_args=tuple(args.serve_args),
            auth_keys_file=args.auth_keys_file,
            log_verbose=args.log_verbose,
        )
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
