"""Missing values over JSON: `null`, or a key left out, means "missing" for a feature of any
dtype, over REST and through gRPC's serving_json alike, and the prediction equals the one for
a tf.Example without that feature.

The signature code itself (`components.signatures.raw_features_from_json`) is checked against
TF's own tf.Example parsing for each dtype; the served demo model (whose serving_json uses that
code) end to end. The pipeline's real taxi model: test_serving_pushed_model.py.
"""

import base64

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from serving_testlib import MODEL_NAME, example_bytes
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from components.signatures import MISSING_INT64, raw_features_from_json

APPROX = dict(rel=1e-5, abs=1e-6)

# One feature per dtype a tf.Example can hold, each VarLen (the schema lets it be missing) and
# FixedLen with a default.
VAR_SPEC = {"f": tf.io.VarLenFeature(tf.float32), "i": tf.io.VarLenFeature(tf.int64), "s": tf.io.VarLenFeature(tf.string)}
FIXED_SPEC = {
    "f": tf.io.FixedLenFeature([], tf.float32, default_value=-1.5),
    "i": tf.io.FixedLenFeature([], tf.int64, default_value=42),
    "s": tf.io.FixedLenFeature([], tf.string, default_value="dflt"),
}
PRESENT = {"f": 2.5, "i": 7, "s": b"abc"}
MISSING = {"f": float("nan"), "i": MISSING_INT64, "s": b""}


def _example(row: dict) -> bytes:
    feature = {}
    for name, value in row.items():
        if name == "f":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        elif name == "i":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _dense(tensor):
    if isinstance(tensor, tf.SparseTensor):
        return tf.sparse.to_dense(tf.sparse.reshape(tensor, tf.stack([tensor.dense_shape[0], -1]))).numpy().tolist(), tensor.indices.numpy().tolist()
    return tensor.numpy().tolist(), None


@pytest.mark.parametrize("spec", [VAR_SPEC, FIXED_SPEC], ids=["varlen", "fixedlen-with-default"])
@pytest.mark.parametrize("missing", ["f", "i", "s"])
def test_a_missing_json_value_is_parsed_as_an_example_without_the_feature(spec, missing):
    rows = [dict(PRESENT), dict(PRESENT)]
    rows[1][missing] = MISSING[missing]
    columns = {name: tf.constant([row[name] for row in rows], spec[name].dtype) for name in spec}
    from_json = raw_features_from_json(columns, spec)
    examples = [_example(rows[0]), _example({k: v for k, v in PRESENT.items() if k != missing})]
    from_examples = tf.io.parse_example(examples, spec)
    for name in spec:
        assert _dense(from_json[name]) == _dense(from_examples[name]), name


def test_a_missing_required_feature_is_refused_as_tf_example_parsing_refuses_it():
    spec = {"i": tf.io.FixedLenFeature([], tf.int64)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="i .*required"):
        tf.io.parse_example([tf.train.Example().SerializeToString()], spec)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Feature: i .*is required"):
        raw_features_from_json({"i": tf.constant([MISSING_INT64])}, spec)


# ---------------------------------------------------------------- served: the demo model
# trip_miles (float, default NaN) and company (string, default "") may be missing;
# trip_start_hour (int) is required by the model's example parsing.

ROW = {"trip_miles": 3.5, "company": "Sun Taxi", "trip_start_hour": 7}


def _by_example(server, row) -> float:
    b64 = {"b64": base64.b64encode(example_bytes_without(row)).decode()}
    response = requests.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:predict", json={"instances": [b64]}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def example_bytes_without(row: dict) -> bytes:
    full = tf.train.Example.FromString(example_bytes(dict(ROW, **{k: v for k, v in row.items() if v is not None})))
    for name in [k for k in ROW if k not in row or row[k] is None]:
        del full.features.feature[name]
    return full.SerializeToString()


def _rest(server, payload) -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:predict", json=payload, timeout=10)


@pytest.mark.parametrize("feature", ["trip_miles", "company"])
def test_null_and_absent_over_rest_equal_the_example_without_the_feature(server, feature):
    want = _by_example(server, {k: v for k, v in ROW.items() if k != feature})
    assert want != pytest.approx(_by_example(server, ROW), **APPROX), "the feature must matter to the model"
    null_row = dict(ROW, **{feature: None})
    absent_row = {k: v for k, v in ROW.items() if k != feature}
    for payload in (
        {"signature_name": "serving_json", "instances": [null_row]},
        {"signature_name": "serving_json", "instances": [absent_row]},
        {"signature_name": "serving_json", "inputs": {k: [v] for k, v in null_row.items()}},
        {"signature_name": "serving_json", "inputs": {k: [v] for k, v in absent_row.items()}},
    ):
        response = _rest(server, payload)
        assert response.status_code == 200, (payload, response.text)
        got = response.json().get("predictions", response.json().get("outputs"))
        assert got == [pytest.approx(want, **APPROX)], payload
    # classify: null and an absent key are the same missing feature
    for example in (null_row, absent_row):
        response = requests.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:classify", json={"examples": [example]}, timeout=10)
        assert response.json()["results"][0][1][1] == pytest.approx(want, **APPROX)


def test_a_missing_integer_feature_is_what_the_example_parsing_says(server):
    # The demo model requires trip_start_hour, as its tf.Example parsing does: missing is refused the same way.
    by_example = requests.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:predict", json={"instances": [
        {"b64": base64.b64encode(example_bytes_without({"trip_miles": 3.5, "company": "Sun Taxi"})).decode()}]}, timeout=10)
    assert by_example.status_code == 400 and "trip_start_hour" in by_example.json()["error"]
    for row in (dict(ROW, trip_start_hour=None), {"trip_miles": 3.5, "company": "Sun Taxi"}):
        response = _rest(server, {"signature_name": "serving_json", "instances": [row]})
        assert response.status_code == 400
        assert "trip_start_hour (data type: int64) is required" in response.json()["error"]
    assert _rest(server, {"signature_name": "serving_json", "instances": [ROW]}).status_code == 200


def test_missing_through_grpc_serving_json(server):
    want = _by_example(server, {"trip_start_hour": 7})  # trip_miles and company missing
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_target))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "serving_json"
    request.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([7], tf.int64))
    # company left out altogether; trip_miles sent as NaN (a client's way to say "missing" in a tensor)
    request.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto([float("nan")], tf.float32))
    response = stub.Predict(request, timeout=10)
    assert tf.make_ndarray(response.outputs["probability"]).tolist() == [pytest.approx(want, **APPROX)]
    # An integer left out, or sent as MISSING_INT64: refused as the example parsing refuses it
    for hour in (None, MISSING_INT64):
        request.inputs.pop("trip_start_hour")
        if hour is not None:
            request.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([hour], tf.int64))
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "trip_start_hour" in info.value.details()
        request.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([7], tf.int64))


def test_a_signature_without_the_missing_convention_refuses_null(server):
    response = _rest(server, {"signature_name": "transform_features", "instances": [None]})
    assert response.status_code == 400 and "got null" in response.json()["error"]
    assert np.isfinite(_by_example(server, ROW))
