"""The gRPC API, through TF Serving's official Python client stubs."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_testlib import MAX_INSTANCES, MAX_REQUEST_BYTES, MODEL_NAME, ROWS, example_bytes
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

APPROX = dict(rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def stub_for(srv):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.grpc_target))


def raw_request(rows, signature="serving_json", version=None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto([r["trip_miles"] for r in rows], tf.float32))
    request.inputs["company"].CopyFrom(tf.make_tensor_proto([r["company"] for r in rows], tf.string))
    request.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([r["trip_start_hour"] for r in rows], tf.int64))
    return request


def examples_input(rows, request):
    for row in rows:
        request.input.example_list.examples.add().ParseFromString(example_bytes(row))
    return request


def code_of(call) -> tuple:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_predict_raw_features(stubs, reference):
    predict, _ = stubs
    response = predict.Predict(raw_request(ROWS, version=1), timeout=10)
    assert response.model_spec.name == MODEL_NAME
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_json"
    got = tf.make_ndarray(response.outputs["probability"])
    assert got.tolist() == pytest.approx(reference().raw(ROWS)["probability"].tolist(), **APPROX)


def test_predict_serialized_examples_on_default_signature(stubs, reference):
    predict, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example_bytes(r) for r in ROWS]))
    response = predict.Predict(request, timeout=10)
    assert response.model_spec.signature_name == "serving_default"
    got = tf.make_ndarray(response.outputs["probability"])
    assert got.tolist() == pytest.approx(reference().raw(ROWS)["probability"].tolist(), **APPROX)


def test_predict_output_filter(multiclass_server):
    request = raw_request(ROWS)
    request.output_filter.append("probabilities")
    response = stub_for(multiclass_server).Predict(request, timeout=10)
    assert set(response.outputs) == {"probabilities"}
    assert tf.make_ndarray(response.outputs["probabilities"]).shape == (len(ROWS), 3)


def test_classify_binary_and_multiclass(stubs, multiclass_server, reference):
    predict, _ = stubs
    request = examples_input(ROWS, classification_pb2.ClassificationRequest())
    request.model_spec.name = MODEL_NAME
    response = predict.Classify(request, timeout=10)
    p = reference().raw(ROWS)["probability"]
    classifications = response.result.classifications
    assert [[c.label for c in cls.classes] for cls in classifications] == [["0", "1"]] * len(ROWS)
    assert [cls.classes[1].score for cls in classifications] == pytest.approx(p.tolist(), **APPROX)

    response = stub_for(multiclass_server).Classify(request, timeout=10)
    want = reference("multiclass").raw(ROWS)["probabilities"]
    for cls, row in zip(response.result.classifications, want):
        assert [c.label for c in cls.classes] == ["cash", "card", "other"]
        assert [c.score for c in cls.classes] == pytest.approx(row.tolist(), **APPROX)


def test_classify_merges_context_into_examples(stubs, reference):
    predict, _ = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    context = request.input.example_list_with_context.context
    context.features.feature["company"].bytes_list.value.append(b"Sun Taxi")
    context.features.feature["trip_start_hour"].int64_list.value.append(7)
    example = request.input.example_list_with_context.examples.add()
    example.features.feature["trip_miles"].float_list.value.append(1.5)
    response = predict.Classify(request, timeout=10)
    p = reference().raw(ROWS[:1])["probability"][0]
    assert response.result.classifications[0].classes[1].score == pytest.approx(float(p), **APPROX)


def test_regress(regression_server, reference):
    request = examples_input(ROWS, regression_pb2.RegressionRequest())
    request.model_spec.name = MODEL_NAME
    response = stub_for(regression_server).Regress(request, timeout=10)
    assert response.model_spec.version.value == 1
    want = reference("regression").raw(ROWS)["value"]
    assert [r.value for r in response.result.regressions] == pytest.approx(want.tolist(), **APPROX)


def test_model_metadata_and_status(stubs):
    predict, models = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    request.metadata_field.append("signature_def")
    response = predict.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_defs)
    assert {"serving_default", "serving_json", "transform_features"} <= set(signature_defs.signature_def)
    assert set(signature_defs.signature_def["serving_json"].inputs) == {"trip_miles", "company", "trip_start_hour"}

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL_NAME
    [status] = models.GetModelStatus(status_request, timeout=10).model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0 and status.status.error_message == ""


def _with(request, mutate):
    mutate(request)
    return request


@pytest.mark.parametrize(
    "make, code, message",
    [
        (lambda: _with(raw_request(ROWS), lambda r: setattr(r.model_spec, "name", "other")), grpc.StatusCode.NOT_FOUND, "Latest(other)"),
        (lambda: raw_request(ROWS, version=9), grpc.StatusCode.NOT_FOUND, "Specific(taxi, 9)"),
        (lambda: raw_request(ROWS, signature="nope"), grpc.StatusCode.FAILED_PRECONDITION, '"nope" not found'),
        (lambda: _with(raw_request(ROWS), lambda r: r.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([1.0] * 3, tf.float32))), grpc.StatusCode.INVALID_ARGUMENT, "expects DT_INT64"),
        (lambda: _with(raw_request(ROWS), lambda r: r.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto(np.ones((3, 2), np.float32)))), grpc.StatusCode.INVALID_ARGUMENT, "must have shape [-1]"),
        (lambda: _with(raw_request(ROWS, signature="serving_default"), lambda r: [r.inputs.pop(k) for k in list(r.inputs)]), grpc.StatusCode.INVALID_ARGUMENT, "missing ['examples']"),
        (lambda: _with(raw_request(ROWS), lambda r: r.inputs.pop("trip_start_hour")), grpc.StatusCode.INVALID_ARGUMENT, "trip_start_hour (data type: int64) is required"),
        (lambda: raw_request([]), grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
        (lambda: raw_request(ROWS[:1] * (MAX_INSTANCES + 1)), grpc.StatusCode.INVALID_ARGUMENT, "--max-instances"),
        (lambda: _with(raw_request(ROWS), lambda r: r.output_filter.append("nope")), grpc.StatusCode.INVALID_ARGUMENT, "unknown outputs ['nope']"),
    ],
)
def test_predict_errors(stubs, make, code, message):
    predict, _ = stubs
    got_code, details = code_of(lambda: predict.Predict(make(), timeout=10))
    assert got_code == code
    assert message in details


def test_message_over_the_size_limit_is_resource_exhausted(stubs):
    predict, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([b"x" * MAX_REQUEST_BYTES]))
    got_code, _ = code_of(lambda: predict.Predict(request, timeout=10))
    assert got_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    still_serving = predict.Predict(raw_request(ROWS), timeout=10)
    assert tf.make_ndarray(still_serving.outputs["probability"]).shape == (len(ROWS),)


def test_classify_and_regress_errors(stubs):
    predict, _ = stubs
    bad = classification_pb2.ClassificationRequest()
    bad.model_spec.name = MODEL_NAME
    example = bad.input.example_list.examples.add()
    example.features.feature["trip_miles"].float_list.value.append(1.0)  # no trip_start_hour
    code, details = code_of(lambda: predict.Classify(bad, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "trip_start_hour" in details

    unknown = examples_input(ROWS[:1], classification_pb2.ClassificationRequest())
    unknown.model_spec.name = MODEL_NAME
    unknown.input.example_list.examples[0].features.feature["colour"].bytes_list.value.append(b"red")
    code, details = code_of(lambda: predict.Classify(unknown, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown feature 'colour'" in details

    empty = classification_pb2.ClassificationRequest()
    empty.model_spec.name = MODEL_NAME
    code, _ = code_of(lambda: predict.Classify(empty, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    regress = examples_input(ROWS, regression_pb2.RegressionRequest())
    regress.model_spec.name = MODEL_NAME
    code, details = code_of(lambda: predict.Regress(regress, timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not a regressor" in details


def test_metadata_and_status_errors(stubs):
    predict, models = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    code, _ = code_of(lambda: predict.GetModelMetadata(request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # no metadata_field

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "other"
    code, details = code_of(lambda: models.GetModelStatus(status_request, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "other" in details
