"""The server on the model the end-to-end pipeline really pushed (conftest.taxi_e2e)."""
import base64
import csv
import os

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from serving_testlib import check_served_model
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from components import warmup
from components.signatures import MISSING_INT64

MISSING = {"DT_STRING": "", "DT_FLOAT": float("nan"), "DT_INT64": MISSING_INT64}


def test_the_pipelines_pushed_taxi_model_is_served(serve, taxi_e2e):
    config = taxi_e2e['config']
    check_served_model(serve(config.paths.serving_dir, model_name=config.name))


def test_the_pushed_version_carries_warmup_requests_that_the_server_replays(serve, taxi_e2e):
    config = taxi_e2e['config']
    [version] = taxi_e2e['versions_after_first']
    assert os.path.exists(warmup.warmup_path(os.path.join(config.paths.serving_dir, version)))
    srv = serve(config.paths.serving_dir, model_name=config.name)
    replayed = srv.versions.loaded[int(version)].warmup_requests
    assert replayed > 0 and replayed % 2 == 0  # serving_default and serving_json, one per example


def _row(taxi_e2e, inputs) -> dict:
    """The fullest row of the run's data, typed as serving_json takes it (empty values left out)."""
    root = taxi_e2e['config'].data.root
    with open(os.path.join(root, 'data.csv'), newline='', encoding='utf-8') as f:
        record = max(csv.DictReader(f), key=lambda r: sum(bool(r.get(name)) for name in inputs))
    cast = {"DT_STRING": str, "DT_FLOAT": float, "DT_INT64": lambda v: int(float(v))}
    return {name: cast[dtype](record[name]) for name, dtype in inputs.items() if record.get(name)}


def _example(row: dict, inputs: dict) -> bytes:
    feature = {}
    for name, value in row.items():
        dtype = inputs[name]
        if dtype == "DT_STRING":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif dtype == "DT_FLOAT":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_a_missing_value_of_each_dtype_is_predicted_as_the_example_without_the_feature(serve, taxi_e2e):
    """null, an absent key (REST) and a left-out input (gRPC serving_json) give the prediction of
    a tf.Example that lacks the feature, for a feature of each dtype that the model uses."""
    config = taxi_e2e['config']
    srv = serve(config.paths.serving_dir, model_name=config.name)
    base = f"{srv.rest_url}/v1/models/{config.name}"
    signature = requests.get(f"{base}/metadata", timeout=30).json()["metadata"]["signature_def"]["signature_def"]["serving_json"]
    inputs = {name: info["dtype"] for name, info in signature["inputs"].items()}
    row = _row(taxi_e2e, inputs)

    def by_examples(rows):
        b64 = [{"b64": base64.b64encode(_example(r, inputs)).decode()} for r in rows]
        response = requests.post(f"{base}:predict", json={"instances": b64}, timeout=30)
        assert response.status_code == 200, response.text
        return np.array(response.json()["predictions"], dtype=float)

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.grpc_target))
    tf_dtypes = {"DT_STRING": tf.string, "DT_FLOAT": tf.float32, "DT_INT64": tf.int64}
    checked = set()
    for dtype in ("DT_FLOAT", "DT_INT64", "DT_STRING"):
        names = sorted(n for n, d in inputs.items() if d == dtype and n in row)
        without = [{k: v for k, v in row.items() if k != name} for name in names]
        present, absent = by_examples([row])[0], by_examples(without)
        # A feature the model uses: leaving it out changes the prediction.
        used = [(name, want) for name, want in zip(names, absent) if abs(want - present) > 1e-4]
        assert used, f"no {dtype} feature changes the prediction"
        name, want = used[0]
        null_row, absent_row = dict(row, **{name: None}), {k: v for k, v in row.items() if k != name}
        for payload in ({"signature_name": "serving_json", "instances": [null_row]},
                        {"signature_name": "serving_json", "instances": [absent_row]},
                        {"signature_name": "serving_json", "inputs": {k: [v] for k, v in absent_row.items()}}):
            response = requests.post(f"{base}:predict", json=payload, timeout=30)
            assert response.status_code == 200, response.text
            got = response.json().get("predictions") or response.json().get("outputs")
            assert got == [pytest.approx(want, rel=1e-5, abs=1e-6)], (dtype, name, payload)
        for sent in (absent_row, dict(row, **{name: MISSING[dtype]})):  # left out, or the missing value
            request = predict_pb2.PredictRequest()
            request.model_spec.name = config.name
            request.model_spec.signature_name = "serving_json"
            for key, value in sent.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto([value], tf_dtypes[inputs[key]]))
            [got] = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["probability"]).tolist()
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6), (dtype, name, "gRPC")
        checked.add(dtype)
    assert checked == {"DT_FLOAT", "DT_INT64", "DT_STRING"}
