"""``tidal model ...`` end to end: the real CLI in a subprocess on a TIDAL_HOME of its own."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .conftest import tidal_command, tidal_env


@pytest.fixture
def tidal(tmp_path):
    home = tmp_path / "home"

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = tidal_env()
        env["TIDAL_HOME"] = str(home)
        return subprocess.run(
            tidal_command("model", *args),
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
        )

    run.home = home  # type: ignore[attr-defined]
    return run


@pytest.fixture
def models_dir(tmp_path):
    root = tmp_path / "work" / "models"
    (root / "triton" / "identity" / "1").mkdir(parents=True)
    (root / "triton" / "identity" / "config.pbtxt").write_text('name: "identity"\n')
    (root / "triton" / "identity" / "1" / "model.onnx").write_bytes(b"\x01\x02" * 5000)
    return root


def ok_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_error_line(result: subprocess.CompletedProcess, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_register_show_list_download_delete(tidal, models_dir, tmp_path):
    first = ok_json(
        tidal(
            "register", "-n", "ident", "-p", str(models_dir), "--framework", "multi",
            "--framework-version", "2.45", "-t", "stage=dev", "-t", "team=vision",
            "-d", "identity over Triton",
        )
    )  # fmt: skip
    assert first["id"] == "ident:1"
    assert first["framework"] == "Multi"
    assert first["frameworkVersion"] == "2.45"
    assert first["tags"] == {"stage": "dev", "team": "vision"}
    assert first["description"] == "identity over Triton"
    assert first["fileCount"] == 2
    second = ok_json(tidal("register", "-n", "ident", "-p", str(models_dir), "-t", "stage=prod"))
    assert second["version"] == 2
    assert second["framework"] == "Custom"

    assert ok_json(tidal("show", "ident"))["version"] == 2
    assert ok_json(tidal("show", "ident:1")) == first
    assert [m["id"] for m in ok_json(tidal("list"))] == ["ident:2", "ident:1"]
    assert [m["id"] for m in ok_json(tidal("list", "-t", "stage=dev"))] == ["ident:1"]
    assert [m["id"] for m in ok_json(tidal("list", "-t", "team"))] == ["ident:1"]
    assert ok_json(tidal("list", "-n", "other")) == []
    table = tidal("list", "-o", "table")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == [
        "Name", "Version", "Framework", "Files", "Size", "CreatedTime", "Tags",
    ]  # fmt: skip
    assert table.stdout.splitlines()[3].split()[:3] == ["ident", "1", "Multi"]

    result = tidal("download", "ident:1", "-t", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    downloaded = Path(result.stdout.strip())
    assert downloaded == tmp_path / "out" / "models"
    model_file = downloaded / "triton" / "identity" / "1" / "model.onnx"
    assert model_file.read_bytes() == b"\x01\x02" * 5000
    assert result.stderr == ""  # small copies draw no progress bar off a terminal
    again = one_error_line(tidal("download", "ident:1", "-t", str(tmp_path / "out")))
    assert again == f"tidal model download: '{downloaded}' already exists; choose another folder"

    deleted = tidal("delete", "ident:1")
    assert deleted.returncode == 0, deleted.stderr
    assert [m["id"] for m in ok_json(tidal("list"))] == ["ident:2"]
    line = one_error_line(tidal("delete", "ident:1"))
    assert line == "tidal model delete: model 'ident:1' not found"
    assert ok_json(tidal("register", "-n", "ident", "-p", str(models_dir)))["version"] == 3


def test_a_single_file_and_a_relative_path(tidal, models_dir, tmp_path):
    work = models_dir.parent
    record = ok_json(
        tidal("register", "-n", "onnx", "-p", "models/triton/identity/1/model.onnx", cwd=work)
    )
    assert (record["rootName"], record["isDirectory"]) == ("model.onnx", False)
    result = tidal("download", "onnx", "-t", "dl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dl" / "model.onnx").read_bytes() == b"\x01\x02" * 5000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["register", "-n", "bad name", "-p", "."],
            "tidal model register: invalid model name 'bad name': it must only consist of "
            "letters, numbers, dashes, periods, or underscores, start with a letter or number, "
            "and be between 1 and 255 characters long",
        ),
        (
            ["register", "-n", "m", "-p", "no/such/path"],
            "tidal model register: model path 'no/such/path' does not exist",
        ),
        (
            ["register", "-n", "m", "-p", ".", "--framework", "caffe"],
            "tidal model register: unknown model framework 'caffe': use one of Custom, Multi, "
            "Onnx, PyTorch, ScikitLearn, TensorFlow, TfKeras",
        ),
        (["show", "nope"], "tidal model show: model 'nope' not found"),
        (["show", "nope:4"], "tidal model show: model 'nope:4' not found"),
        (["download", "nope:1", "-t", "out"], "tidal model download: model 'nope:1' not found"),
    ],
)
def test_errors_are_one_line_exit_1(tidal, tmp_path, args, expected):
    assert one_error_line(tidal(*args)) == expected
    assert not (tidal.home / "objects").exists() or not list((tidal.home / "objects").glob("??"))


@pytest.mark.parametrize(
    "args",
    [
        ["register", "-n", "m", "-p", ".", "-t", "novalue"],
        ["register", "-p", "."],
        ["delete", "m"],
        ["show", "m:0"],
        ["list", "-o", "yaml"],
        [],
    ],
)
def test_usage_errors_exit_2(tidal, args):
    result = tidal(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_delete_refused_while_a_service_uses_the_model(tidal, models_dir):
    ok_json(tidal("register", "-n", "m", "-p", str(models_dir)))
    # The deployments record their models in this shared table (same DDL on both sides).
    connection = sqlite3.connect(tidal.home / "tidal.db")
    with connection:
        connection.execute("INSERT INTO service_models VALUES ('svc', 'm', 1)")
    connection.close()
    line = one_error_line(tidal("delete", "m:1"))
    assert line.startswith("tidal model delete: model 'm:1' is used by service svc")
    assert ok_json(tidal("show", "m:1"))["id"] == "m:1"


def test_download_refuses_a_damaged_store(tidal, models_dir, tmp_path):
    ok_json(tidal("register", "-n", "m", "-p", str(models_dir)))
    victim = next(p for p in (tidal.home / "objects").glob("??/*") if p.stat().st_size == 10000)
    victim.chmod(0o644)
    victim.write_bytes(b"\x00" * 10000)
    line = one_error_line(tidal("download", "m:1", "-t", str(tmp_path / "out")))
    assert line.startswith("tidal model download: model 'm:1': 'triton/identity/1/model.onnx'")
    assert "does not match its sha256" in line
    assert list((tmp_path / "out").iterdir()) == []


def test_large_copies_report_progress_on_stderr(tidal, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(60 << 20)  # sparse: cheap to make, read back as 60 MiB of zeros
    result = tidal("register", "-n", "big", "-p", str(big))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "registering big: 0% of 60.0 MiB"
    assert lines[-1] == "registering big: 100% of 60.0 MiB"
    result = tidal("download", "big:1", "-t", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "downloading big:1: 100% of 60.0 MiB"
    assert (tmp_path / "out" / "big.bin").stat().st_size == 60 << 20
