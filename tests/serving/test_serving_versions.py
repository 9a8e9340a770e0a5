"""Versions coming and going, batching, and the command-line entry point."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from serving_testlib import MODEL_NAME, ROWS, check_served_model, push_copy, start_server, wait_for
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from serving.server import ServerConfig, parse_args

APPROX = dict(rel=1e-5, abs=1e-6)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status(srv):
    return requests.get(f"{srv.rest_url}/v1/models/{MODEL_NAME}", timeout=10)


def predict(srv, rows=ROWS[:1], version=None, session=requests):
    path = f"/versions/{version}" if version is not None else ""
    return session.post(
        f"{srv.rest_url}/v1/models/{MODEL_NAME}{path}:predict",
        json={"signature_name": "serving_json", "instances": rows},
        timeout=10,
    )


@pytest.fixture
def serving_dir(tmp_path):
    return str(tmp_path / MODEL_NAME)


def test_no_versions_yet_is_404_until_one_is_pushed(serving_dir, model_store):
    srv = start_server(serving_dir)
    try:
        response = status(srv)
        assert response.status_code == 404
        assert "Could not find any versions of model taxi" in response.json()["error"]
        response = predict(srv)
        assert response.status_code == 404
        assert "Latest(taxi)" in response.json()["error"] and "waiting" in response.json()["error"]
        channel = grpc.insecure_channel(srv.grpc_target)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = MODEL_NAME
        with pytest.raises(grpc.RpcError) as info:
            model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            _grpc_value(prediction_service_pb2_grpc.PredictionServiceStub(channel), ROWS[0])
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "Latest(taxi)" in info.value.details()

        push_copy(model_store("binary", 0), serving_dir, 1)
        assert wait_for(lambda: predict(srv).status_code == 200)
        assert status(srv).json()["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        srv.stop()


def test_broken_version_is_reported_and_skipped(serving_dir, model_store, reference, caplog):
    push_copy(model_store("binary", 0), serving_dir, 1)
    # Not versions: a Pusher's temp dir (holding a good model) and a non-integer name.
    push_copy(model_store("binary", 1), serving_dir, 9)
    os.rename(os.path.join(serving_dir, "9"), os.path.join(serving_dir, ".tmp-9"))
    os.makedirs(os.path.join(serving_dir, "latest"))
    srv = start_server(serving_dir)
    try:
        broken = os.path.join(serving_dir, ".tmp-2")
        os.makedirs(os.path.join(broken, "variables"))
        with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
            f.write(b"this is not a SavedModel")
        with caplog.at_level(logging.ERROR, logger="serving"):
            os.rename(broken, os.path.join(serving_dir, "2"))
            assert wait_for(lambda: {v["version"]: v["state"] for v in status(srv).json()["model_version_status"]}.get("2") == "END")
        versions = {v["version"]: v for v in status(srv).json()["model_version_status"]}
        assert set(versions) == {"1", "2"}
        assert versions["1"]["state"] == "AVAILABLE"
        assert versions["2"]["state"] == "END"
        assert versions["2"]["status"]["error_code"] == "UNKNOWN"
        assert "Failed to load version 2" in versions["2"]["status"]["error_message"]
        assert any("Failed to load version 2" in r.getMessage() for r in caplog.records)

        want = reference("binary", 0).raw(ROWS[:1])["probability"].tolist()
        assert predict(srv).json()["predictions"] == pytest.approx(want, **APPROX)  # version 1 serves on
        response = predict(srv, version=2)
        assert response.status_code == 404 and "Failed to load version 2" in response.json()["error"]
    finally:
        srv.stop()


def _grpc_value(stub, row):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "serving_json"
    request.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto([row["trip_miles"]], tf.float32))
    request.inputs["company"].CopyFrom(tf.make_tensor_proto([row["company"]]))
    request.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([row["trip_start_hour"]], tf.int64))
    response = stub.Predict(request, timeout=10)
    return response.model_spec.version.value, float(tf.make_ndarray(response.outputs["probability"])[0])


def test_hot_swap_under_load_fails_no_request(serving_dir, model_store, reference):
    row = ROWS[0]
    old = float(reference("binary", 0).raw([row])["probability"][0])
    new = float(reference("binary", 1).raw([row])["probability"][0])
    assert abs(old - new) > 1e-3, "the two versions must be told apart"
    push_copy(model_store("binary", 0), serving_dir, 1)
    srv = start_server(serving_dir, poll_seconds=0.1)
    stop = threading.Event()
    results, failures = [], []

    def rest_client():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = predict(srv, [row], session=session)
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        results.append(("rest", None, response.json()["predictions"][0]))
                except Exception as e:  # noqa: BLE001
                    failures.append(repr(e))

    def grpc_client():
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.grpc_target))
        while not stop.is_set():
            try:
                version, value = _grpc_value(stub, row)
                results.append(("grpc", version, value))
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    threads = [threading.Thread(target=f) for f in (rest_client, rest_client, grpc_client, grpc_client)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        push_copy(model_store("binary", 1), serving_dir, 2)
        swapped = wait_for(lambda: any(abs(v - new) < 1e-5 for _, _, v in results[-20:]), timeout=20)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
    assert swapped
    assert failures == []
    values = [v for _, _, v in results]
    assert all(abs(v - old) < 1e-5 or abs(v - new) < 1e-5 for v in values)
    assert any(abs(v - old) < 1e-5 for v in values) and abs(values[-1] - new) < 1e-5
    grpc_versions = [ver for kind, ver, _ in results if kind == "grpc"]
    assert grpc_versions[0] == 1 and grpc_versions[-1] == 2

    try:
        # Both versions stay loaded (--keep-versions 2), and either can be asked for.
        states = {v["version"]: v["state"] for v in status(srv).json()["model_version_status"]}
        assert states == {"1": "AVAILABLE", "2": "AVAILABLE"}
        assert predict(srv, [row], version=1).json()["predictions"] == pytest.approx([old], **APPROX)
        # A third version unloads the oldest.
        push_copy(model_store("binary", 0), serving_dir, 3)
        assert wait_for(lambda: {v["version"]: v["state"] for v in status(srv).json()["model_version_status"]}.get("1") == "END")
        assert predict(srv, [row], version=1).status_code == 404
        assert predict(srv, [row]).json()["predictions"] == pytest.approx([old], **APPROX)  # v3 = seed 0
    finally:
        srv.stop()


def test_concurrent_requests_share_model_calls_and_get_their_own_answers(served_model_dir, reference):
    srv = start_server(served_model_dir, batch_timeout_ms=500, max_batch_size=64)
    rows = [dict(ROWS[i % 3], trip_miles=float(i)) for i in range(16)]
    want = reference().raw(rows)["probability"].tolist()
    answers = [None] * len(rows)
    barrier = threading.Barrier(len(rows))

    def client(i):
        barrier.wait()
        answers[i] = predict(srv, [rows[i]]).json()["predictions"][0]

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(rows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        calls = srv.versions.loaded[1].batchers["serving_json"].calls
    finally:
        srv.stop()
    assert answers == pytest.approx(want, **APPROX)
    assert calls <= 4, f"16 concurrent requests took {calls} model calls"


def test_a_bad_request_in_a_batch_fails_alone(served_model_dir, reference):
    srv = start_server(served_model_dir, batch_timeout_ms=500)
    examples = [dict(row) for row in ROWS * 2]
    del examples[2]["trip_start_hour"]  # the model requires it
    results = [None] * len(examples)
    barrier = threading.Barrier(len(examples))

    def client(i):
        barrier.wait()
        results[i] = requests.post(
            f"{srv.rest_url}/v1/models/{MODEL_NAME}:classify", json={"examples": [examples[i]]}, timeout=10
        )

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(examples))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
    finally:
        srv.stop()
    assert [r.status_code for r in results] == [200, 200, 400, 200, 200, 200]
    assert "trip_start_hour" in results[2].json()["error"]
    want = reference().raw(ROWS * 2)["probability"]
    for i in (0, 1, 3, 4, 5):
        assert results[i].json()["results"][0][1][1] == pytest.approx(float(want[i]), **APPROX)


def test_command_line_defaults():
    config = parse_args(["--serving-dir", "/models/taxi"])
    assert config == ServerConfig(serving_dir="/models/taxi")
    assert (config.host, config.rest_port, config.grpc_port, config.model_name) == ("127.0.0.1", 8501, 8500, "model")


def test_python_dash_m_serving_reports_ports_and_stops_on_sigterm(served_model_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--serving-dir", served_model_dir, "--model-name", MODEL_NAME,
         "--rest-port", "0", "--grpc-port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        lines = [process.stdout.readline().strip() for _ in range(2)]
        assert lines[0].startswith("REST listening on http://127.0.0.1:")
        assert lines[1].startswith("gRPC listening on 127.0.0.1:")
        rest_url = lines[0].rsplit(" ", 1)[1]
        response = requests.get(f"{rest_url}/v1/models/{MODEL_NAME}", timeout=10)
        assert response.json()["model_version_status"][0]["state"] == "AVAILABLE"
        grpc_port = int(lines[1].rsplit(":", 1)[1])
        assert grpc_port > 0 and grpc_port != int(rest_url.rsplit(":", 1)[1])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_port_in_use_is_a_clear_start_up_error(server, served_model_dir):
    with pytest.raises(OSError):
        start_server(served_model_dir, rest_port=server.rest_port)
    with pytest.raises(OSError, match="gRPC"):
        start_server(served_model_dir, grpc_port=server.grpc_port)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_contract_check_passes_for_each_task(serve, model_store, tmp_path, task):
    serving_dir = str(tmp_path / "pipeline")
    push_copy(model_store(task, 0), serving_dir, 4)
    check_served_model(serve(serving_dir, model_name="pipeline"))
