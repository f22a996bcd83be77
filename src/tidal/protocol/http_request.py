"""Decoding v2 HTTP inference requests: JSON, the binary data extension, and raw binary."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson

from tidal.config.model_config import ModelConfig
from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError
from tidal.core.types import InferInput, InferRequest, RequestedOutput
from tidal.protocol.json_limits import check_json_depth
from tidal.protocol.tensor_bytes import element_count, tensor_from_bytes

# Types JSON cannot carry faithfully; Triton takes them only as binary data.
_BINARY_ONLY = (DataType.FP16, DataType.BF16)


def decode_infer_request(
    body: bytes,
    header_length: int | None,
    model_name: str,
    model_version: int | None,
) -> InferRequest:
    """Build a request from an HTTP body. ``header_length`` is the value of
    ``Inference-Header-Content-Length`` (None when absent: the body is all JSON)."""
    header_bytes: bytes | memoryview
    if header_length is None:
        header_bytes, binary = body, memoryview(b"")
    else:
        if header_length < 0 or header_length > len(body):
            raise InferenceError.invalid(
                f"Inference-Header-Content-Length {header_length} is larger than the request "
                f"body ({len(body)} bytes)"
            )
        view = memoryview(body)
        header_bytes, binary = view[:header_length], view[header_length:]
    header = _parse_json(header_bytes)
    if not isinstance(header, dict):
        raise InferenceError.invalid("the request body must be a JSON object")
    return _request_from_header(header, binary, model_name, model_version)


def _parse_json(text: bytes | memoryview) -> Any:
    """orjson, which refuses the ``NaN``, ``Infinity`` and ``-Infinity`` literals that Triton
    accepts and perf_analyzer sends: on a refusal, quote those literals and parse again, then
    turn the quoted forms in floating-point inputs back into floats."""
    check_json_depth(text)  # orjson recurses: refuse nesting it cannot take
    raw = bytes(text)
    # Looked for before parsing: a refused parse would have cost up to a whole parse.
    quoted = _quote_special_floats(raw)
    if quoted is not None:
        try:
            header = orjson.loads(quoted)
        except orjson.JSONDecodeError:
            pass  # the error names the original text's fault, below
        else:
            _restore_special_floats(header)
            return header
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InferenceError.invalid(f"failed to parse the request JSON: {exc}") from None


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _quote_special_floats(text: bytes) -> bytes | None:
    """``text`` with every NaN / Infinity / -Infinity outside strings quoted; None if none."""
    spans = _special_float_spans(text)
    if not spans:
        return None
    strings: list[tuple[int, int]] = []
    if b"\\" in text:  # escapes: find the strings exactly (slower, and rare)
        strings = [m.span() for m in _JSON_STRING.finditer(text)]
    parts: list[bytes] = []
    start, index = 0, 0
    quotes, counted = 0, 0  # without escapes: inside a string after an odd number of quotes
    for position, end in spans:
        if strings:
            while index < len(strings) and strings[index][1] <= position:
                index += 1
            if index < len(strings) and strings[index][0] <= position:
                continue
        else:
            quotes += text.count(b'"', counted, position)
            counted = position
            if quotes % 2:
                continue
        parts += (text[start:position], b'"', text[position:end], b'"')
        start = end
    if not parts:
        return None
    parts.append(text[start:])
    return b"".join(parts)


def _special_float_spans(text: bytes) -> list[tuple[int, int]]:
    """Where NaN, Infinity and -Infinity occur, in order. Found by their first letter: a
    one-byte find runs at memchr speed, several times faster than finding the whole word, and
    numbers hold no other capital N or I."""
    spans = []
    for letter, word in ((b"N", b"NaN"), (b"I", b"Infinity")):
        position = text.find(letter)
        while position >= 0:
            if text.startswith(word, position):
                start = position - 1 if position and text[position - 1] == 45 else position  # -
                spans.append((start, position + len(word)))
            position = text.find(letter, position + 1)
    spans.sort()
    return spans


def _restore_special_floats(header: Any) -> None:
    """Read the data of FP32/FP64 inputs holding quoted special floats as float arrays."""
    inputs = header.get("inputs") if isinstance(header, dict) else None
    for raw in inputs if isinstance(inputs, list) else ():
        if not isinstance(raw, dict) or raw.get("datatype") not in ("FP32", "FP64"):
            continue
        data = raw.get("data")
        if not isinstance(data, list):
            continue
        try:
            # numpy reads the strings "NaN", "Infinity" and "-Infinity" as those floats
            array = np.array(data, dtype=np.float64)
        except (ValueError, TypeError):
            continue  # other strings or ragged lists: refused later with the usual message
        if _may_hide_bools(array) and _holds_bool(data):
            continue  # true/false, which numpy read as 1 and 0: refused later, likewise
        raw["data"] = array


def decode_raw_binary_request(
    body: bytes, config: ModelConfig, model_version: int | None
) -> InferRequest:
    """The raw-binary form: the whole body is the one input's data, described by the config
    (batch 1 for a batching model; a single element for BYTES)."""
    if len(config.inputs) != 1:
        raise InferenceError.invalid(
            f"raw binary request body for model '{config.name}' needs a model with exactly one "
            f"input, it has {len(config.inputs)}"
        )
    spec = config.inputs[0]
    datatype = spec.data_type or DataType.BYTES
    data: np.ndarray
    if datatype is DataType.BYTES:
        shape = (1,) * max(len(spec.dims), 1)
        data = np.empty(1, dtype=object)
        data[0] = bytes(body)
        data = data.reshape(shape)
    else:
        shape = _shape_from_size(config.name, spec.name, spec.dims, datatype, len(body))
        data = tensor_from_bytes(spec.name, datatype, shape, body)
    if config.batching:
        shape, data = (1, *shape), data.reshape((1, *shape))
    return InferRequest(
        model_name=config.name,
        model_version=model_version,
        inputs=[InferInput(spec.name, datatype, shape, data)],
        parameters={"binary_data_output": True},
    )


def _request_from_header(
    header: dict[str, Any], binary: memoryview, model_name: str, model_version: int | None
) -> InferRequest:
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InferenceError.invalid("the request must have an 'inputs' list")
    parameters = _object(header.get("parameters"), "request 'parameters'")
    offset = 0
    inputs = []
    for raw in raw_inputs:
        tensor, used = _decode_input(raw, binary, offset)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise InferenceError.invalid(
            f"the request carries {len(binary)} bytes of binary data after the JSON header, "
            f"but its inputs' binary_data_size add up to {offset}"
        )
    outputs = header.get("outputs")
    request_id = header.get("id")
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        id=None if request_id is None else str(request_id),
        outputs=None if outputs is None else _decode_outputs(outputs),
        parameters=parameters,
    )


def _decode_input(raw: Any, binary: memoryview, offset: int) -> tuple[InferInput, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InferenceError.invalid("each input must be an object with a 'name'")
    name = raw["name"]
    shape = _shape(name, raw.get("shape"))
    try:
        datatype = DataType.parse(raw.get("datatype", ""))
    except (ValueError, TypeError):
        raise InferenceError.invalid(
            f"input '{name}' has an unknown datatype {raw.get('datatype')!r}"
        ) from None
    parameters = _object(raw.get("parameters"), f"input '{name}' parameters")
    size = parameters.pop("binary_data_size", None)
    if size is not None and "data" in raw:
        raise InferenceError.invalid(
            f"input '{name}' has both 'data' and binary_data_size: send one or the other"
        )
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InferenceError.invalid(f"input '{name}': binary_data_size must be an integer")
        if offset + size > len(binary):
            raise InferenceError.invalid(
                f"input '{name}': binary_data_size {size} runs past the end of the request "
                f"body ({len(binary) - offset} bytes left)"
            )
        data = tensor_from_bytes(name, datatype, shape, binary[offset : offset + size])
        return InferInput(name, datatype, shape, data, parameters), size
    if "data" not in raw:
        raise InferenceError.invalid(f"input '{name}' has neither 'data' nor binary_data_size")
    data = _json_data(name, datatype, shape, raw["data"])
    return InferInput(name, datatype, shape, data, parameters), 0


def _json_data(name: str, datatype: DataType, shape: tuple[int, ...], data: Any) -> np.ndarray:
    if datatype in _BINARY_ONLY:
        raise InferenceError.invalid(
            f"input '{name}': {datatype.value} data must be sent as binary data "
            "(binary_data_size), JSON cannot carry it"
        )
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype is DataType.BYTES:
            flat = np.array(data, dtype=object).ravel()
            array = np.empty(flat.size, dtype=object)
            array[:] = [_as_bytes(name, item) for item in flat]
        else:
            array = _typed_array(name, datatype, data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InferenceError.invalid(
            f"input '{name}': data cannot be read as {datatype.value}: {exc}"
        ) from None
    expected = element_count(shape)
    if array.size != expected:
        raise InferenceError.invalid(
            f"input '{name}': got {array.size} elements in 'data', but shape {list(shape)} "
            f"needs {expected}"
        )
    return array.reshape(shape)


def _typed_array(name: str, datatype: DataType, data: list) -> np.ndarray:
    """JSON numbers read as Triton reads them: integer types take JSON integers only (1.5,
    2.0, 1e3, true and strings are refused), signed ones within int64 and unsigned ones
    within uint64, cast to the type's width as C casts (300 as INT8 is 44, as Triton gives);
    BOOL takes true/false only; FP32/FP64 take any number (1e39 as FP32 is Infinity)."""
    array = np.array(data).ravel()
    target = datatype.numpy_dtype
    if array.size == 0:
        return array.astype(target)
    kind, want = array.dtype.kind, target.kind
    if want == "b":
        if kind != "b":
            raise _unparsable(name, datatype, "true or false")
        return array
    if want == "f":
        if kind not in "iuf" or (_may_hide_bools(array) and _holds_bool(data)):
            raise _unparsable(name, datatype, "numbers")
        if target.itemsize < array.dtype.itemsize and kind == "f":
            with np.errstate(over="ignore"):  # past float32's range is an infinity
                return array.astype(target)
        return array.astype(target, copy=False)
    # numpy gives int64 for JSON integers, uint64 when one is past int64 (all >= 0), and
    # float64 or object for fractions, exponents, or integers past both ranges; float64 too
    # when an integer past int64 comes with a smaller one (rare: read those again).
    if kind == "f" and want == "u" and not _holds(data, float):
        try:
            array, kind = np.array(data, dtype=np.uint64).ravel(), "u"
        except (OverflowError, ValueError, TypeError):
            raise _unparsable(name, datatype, "integers in the uint64 range") from None
    if (
        kind not in "iu"
        or (want == "i" and kind == "u")
        or (want == "u" and kind == "i" and array.min() < 0)
        or (_may_hide_bools(array) and _holds_bool(data))
    ):
        raise _unparsable(name, datatype, f"integers in the {'u' * (want == 'u')}int64 range")
    return array.astype(target, copy=False)


def _unparsable(name: str, datatype: DataType, wanted: str) -> InferenceError:
    """Triton answers JSON data of the wrong kind with 500 and "Unable to parse 'data'"."""
    return InferenceError.internal(
        f"Unable to parse 'data': input '{name}' is {datatype.value}, whose JSON data must be "
        f"{wanted}"
    )


def _may_hide_bools(array: np.ndarray) -> bool:
    """numpy reads true/false among numbers as 1 and 0, so only an array holding a 0 or a 1
    can hide one: the scan of every element's type (``_holds_bool``) is needed only then."""
    return bool(((array == 0) | (array == 1)).any())


