"""Model control and lifecycle settings: flags, environment variables, validation."""

from __future__ import annotations

import pytest

from tidal.cli.main import build_parser
from tidal.config import ServerSettings

from ..settings_helpers import settings

pytestmark = pytest.mark.usefixtures("no_tidal_environment")


def test_defaults_match_triton():
    result = settings()
    assert result.model_control_mode == "none"
    assert result.load_model == ()
    assert result.repository_poll_secs == 15
    assert result.exit_timeout_secs == 30
    assert result.http_max_input_size == 64 * 1024 * 1024


def test_flags():
    result = settings(
        "--model-control-mode=EXPLICIT",
        "--load-model",
        "a",
        "--load-model=b",
        "--repository-poll-secs",
        "0.5",
        "--exit-timeout-secs",
        "5",
        "--http-max-input-size",
        "1024",
    )
    assert result.model_control_mode == "explicit"  # Triton takes any case
    assert result.load_model == ("a", "b")
    assert (result.repository_poll_secs, result.exit_timeout_secs) == (0.5, 5)
    assert result.http_max_input_size == 1024


def test_environment(monkeypatch):
    monkeypatch.setenv("TIDAL_MODEL_CONTROL_MODE", "poll")
    monkeypatch.setenv("TIDAL_LOAD_MODEL", "a:b")
    monkeypatch.setenv("TIDAL_REPOSITORY_POLL_SECS", "2")
    result = settings()
    assert (result.model_control_mode, result.load_model) == ("poll", ("a", "b"))
    assert result.repository_poll_secs == 2.0


def test_help_names_the_load_model_argument():
    text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    assert "--load-model NAME" in text
    assert "--model-control-mode" in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model_control_mode": "auto"}, "--model-control-mode must be one of none, poll"),
        ({"load_model": ("*", "a")}, "Wildcard model name '*' must be the ONLY startup model"),
        ({"model_control_mode": "poll", "repository_poll_secs": 0}, "greater than 0"),
        ({"exit_timeout_secs": -1}, "--exit-timeout-secs must not be negative"),
        ({"http_max_input_size": 0}, "--http-max-input-size must be greater than 0"),
    ],
)
def test_invalid_settings(values, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        ServerSettings(**values)
