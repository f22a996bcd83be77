import argparse
import dataclasses
import os

import pytest

from tidal import __version__
from tidal.cli.main import build_parser, main, parse_bool
from tidal.config import ServerSettings

from ..settings_helpers import settings

pytestmark = pytest.mark.usefixtures("no_tidal_environment")


def test_defaults():
    assert settings() == ServerSettings()
    assert ServerSettings() == ServerSettings(
        model_repository=(),
        http_port=8000,
        http_address="0.0.0.0",
        grpc_port=8001,
        metrics_port=8002,
        disable_auto_complete_config=False,
        strict_model_config=None,
        exit_on_error=True,
        strict_readiness=True,
        log_verbose=0,
    )


def test_every_field_has_help_text():
    for field in dataclasses.fields(ServerSettings):
        assert field.metadata["help"], field.name


def test_value_flags():
    result = settings(
        "--http-port",
        "9000",
        "--http-address=127.0.0.1",
        "--grpc-port",
        "0",
        "--metrics-port",
        "9102",
        "--log-verbose",
        "2",
    )
    assert (result.http_port, result.http_address, result.grpc_port) == (9000, "127.0.0.1", 0)
    assert (result.metrics_port, result.log_verbose) == (9102, 2)
    assert type(result.http_port) is int


def test_repeatable_model_repository():
    result = settings("--model-repository", "/a", "--model-repository=/b")
    assert result.model_repository == ("/a", "/b")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--exit-on-error"], True),
        (["--exit-on-error=true"], True),
        (["--exit-on-error=false"], False),
        (["--exit-on-error", "false"], False),
        (["--exit-on-error=0"], False),
        (["--exit-on-error=1"], True),
        (["--exit-on-error=no"], False),
        (["--exit-on-error=YES"], True),
        (["--exit-on-error=Off"], False),
        (["--exit-on-error=on"], True),
    ],
)
def test_boolean_flag_spellings(flags, expected):
    assert settings(*flags).exit_on_error is expected


def test_boolean_flags_can_turn_defaults_off():
    result = settings("--strict-readiness=false", "--disable-auto-complete-config")
    assert result.strict_readiness is False
    assert result.disable_auto_complete_config is True


@pytest.mark.parametrize("text", ["maybe", "", "2", "truee"])
def test_parse_bool_rejects_other_words(text):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_bool(text)
    assert str(info.value) == f"expected true or false, got '{text}'"


def test_bad_flag_value_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", "--http-port", "eighty"])
    assert info.value.code == 2
    assert "--http-port" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", "--exit-on-error=maybe"])
    assert info.value.code == 2


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("TIDAL_HTTP_PORT", "9001")
    monkeypatch.setenv("TIDAL_HTTP_ADDRESS", "::1")
    monkeypatch.setenv("TIDAL_EXIT_ON_ERROR", "false")
    monkeypatch.setenv("TIDAL_LOG_VERBOSE", "1")
    monkeypatch.setenv("TIDAL_MODEL_REPOSITORY", os.pathsep.join(["/r1", "", "/r2"]))
    result = settings()
    assert result.http_port == 9001
    assert result.http_address == "::1"
    assert result.exit_on_error is False
    assert result.log_verbose == 1
    assert result.model_repository == ("/r1", "/r2")


def test_flags_win_over_environment_variables(monkeypatch):
    monkeypatch.setenv("TIDAL_HTTP_PORT", "9001")
    monkeypatch.setenv("TIDAL_EXIT_ON_ERROR", "false")
    monkeypatch.setenv("TIDAL_MODEL_REPOSITORY", "/from-env")
    result = settings("--http-port", "7000", "--exit-on-error", "--model-repository", "/flag")
    assert result.http_port == 7000
    assert result.exit_on_error is True
    assert result.model_repository == ("/flag",)


def test_unrelated_environment_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("HTTP_PORT", "1")
    monkeypatch.setenv("tidal_http_port", "2")
    assert settings().http_port == 8000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TIDAL_HTTP_PORT", "eighty", "TIDAL_HTTP_PORT: invalid literal for int() with base 10"),
        ("TIDAL_STRICT_READINESS", "maybe", "TIDAL_STRICT_READINESS: expected true or false"),
        ("TIDAL_LOG_VERBOSE", "", "TIDAL_LOG_VERBOSE: invalid literal for int() with base 10"),
    ],
)
def test_bad_environment_value_is_a_value_error(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        settings()
    assert str(info.value).startswith(message)


def test_serve_reports_a_bad_environment_value_and_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("TIDAL_HTTP_PORT", "eighty")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tidal serve: TIDAL_HTTP_PORT: ")


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tidal {__version__}"


# -- auto_complete_config ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], True),
        (["--strict-model-config=false"], True),
        (["--strict-model-config=true"], False),
        (["--strict-model-config"], False),
        (["--disable-auto-complete-config"], False),
        (["--disable-auto-complete-config=false"], True),
        (["--disable-auto-complete-config", "--strict-model-config=false"], False),
        (["--disable-auto-complete-config=false", "--strict-model-config=true"], False),
    ],
)
def test_auto_complete_config_from_flags(flags, expected):
    assert settings(*flags).auto_complete_config is expected


@pytest.mark.parametrize(("value", "expected"), [("false", True), ("true", False)])
def test_strict_model_config_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("TIDAL_STRICT_MODEL_CONFIG", value)
    result = settings()
    assert result.strict_model_config is (value == "true")
    assert result.auto_complete_config is expected


def test_strict_model_config_unset_stays_none():
    assert settings().strict_model_config is None


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServerSettings().http_port = 1  # type: ignore[misc]
