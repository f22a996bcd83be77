"""``tidal keys generate --out FILE``: make a primary and a secondary key for bearer auth."""

from __future__ import annotations

import argparse
import json
import sys

from tidal.security.keys import KeyHashes, generate_key, write_keys_file

__all__ = ["add_keys_command"]


def add_keys_command(commands: argparse._SubParsersAction) -> None:
    """Register ``tidal keys`` and its sub-commands on the top-level parser."""
    keys = commands.add_parser(
        "keys",
        help="make keys for bearer authentication (--auth-keys-file)",
        description="Make service keys. Only their SHA-256 digests are stored.",
    )
    keys.set_defaults(command="keys", handler=lambda _: _usage(keys))
    sub = keys.add_subparsers(title="keys commands")
    generate = sub.add_parser(
        "generate",
        help="write a new keys file and print its two keys once",
        description="Make a random primary and secondary key, write their SHA-256 digests to "
        "--out (mode 600) and print the plain keys as JSON on stdout. They are not stored: "
        "keep them now.",
    )
    generate.add_argument("--out", required=True, metavar="FILE", help="the keys file to write")
    generate.add_argument("--force", action="store_true", help="replace an existing FILE")
    generate.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    primary, secondary = generate_key(), generate_key()
    try:
        write_keys_file(args.out, KeyHashes.of(primary, secondary), force=args.force)
    except FileExistsError:
        print(
            f"tidal keys generate: '{args.out}' exists (use --force to replace it)", file=sys.stderr
        )
        return 1
    except OSError as exc:
        print(f"tidal keys generate: cannot write '{args.out}': {exc.strerror}", file=sys.stderr)
        return 1
    print(json.dumps({"primary_key": primary, "secondary_key": secondary}, indent=2))
    print(f"wrote the key digests to {args.out}; the keys are not stored anywhere", file=sys.stderr)
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
