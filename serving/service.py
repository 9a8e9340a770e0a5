"""What REST and gRPC share: finding the model and version a request names (by number, by
label, or the newest), running a signature through its batcher, classify/regress, the status
and metadata answers (as TF Serving protos), and the request metrics."""

import dataclasses
import time
import weakref

import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving.batching import Batcher
from serving.errors import ServingError, invalid, not_found
from serving.metrics import Metrics
from serving.model import (
    Signature,
    VersionBase,
    classification_results,
    examples_input_name,
    regression_results,
    require_classifier,
    require_regressor,
)
from serving.versions import ModelVersions

_STATE = get_model_status_pb2.ModelVersionStatus.State
_OK, _UNKNOWN = 0, 2  # tensorflow.error.Code


@dataclasses.dataclass(frozen=True)
class Limits:
    max_batch_size: int = 1024  # rows per model call
    batch_timeout_s: float = 0.0  # extra wait for a batch to fill (0: run as soon as the model is free)
    max_instances: int = 10_000  # rows per request
    max_queued_rows: int = 16_384  # rows waiting for the model, per signature; more is UNAVAILABLE


class InferenceService:
    def __init__(self, models: dict[str, ModelVersions], limits: Limits, metrics: Metrics):
        self.models = dict(models)  # replaced whole when the model config changes
        self.limits = limits
        self.metrics = metrics

    @property
    def ready(self) -> bool:
        """Every model has a version to serve."""
        return all(m.ready for m in self.models.values())

    def model(self, name: str, what: str) -> ModelVersions:
        versions = self.models.get(name)
        if versions is None:
            raise not_found(
                f"Servable not found for request: {what}: this server serves model(s) {sorted(self.models)}"
            )
        return versions

    def resolve(self, name: str, version: int | None = None, label: str = "") -> VersionBase:
        """The loaded version a request names: a number, a label, or neither (the newest)."""
        if label:
            versions = self.model(name, f"Specific({name}, label {label})")
            version = versions.label_version(label)
        else:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            versions = self.model(name, what)
        return versions.resolve(version)

    async def predict(self, mv: VersionBase, sig: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = sig.batch_size(inputs)
        if rows == 0:
            raise invalid("the request has an empty batch: send at least one instance")
        if rows > self.limits.max_instances:
            raise invalid(
                f"the request has {rows} instances; this server takes at most "
                f"{self.limits.max_instances} per request (--max-instances)"
            )
        if not sig.batchable:
            return await mv.call(sig.name, inputs)
        batcher = mv.batchers.get(sig.name)
        if batcher is None:
            on_batch, queue_gauge = self.metrics.batch_observer(mv.model_name, sig.name)
            # Through a weak reference: the version's process stops once no request holds it.
            batcher = mv.batchers[sig.name] = Batcher(
                lambda arrays, name=sig.name, ref=weakref.ref(mv): ref().call(name, arrays),
                self.limits.max_batch_size,
                self.limits.batch_timeout_s,
                self.limits.max_queued_rows,
                on_batch,
                queue_gauge,
            )
        return await batcher.submit(inputs, rows)

    async def classify(self, mv: VersionBase, signature_name: str, examples: list[bytes]):
        sig = mv.signature(signature_name)
        input_name = examples_input_name(sig)
        require_classifier(sig)
        outputs = await self.predict(mv, sig, {input_name: _strings(examples)})
        return sig, classification_results(outputs)

    async def regress(self, mv: VersionBase, signature_name: str, examples: list[bytes]):
        sig = mv.signature(signature_name)
        input_name = examples_input_name(sig)
        require_regressor(sig)
        outputs = await self.predict(mv, sig, {input_name: _strings(examples)})
        return sig, regression_results(outputs)

    def status(self, name: str, version: int | None = None, label: str = "") -> get_model_status_pb2.GetModelStatusResponse:
        versions = self.models.get(name)
        if versions is None:
            raise not_found(f"Could not find any versions of model {name}")
        if label:
            version = versions.label_version(label)
        statuses = versions.statuses()
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise not_found(f"Could not find version {version} of model {name}")
        if not statuses:
            raise not_found(f"Could not find any versions of model {name}: {versions.why_none()}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for s in statuses:
            entry = response.model_version_status.add(version=s.version, state=_STATE.Value(s.state))
            entry.status.error_code = _UNKNOWN if s.error else _OK
            entry.status.error_message = s.error
        return response

    def metadata(self, name: str, version: int | None = None, label: str = "") -> get_model_metadata_pb2.GetModelMetadataResponse:
        mv = self.resolve(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(name, mv.version))
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in mv.signature_defs.items():
            signature_defs.signature_def[key].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_defs)
        return response


class RequestRecord:
    """What a transport fills in while it serves one request, for the metrics."""

    __slots__ = ("started", "model_name", "version", "signature_name", "api")

    def __init__(self, api: str):
        self.started = time.perf_counter()
        self.api = api
        self.model_name = ""
        self.version = None
        self.signature_name = ""

    def found(self, mv: VersionBase, signature_name: str = "") -> None:
        self.model_name, self.version, self.signature_name = mv.model_name, mv.version, signature_name

    def done(self, metrics: Metrics, entrypoint: str, error: ServingError | None) -> None:
        metrics.request(self.model_name, self.version, self.signature_name, self.api, entrypoint,
                        error.code if error is not None else "OK", time.perf_counter() - self.started)


def model_spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(
        name=name, version=wrappers_pb2.Int64Value(value=version), signature_name=signature_name
    )


def _strings(values: list[bytes]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
