"""Inputs whose names are not Python identifiers (CSV columns such as `yrs.service` or
`years-in`, which TensorFlow keeps as a signature's input names): the model loads and
answers under those names over REST and gRPC. TensorFlow calls such a signature's arguments
`yrs_service`; the server's call of the graph (serving/model.py, `_flat_call`) once looked
them up under that name, and a pushed model with such a column failed its warm-up and was
never served."""

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from serving_testlib import MODEL_NAME, serve_function
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

NAMES = ("yrs.service", "years-in", "b")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    @tf.function(input_signature=[{name: tf.TensorSpec([None], tf.float32, name=name) for name in NAMES}])
    def predict(features):
        return {"score": 100.0 * features["yrs.service"] + 10.0 * features["years-in"] + features["b"]}

    server = serve_function(tmp_path_factory.mktemp("names"), predict)
    yield server
    server.stop()


def test_inputs_named_as_csv_columns_are_served_over_rest(server):
    body = {"instances": [{"yrs.service": 1.0, "years-in": 2.0, "b": 3.0}, {"yrs.service": 4.0, "years-in": 5.0, "b": 6.0}]}
    response = requests.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == pytest.approx([123.0, 456.0])


def test_inputs_named_as_csv_columns_are_served_over_grpc(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    for i, name in enumerate(NAMES):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.array([float(i + 1)], np.float32)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert tf.make_ndarray(reply.outputs["score"]).tolist() == pytest.approx([123.0])
