"""``tidal serve`` and friends. Flags come from ``ServerSettings``; each also reads TIDAL_*."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import types
import typing
from collections.abc import Sequence

from tidal import __version__
from tidal.cli.config_cmd import add_config_command
from tidal.cli.deploy_cmd import add_deploy_command
from tidal.cli.keys_cmd import add_keys_command
from tidal.cli.model_cmd import add_model_command
from tidal.cli.service_cmd import add_service_command
from tidal.config.settings import ServerSettings
from tidal.scoring.cli import add_score_command

ENV_PREFIX = "TIDAL_"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.handler(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidal", description="A fast, Triton-compatible model inference server."
    )
    parser.add_argument("--version", action="version", version=f"tidal {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands")
    serve = commands.add_parser(
        "serve",
        help="serve model repositories over the v2 inference protocol",
        description="Serve Triton-layout model repositories over the KServe v2 protocol. "
        f"Every flag also reads the environment variable {ENV_PREFIX}<FLAG_NAME>.",
    )
    _add_settings_flags(serve)
    serve.set_defaults(command="serve", handler=_serve)
    add_config_command(commands)
    add_keys_command(commands)
    add_model_command(commands)
    add_score_command(commands)
    add_deploy_command(commands)
    add_service_command(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"tidal serve: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_verbose)
    from tidal.serve import run  # imported late: the web stack and runtimes are heavy

    return run(settings)


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Settings from the parsed flags, falling back to TIDAL_* variables, then defaults."""
    values: dict[str, typing.Any] = {}
    for field in dataclasses.fields(ServerSettings):
        given: typing.Any = getattr(args, field.name, None)
        if given is None:
            env = os.environ.get(ENV_PREFIX + field.name.upper())
            if env is None:
                continue
            given = _parse_env(field, env)
        values[field.name] = tuple(given) if _is_multi(field) else given
    return ServerSettings(**values)


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(ServerSettings)
    for field in dataclasses.fields(ServerSettings):
        flag = "--" + field.name.replace("_", "-")
        env_help = f"env {ENV_PREFIX}{field.name.upper()}"
        if _is_multi(field):
            env_help += f", several separated by '{env_separator(field)}'"
        help_text = f"{field.metadata.get('help', '')} [{env_help}]"
        kind = hints[field.name]
        if _is_multi(field):
            parser.add_argument(
                flag, action="append", metavar=field.metadata.get("metavar", "PATH"), help=help_text
            )
        elif _is_bool(kind):
            # Triton's spelling: --flag, --flag=true, --flag=false
            parser.add_argument(
                flag, nargs="?", const=True, type=parse_bool, metavar="true|false", help=help_text
            )
        else:
            parser.add_argument(flag, type=_base_type(kind), help=help_text)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def _parse_env(field: dataclasses.Field, text: str) -> object:
    kind = typing.get_type_hints(ServerSettings)[field.name]
    if _is_multi(field):
        return [part for part in text.split(env_separator(field)) if part]
    try:
        if _is_bool(kind):
            return parse_bool(text)
        return _base_type(kind)(text)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise ValueError(f"{ENV_PREFIX}{field.name.upper()}: {exc}") from None


def _is_multi(field: dataclasses.Field) -> bool:
    """Tuple-valued settings are repeatable flags (and variables holding several values)."""
    return isinstance(field.default, tuple)


def env_separator(field: dataclasses.Field) -> str:
    """What separates the values of a repeatable setting's variable: ``os.pathsep`` (``:``),
    as in ``PATH``, unless the field's values can hold it (``APIS:KEY=VALUE`` uses ``;``)."""
    return str(field.metadata.get("env_separator", os.pathsep))


def _is_bool(kind: object) -> bool:
    return kind is bool or (isinstance(kind, types.UnionType) and bool in typing.get_args(kind))


def _base_type(kind: object) -> type:
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if not isinstance(kind, type):
        raise TypeError(f"a setting's type must be a class or 'X | None', got {kind!r}")
    return kind


def _configure_logging(verbose: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
