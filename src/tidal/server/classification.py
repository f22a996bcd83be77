"""Triton's classification extension: an output replaced by its top-k classes."""

from __future__ import annotations

import numpy as np

from tidal.core.datatypes import DataType
from tidal.core.types import InferOutput


def classify(output: InferOutput, k: int, labels: list[str], batching: bool) -> InferOutput:
    """Top ``k`` entries of each batch item as BYTES ``"score:index[:label]"``, best first.

    Scores print as C's ``%f`` for floating types (``0.875000``) and as integers otherwise,
    the way Triton prints them.
    """
    data = output.data
    rows = data.reshape(data.shape[0], -1) if batching and data.ndim else data.reshape(1, -1)
    k = min(k, rows.shape[1])
    # Stable sort of the negated scores keeps the lower index first among equal scores.
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    floating = output.datatype in (DataType.FP16, DataType.FP32, DataType.FP64)
    results = []
    for row, indices in zip(rows, order, strict=True):
        for index in indices.tolist():
            score = f"{float(row[index]):f}" if floating else str(int(row[index]))
            text = f"{score}:{index}:{labels[index]}" if index < len(labels) else f"{score}:{index}"
            results.append(text.encode())
    shape = (rows.shape[0], k) if batching else (k,)
    array = np.array(results, dtype=object).reshape(shape)
    return InferOutput(output.name, DataType.BYTES, shape, array, dict(output.parameters))
