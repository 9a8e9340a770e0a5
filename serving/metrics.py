"""The server's Prometheus metrics, served at TF Serving's path `/monitoring/prometheus/metrics`.

Each server has its own registry (prometheus_client's `CollectorRegistry`), so that servers
started in one process (tests) count apart. Names follow Prometheus' conventions (seconds,
`_total`); TF Serving's own metrics carry the same information under other names, given
beside each (TF Serving counts microseconds):

| metric | labels | TF Serving's |
| --- | --- | --- |
| `serving_requests_total` | model_name, version, signature_name, api, entrypoint, status | `:tensorflow:serving:request_count` (model_name, status) |
| `serving_request_latency_seconds` (histogram) | model_name, api, entrypoint | `:tensorflow:serving:request_latency` |
| `serving_model_latency_seconds` (histogram, one model call) | model_name, signature_name | `:tensorflow:serving:runtime_latency` |
| `serving_batch_size` (histogram, rows per model call) | model_name, signature_name | `:tensorflow:serving:batching_session:...` |
| `serving_batch_queue_rows` (gauge) | model_name, signature_name | |
| `serving_model_versions` (gauge: 1 per version and state) | model_name, version, state | |
| `serving_http_connections` (gauge) | | |
| `serving_refused_total` | reason | |

`api` is predict, classify, regress, status or metadata; `entrypoint` REST or GRPC; `status`
the canonical code name (OK, INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, ...). `version` is
empty when the request found none.
"""

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# 0.1 ms to ~30 s, about x2 apart.
_LATENCY_BUCKETS = tuple(0.0001 * 2**i for i in range(19))
_BATCH_BUCKETS = tuple(2**i for i in range(15))  # 1 to 16384 rows

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
prometheus_client.disable_created_metrics()  # no `_created` series beside every counter


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "serving_requests", "Requests answered, by model, version, signature, API and status.",
            ["model_name", "version", "signature_name", "api", "entrypoint", "status"], registry=r)
        self._latency = Histogram(
            "serving_request_latency_seconds", "Time from a request's arrival to its answer.",
            ["model_name", "api", "entrypoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self._model_latency = Histogram(
            "serving_model_latency_seconds", "Time of one model call (one batch).",
            ["model_name", "signature_name"], buckets=_LATENCY_BUCKETS, registry=r)
        self._batch = Histogram(
            "serving_batch_size", "Rows per model call.",
            ["model_name", "signature_name"], buckets=_BATCH_BUCKETS, registry=r)
        self._queue = Gauge(
            "serving_batch_queue_rows", "Rows waiting for a model call.",
            ["model_name", "signature_name"], registry=r)
        self._versions = Gauge(
            "serving_model_versions", "Versions known to the server, 1 per version and state.",
            ["model_name", "version", "state"], registry=r)
        self.connections = Gauge("serving_http_connections", "Open HTTP connections.", registry=r)
        self._refused = Counter(
            "serving_refused", "Connections and requests refused by a limit, by limit.", ["reason"], registry=r)

    def request(self, model_name: str, version, signature_name: str, api: str, entrypoint: str,
                status: str, seconds: float) -> None:
        self._requests.labels(model_name, "" if version is None else str(version), signature_name,
                              api, entrypoint, status).inc()
        self._latency.labels(model_name, api, entrypoint).observe(seconds)

    def batch_observer(self, model_name: str, signature_name: str):
        """(on_batch(rows, seconds), queue gauge) for one signature's batcher."""
        rows = self._batch.labels(model_name, signature_name)
        latency = self._model_latency.labels(model_name, signature_name)

        def on_batch(size: int, seconds: float) -> None:
            rows.observe(size)
            latency.observe(seconds)

        return on_batch, self._queue.labels(model_name, signature_name)

    def set_versions(self, model_name: str, states: dict[int, str]) -> None:
        """Replaces the model's version gauges by `states` (version -> state)."""
        for labels in [s.labels for s in self._versions.collect()[0].samples]:
            if labels["model_name"] == model_name:
                self._versions.remove(model_name, labels["version"], labels["state"])
        for version, state in states.items():
            self._versions.labels(model_name, str(version), state).set(1)

    def refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
