"""The metrics frontend in-process: collector, text format, /metrics handler, host gauges,
access log and the Server-Timing value."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from tidal.frontends.http.handlers import server_timing
from tidal.frontends.metrics.access_log import AccessLog
from tidal.frontends.metrics.collector import ModelMetricsCollector
from tidal.frontends.metrics.exposition import CONTENT_TYPE, render
from tidal.frontends.metrics.service import MetricsHandlers, default_collectors
from tidal.frontends.metrics.system import HostMetricsCollector
from tidal.scheduling.statistics import BACKEND, OTHER, ModelStatistics, Phases, RequestTiming

MS = 1_000_000


def _stats() -> ModelStatistics:
    stats = ModelStatistics(latency_bounds_ns=(1 * MS, 10 * MS))
    stats.record_success(2 * MS, 500_000, Phases(100_000, 1 * MS, 50_000))
    stats.record_success(20 * MS, 4 * MS, Phases(300_000, 12 * MS, 150_000))
    stats.record_failure(BACKEND, MS)
    stats.record_failure(OTHER, MS)
    stats.record_failure(OTHER, MS)
    stats.record_execution(1, Phases(0, MS, 0))
    stats.record_execution(3, Phases(0, 12 * MS, 0))
    stats.record_execution(20, Phases(0, 12 * MS, 0))
    stats.pending = 4
    return stats


def _scrape(*entries: tuple[str, int, ModelStatistics]) -> tuple[str, dict]:
    text = render([ModelMetricsCollector(lambda: list(entries))]).decode()
    samples = {}
    # The parser itself names counter samples "<name>_total": undo that to look them up.
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")
            samples[(name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def _labels(**labels: str) -> tuple:
    return tuple(sorted(labels.items()))


def test_triton_counters_keep_their_names_and_labels():
    text, samples = _scrape(("dense", 2, _stats()))
    assert "# TYPE nv_inference_request_success counter\n" in text
    assert 'nv_inference_request_success{model="dense",version="2"} 2.0\n' in text
    assert "_total" not in text  # Triton's counters have no suffix
    at = _labels(model="dense", version="2")
    assert samples[("nv_inference_request_success", at)] == 2
    assert samples[("nv_inference_count", at)] == 24
    assert samples[("nv_inference_exec_count", at)] == 3
    assert samples[("nv_inference_request_duration_us", at)] == 22_000
    assert samples[("nv_inference_queue_duration_us", at)] == 4_500
    assert samples[("nv_inference_compute_infer_duration_us", at)] == 13_000
    assert samples[("nv_inference_compute_input_duration_us", at)] == 400
    assert samples[("nv_inference_compute_output_duration_us", at)] == 200
    assert samples[("nv_inference_pending_request_count", at)] == 4


def test_failures_have_every_reason():
    _, samples = _scrape(("dense", 2, _stats()))
    reasons = {
        reason: samples[
            ("nv_inference_request_failure", _labels(model="dense", reason=reason, version="2"))
        ]
        for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER")
    }
    assert reasons == {"REJECTED": 0, "CANCELED": 0, "BACKEND": 1, "OTHER": 2}


def test_latency_histograms_match_the_counters():
    text, samples = _scrape(("dense", 2, _stats()))
    assert "# TYPE tidal_inference_request_duration_seconds histogram\n" in text
    name = "tidal_inference_request_duration_seconds"
    buckets = {
        le: samples[(f"{name}_bucket", _labels(le=le, model="dense", version="2"))]
        for le in ("0.001", "0.01", "+Inf")
    }
    assert buckets == {"0.001": 0, "0.01": 1, "+Inf": 2}
    assert samples[(f"{name}_count", _labels(model="dense", version="2"))] == 2
    assert samples[(f"{name}_sum", _labels(model="dense", version="2"))] == pytest.approx(0.022)
    queue = samples[
        (
            "tidal_inference_queue_duration_seconds_bucket",
            _labels(le="0.001", model="dense", version="2"),
        )
    ]
    assert queue == 1
    assert "tidal_inference_compute_infer_duration_seconds_bucket" in text


def test_batch_size_histogram_groups_executions_by_powers_of_two():
    _, samples = _scrape(("dense", 2, _stats()))
    name = "tidal_inference_batch_size"
    at = {"model": "dense", "version": "2"}
    cumulative = {
        le: samples[(f"{name}_bucket", _labels(le=le, **at))] for le in ("1", "2", "4", "16", "32")
    }
    assert cumulative == {"1": 1, "2": 1, "4": 2, "16": 2, "32": 3}
    assert samples[(f"{name}_bucket", _labels(le="+Inf", **at))] == 3
    assert samples[(f"{name}_sum", _labels(**at))] == 24


def test_no_histograms_when_they_are_off():
    stats = ModelStatistics(latency_bounds_ns=())
    stats.record_success(MS, 0, Phases(0, MS, 0))
    text, _ = _scrape(("m", 1, stats))
    assert "duration_seconds" not in text
    assert 'nv_inference_request_success{model="m",version="1"} 1.0' in text


def test_families_are_present_without_models():
    text, _ = _scrape()
    assert "# TYPE nv_inference_request_success counter" in text
    assert "# TYPE nv_inference_pending_request_count gauge" in text


def test_label_values_are_escaped():
    text, samples = _scrape(('we"ird\\name\n', 1, ModelStatistics()))
    assert 'model="we\\"ird\\\\name\\n"' in text
    assert (
        samples[("nv_inference_request_success", _labels(model='we"ird\\name\n', version="1"))] == 0
    )


def test_prometheus_client_counters_keep_their_total_suffix():
    registry = CollectorRegistry()
    Counter("tidal_test_things", "Things", registry=registry).inc(3)
    text = render([registry]).decode()
    assert "# TYPE tidal_test_things_total counter\ntidal_test_things_total 3.0\n" in text
    assert "_created" not in text


def test_process_and_host_metrics_are_included():
    text = render(default_collectors(lambda: [])).decode()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "nv_cpu_utilization"} <= (
        families
    )
    assert "nv_cpu_memory_used_bytes" in families
    plain = render(default_collectors(lambda: [], cpu_metrics=False)).decode()
    assert "process_" not in plain and "nv_cpu" not in plain


def test_host_cpu_utilization_is_measured_between_scrapes(tmp_path):
    proc = tmp_path
    (proc / "meminfo").write_text("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:  250 kB\n")
    (proc / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    collector = HostMetricsCollector(proc)
    first = {m.name: m.samples[0].value for m in collector.collect()}
    assert first == {
        "nv_cpu_utilization": pytest.approx(0.2),
        "nv_cpu_memory_total_bytes": 1_024_000,
        "nv_cpu_memory_used_bytes": 768_000,
    }
    # since the last scrape: 300 busy jiffies of 400
    (proc / "stat").write_text("cpu  300 0 200 900 0 0 0 0 0 0\n")
    second = {m.name: m.samples[0].value for m in collector.collect()}
    assert second["nv_cpu_utilization"] == pytest.approx(0.75)


def test_host_metrics_are_skipped_without_proc(tmp_path):
    assert list(HostMetricsCollector(tmp_path / "missing").collect()) == []


def _handle(method: str, path: str):
    handlers = MetricsHandlers(default_collectors(lambda: [("m", 1, ModelStatistics())]))
    return asyncio.run(handlers.handle(method, path, {}, b""))


def test_metrics_endpoint_answers_get_and_head():
    for method in ("GET", "HEAD"):
        reply = _handle(method, "/metrics")
        assert (reply.status, reply.content_type) == (200, CONTENT_TYPE)
        assert b'nv_inference_request_success{model="m",version="1"} 0.0' in reply.body


def test_metrics_endpoint_refuses_other_paths_and_methods():
    missing = _handle("GET", "/v2/health/ready")
    assert missing.status == 404
    assert "/metrics" in json.loads(missing.body)["error"]
    wrong = _handle("POST", "/metrics")
    assert wrong.status == 405
    assert ("allow", "GET") in wrong.headers


def test_a_broken_collector_gives_a_500_not_a_dead_endpoint():
    class Broken:
        def collect(self):
            raise RuntimeError("sensor on fire")

    reply = asyncio.run(MetricsHandlers([Broken()]).handle("GET", "/metrics", {}, b""))
    assert reply.status == 500
    assert "sensor on fire" in json.loads(reply.body)["error"]


def test_access_log_writes_one_json_line_per_request(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog.open(str(path))
    log.write("POST", "/v2/models/m/infer", 200, 1_234_567, model="m", bytes_in=10, bytes_out=20)
    log.write("GET", "/v2/health/ready", 200, 1000)
    log.close()
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first.pop("time").endswith("Z")
    assert first == {
        "method": "POST",
        "path": "/v2/models/m/infer",
        "status": 200,
        "duration_ms": 1.235,
        "model": "m",
        "version": None,
        "bytes_in": 10,
        "bytes_out": 20,
    }
    assert (second["model"], second["duration_ms"]) == (None, 0.001)
    again = AccessLog.open(str(path))  # appends
    again.write("GET", "/v2", 200, 1)
    again.close()
    assert len(path.read_text().splitlines()) == 3


def test_access_log_to_stdout(capfdbinary):
    log = AccessLog.open("-")
    log.write("GET", "/v2", 200, 5)
    log.close()
    assert json.loads(capfdbinary.readouterr().out)["path"] == "/v2"


def test_access_log_that_cannot_be_written_says_so_once(tmp_path, caplog):
    log = AccessLog.open(str(tmp_path / "a.log"))
    log.close()  # writing to a closed file fails
    log.write("GET", "/v2", 200, 5)
    log.write("GET", "/v2", 200, 5)
    assert len([r for r in caplog.records if "access log" in r.message]) == 1


def test_server_timing_value():
    timing = RequestTiming(queue_ns=12_000, compute_infer_ns=300_000)
    assert server_timing(timing, 400_000) == "queue;dur=0.012, compute;dur=0.300, total;dur=0.400"
    assert server_timing(None, 1_500_000) == "total;dur=1.500"
