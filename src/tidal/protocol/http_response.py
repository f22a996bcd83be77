"""Encoding v2 HTTP inference responses: JSON tensors or the binary data extension."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import orjson

from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError
from tidal.core.types import InferOutput, InferRequest, InferResponse
from tidal.protocol.tensor_bytes import tensor_to_bytes

_BINARY_ONLY = (DataType.FP16, DataType.BF16)


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """An encoded body; ``header_length`` is set when binary tensor data follows the JSON."""

    body: bytes
    header_length: int | None


def encode_infer_response(response: InferResponse, request: InferRequest) -> EncodedResponse:
    """Encode each output as the request asked: JSON ``data`` or binary after the header."""
    default_binary = bool(request.parameters.get("binary_data_output", False))
    wanted = {o.name: o.binary for o in request.outputs or ()}
    blobs: list[bytes] = []
    outputs = []
    for output in response.outputs:
        binary = wanted.get(output.name)
        if binary is None:
            binary = default_binary
        if binary:
            blob = tensor_to_bytes(output.datatype, output.data)
            blobs.append(blob)
            outputs.append(_binary_output(output, len(blob)))
        else:
            outputs.append(_json_output(output))
    header: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": str(response.model_version),
    }
    if response.id is not None:
        header["id"] = response.id
    if response.parameters:
        header["parameters"] = response.parameters
    header["outputs"] = outputs
    header_bytes = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    # orjson writes NaN and infinities as null: only a header holding "null" can have one
    # (a byte search, far cheaper than looking at every float output).
    if b"null" in header_bytes and any(_holds_special_floats(o.get("data")) for o in outputs):
        del header["outputs"]
        header_bytes = _dumps_with_special_floats(header, outputs)
    if not blobs:
        return EncodedResponse(header_bytes, None)
    return EncodedResponse(b"".join([header_bytes, *blobs]), len(header_bytes))


def _holds_special_floats(data: Any) -> TypeGuard[np.ndarray]:
    """Whether ``data`` is a float array holding NaN, Infinity or -Infinity (orjson would
    write those as ``null``)."""
    return isinstance(data, np.ndarray) and data.dtype.kind == "f" and not np.isfinite(data).all()


def _dumps_with_special_floats(header: dict[str, Any], outputs: list[dict[str, Any]]) -> bytes:
    """The response header with NaN, Infinity and -Infinity written as those bare literals,
    as Triton writes them (its clients and Python's json read them back). ``outputs`` comes
    last in the header and ``data`` last in each output, so each is written by hand after
    the part orjson wrote."""
    parts = [orjson.dumps(header)[:-1], b',"outputs":[']
    for index, encoded in enumerate(outputs):
        if index:
            parts.append(b",")
        data = encoded.get("data")
        if not _holds_special_floats(data):
            parts.append(_dumps(encoded))
            continue
        rest = {key: value for key, value in encoded.items() if key != "data"}
        parts += (_dumps(rest)[:-1], b',"data":', _float_array_json(data), b"}")
    parts.append(b"]}")
    return b"".join(parts)


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def _float_array_json(data: np.ndarray) -> bytes:
    """A float array as JSON with its non-finite values as literals. orjson writes each of
    them, and nothing else in a float array, as ``null``: those are replaced in order."""
    pieces = _dumps(data).split(b"null")
    special = data[~np.isfinite(data)]
    literals = np.where(np.isnan(special), b"NaN", np.where(special > 0, b"Infinity", b"-Infinity"))
    out = [pieces[0]]
    for literal, piece in zip(literals.tolist(), pieces[1:], strict=True):
        out += (literal, piece)
    return b"".join(out)


def _binary_output(output: InferOutput, size: int) -> dict[str, Any]:
    parameters = {**output.parameters, "binary_data_size": size}
    return {
        "name": output.name,
        "datatype": output.datatype.value,
        "shape": list(output.shape),
        "parameters": parameters,
    }


def _json_output(output: InferOutput) -> dict[str, Any]:
    if output.datatype in _BINARY_ONLY:
        raise InferenceError.invalid(
            f"output '{output.name}' is {output.datatype.value}, which can only be returned as "
            'binary data: request it with parameters {"binary_data": true}'
        )
    encoded: dict[str, Any] = {
        "name": output.name,
        "datatype": output.datatype.value,
        "shape": list(output.shape),
    }
    if output.parameters:
        encoded["parameters"] = output.parameters
    encoded["data"] = _json_data(output)
    return encoded


def _json_data(output: InferOutput) -> Any:
    if output.datatype is DataType.BYTES:
        try:
            return [
                item.decode("utf-8") if isinstance(item, bytes) else str(item)
                for item in output.data.ravel()
            ]
        except UnicodeDecodeError:
            raise InferenceError.invalid(
                f"output '{output.name}' holds bytes that are not UTF-8 text: request it as "
                "binary data"
            ) from None
    # orjson writes a contiguous numpy array natively, with no per-element Python.
    return np.ascontiguousarray(output.data).ravel()
