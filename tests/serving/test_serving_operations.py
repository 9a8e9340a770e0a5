"""What operators expect of a TF Serving: several models and version labels from the model
config file, warmup replayed before a version serves, Prometheus metrics, liveness and
readiness, and a graceful stop on SIGTERM."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from serving_testlib import MODEL_NAME, ROWS, example_bytes, push_copy, wait_for
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from components import warmup
from serving import model_config

APPROX = dict(rel=1e-5, abs=1e-6)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def json_predict(srv, model, suffix="", rows=ROWS[:1]):
    return requests.post(f"{srv.rest_url}/v1/models/{model}{suffix}:predict",
                         json={"signature_name": "serving_json", "instances": rows}, timeout=10)


CONFIG = """
model_config_list {{
  config {{
    name: "taxi"
    base_path: "{taxi}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: {stable} }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "fares" base_path: "{fares}" }}
}}
"""


@pytest.fixture
def two_models(tmp_path, model_store):
    taxi, fares = str(tmp_path / "taxi"), str(tmp_path / "fares")
    push_copy(model_store("binary", 0), taxi, 1)
    push_copy(model_store("binary", 1), taxi, 2)
    push_copy(model_store("binary", 0), taxi, 3)  # not in the policy: never loaded
    push_copy(model_store("regression", 0), fares, 5)
    path = tmp_path / "models.config"
    path.write_text(CONFIG.format(taxi=taxi, fares=fares, stable=1))
    return path, taxi, fares


def test_several_models_and_labels_from_the_model_config_file(serve, two_models, reference):
    path, _, _ = two_models
    srv = serve("", model_config_file=str(path), model_config_poll_seconds=0.2)
    v1, v2 = (float(reference("binary", seed).raw(ROWS[:1])["probability"][0]) for seed in (0, 1))
    assert json_predict(srv, "taxi", "/labels/stable").json()["predictions"] == [pytest.approx(v1, **APPROX)]
    assert json_predict(srv, "taxi", "/labels/canary").json()["predictions"] == [pytest.approx(v2, **APPROX)]
    assert json_predict(srv, "taxi").json()["predictions"] == [pytest.approx(v2, **APPROX)]  # newest of the policy's
    fares = json_predict(srv, "fares")
    assert fares.status_code == 200
    assert fares.json()["predictions"] == [pytest.approx(float(reference("regression").raw(ROWS[:1])["value"][0]), **APPROX)]
    states = {s["version"]: s["state"] for s in requests.get(f"{srv.rest_url}/v1/models/taxi", timeout=10).json()["model_version_status"]}
    assert states == {"2": "AVAILABLE", "1": "AVAILABLE"}  # 3 is outside the policy
    status = requests.get(f"{srv.rest_url}/v1/models/taxi/labels/stable", timeout=10).json()
    assert [s["version"] for s in status["model_version_status"]] == ["1"]
    meta = requests.get(f"{srv.rest_url}/v1/models/taxi/labels/canary/metadata", timeout=10).json()
    assert meta["model_spec"]["version"] == "2"
    unknown = json_predict(srv, "taxi", "/labels/nope")
    assert unknown.status_code == 400 and "Unrecognized servable version label: nope" in unknown.json()["error"]

    # gRPC: ModelSpec.version_label
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi"
    request.model_spec.version_label = "stable"
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example_bytes(ROWS[0])]))
    channel = grpc.insecure_channel(srv.grpc_target)
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert response.model_spec.version.value == 1
    assert float(tf.make_ndarray(response.outputs["probability"])[0]) == pytest.approx(v1, **APPROX)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "fares"
    [fares_status] = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=10).model_version_status
    assert fares_status.version == 5

    # The file changes: the label moves, without a restart.
    path.write_text(CONFIG.format(taxi=two_models[1], fares=two_models[2], stable=2))
    assert wait_for(lambda: json_predict(srv, "taxi", "/labels/stable").json()["predictions"] == [pytest.approx(v2, **APPROX)])


@pytest.mark.parametrize("text, message", [
    ("model_config_list { config { name: 'a' } }", "has no base_path"),
    ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }", "model_platform 'pytorch'"),
    ("model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' base_path: '/y' } }", "configured twice"),
    ("model_config_list { config { name: 'a' base_path: '/x' model_version_policy { specific { versions: 1 } } "
     "version_labels { key: 'stable' value: 2 } } }", "labels ['stable']"),
    ("model_config_list { config { nme: 'a' } }", "not a ModelServerConfig"),
])
def test_a_bad_model_config_is_refused_naming_the_file_and_model(text, message):
    with pytest.raises(model_config.ConfigError, match=re.escape(message)) as info:
        model_config.parse(text, "models.config")
    assert str(info.value).startswith("models.config: ")


# ---------------------------------------------------------------- warmup


def test_the_warmup_file_is_replayed_before_the_version_serves(serve, tmp_path, model_store, reference):
    serving_dir = str(tmp_path / MODEL_NAME)
    version = push_copy(model_store("binary", 0), serving_dir, 1)
    examples = [example_bytes(row) for row in ROWS]
    path = warmup.write_warmup_file(version, examples, MODEL_NAME)
    assert path == os.path.join(version, "assets.extra", "tf_serving_warmup_requests")
    srv = serve(serving_dir)
    # One request per example for serving_default and for serving_json: TF Serving's format.
    assert srv.versions.loaded[1].warmup_requests == 2 * len(examples)
    assert json_predict(srv, MODEL_NAME).json()["predictions"] == [
        pytest.approx(float(reference().raw(ROWS[:1])["probability"][0]), **APPROX)]

    # A version whose warmup fails does not serve; the previous one goes on.
    bad = os.path.join(serving_dir, ".tmp-2")
    shutil.copytree(model_store("binary", 1), bad)
    no_hour = tf.train.Example.FromString(example_bytes(ROWS[0]))
    del no_hour.features.feature["trip_start_hour"]  # the model requires it
    warmup.write_warmup_file(bad, [no_hour.SerializeToString()], MODEL_NAME)
    os.rename(bad, os.path.join(serving_dir, "2"))
    status = lambda: {s["version"]: s for s in requests.get(f"{srv.rest_url}/v1/models/{MODEL_NAME}", timeout=10).json()["model_version_status"]}
    assert wait_for(lambda: status().get("2", {}).get("state") == "END")
    message = status()["2"]["status"]["error_message"]
    assert "warmup record 0 failed" in message and "trip_start_hour" in message and serving_dir not in message
    assert json_predict(srv, MODEL_NAME).json()["predictions"] == [
        pytest.approx(float(reference().raw(ROWS[:1])["probability"][0]), **APPROX)]


def test_warmup_logs_are_tf_servings_prediction_logs(model_store):
    from tensorflow_serving.apis import prediction_log_pb2

    from serving.model import read_signature_defs

    row = dict(ROWS[0])
    example = tf.train.Example.FromString(example_bytes(row))
    del example.features.feature["company"]  # missing: serving_json gets its missing value
    logs = warmup.warmup_logs(read_signature_defs(model_store("binary", 0)), [example.SerializeToString()])
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == ["serving_default", "serving_json"]
    parsed = prediction_log_pb2.PredictionLog.FromString(logs[1].SerializeToString())
    inputs = parsed.predict_log.request.inputs
    assert tf.make_ndarray(inputs["company"]).tolist() == [b""]
    assert tf.make_ndarray(inputs["trip_start_hour"]).tolist() == [row["trip_start_hour"]]
    assert len(warmup.warmup_logs(read_signature_defs(model_store("binary", 0)), [b""] * 600)) == warmup.MAX_RECORDS


# ---------------------------------------------------------------- metrics, liveness, readiness


def test_metrics_count_requests_batches_and_versions(server):
    assert json_predict(server, MODEL_NAME).status_code == 200
    assert requests.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:predict", data=b"{", timeout=10).status_code == 400
    response = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    text = response.text

    def value(pattern):
        found = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(pattern, line)]
        assert found, pattern
        return sum(found)

    assert value(r'serving_requests_total\{.*api="predict".*model_name="taxi".*signature_name="serving_json".*status="OK".*version="1"') >= 1
    assert value(r'serving_requests_total\{.*api="predict".*status="INVALID_ARGUMENT"') >= 1
    assert value(r'serving_request_latency_seconds_count\{api="predict",entrypoint="REST",model_name="taxi"\}') >= 2
    assert value(r'serving_batch_size_count\{model_name="taxi",signature_name="serving_json"\}') >= 1
    assert value(r'serving_model_latency_seconds_sum\{model_name="taxi",signature_name="serving_json"\}') > 0
    assert value(r'serving_batch_queue_rows\{model_name="taxi",signature_name="serving_json"\}') == 0
    assert value(r'serving_model_versions\{model_name="taxi",state="AVAILABLE",version="1"\}') == 1
    assert value(r"serving_http_connections ") >= 1


def test_liveness_and_readiness(serve, tmp_path, model_store):
    serving_dir = str(tmp_path / MODEL_NAME)
    srv = serve(serving_dir)
    assert requests.get(f"{srv.rest_url}/healthz", timeout=10).status_code == 200
    not_ready = requests.get(f"{srv.rest_url}/readyz", timeout=10)
    assert not_ready.status_code == 503 and not_ready.json()["waiting_for"] == [MODEL_NAME]
    push_copy(model_store("binary", 0), serving_dir, 1)
    assert wait_for(lambda: requests.get(f"{srv.rest_url}/readyz", timeout=10).status_code == 200)


# ---------------------------------------------------------------- graceful stop


def test_sigterm_finishes_the_requests_in_flight_then_exits_0(served_model_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--serving-dir", served_model_dir, "--model-name", MODEL_NAME,
         "--rest-port", "0", "--grpc-port", "0", "--batch-timeout-ms", "1500", "--grace-seconds", "10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        rest_url = process.stdout.readline().strip().rsplit(" ", 1)[1]
        grpc_target = process.stdout.readline().strip().rsplit(" ", 1)[1]
        results = [None] * 4

        def rest(i):
            results[i] = json_predict(type("S", (), {"rest_url": rest_url})(), MODEL_NAME, rows=ROWS[i:i + 1]).status_code

        def rpc(i):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL_NAME
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example_bytes(ROWS[0])]))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(grpc_target))
            results[i] = stub.Predict(request, timeout=20).model_spec.version.value

        threads = [threading.Thread(target=rest, args=(i,)) for i in range(3)] + [threading.Thread(target=rpc, args=(3,))]
        for t in threads:
            t.start()
        time.sleep(0.5)  # all four wait for their batch (1.5 s)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(requests.ConnectionError):  # no new connection is taken
            requests.get(f"{rest_url}/v1/models/{MODEL_NAME}", timeout=5)
        for t in threads:
            t.join(timeout=30)
        assert results == [200, 200, 200, 1]
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
