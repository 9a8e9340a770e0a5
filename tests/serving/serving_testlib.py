"""Helpers shared by the model server's tests."""

import base64
import os
import shutil
import time

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.server import ModelServer, ServerConfig

MODEL_NAME = "taxi"
MAX_REQUEST_BYTES = 256 * 1024  # small, so the size-limit test stays fast
MAX_INSTANCES = 500


def wait_for(condition, timeout=20.0) -> bool:
    """Polls `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def push_copy(model_path: str, serving_dir: str, version: int) -> str:
    """Pushes a built SavedModel as `version`, atomically (copy to a temp dir, then rename)."""
    os.makedirs(serving_dir, exist_ok=True)
    tmp = os.path.join(serving_dir, f".tmp-{version}")
    shutil.copytree(model_path, tmp)
    final = os.path.join(serving_dir, str(version))
    os.rename(tmp, final)
    return final


def start_server(serving_dir: str, **overrides) -> ModelServer:
    config = dict(
        serving_dir=serving_dir,
        model_name=MODEL_NAME,
        rest_port=0,
        grpc_port=0,
        poll_seconds=0.2,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_instances=MAX_INSTANCES,
    )
    config.update(overrides)
    return ModelServer(ServerConfig(**config)).start()


def serve_function(serving_dir, function) -> ModelServer:
    """Serves a `tf.function` with an input signature as version 1's `serving_default`."""
    module = tf.Module()
    module.function = function
    tf.saved_model.save(module, os.path.join(str(serving_dir), "1"),
                        signatures={"serving_default": function.get_concrete_function()})
    return start_server(str(serving_dir))


class Reference:
    """Calls a SavedModel directly, to check what the server answers."""

    def __init__(self, path: str):
        self._model = tf.saved_model.load(path)

    def raw(self, rows: list[dict]) -> dict:
        fn = self._model.signatures["serving_json"]
        out = fn(
            trip_miles=tf.constant([r["trip_miles"] for r in rows], tf.float32),
            company=tf.constant([r["company"] for r in rows]),
            trip_start_hour=tf.constant([r["trip_start_hour"] for r in rows], tf.int64),
        )
        return {k: v.numpy() for k, v in out.items()}


ROWS = [
    {"trip_miles": 1.5, "company": "Sun Taxi", "trip_start_hour": 7},
    {"trip_miles": 12.0, "company": "Flash Cab", "trip_start_hour": 23},
    {"trip_miles": 0.2, "company": "Unknown Co", "trip_start_hour": 0},
]


def example_bytes(row: dict) -> bytes:
    feature = {
        "trip_miles": tf.train.Feature(float_list=tf.train.FloatList(value=[row["trip_miles"]])),
        "company": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["company"].encode()])),
        "trip_start_hour": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["trip_start_hour"]])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()



# Two rows of values per raw feature dtype, and the matching TF dtypes.
_SAMPLE_VALUES = {"DT_STRING": ["", "a"], "DT_FLOAT": [1.0, 2.5], "DT_INT64": [1, 3]}
_TF_DTYPES = {"DT_STRING": tf.string, "DT_FLOAT": tf.float32, "DT_INT64": tf.int64}


def _as_columns(body: dict, key: str) -> dict:
    """predictions (one bare output, or one object per row) -> output name -> list per row."""
    rows = body[key]
    if rows and isinstance(rows[0], dict):
        return {name: [row[name] for row in rows] for name in rows[0]}
    return {"_": rows}


def check_served_model(srv: ModelServer) -> None:
    """Asserts that `srv` serves a model keeping the pipeline's serving contract: the three
    signatures, serving_json and serving_default (tf.Examples) agreeing on the same features,
    outputs of one of the three task shapes, classify or regress agreeing with predict, and
    gRPC agreeing with REST. Works for any such model, whatever its raw features."""
    base = f"{srv.rest_url}/v1/models/{srv.config.model_name}"
    status = requests.get(base, timeout=30).json()["model_version_status"]
    assert any(s["state"] == "AVAILABLE" for s in status), status
    signatures = requests.get(f"{base}/metadata", timeout=30).json()["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_json", "transform_features"} <= set(signatures)
    raw = {name: info["dtype"] for name, info in signatures["serving_json"]["inputs"].items()}
    rows = [{name: _SAMPLE_VALUES[dtype][i] for name, dtype in raw.items()} for i in range(2)]

    by_json = requests.post(f"{base}:predict", json={"signature_name": "serving_json", "instances": rows}, timeout=30)
    assert by_json.status_code == 200, by_json.text
    examples = []
    for row in rows:
        feature = {}
        for name, value in row.items():
            if isinstance(value, str):
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            elif isinstance(value, float):
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    b64 = [{"b64": base64.b64encode(e).decode()} for e in examples]
    by_examples = requests.post(f"{base}:predict", json={"instances": b64}, timeout=30)
    assert by_examples.status_code == 200, by_examples.text

    outputs = set(signatures["serving_default"]["outputs"])
    assert outputs in ({"probability"}, {"probabilities", "classes"}, {"value"}), outputs
    json_columns = _as_columns(by_json.json(), "predictions")
    example_columns = _as_columns(by_examples.json(), "predictions")
    number_output = "probabilities" if "probabilities" in outputs else "_"
    got = np.array(json_columns[number_output], dtype=float)
    assert got.shape[0] == len(rows) and np.all(np.isfinite(got))
    assert np.allclose(got, np.array(example_columns[number_output], dtype=float), rtol=1e-4, atol=1e-5)

    verb = "regress" if outputs == {"value"} else "classify"
    results = requests.post(f"{base}:{verb}", json={"examples": rows}, timeout=30)
    assert results.status_code == 200, results.text
    results = results.json()["results"]
    if outputs == {"probability"}:
        assert np.all((got >= 0) & (got <= 1))
        assert np.allclose([r[1][1] for r in results], got, rtol=1e-4, atol=1e-5)
    elif outputs == {"value"}:
        assert np.allclose(results, got, rtol=1e-4, atol=1e-5)
    else:
        assert np.allclose(got.sum(axis=1), 1.0, atol=1e-4)
        assert [[label for label, _ in r] for r in results] == json_columns["classes"]
        assert np.allclose([[score for _, score in r] for r in results], got, rtol=1e-4, atol=1e-5)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = srv.config.model_name
    request.model_spec.signature_name = "serving_json"
    for name, dtype in raw.items():
        values = [row[name] for row in rows]
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, _TF_DTYPES[dtype]))
    with grpc.insecure_channel(srv.grpc_target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    key = "probabilities" if number_output == "probabilities" else next(iter(outputs))
    assert np.allclose(tf.make_ndarray(response.outputs[key]), got, rtol=1e-4, atol=1e-5)
