"""``tidal service list|show|keys|regen-key|logs|update|run|delete``: local services."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidal.cli.deploy_cmd import add_config_flags, fail, load_specs, print_how_to_call
from tidal.deploy.kubernetes.cli import wire_kubernetes

if TYPE_CHECKING:
    from tidal.deploy.service import ServiceManager

__all__ = ["add_service_command"]

_FOLLOW_POLL_S = 0.5
_COLUMNS = ("Name", "State", "Port", "Models", "Pid", "ScoringUri")


def add_service_command(commands: Any) -> None:
    """Register ``tidal service`` and its sub-commands."""
    service = commands.add_parser(
        "service",
        help="list, inspect, update, call and delete local services",
        description="The services started by 'tidal deploy', under TIDAL_HOME/services.",
    )
    service.set_defaults(command="service", handler=lambda _: _usage(service))
    sub = service.add_subparsers(title="service commands")

    listing = sub.add_parser("list", help="list the services and their states")
    _output(listing)
    listing.set_defaults(handler=_run("list", _list))

    show = sub.add_parser("show", help="state, URIs, models, port and pid of a service")
    _name(show)
    _output(show)
    show.set_defaults(handler=_run("show", _show))
    wire_kubernetes(show, "show")  # --target kubernetes: through kubectl

    keys = sub.add_parser("keys", help="print the primary and secondary keys")
    _name(keys)
    _output(keys)
    keys.set_defaults(handler=_run("keys", _keys))

    regen = sub.add_parser("regen-key", help="replace one key; the old one is refused after")
    _name(regen)
    regen.add_argument("--key", required=True, type=str.lower, choices=("primary", "secondary"))
    _output(regen)
    regen.set_defaults(handler=_run("regen-key", _regen))

    logs = sub.add_parser("logs", help="print the service's log")
    _name(logs)
    logs.add_argument("--tail", type=int, help="only the last N lines")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(handler=_run("logs", _logs))
    wire_kubernetes(logs, "logs")  # --target kubernetes: through kubectl

    update = sub.add_parser(
        "update",
        help="roll a service to new models or configs without dropping requests",
        description="Start the new processes on the same port, wait until they serve, then "
        "stop the old ones. What is not given is kept.",
    )
    _name(update)
    update.add_argument("-m", "--model", dest="models", action="append", metavar="NAME:VERSION")
    add_config_flags(update)
    update.add_argument("--timeout", type=float, default=600.0)
    _output(update)
    update.set_defaults(handler=_run("update", _update))

    run = sub.add_parser("run", help="call the service's scoring URI with the primary key")
    _name(run)
    run.add_argument("-d", "--input-data", dest="input_data", required=True, help="JSON text")
    run.set_defaults(handler=_run("run", _call))

    delete = sub.add_parser("delete", help="stop the service and remove its files")
    _name(delete)
    delete.set_defaults(handler=_run("delete", _delete))
    wire_kubernetes(delete, "delete")  # --target kubernetes: through kubectl


def _name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--name", required=True, help="the service name")


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _run(
    command: str, body: Callable[[ServiceManager, argparse.Namespace], int]
) -> Callable[..., int]:
    """One place turning every expected error into one line on stderr and exit code 1."""

    def handler(args: argparse.Namespace) -> int:
        from tidal.deploy.service import ServiceError, ServiceManager

        try:
            return body(ServiceManager(), args)
        except (ServiceError, ValueError, OSError) as exc:
            return fail(f"service {command}", exc)
        except KeyboardInterrupt:
            return 130

    return handler


def _list(manager: ServiceManager, args: argparse.Namespace) -> int:
    services = manager.list()
    if args.output == "json":
        print(json.dumps([s.to_json() for s in services], indent=2))
        return 0
    rows = [
        (s.name, s.state, str(s.port), ",".join(s.models), str(s.pid or "-"), s.scoring_uri)
        for s in services
    ]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(_COLUMNS)]
    for line in (_COLUMNS, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return 0


def _show(manager: ServiceManager, args: argparse.Namespace) -> int:
    info = manager.get(args.name)
    if args.output == "json":
        print(json.dumps(info.to_json(), indent=2))
        return 0
    for key, value in info.to_json().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"{key + ':':<14} {'-' if shown is None else shown}")
    return 0


def _print_keys(primary: str, secondary: str, output: str) -> None:
    if output == "json":
        print(json.dumps({"primaryKey": primary, "secondaryKey": secondary}, indent=2))
    else:
        print(f"primaryKey:   {primary}\nsecondaryKey: {secondary}")


def _keys(manager: ServiceManager, args: argparse.Namespace) -> int:
    primary, secondary = manager.keys(args.name)
    _print_keys(primary, secondary, args.output)
    return 0


def _regen(manager: ServiceManager, args: argparse.Namespace) -> int:
    primary, secondary = manager.regen_key(args.name, args.key)
    _print_keys(primary, secondary, args.output)
    return 0


def _logs(manager: ServiceManager, args: argparse.Namespace) -> int:
    if args.tail is not None and args.tail < 0:
        raise ValueError("--tail must be at least 0")
    sys.stdout.write(manager.logs(args.name, tail=args.tail))
    sys.stdout.flush()
    if not args.follow:
        return 0
    path = manager.log_path(args.name)
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        while True:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            elif not path.exists():  # the service was deleted
                return 0
            else:
                time.sleep(_FOLLOW_POLL_S)


def _update(manager: ServiceManager, args: argparse.Namespace) -> int:
    inference, deployment = load_specs(args)
    info = manager.update(
        args.name,
        models=args.models,
        inference=inference,
        deployment=deployment,
        timeout=args.timeout,
        output=None if args.output == "json" else _progress,
    )
    if args.output == "json":
        print(json.dumps(info.to_json(), indent=2))
    else:
        print_how_to_call(info, manager.keys(args.name)[0] if info.auth_enabled else None)
    return 0


def _call(manager: ServiceManager, args: argparse.Namespace) -> int:
    answer = manager.call(args.name, args.input_data)
    print(answer if isinstance(answer, str) else json.dumps(answer))
    return 0


def _delete(manager: ServiceManager, args: argparse.Namespace) -> int:
    manager.delete(args.name)
    print(f"Service '{args.name}' deleted")
    return 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
