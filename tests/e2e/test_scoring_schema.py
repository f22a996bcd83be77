"""Entry scripts typed with ``inference_schema``: JSON keys map to ``run()``'s parameters."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .score_scripts import SCHEMA_SCRIPT, ScoreServer, write_script

pytest.importorskip("inference_schema")


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    script = write_script(tmp_path_factory.mktemp("schema"), SCHEMA_SCRIPT)
    server = ScoreServer(["--entry_script", str(script)]).wait_started()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def test_json_keys_become_typed_parameters(http: httpx.Client) -> None:
    response = http.post("/score", json={"data": [[1, 2, 3], [4, 5, 6]], "scale": 2})
    assert response.status_code == 200, response.text
    assert response.json() == {"sums": [12.0, 30.0], "dtype": "float32"}
    default = http.post("/score", json={"data": [[1, 1, 1]]})
    assert default.json()["sums"] == [3.0]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"scale": 1}', "missing input: data"),
        (b'{"data": [[1, 2, 3]], "other": 1}', "unexpected input: other"),
        (b'{"data": [[1, 2]]}', "Invalid input"),
        (b"[1, 2, 3]", "JSON object"),
        (b"{not json", "not valid JSON"),
    ],
    ids=["missing", "unknown", "wrong-shape", "not-an-object", "not-json"],
)
def test_bad_input_is_a_400(http: httpx.Client, body: bytes, needle: str) -> None:
    response = http.post("/score", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert needle in response.json()["message"]


def test_a_non_json_content_type_is_a_415(http: httpx.Client) -> None:
    response = http.post("/score", content=b"1,2,3", headers={"Content-Type": "text/csv"})
    assert response.status_code == 415
    assert "text/csv" in response.json()["message"]


def test_run_raising_is_still_a_500(http: httpx.Client) -> None:
    response = http.post("/score", json={"data": [[1, 2, 3]], "scale": -1})
    assert response.status_code == 500
    assert "ArithmeticError" in response.json()["message"]


def test_swagger_comes_from_the_schema(http: httpx.Client) -> None:
    document = http.get("/swagger.json").json()
    post = document["paths"]["/score"]["post"]
    schema = post["parameters"][0]["schema"]
    assert set(schema["properties"]) == {"data", "scale"}
    assert post["responses"]["200"]["schema"]["required"] == ["sums"]
