"""Warmup samples: parsed from config.pbtxt, built into requests, run on every instance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tidal.config import parse_config_text
from tidal.config.pbtxt import ConfigError
from tidal.core import DataType, InferenceError, InferResponse
from tidal.repository.warmup import build_sample, run_warmup

BASE = """
name: "m"
max_batch_size: {mbs}
input [{{ name: "x" data_type: TYPE_FP32 dims: [ 2 ] }},
       {{ name: "s" data_type: TYPE_STRING dims: [ 1 ] }},
       {{ name: "i" data_type: TYPE_INT8 dims: [ 3 ] }}]
output [{{ name: "y" data_type: TYPE_FP32 dims: [ 2 ] }}]
{warmup}
"""


def config(warmup: str, mbs: int = 4):
    return parse_config_text(BASE.format(mbs=mbs, warmup=warmup), model_name="m")


def sample(body: str, mbs: int = 4):
    return config(f"model_warmup [ {{ {body} }} ]", mbs)


RNG = np.random.default_rng(0)


def test_parsed_from_the_config():
    parsed = sample(
        'name: "w" batch_size: 3 count: 2 inputs [ { key: "x" value: { data_type: TYPE_FP32 '
        'dims: [ 2 ] zero_data: true } }, { key: "i" value: { data_type: TYPE_INT8 dims: [ 3 ] '
        'input_data_file: "i.bin" } } ]'
    ).model_warmup
    (warmup,) = parsed
    assert (warmup.name, warmup.batch_size, warmup.count) == ("w", 3, 2)
    assert [(i.name, i.data_type, i.dims, i.source, i.file) for i in warmup.inputs] == [
        ("i", DataType.INT8, (3,), "file", "i.bin"),
        ("x", DataType.FP32, (2,), "zero", ""),
    ]


def test_an_input_without_data_is_a_config_error():
    with pytest.raises(ConfigError, match="sets none of zero_data, random_data"):
        sample('name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 } }')


def test_zero_random_and_bytes_data(tmp_path):
    cfg = sample(
        'name: "w" batch_size: 2 inputs [ { key: "x" value: { data_type: TYPE_FP32 dims: [ 2 ] '
        'random_data: true } }, { key: "s" value: { data_type: TYPE_STRING dims: [ 1 ] '
        'random_data: true } }, { key: "i" value: { data_type: TYPE_INT8 dims: [ 3 ] '
        "zero_data: true } } ]"
    )
    requests = build_sample(cfg, 1, cfg.model_warmup[0], tmp_path, RNG)
    assert len(requests) == 2
    inputs = {t.name: t for t in requests[0].inputs}
    assert inputs["x"].shape == (1, 2) and inputs["x"].data.dtype == np.float32
    assert np.all((inputs["x"].data >= 0) & (inputs["x"].data < 1))
    assert inputs["s"].data.tolist() == [[b""]]  # Triton sends empty strings
    assert inputs["i"].data.tolist() == [[0, 0, 0]]


def test_file_data(tmp_path):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "x.bin").write_bytes(np.array([1.5, 2.5, 9.0], np.float32).tobytes())
    (tmp_path / "warmup" / "s.bin").write_bytes(b"\x03\x00\x00\x00abc")
    cfg = sample(
        'name: "w" batch_size: 1 inputs [ { key: "x" value: { data_type: TYPE_FP32 dims: [ 2 ] '
        'input_data_file: "x.bin" } }, { key: "s" value: { data_type: TYPE_STRING dims: [ 1 ] '
        'input_data_file: "s.bin" } } ]',
        mbs=0,
    )
    (request,) = build_sample(cfg, 1, cfg.model_warmup[0], tmp_path, RNG)
    inputs = {t.name: t for t in request.inputs}
    assert inputs["x"].data.tolist() == [1.5, 2.5]  # no batch dimension; extra bytes ignored
    assert inputs["s"].data.tolist() == [b"abc"]


@pytest.mark.parametrize(
    ("body", "mbs", "message"),
    [
        (
            'name: "w" batch_size: 5 inputs { key: "x" value: { data_type: TYPE_FP32 '
            "dims: [ 2 ] zero_data: true } }",
            4,
            "batch_size 5 is larger than max_batch_size 4",
        ),
        (
            'name: "w" batch_size: 2 inputs { key: "x" value: { data_type: TYPE_FP32 '
            "dims: [ 2 ] zero_data: true } }",
            0,
            "batch_size must be 1 for a model without batching",
        ),
        (
            'name: "w" batch_size: 1 inputs { key: "q" value: { data_type: TYPE_FP32 '
            "dims: [ 2 ] zero_data: true } }",
            4,
            "'q' is not an input of the model",
        ),
        (
            'name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_INT32 '
            "dims: [ 2 ] zero_data: true } }",
            4,
            "input 'x' is TYPE_INT32, but the model expects TYPE_FP32",
        ),
        (
            'name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 '
            "dims: [ -1 ] zero_data: true } }",
            4,
            "all variable-size dimensions are specified for input 'x'",
        ),
        (
            'name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 '
            'dims: [ 2 ] input_data_file: "missing.bin" } }',
            4,
            "cannot read",
        ),
        (
            'name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 '
            'dims: [ 2 ] input_data_file: "../../etc/passwd" } }',
            4,
            "must name a file inside",
        ),
        (
            'name: "w" batch_size: 1 inputs { key: "s" value: { data_type: TYPE_STRING '
            'dims: [ 1 ] input_data_file: "bad.bin" } }',
            4,
            "must hold 1 length-prefixed BYTES elements",
        ),
    ],
)
def test_samples_that_cannot_be_built(tmp_path, body, mbs, message):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "bad.bin").write_bytes(b"\x09\x00\x00\x00ab")
    cfg = sample(body, mbs)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        build_sample(cfg, 1, cfg.model_warmup[0], tmp_path, RNG)


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail

    def execute(self, batch):
        self.batches.append(len(batch))
        if self.fail:
            return [InferenceError.internal("boom")] * len(batch)
        return [InferResponse("m", 1, []) for _ in batch]

    def close(self) -> None:
        pass


def test_every_instance_runs_every_sample_count_times(tmp_path: Path):
    cfg = config(
        'model_warmup [ { name: "a" batch_size: 3 count: 2 inputs { key: "x" value: { '
        "data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } } }, "
        '{ name: "skipped" batch_size: 0 }, '
        '{ name: "b" batch_size: 1 inputs { key: "x" value: { '
        "data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } } } ]"
    )
    instances = [Recorder(), Recorder()]
    run_warmup(cfg, 1, tmp_path, instances)
    assert [i.batches for i in instances] == [[3, 3, 1], [3, 3, 1]]


def test_a_failing_sample_names_itself(tmp_path: Path):
    cfg = sample(
        'name: "hot" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 '
        "dims: [ 2 ] zero_data: true } }"
    )
    with pytest.raises(ConfigError, match="model 'm' version 3: warmup sample 'hot' failed: boom"):
        run_warmup(cfg, 3, tmp_path, [Recorder(fail=True)])
