"""OpenTelemetry: one trace per event across processes, /metrics over OTLP, inert by default.

The collector is real enough: an HTTP server on 127.0.0.1 that takes OTLP/HTTP
protobuf on ``/v1/traces`` and ``/v1/metrics`` and decodes it with
``opentelemetry-proto``. The publisher, the worker and ``serve`` are separate
``asyncevents`` processes with the standard ``OTEL_*`` variables, as in
production; the receiver of the webhooks is a real HTTP server too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pytest_httpserver import HTTPServer

from asyncevents.api.services.metrics import BUCKETS
from asyncevents.core.app import App
from asyncevents.core.messages import DeliverMessage, TriggerMessage, decode
from asyncevents.core.settings import Settings
from asyncevents.features.otel import Signals, signals
from tests.helpers import Recorder, drain, run_cli

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Collector:
    """A local OTLP/HTTP receiver: keeps every span and metric it is sent."""

    spans: list[tuple[dict[str, Any], Span]] = field(default_factory=list)
    metrics: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def names(self) -> set[str]:
        with self.lock:
            return {metric.name for _, metric in self.metrics}


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for kv in pairs:
        kind = kv.value.WhichOneof("value")
        found[kv.key] = getattr(kv.value, kind) if kind else None
    return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    got = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            assert self.headers.get("content-type") == "application/x-protobuf"
            if self.path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                with got.lock:
                    for rs in traces.resource_spans:
                        resource = _attributes(rs.resource.attributes)
                        got.spans.extend((resource, span) for ss in rs.scope_spans
                                         for span in ss.spans)
            elif self.path == "/v1/metrics":
                metrics = ExportMetricsServiceRequest.FromString(body)
                with got.lock:
                    for rm in metrics.resource_metrics:
                        resource = _attributes(rm.resource.attributes)
                        got.metrics.extend((resource, metric) for sm in rm.scope_metrics
                                           for metric in sm.metrics)
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    got.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield got
    server.shutdown()
    server.server_close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({
        "ASYNCEVENTS_TRANSPORT_URL": f"sqla+sqlite:///{tmp_path / 'queue.db'}",
        "ASYNCEVENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "ASYNCEVENTS_STRICT_EVENTS": "false",
        "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8",
        **extra,
    })
    return env


def _wait(what: str, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


# ---------------------------------------------------------------- the switch


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, Signals()),
    # Unlike the SDK's own default, nothing is sent before a variable says where.
    ({"OTEL_SERVICE_NAME": "shop"}, Signals()),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
     Signals(("otlp",), ("otlp",))),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
     Signals(("otlp",), ())),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "none"},
     Signals(("otlp",), ())),
    ({"OTEL_TRACES_EXPORTER": "console,otlp"}, Signals(("console", "otlp"), ())),
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, Signals()),  # not shipped: ignored with a warning
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
     Signals()),
])
def test_which_signals_the_variables_switch_on(environ: dict[str, str],
                                               expected: Signals) -> None:
    assert signals(environ) == expected


INERT = """
import sys
from asyncevents.api.services.metrics import BUCKETS
from asyncevents.core.app import App
from asyncevents.core.worker.worker import WorkerLimits

def loaded(prefixes):
    return sorted(m for m, module in list(sys.modules.items())
                  if m.startswith(prefixes) and module is not None)

app = App()
app.publish("shop.order", {"id": 1})
app.run_worker(WorkerLimits(max_idle_time=0.5, time_limit=20))
print("worker", loaded(("opentelemetry", "asyncevents.features.otel.")))
from asyncevents.api.app import create_app
create_app(app)
# FastAPI imports the OpenTelemetry API by itself when it is installed: only the
# SDK, the exporters and our own modules are ours to leave alone.
print("serve", loaded(("opentelemetry.sdk", "opentelemetry.exporter",
                       "asyncevents.features.otel.")))
