"""Where a registered model keeps the Triton repository a service serves."""

from __future__ import annotations

import pytest

from tidal.deploy.model_layout import triton_subpath


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["triton/densenet/1/model.onnx", "triton/densenet/config.pbtxt"], "triton"),
        (["score.py", "triton/simple/1/model.onnx"], "triton"),
        (["simple/config.pbtxt", "simple/1/model.onnx"], ""),
        (["identity_fp32/1/model.onnx"], ""),
        (["model.onnx"], None),
        (["labels/classes.txt", "model.onnx"], None),
        (["triton"], None),  # a file named triton is not the folder
        ([], None),
    ],
)
def test_triton_subpath(paths, expected):
    assert triton_subpath(paths) == expected
