"""``tidal model register|list|show|download|delete``: the model registry from the shell."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tidal.registry import ModelRegistry, ModelVersion

__all__ = ["add_model_command"]

_BIG_COPY_BYTES = 50 << 20  # show a bar for copies this large even when stderr is a log file
_TABLE_COLUMNS = ("Name", "Version", "Framework", "Files", "Size", "CreatedTime", "Tags")


def add_model_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tidal model`` and its sub-commands on the top-level parser."""
    model = commands.add_parser(
        "model",
        help="register, list, show, download and delete model versions",
        description="The local model registry under TIDAL_HOME (default ~/.tidal): files and "
        "folders stored by content, versions counting up from 1 per name, ids NAME:VERSION.",
    )
    model.set_defaults(command="model", handler=lambda _: _usage(model))
    sub = model.add_subparsers(title="model commands")

    register = sub.add_parser(
        "register",
        help="copy a file or folder in as the next version of a model",
        description="Copy PATH into the registry as the next version of NAME. A folder keeps "
        "its own name (a registered models/ downloads as models/...).",
    )
    register.add_argument("-n", "--name", required=True, help="the model name")
    register.add_argument("-p", "--path", "--model-path", dest="path", required=True)
    register.add_argument("--framework", "--model-framework", dest="framework", default="Custom")
    register.add_argument(
        "--framework-version", "--model-framework-version", dest="framework_version"
    )
    register.add_argument(
        "-t",
        "--tag",
        dest="tags",
        action="append",
        type=_tag_pair,
        default=[],
        metavar="KEY=VALUE",
        help="a tag to add (repeatable)",
    )
    register.add_argument("-d", "--description")
    _add_output(register)
    register.set_defaults(handler=_run("register", _register))

    listing = sub.add_parser("list", help="list model versions, newest first per name")
    listing.add_argument("-n", "--name", help="only this model")
    listing.add_argument(
        "-t",
        "--tag",
        dest="tags",
        action="append",
        type=_tag_filter,
        default=[],
        metavar="KEY[=VALUE]",
        help="only versions with this tag (repeatable; all must match)",
    )
    _add_output(listing)
    listing.set_defaults(handler=_run("list", _list))

    show = sub.add_parser("show", help="show one version (the latest when VERSION is omitted)")
    show.add_argument("model_id", metavar="NAME[:VERSION]", type=_model_id)
    _add_output(show)
    show.set_defaults(handler=_run("show", _show))

    download = sub.add_parser(
        "download",
        help="write a version to a folder, checking every file's sha256",
        description="Write the model to DIR/<its file or folder name> and print that path.",
    )
    download.add_argument("model_id", metavar="NAME[:VERSION]", type=_model_id)
    download.add_argument("-t", "--target-dir", dest="target_dir", required=True, metavar="DIR")
    download.set_defaults(handler=_run("download", _download))

    delete = sub.add_parser("delete", help="delete a version (refused while a service uses it)")
    delete.add_argument("model_id", metavar="NAME:VERSION", type=_exact_model_id)
    delete.set_defaults(handler=_run("delete", _delete))


# -- handlers -----------------------------------------------------------------------------


def _register(registry: ModelRegistry, args: argparse.Namespace) -> None:
    record = registry.register(
        args.name,
        args.path,
        framework=args.framework,
        framework_version=args.framework_version,
        tags=dict(args.tags),
        description=args.description,
        progress=ProgressBar(f"registering {args.name}"),
    )
    _print_records([record], args.output, single=True)


def _list(registry: ModelRegistry, args: argparse.Namespace) -> None:
    _print_records(registry.list(args.name, dict(args.tags)), args.output, single=False)


def _show(registry: ModelRegistry, args: argparse.Namespace) -> None:
    _print_records([registry.get(*args.model_id)], args.output, single=True)


def _download(registry: ModelRegistry, args: argparse.Namespace) -> None:
    name, version = args.model_id
    if version is None:
        version = registry.get(name).version
    path = registry.download(
        name, version, args.target_dir, progress=ProgressBar(f"downloading {name}:{version}")
    )
    print(path)


def _delete(registry: ModelRegistry, args: argparse.Namespace) -> None:
    name, version = args.model_id
    registry.delete(name, version)
    print(f"deleted model {name}:{version}", file=sys.stderr)


def _run(
    command: str, handler: Callable[[ModelRegistry, argparse.Namespace], None]
) -> Callable[[argparse.Namespace], int]:
    """Wrap a handler: open the registry, turn every expected failure into one stderr line."""

    def run(args: argparse.Namespace) -> int:
        from tidal.registry import ModelRegistry, RegistryError

        prefix = f"tidal model {command}"
        try:
            handler(ModelRegistry(), args)
        except RegistryError as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\n{prefix}: interrupted; nothing was kept", file=sys.stderr)
            return 130
        except OSError as exc:
            where = f" '{exc.filename}'" if exc.filename else ""
            print(f"{prefix}: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        except sqlite3.Error as exc:
            print(f"{prefix}: registry database error: {exc}", file=sys.stderr)
            return 1
        return 0

    return run


# -- arguments and output -----------------------------------------------------------------


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=("json", "table"), default="json", help="default json"
    )


def _tag_pair(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key, value


def _tag_filter(text: str) -> tuple[str, str | None]:
    key, equals, value = text.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"expected KEY or KEY=VALUE, got '{text}'")
    return key, value if equals else None


def _model_id(text: str) -> tuple[str, int | None]:
    from tidal.registry import RegistryError, parse_model_id

    try:
        return parse_model_id(text)
    except RegistryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _exact_model_id(text: str) -> tuple[str, int]:
    name, version = _model_id(text)
    if version is None:
        raise argparse.ArgumentTypeError(f"give the version to delete: '{name}:VERSION'")
    return name, version


def _print_records(records: Sequence[ModelVersion], output: str, *, single: bool) -> None:
    if output == "json":
        data = [r.to_json() for r in records]
        print(json.dumps(data[0] if single else data, indent=2))
        return
    rows = [
        (
            r.name,
            str(r.version),
            r.framework,
            str(r.file_count),
            _human_bytes(r.size_bytes),
            r.created_at[:19],
            ",".join(f"{k}={v}" for k, v in sorted(r.tags.items())),
        )
        for r in records
    ]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(_TABLE_COLUMNS)]
    for row in [_TABLE_COLUMNS, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _human_bytes(count: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    step = 0
    while count >= 1024 and step < len(units) - 1:
        count /= 1024
        step += 1
    return f"{count:.0f} B" if step == 0 else f"{count:.1f} {units[step]}"


class ProgressBar:
    """``progress(done, total)`` drawn on stderr: redrawn in place on a terminal, one line per
    tenth otherwise; silent for small copies when stderr is not a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._enabled: bool | None = None
        self._tty = False
        self._last_draw = 0.0
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        if self._enabled is None:
            self._tty = self._stream.isatty()
            self._enabled = self._tty or total >= _BIG_COPY_BYTES
        if not self._enabled:
            return
        fraction = done / total if total else 1.0
        finished = done >= total
        if self._tty:
            now = time.monotonic()
            if not finished and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            filled = int(30 * fraction)
            bar = "#" * filled + "-" * (30 - filled)
            self._stream.write(
                f"\r{self._label} [{bar}] {fraction:4.0%} "
                f"{_human_bytes(done)} / {_human_bytes(total)}"
            )
            if finished:
                self._stream.write("\n")
        else:
            tenth = int(fraction * 10)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
            self._stream.write(f"{self._label}: {fraction:.0%} of {_human_bytes(total)}\n")
        self._stream.flush()


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
