"""The REST API, through a real HTTP client, against TF Serving's documented request and
response shapes."""

import base64
import json
import socket

import numpy as np
import pytest
import requests
from serving_testlib import MAX_INSTANCES, MAX_REQUEST_BYTES, MODEL_NAME, ROWS, example_bytes

APPROX = dict(rel=1e-5, abs=1e-6)


def url(server, suffix=""):
    return f"{server.rest_url}/v1/models/{MODEL_NAME}{suffix}"


def post(server, suffix, body, **kwargs):
    return requests.post(url(server, suffix), json=body, timeout=10, **kwargs)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


# ---------------------------------------------------------------- status and metadata


def test_status_reports_the_loaded_version_in_tf_serving_shape(server):
    expected = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert requests.get(url(server), timeout=10).json() == expected
    response = requests.get(url(server, "/versions/1"), timeout=10)
    assert response.status_code == 200 and response.json() == expected


def test_status_of_unknown_version_or_model_is_404(server):
    response = requests.get(url(server, "/versions/7"), timeout=10)
    assert response.status_code == 404
    assert "version 7" in response.json()["error"]
    response = requests.get(f"{server.rest_url}/v1/models/nope", timeout=10)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_metadata_lists_signatures_with_dtypes_and_shapes(server):
    for suffix in ("/metadata", "/versions/1/metadata"):
        body = requests.get(url(server, suffix), timeout=10).json()
        assert body["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
        sigs = body["metadata"]["signature_def"]["signature_def"]
        assert {"serving_default", "serving_json", "transform_features"} <= set(sigs)
        examples = sigs["serving_default"]["inputs"]["examples"]
        assert examples["dtype"] == "DT_STRING"
        assert examples["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
        raw = sigs["serving_json"]["inputs"]
        assert {k: v["dtype"] for k, v in raw.items()} == {
            "trip_miles": "DT_FLOAT",
            "company": "DT_STRING",
            "trip_start_hour": "DT_INT64",
        }
        assert sigs["serving_default"]["outputs"]["probability"]["dtype"] == "DT_FLOAT"


# ---------------------------------------------------------------- predict


def test_predict_row_format_matches_the_model(server, reference):
    response = post(server, ":predict", {"signature_name": "serving_json", "instances": ROWS})
    assert response.status_code == 200
    want = reference().raw(ROWS)["probability"]
    assert response.json() == {"predictions": pytest.approx(want.tolist(), **APPROX)}


def test_predict_columnar_format_returns_outputs(server, reference):
    columns = {key: [row[key] for row in ROWS] for key in ROWS[0]}
    response = post(server, "/versions/1:predict", {"signature_name": "serving_json", "inputs": columns})
    assert response.status_code == 200
    want = reference().raw(ROWS)["probability"]
    assert response.json() == {"outputs": pytest.approx(want.tolist(), **APPROX)}


def test_predict_default_signature_takes_b64_examples(server, reference):
    want = pytest.approx(reference().raw(ROWS)["probability"].tolist(), **APPROX)
    encoded = [b64(example_bytes(row)) for row in ROWS]
    bare = post(server, ":predict", {"instances": encoded})
    named = post(server, ":predict", {"instances": [{"examples": e} for e in encoded]})
    columnar = post(server, ":predict", {"inputs": {"examples": encoded}})
    assert bare.json() == {"predictions": want}
    assert named.json() == {"predictions": want}
    assert columnar.json() == {"outputs": want}


def test_predict_accepts_nan_and_empty_string_as_missing_values(server, reference):
    row = {"trip_miles": float("nan"), "company": "", "trip_start_hour": 3}
    body = '{"signature_name": "serving_json", "instances": [{"trip_miles": NaN, "company": "", "trip_start_hour": 3}]}'
    response = requests.post(url(server, ":predict"), data=body, timeout=10)
    assert response.status_code == 200
    assert response.json()["predictions"] == pytest.approx(reference().raw([row])["probability"].tolist(), **APPROX)


def test_multi_output_signature_returns_dicts(multiclass_server, reference):
    want = reference("multiclass").raw(ROWS)
    rows = post(multiclass_server, ":predict", {"signature_name": "serving_json", "instances": ROWS}).json()
    assert len(rows["predictions"]) == len(ROWS)
    for i, prediction in enumerate(rows["predictions"]):
        assert prediction["classes"] == ["cash", "card", "other"]
        assert prediction["probabilities"] == pytest.approx(want["probabilities"][i].tolist(), **APPROX)
    columns = {key: [row[key] for row in ROWS] for key in ROWS[0]}
    cols = post(multiclass_server, ":predict", {"signature_name": "serving_json", "inputs": columns}).json()
    assert cols["outputs"]["classes"] == [["cash", "card", "other"]] * len(ROWS)
    assert np.allclose(cols["outputs"]["probabilities"], want["probabilities"], rtol=1e-5)


# ---------------------------------------------------------------- classify and regress


def test_classify_binary_gives_both_classes(server, reference):
    p = reference().raw(ROWS)["probability"]
    response = post(server, ":classify", {"examples": ROWS})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [[label for label, _ in r] for r in results] == [["0", "1"]] * len(ROWS)
    assert [r[1][1] for r in results] == pytest.approx(p.tolist(), **APPROX)
    assert [r[0][1] for r in results] == pytest.approx((1 - p).tolist(), **APPROX)


def test_classify_multiclass_uses_class_names(multiclass_server, reference):
    want = reference("multiclass").raw(ROWS[:1])["probabilities"][0]
    response = post(multiclass_server, ":classify", {"examples": ROWS[:1]})
    [result] = response.json()["results"]
    assert [label for label, _ in result] == ["cash", "card", "other"]
    assert [score for _, score in result] == pytest.approx(want.tolist(), **APPROX)


def test_regress_returns_values_and_merges_context(regression_server, reference):
    want = reference("regression").raw(ROWS)["value"]
    response = post(regression_server, ":regress", {"examples": ROWS})
    assert response.json() == {"results": pytest.approx(want.tolist(), **APPROX)}
    context = {"company": "Sun Taxi", "trip_start_hour": 7}
    response = post(regression_server, ":regress", {"context": context, "examples": [{"trip_miles": 1.5}]})
    assert response.json()["results"] == pytest.approx([want[0]], **APPROX)


def test_classify_takes_an_integer_for_a_float_feature(server, reference):
    row = {"trip_miles": 3, "company": "Sun Taxi", "trip_start_hour": 7}
    response = post(server, ":classify", {"examples": [row]})
    assert response.status_code == 200
    p = reference().raw([dict(row, trip_miles=3.0)])["probability"][0]
    assert response.json()["results"][0][1][1] == pytest.approx(float(p), **APPROX)


@pytest.mark.parametrize(
    "example, message",
    [
        ({"trip_mile": 1.0, "company": "Sun Taxi", "trip_start_hour": 7}, "unknown feature 'trip_mile'"),
        ({"trip_miles": "far", "company": "Sun Taxi", "trip_start_hour": 7}, "'trip_miles' is a float feature"),
        ({"trip_miles": 1.0, "company": "Sun Taxi"}, "trip_start_hour"),  # required by the model
        ({"trip_miles": 1.0, "company": "Sun Taxi", "trip_start_hour": None}, "trip_start_hour"),  # null: missing, and required
    ],
)
def test_classify_rejects_bad_examples(server, example, message):
    response = post(server, ":classify", {"examples": [example]})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_regress_on_a_classifier_is_a_client_error(server):
    response = post(server, ":regress", {"examples": ROWS})
    assert response.status_code == 400
    assert "not a regressor" in response.json()["error"]


# ---------------------------------------------------------------- client errors


@pytest.mark.parametrize(
    "suffix, body, status, message",
    [
        (":predict", {"instances": []}, 400, "empty"),
        (":predict", {"signature_name": "serving_json", "inputs": {"trip_miles": [], "company": [], "trip_start_hour": []}}, 400, "empty batch"),
        (":predict", {"signature_name": "nope", "instances": ROWS}, 400, '"nope" not found'),
        # serving_json: a feature left out is missing; this model requires trip_start_hour, as its tf.Example parsing does
        (":predict", {"signature_name": "serving_json", "instances": [{"trip_miles": 1.0, "company": "x"}]}, 400, "trip_start_hour (data type: int64) is required"),
        (":predict", {"signature_name": "serving_json", "instances": [dict(ROWS[0], trip_start_hour=None)]}, 400, "trip_start_hour (data type: int64) is required"),
        (":predict", {"signature_name": "transform_features", "instances": [{"examples": None}]}, 400, "got null"),
        (":predict", {"signature_name": "serving_json", "instances": [dict(ROWS[0], colour="red")]}, 400, "unknown input(s) ['colour']"),
        (":predict", {"signature_name": "serving_json", "instances": [dict(ROWS[0], trip_start_hour=7.5)]}, 400, "'trip_start_hour' expects integers"),
        (":predict", {"signature_name": "serving_json", "instances": [dict(ROWS[0], company=5)]}, 400, "'company' expects strings"),
        (":predict", {"signature_name": "serving_json", "instances": [dict(ROWS[0], trip_miles=[1.0, 2.0])]}, 400, "must have shape [-1]"),
        (":predict", {"signature_name": "serving_json", "inputs": {"trip_miles": [1.0, 2.0], "company": ["a"], "trip_start_hour": [1]}}, 400, "disagree on the batch size"),
        (":predict", {"instances": [{"b64": "not base64!"}]}, 400, "not valid base64"),
        (":predict", {"instances": ROWS, "inputs": {}}, 400, "exactly one of"),
        (":predict", {"signature_name": "serving_json", "instances": [ROWS[0]] * (MAX_INSTANCES + 1)}, 400, "--max-instances"),
        ("/versions/9:predict", {"instances": ROWS}, 404, "Specific(taxi, 9)"),
        ("/versions/x:predict", {"instances": ROWS}, 400, "version must be an integer"),
        (":classify", {"examples": []}, 400, "empty"),
        (":classify", {"examples": {"trip_miles": 1.0}}, 400, "must be a list"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(server, suffix, body, status, message):
    response = post(server, suffix, body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_malformed_json_is_400(server):
    response = requests.post(url(server, ":predict"), data=b'{"instances": [1,', timeout=10)
    assert response.status_code == 400
    assert "JSON Parse error" in response.json()["error"]
    response = requests.post(url(server, ":predict"), data=b"[1, 2]", timeout=10)
    assert response.status_code == 400


def test_unknown_model_unknown_path_and_wrong_method(server):
    response = requests.post(f"{server.rest_url}/v1/models/other:predict", json={"instances": ROWS}, timeout=10)
    assert response.status_code == 404
    assert "Latest(other)" in response.json()["error"]
    response = requests.get(f"{server.rest_url}/v2/nothing", timeout=10)
    assert response.status_code == 404 and "Malformed request" in response.json()["error"]
    response = requests.get(url(server, ":predict"), timeout=10)
    assert response.status_code == 405


def test_payload_over_the_limit_is_413_and_the_connection_goes_on(server):
    big = {"signature_name": "serving_json", "instances": [dict(ROWS[0], company="x" * 1000)] * (MAX_REQUEST_BYTES // 1000 + 10)}
    with requests.Session() as session:
        response = session.post(url(server, ":predict"), json=big, timeout=10)
        assert response.status_code == 413
        assert "--max-request-bytes" in response.json()["error"]
        again = session.post(url(server, ":predict"), json={"signature_name": "serving_json", "instances": ROWS}, timeout=10)
        assert again.status_code == 200


def test_server_keeps_serving_after_errors(server):
    for body in (b"{", b"null", b'{"instances": 3}'):
        assert requests.post(url(server, ":predict"), data=body, timeout=10).status_code == 400
    ok = post(server, ":predict", {"signature_name": "serving_json", "instances": ROWS})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == len(ROWS)


# ---------------------------------------------------------------- HTTP details


def _raw_exchange(server, data: bytes, then: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(data)
        if then:
            interim = sock.recv(4096)
            assert interim.startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(then)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_expect_100_continue_and_chunked_bodies(server):
    body = json.dumps({"signature_name": "serving_json", "instances": ROWS}).encode()
    head = (
        f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    reply = _raw_exchange(server, head, then=body)
    assert reply.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK"
    assert len(json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"]) == len(ROWS)

    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    head = (
        f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    reply = _raw_exchange(server, head + chunked)
    assert reply.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK"


def test_many_requests_share_one_keep_alive_connection(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        request = f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        reader = sock.makefile("rb")
        for _ in range(5):
            sock.sendall(request)
            assert reader.readline() == b"HTTP/1.1 200 OK\r\n"
            headers = {}
            while (line := reader.readline()) != b"\r\n":
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            body = reader.read(int(headers["content-length"]))
            assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
