"""TLS and auth settings: both TLS files or neither, readable files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidal.config.settings import ServerSettings
from tidal.security.setup import Security
from tidal.security.tls import grpc_server_credentials, http_ssl_context


def test_security_is_off_by_default() -> None:
    security = Security.from_settings(ServerSettings())
    assert security.auth is None and security.ssl_context is None
    assert security.grpc_interceptors == () and security.grpc_credentials is None
    assert security.scheme == "http"


@pytest.mark.parametrize("given", [{"ssl_certfile": "c.pem"}, {"ssl_keyfile": "k.pem"}])
def test_tls_needs_both_files(given: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="must be given together"):
        ServerSettings(**given)


def test_empty_open_paths_are_dropped() -> None:
    assert ServerSettings(auth_open_path=("",)).auth_open_path == ()


def test_unreadable_tls_files_say_which(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="cannot use certificate"):
        http_ssl_context(missing, missing)
    bad = tmp_path / "bad.pem"
    bad.write_text("not pem")
    with pytest.raises(ValueError, match="cannot use certificate"):
        http_ssl_context(str(bad), str(bad))
    with pytest.raises(ValueError, match="cannot read TLS file"):
        grpc_server_credentials(missing, missing)


def test_unusable_keys_file_stops_security_setup(tmp_path: Path) -> None:
    settings = ServerSettings(auth_keys_file=str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="cannot read the keys file"):
        Security.from_settings(settings)
