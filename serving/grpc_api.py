"""TF Serving's gRPC services (PredictionService and ModelService) on grpc.aio, so the official
`tensorflow_serving.apis` client stubs work unchanged. Errors carry the status code TF Serving
would send (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, ...)."""

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

from serving.errors import ServingError, invalid
from serving.service import InferenceService, model_spec
from serving.tensors import array_to_proto, examples_from_input, proto_to_array

log = logging.getLogger("serving")


def _rpc(method):
    """Sends a ServingError as its gRPC status; any other exception as INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except ServingError as e:
            await context.abort(e.grpc_code, e.message)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - a server fault, not the client's
            log.exception("internal error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal server error: {type(e).__name__}: {e}")

    return wrapper


def _version(spec) -> int | None:
    if spec.HasField("version"):
        return spec.version.value
    if spec.version_label:
        raise invalid(f"version labels are not supported by this server (got '{spec.version_label}'); name a version number")
    return None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: InferenceService):
        self.service = service

    @_rpc
    async def Predict(self, request, context):
        name = request.model_spec.name
        mv = self.service.resolve(name, _version(request.model_spec))
        sig = mv.signature(request.model_spec.signature_name)
        missing = sorted(set(sig.inputs) - set(request.inputs))
        unknown = sorted(set(request.inputs) - set(sig.inputs))
        if missing or unknown:
            raise invalid(
                f"request inputs do not match signature '{sig.name}': missing {missing}, "
                f"unknown {unknown}; the signature takes {sorted(sig.inputs)}"
            )
        arrays = {key: proto_to_array(request.inputs[key], spec) for key, spec in sig.inputs.items()}
        wanted = list(request.output_filter) or list(sig.outputs)
        unknown = sorted(set(wanted) - set(sig.outputs))
        if unknown:
            raise invalid(f"output_filter names unknown outputs {unknown}; the signature has {sorted(sig.outputs)}")
        outputs = await self.service.predict(mv, sig, arrays)
        response = predict_pb2.PredictResponse(model_spec=model_spec(name, mv.version, sig.name))
        for key in wanted:
            response.outputs[key].CopyFrom(array_to_proto(outputs[key]))
        return response

    @_rpc
    async def Classify(self, request, context):
        name = request.model_spec.name
        mv = self.service.resolve(name, _version(request.model_spec))
        examples = examples_from_input(request.input, mv.feature_kinds)
        sig, results = await self.service.classify(mv, request.model_spec.signature_name, examples)
        response = classification_pb2.ClassificationResponse(model_spec=model_spec(name, mv.version, sig.name))
        for result in results:
            classes = response.result.classifications.add()
            for label, score in result:
                classes.classes.add(label=label, score=score)
        return response

    @_rpc
    async def Regress(self, request, context):
        name = request.model_spec.name
        mv = self.service.resolve(name, _version(request.model_spec))
        examples = examples_from_input(request.input, mv.feature_kinds)
        sig, results = await self.service.regress(mv, request.model_spec.signature_name, examples)
        response = regression_pb2.RegressionResponse(model_spec=model_spec(name, mv.version, sig.name))
        for value in results:
            response.result.regressions.add(value=value)
        return response

    @_rpc
    async def GetModelMetadata(self, request, context):
        fields = list(request.metadata_field)
        if not fields:
            raise invalid("GetModelMetadataRequest must name a metadata_field; this server has 'signature_def'")
        if fields != ["signature_def"]:
            raise invalid(f"metadata_field {fields} is not supported; this server has 'signature_def'")
        return self.service.metadata(request.model_spec.name, _version(request.model_spec))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: InferenceService):
        self.service = service

    @_rpc
    async def GetModelStatus(self, request, context):
        return self.service.status(request.model_spec.name, _version(request.model_spec))


def add_services(server: grpc.aio.Server, service: InferenceService) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(service), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
