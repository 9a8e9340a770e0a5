"""A model's answer larger than the pipe between the serving process and the model's process
(serving/worker.py) arrives whole. The event loop (uvloop) waits for the answer's first byte
with add_reader, which turns the pipe non-blocking; the answer's read then once found only
its first part in the pipe and the server answered 503 "version ... is not running" for a
model process that was alive (found by the generality benchmark: 292 held-out rows of a
multi-class model, one request in a few)."""

import numpy as np
import pytest
import requests
import tensorflow as tf
from serving_testlib import MODEL_NAME, serve_function

WIDTH = 2048  # outputs per row: 500 rows are 4 MB of float32, many times a pipe's buffer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(x):
        return {"y": tf.tile(x[:, tf.newaxis], [1, WIDTH]) + tf.range(WIDTH, dtype=tf.float32)}

    server = serve_function(tmp_path_factory.mktemp("large"), predict)
    yield server
    server.stop()


def test_answers_larger_than_the_pipe_arrive_whole(server):
    rows = 500
    for attempt in range(5):
        x = [float(attempt * rows + i) for i in range(rows)]
        response = requests.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:predict",
                                 json={"instances": [{"x": v} for v in x]}, timeout=60)
        assert response.status_code == 200, (attempt, response.text)
        predictions = np.array(response.json()["predictions"], np.float32)
        assert predictions.shape == (rows, WIDTH)
        np.testing.assert_array_equal(predictions, np.array(x, np.float32)[:, None] + np.arange(WIDTH, dtype=np.float32))
