"""TLS on a real server: HTTPS checked against a self-signed certificate with httpx and
tritonclient, gRPC over TLS with tritonclient, and start-up with unusable TLS files."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import TidalServer, run_tidal, running_server
from .models import identity_model, identity_model_name

MODEL = identity_model_name("FP32")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls_repo")
    identity_model(path, "FP32")
    return path


@pytest.fixture(scope="module")
def tls_server(repo: Path, tls_files: tuple[Path, Path]) -> Iterator[TidalServer]:
    certfile, keyfile = tls_files
    flags = ["--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)]
    flags += ["--grpc-address", "127.0.0.1"]
    with running_server(repo, flags=flags) as proc:
        yield proc


def test_https_with_a_verified_certificate(
    tls_server: TidalServer, tls_files: tuple[Path, Path]
) -> None:
    context = ssl.create_default_context(cafile=str(tls_files[0]))
    with httpx.Client(base_url=f"https://{tls_server.url}", verify=context, timeout=30) as client:
        assert client.get("/v2/health/ready").status_code == 200
        for _ in range(3):  # keep-alive over one TLS connection
            response = client.get(f"/v2/models/{MODEL}")
            assert response.status_code == 200
            assert response.json()["name"] == MODEL
        missing = client.get("/v2/models/nope")
        assert missing.status_code == 404
        assert "error" in missing.json()


def test_plain_http_gets_no_answer(tls_server: TidalServer) -> None:
    plain = httpx.Client(base_url=tls_server.base_url, timeout=10)
    with plain, pytest.raises(httpx.HTTPError):
        plain.get("/v2/health/live")
    untrusted = httpx.Client(base_url=f"https://{tls_server.url}", timeout=10)
    with untrusted, pytest.raises(httpx.ConnectError):  # not signed by a trusted authority
        untrusted.get("/v2/health/live")


def test_tritonclient_http_over_tls(tls_server: TidalServer, tls_files: tuple[Path, Path]) -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = triton_http.InferInput("INPUT0", [2, 3], "FP32")
    tensor.set_data_from_numpy(data, binary_data=True)
    with triton_http.InferenceServerClient(
        tls_server.url,
        ssl=True,
        ssl_context_factory=lambda: ssl.create_default_context(cafile=str(tls_files[0])),
    ) as client:
        assert client.is_server_ready()
        result = client.infer(MODEL, [tensor])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_tritonclient_grpc_over_tls(tls_server: TidalServer, tls_files: tuple[Path, Path]) -> None:
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = triton_grpc.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    with triton_grpc.InferenceServerClient(
        tls_server.grpc_url, ssl=True, root_certificates=str(tls_files[0])
    ) as client:
        assert client.is_server_live()
        result = client.infer(MODEL, [tensor])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_tls_and_auth_together(
    repo: Path, tls_files: tuple[Path, Path], tmp_path: Path, start_server
) -> None:
    keys = tmp_path / "keys.json"
    done = run_tidal("keys", "generate", "--out", str(keys))
    assert done.returncode == 0, done.stderr
    primary = done.stdout.split('"primary_key": "')[1].split('"')[0]
    certfile, keyfile = tls_files
    proc = start_server(
        repo,
        flags=[
            "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile),
            "--auth-keys-file", str(keys),
        ],
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(certfile))
    with httpx.Client(base_url=f"https://{proc.url}", verify=context, timeout=30) as client:
        assert client.get("/v2").status_code == 401
        authorized = client.get("/v2", headers={"authorization": f"Bearer {primary}"})
        assert authorized.status_code == 200


@pytest.mark.parametrize("problem", ["missing_key_flag", "missing_file", "not_pem"])
def test_unusable_tls_files_stop_start_up(
    repo: Path, tls_files: tuple[Path, Path], tmp_path: Path, problem: str, start_server
) -> None:
    certfile, keyfile = tls_files
    if problem == "missing_key_flag":
        done = run_tidal("serve", "--model-repository", str(repo), "--ssl-certfile", str(certfile))
        assert done.returncode == 2
        assert "--ssl-certfile and --ssl-keyfile must be given together" in done.stderr
        return
    bad = tmp_path / "bad.pem"
    if problem == "not_pem":
        bad.write_text("not a certificate\n")
    proc = start_server(
        repo, flags=["--ssl-certfile", str(bad), "--ssl-keyfile", str(keyfile)], wait=False
    )
    assert proc.wait_exited() == 1
    assert "cannot use certificate" in proc.stderr
    assert "Traceback" not in proc.stderr
