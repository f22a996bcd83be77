"""JSON views of server and model metadata and of the effective model configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The config view lives in config/, where the Python backend reads it too; re-exported here
# beside the other views the frontends use.
from tidal.config.json_view import model_config_json as model_config_json
from tidal.core.metadata import ModelMetadata, ServerMetadata, TensorMetadata
from tidal.protocol.statistics_view import DurationView, StatisticsView


def server_metadata_json(metadata: ServerMetadata) -> dict[str, Any]:
    return {
        "name": metadata.name,
        "version": metadata.version,
        "extensions": list(metadata.extensions),
    }


def model_metadata_json(metadata: ModelMetadata) -> dict[str, Any]:
    return {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": [_tensor_json(t) for t in metadata.inputs],
        "outputs": [_tensor_json(t) for t in metadata.outputs],
    }


def statistics_json(entries: Sequence[tuple[str, int, StatisticsView]]) -> dict[str, Any]:
    """Triton's statistics extension format, which perf_analyzer parses."""
    return {"model_stats": [_model_stats_json(n, v, s) for n, v, s in entries]}


def _model_stats_json(name: str, version: int, stats: StatisticsView) -> dict[str, Any]:
    empty = {"count": 0, "ns": 0}
    return {
        "name": name,
        "version": str(version),
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success),
            "fail": _duration(stats.fail),
            "queue": _duration(stats.queue),
            "compute_input": _duration(stats.compute_input),
            "compute_infer": _duration(stats.compute_infer),
            "compute_output": _duration(stats.compute_output),
            "cache_hit": empty,
            "cache_miss": empty,
        },
        "response_stats": {},
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": _duration(batch.compute_input),
                "compute_infer": _duration(batch.compute_infer),
                "compute_output": _duration(batch.compute_output),
            }
            for size, batch in sorted(stats.batches.items())
        ],
        "memory_usage": [],
    }


def _duration(duration: DurationView) -> dict[str, int]:
    return {"count": duration.count, "ns": duration.ns}


def _tensor_json(tensor: TensorMetadata) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
