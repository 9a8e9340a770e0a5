"""TF Serving's gRPC services (PredictionService and ModelService) on grpc.aio, so the official
`tensorflow_serving.apis` client stubs work unchanged. Errors carry the status code TF Serving
would send (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, ...).

Limits (server options, set by `serving/server.py` from its flags): at most
`max_concurrent_rpcs` RPCs run at once (more are refused by gRPC with RESOURCE_EXHAUSTED),
and messages are at most `max_request_bytes` in and `max_response_bytes` out
(RESOURCE_EXHAUSTED). A full batch queue is UNAVAILABLE, as over REST."""

import functools
import logging

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.errors import ServingError, internal, invalid
from serving.service import InferenceService, RequestRecord, model_spec
from serving.tensors import array_to_proto, examples_from_input, protos_to_arrays

log = logging.getLogger("serving")


def _rpc(api: str):
    """Sends a ServingError as its gRPC status, any other exception as INTERNAL (with no
    detail but a number to find in the log), and counts the request."""

    def decorate(method):
        @functools.wraps(method)
        async def wrapper(self, request, context):
            record = RequestRecord(api)
            error = None
            try:
                return await method(self, request, context, record)
            except ServingError as e:
                error = e
            except grpc.aio.AbortError:
                raise
            except Exception:  # noqa: BLE001 - a server fault, not the client's
                error = internal(method.__name__)
            finally:
                record.done(self.service.metrics, "GRPC", error)
            await context.abort(error.grpc_code, error.message)

        return wrapper

    return decorate


def _version(spec) -> tuple[int | None, str]:
    """(version number, label) a ModelSpec names; both empty for the newest version."""
    if spec.HasField("version"):
        return spec.version.value, ""
    return None, spec.version_label


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: InferenceService):
        self.service = service

    def _resolve(self, spec, record: RequestRecord):
        mv = self.service.resolve(spec.name, *_version(spec))
        record.found(mv)
        return mv

    @_rpc("predict")
    async def Predict(self, request, context, record):
        mv = self._resolve(request.model_spec, record)
        sig = mv.signature(request.model_spec.signature_name)
        record.signature_name = sig.name
        arrays = protos_to_arrays(request.inputs, sig.inputs, sig.fills, sig.name)
        wanted = list(request.output_filter) or list(sig.outputs)
        unknown = sorted(set(wanted) - set(sig.outputs))
        if unknown:
            raise invalid(f"output_filter names unknown outputs {unknown}; the signature has {sorted(sig.outputs)}")
        outputs = await self.service.predict(mv, sig, arrays)
        response = predict_pb2.PredictResponse(model_spec=model_spec(mv.model_name, mv.version, sig.name))
        for key in wanted:
            response.outputs[key].CopyFrom(array_to_proto(outputs[key]))
        return response

    @_rpc("classify")
    async def Classify(self, request, context, record):
        mv = self._resolve(request.model_spec, record)
        examples = examples_from_input(request.input, mv.feature_kinds)
        sig, results = await self.service.classify(mv, request.model_spec.signature_name, examples)
        record.signature_name = sig.name
        response = classification_pb2.ClassificationResponse(model_spec=model_spec(mv.model_name, mv.version, sig.name))
        for result in results:
            classes = response.result.classifications.add()
            for label, score in result:
                classes.classes.add(label=label, score=score)
        return response

    @_rpc("regress")
    async def Regress(self, request, context, record):
        mv = self._resolve(request.model_spec, record)
        examples = examples_from_input(request.input, mv.feature_kinds)
        sig, results = await self.service.regress(mv, request.model_spec.signature_name, examples)
        record.signature_name = sig.name
        response = regression_pb2.RegressionResponse(model_spec=model_spec(mv.model_name, mv.version, sig.name))
        for value in results:
            response.result.regressions.add(value=value)
        return response

    @_rpc("metadata")
    async def GetModelMetadata(self, request, context, record):
        fields = list(request.metadata_field)
        if not fields:
            raise invalid("GetModelMetadataRequest must name a metadata_field; this server has 'signature_def'")
        if fields != ["signature_def"]:
            raise invalid(f"metadata_field {fields} is not supported; this server has 'signature_def'")
        if request.model_spec.name in self.service.models:
            record.model_name = request.model_spec.name
        return self.service.metadata(request.model_spec.name, *_version(request.model_spec))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: InferenceService):
        self.service = service

    @_rpc("status")
    async def GetModelStatus(self, request, context, record):
        if request.model_spec.name in self.service.models:
            record.model_name = request.model_spec.name
        return self.service.status(request.model_spec.name, *_version(request.model_spec))


def add_services(server: grpc.aio.Server, service: InferenceService) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(service), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
