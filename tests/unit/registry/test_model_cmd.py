"""The pieces of ``tidal model`` that need no registry: argument types and the progress bar."""

import argparse
import io

import pytest

from tidal.cli.main import build_parser
from tidal.cli.model_cmd import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_small_copies_are_quiet_off_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar("registering m", stream)
    for done in range(0, 1001, 100):
        bar(done, 1000)
    assert stream.getvalue() == ""


def test_big_copies_print_a_line_per_tenth_off_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar("registering m", stream)
    total = 100 << 20
    for done in range(0, total + 1, 1 << 20):
        bar(done, total)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "registering m: 0% of 100.0 MiB"
    assert lines[-1] == "registering m: 100% of 100.0 MiB"
    assert len(lines) == 11


def test_a_terminal_gets_one_redrawn_line_ending_in_a_newline():
    stream = _Terminal()
    bar = ProgressBar("downloading m:1", stream)
    bar(0, 2048)
    bar(2048, 2048)
    text = stream.getvalue()
    assert text.startswith("\rdownloading m:1 [")
    assert text.endswith("100% 2.0 KiB / 2.0 KiB\n")
    assert text.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["model", "register", "-n", "m", "-p", "x", "-t", "novalue"], "expected KEY=VALUE"),
        (["model", "delete", "m"], "give the version to delete"),
        (["model", "show", "m:zero"], "invalid model id"),
        (["model", "list", "-o", "yaml"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_tags_parse_into_pairs_and_filters():
    args = build_parser().parse_args(
        ["model", "register", "-n", "m", "-p", "x", "-t", "a=b=c", "-t", "e="]
    )
    assert args.tags == [("a", "b=c"), ("e", "")]
    args = build_parser().parse_args(["model", "list", "-t", "stage", "-t", "team=x"])
    assert args.tags == [("stage", None), ("team", "x")]
    assert isinstance(args, argparse.Namespace)