"""


@pytest.mark.parametrize("extra", [
    {},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none",
     "OTEL_METRICS_EXPORTER": "none"},
], ids=["no-variables", "sdk-disabled", "exporters-none"])
def test_without_the_variables_nothing_of_opentelemetry_is_imported(
        tmp_path: Path, extra: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", INERT], env=_env(tmp_path, **extra),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "worker []" in lines and "serve []" in lines, done.stdout


def test_the_same_run_with_the_variables_does_load_it(tmp_path: Path) -> None:
    # The check above could pass for a module that is never imported at all.
    env = _env(tmp_path, OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none")
    done = subprocess.run([sys.executable, "-c", INERT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "asyncevents.features.otel.tracing" in done.stdout
    assert '"name": "publish shop.order"' in done.stdout  # the console exporter's span


def test_the_variables_without_the_extra_warn_once_and_change_nothing(tmp_path: Path) -> None:
    # The SDK made unimportable, as in an installation without the extra (FastAPI
    # may bring the OpenTelemetry API along by itself).
    script = "import sys\nsys.modules['opentelemetry.sdk'] = None\n" + INERT
    env = _env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert output.count("pip install 'asyncevents[otel]'") == 1, output
    assert "worker []" in output.splitlines() and "serve []" in output.splitlines()


# ---------------------------------------------------------------- the wire format


def test_messages_carry_the_trace_context_and_old_bodies_still_decode() -> None:
    from datetime import UTC, datetime

    trigger = TriggerMessage("e1", "shop.order", {"id": 1}, datetime.now(UTC),
                             traceparent=TRACEPARENT, tracestate="vendor=1")
    body = json.loads(json.dumps(trigger.body()))
    assert body["traceparent"] == TRACEPARENT and body["tracestate"] == "vendor=1"
    assert decode("trigger", body) == trigger
    assert decode("trigger", trigger.died().body()).traceparent == TRACEPARENT  # type: ignore[union-attr]

    deliver = DeliverMessage("d1", traceparent=TRACEPARENT)
    retried = deliver.with_deaths(2)
    assert retried.traceparent == TRACEPARENT and retried.deaths == 2
    assert decode("deliver", retried.body()) == retried
    # Without a context the body is what older workers send and read.
    assert DeliverMessage("d1").body() == {"delivery_id": "d1", "deaths": 0, "replay": False}
    # A context of the wrong type is ignored, never a reason to drop the event.
    odd = decode("deliver", {"delivery_id": "d1", "deaths": 0, "traceparent": 7})
    assert isinstance(odd, DeliverMessage) and odd.traceparent is None


# ---------------------------------------------------------------- end to end


def _by_name(collector: Collector, name: str) -> list[tuple[dict[str, Any], Span]]:
    with collector.lock:
        return [(r, s) for r, s in collector.spans if s.name == name]


def test_one_trace_from_publish_through_dispatch_to_every_attempt(
        tmp_path: Path, collector: Collector, httpserver: HTTPServer) -> None:
    recorder = Recorder(httpserver)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "200"}
    env = _env(tmp_path, **otel)
    app = App(Settings(transport_url=env["ASYNCEVENTS_TRANSPORT_URL"],
                       database_url=env["ASYNCEVENTS_DATABASE_URL"], strict_events=False,
                       allowed_networks=["127.0.0.0/8"]))
    try:
        steady = app.subscribe("shop.order", recorder.route("/steady"), token="whsec_dGVzdA==")
        flaky = app.subscribe("shop.order", recorder.route("/flaky", [503]),
                              token="whsec_dGVzdA==")
    finally:
        app.close()

    published = run_cli("publish", "shop.order", "--data", '{"id": 7}', cwd=tmp_path, env=env)
    assert published.returncode == 0, published.stderr
    event_id = published.stdout.strip()
    worker = run_cli("worker", "--max-idle-time", "3", "--time-limit", "60", cwd=tmp_path,
                     env=env, timeout=90)
    assert worker.returncode == 0, worker.stderr
    assert len(recorder.on("/steady")) == 1 and len(recorder.on("/flaky")) == 2

    # Each process flushed its spans at exit: all are in by now.
    [(publisher, publish)] = _by_name(collector, "publish shop.order")
    [(worker_resource, dispatch)] = _by_name(collector, "dispatch shop.order")
    attempts = [s for _, s in _by_name(collector, "deliver shop.order")]
    assert publisher["service.name"] == worker_resource["service.name"] == "asyncevents"

    assert publish.kind == Span.SPAN_KIND_PRODUCER and publish.parent_span_id == b""
    assert _attributes(publish.attributes)["asyncevents.event.id"] == event_id
    trace_id = publish.trace_id
    assert dispatch.trace_id == trace_id and dispatch.parent_span_id == publish.span_id
    assert dispatch.kind == Span.SPAN_KIND_CONSUMER

    assert len(attempts) == 3
    seen = []
    for span in attempts:
        assert span.trace_id == trace_id
        assert span.parent_span_id == dispatch.span_id  # inline or through the deliver queue
        assert span.kind == Span.SPAN_KIND_CLIENT
        attrs = _attributes(span.attributes)
        assert attrs["asyncevents.event.id"] == event_id
        assert attrs["asyncevents.event.name"] == "shop.order"
        assert attrs["asyncevents.sink"] == "http"
        assert attrs["asyncevents.delivery.id"]
        seen.append((attrs["asyncevents.subscription.id"], attrs["asyncevents.attempt"],
                     attrs["http.response.status_code"], attrs["asyncevents.outcome"],
                     span.status.code))
    ok, error = Status.STATUS_CODE_UNSET, Status.STATUS_CODE_ERROR
    assert sorted(seen) == sorted([
        (steady.id, 1, 200, "success", ok),
        (flaky.id, 1, 503, "retryable_failure", error),  # its retry kept the context
        (flaky.id, 2, 200, "success", ok),
    ])
    failed = next(s for s in attempts if s.status.code == error)
    assert "503" in failed.status.message


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_metrics_of_slash_metrics_are_exported_through_otlp(
        tmp_path: Path, collector: Collector, httpserver: HTTPServer) -> None:
    env = _env(tmp_path, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"{collector.url}/v1/metrics",
               OTEL_METRIC_EXPORT_INTERVAL="300", OTEL_SERVICE_NAME="shop-events")
    app = App(Settings(transport_url=env["ASYNCEVENTS_TRANSPORT_URL"],
                       database_url=env["ASYNCEVENTS_DATABASE_URL"], strict_events=False,
                       allowed_networks=["127.0.0.0/8"]))
    try:  # two deliveries made, one event left waiting in the trigger queue
        app.subscribe("shop.order", Recorder(httpserver).route("/hook"), token="whsec_dGVzdA==")
        app.publish_many([("shop.order", {"id": 1}), ("shop.order", {"id": 2})])
        drain(app, idle=0.5)
        app.publish("shop.paid", {})
    finally:
        app.close()
    token = run_cli("tokens", "create", "scraper", "--scope", "deliveries:read", "--json",
                    cwd=tmp_path, env=env)
    assert token.returncode == 0, token.stderr
    bearer = {"authorization": f"Bearer {json.loads(token.stdout)['token']}"}
    port = _free_port()
    serve = subprocess.Popen([sys.executable, "-m", "asyncevents", "serve", "--port", str(port),
                              "--no-console"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        expected = {"asyncevents_deliveries", "asyncevents_attempt_duration_seconds",
                    "asyncevents_queue_messages", "asyncevents_scheduled_retries"}
        _wait("the metrics over OTLP", lambda: collector.names() >= expected)

        def scraped() -> str:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", headers=bearer,
                                 timeout=5).text
            except httpx.HTTPError:
                return ""

        _wait("/metrics", lambda: "asyncevents_queue_messages" in scraped())
        text = scraped()
    finally:
        serve.terminate()
        _, stderr = serve.communicate(timeout=30)
    for name in expected:
        assert name in text  # the same families, under the same names
    with collector.lock:
        resources = {r["service.name"] for r, _ in collector.metrics}
        latest = {m.name: m for _, m in collector.metrics}
    assert resources == {"shop-events"}
    # The same values as /metrics: the waiting event, the two deliveries and their attempts.
    queues = latest["asyncevents_queue_messages"].gauge.data_points
    by_queue = {_attributes(p.attributes)["queue"]: p.as_int or p.as_double for p in queues}
    assert any("trigger" in name and size == 1 for name, size in by_queue.items()), by_queue
    [delivered] = [p for p in latest["asyncevents_deliveries"].gauge.data_points
                   if _attributes(p.attributes) == {"sink": "http", "status": "delivered"}]
    assert (delivered.as_int or delivered.as_double) == 2
    assert 'asyncevents_deliveries{sink="http",status="delivered"} 2.0' in text
    histogram = latest["asyncevents_attempt_duration_seconds"].histogram
    assert histogram.aggregation_temporality == 2  # cumulative, as Prometheus's
    [point] = histogram.data_points
    assert _attributes(point.attributes) == {"sink": "http"}
    assert point.count == 2 and sum(point.bucket_counts) == 2
    assert list(point.explicit_bounds) == list(BUCKETS)
    assert len(point.bucket_counts) == len(BUCKETS) + 1
    assert not point.HasField("min")  # Prometheus keeps none: not made up
    assert "Traceback" not in stderr


def test_prometheus_families_become_their_opentelemetry_twins() -> None:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        SummaryMetricFamily,
    )

    from asyncevents.features.otel.metrics import translate

    gauge = GaugeMetricFamily("depth", "Queue depth.", labels=["queue"])
    gauge.add_metric(["trigger"], 3)
    counter = CounterMetricFamily("sent", "Sent.", labels=["sink"])
    counter.add_metric(["http"], 5)
    histogram = HistogramMetricFamily("took_seconds", "Took.", labels=["sink"])
    # Cumulative in Prometheus: 1 under 0.1, 3 under 1, 4 in all.
    histogram.add_metric(["http"], [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)], sum_value=2.5)
    summary = SummaryMetricFamily("ignored", "No OTLP twin.", count_value=1, sum_value=1)
    metrics = {m.name: m for m in translate([gauge, counter, histogram, summary], 1, 2)}

    assert set(metrics) == {"depth", "sent", "took_seconds"}
    [depth] = metrics["depth"].data.data_points  # type: ignore[union-attr]
    assert (depth.attributes, depth.value) == ({"queue": "trigger"}, 3)
    sent = metrics["sent"].data
    assert sent.is_monotonic and [p.value for p in sent.data_points] == [5]  # type: ignore[union-attr]
    [took] = metrics["took_seconds"].data.data_points  # type: ignore[union-attr]
    assert took.attributes == {"sink": "http"}
    assert (took.count, took.sum) == (4, 2.5)
    assert list(took.explicit_bounds) == [0.1, 1.0]
    assert list(took.bucket_counts) == [1, 2, 1]  # each bucket's own count