def _holds_bool(data: list) -> bool:
    """Whether JSON true/false hide among integers (numpy reads them as 1 and 0)."""
    return _holds(data, bool)


def _holds(data: list, kind: type) -> bool:
    """Whether an element of the (nested) list ``data`` is exactly of type ``kind``."""
    if data and isinstance(data[0], list):
        return any(_holds(row, kind) for row in data)
    return kind in set(map(type, data))


def _as_bytes(name: str, item: Any) -> bytes:
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, list):  # ragged nesting
        raise ValueError("nested lists of different lengths")
    raise InferenceError.invalid(f"input '{name}': BYTES elements in JSON must be strings")


def _decode_outputs(raw_outputs: Any) -> list[RequestedOutput]:
    if not isinstance(raw_outputs, list):
        raise InferenceError.invalid("'outputs' must be a list")
    outputs = []
    for raw in raw_outputs:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InferenceError.invalid("each requested output must be an object with a 'name'")
        name = raw["name"]
        parameters = _object(raw.get("parameters"), f"output '{name}' parameters")
        binary = parameters.pop("binary_data", None)
        classification = parameters.pop("classification", 0)
        if binary is not None and not isinstance(binary, bool):
            raise InferenceError.invalid(f"output '{name}': binary_data must be true or false")
        if (
            not isinstance(classification, int)
            or isinstance(classification, bool)
            or classification < 0
        ):
            raise InferenceError.invalid(
                f"output '{name}': classification must be a non-negative integer"
            )
        outputs.append(RequestedOutput(name, binary, classification, parameters))
    return outputs


def _shape(name: str, raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw
    ):
        raise InferenceError.invalid(
            f"input '{name}': 'shape' must be a list of non-negative integers, got {raw!r}"
        )
    return tuple(raw)


def _object(raw: Any, what: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InferenceError.invalid(f"{what} must be a JSON object")
    return dict(raw)


def _shape_from_size(
    model: str, name: str, dims: tuple[int, ...], datatype: DataType, size: int
) -> tuple[int, ...]:
    known = element_count(tuple(d for d in dims if d != -1)) * datatype.item_size
    variable = dims.count(-1)
    if variable > 1 or known == 0 or size % known:
        raise InferenceError.invalid(
            f"raw binary request for model '{model}': {size} bytes do not fit input '{name}' "
            f"with dims {list(dims)} of {datatype.value}"
        )
    if variable == 0:
        if size != known:
            raise InferenceError.invalid(
                f"raw binary request for model '{model}': input '{name}' needs {known} bytes, "
                f"got {size}"
            )
        return dims
    return tuple(size // known if d == -1 else d for d in dims)
