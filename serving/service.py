"""What REST and gRPC share: finding the version a request names, running a signature through
its batcher, classify/regress, and the status and metadata answers (as TF Serving protos)."""

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving.batching import Batcher
from serving.errors import invalid, not_found
from serving.model import (
    LoadedVersion,
    Signature,
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


class InferenceService:
    def __init__(self, versions: ModelVersions, limits: Limits):
        self.versions = versions
        self.limits = limits
        # One model thread: TF already spreads one call over the cores, and one call at a time
        # is what lets requests queue up and batch.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model")

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    @property
    def model_name(self) -> str:
        return self.versions.name

    def resolve(self, name: str, version: int | None) -> LoadedVersion:
        if name != self.model_name:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(
                f"Servable not found for request: {what}: this server serves model '{self.model_name}'"
            )
        return self.versions.resolve(version)

    async def predict(self, mv: LoadedVersion, sig: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = sig.batch_size(inputs)
        if rows == 0:
            raise invalid("the request has an empty batch: send at least one instance")
        if rows > self.limits.max_instances:
            raise invalid(
                f"the request has {rows} instances; this server takes at most "
                f"{self.limits.max_instances} per request (--max-instances)"
            )
        if not sig.batchable:
            return await asyncio.get_running_loop().run_in_executor(self._executor, mv.run, sig.name, inputs)
        batcher = mv.batchers.get(sig.name)
        if batcher is None:
            batcher = mv.batchers[sig.name] = Batcher(
                lambda arrays, name=sig.name: mv.run(name, arrays),
                self.limits.max_batch_size,
                self.limits.batch_timeout_s,
                self._executor,
            )
        return await batcher.submit(inputs, rows)

    async def classify(self, mv: LoadedVersion, signature_name: str, examples: list[bytes]):
        sig = mv.signature(signature_name)
        input_name = examples_input_name(sig)
        require_classifier(sig)
        outputs = await self.predict(mv, sig, {input_name: _strings(examples)})
        return sig, classification_results(outputs)

    async def regress(self, mv: LoadedVersion, signature_name: str, examples: list[bytes]):
        sig = mv.signature(signature_name)
        input_name = examples_input_name(sig)
        require_regressor(sig)
        outputs = await self.predict(mv, sig, {input_name: _strings(examples)})
        return sig, regression_results(outputs)

    def status(self, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
        if name != self.model_name:
            raise not_found(f"Could not find any versions of model {name}")
        statuses = self.versions.statuses()
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise not_found(f"Could not find version {version} of model {name}")
        if not statuses:
            raise not_found(f"Could not find any versions of model {name}: {self.versions.why_none()}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for s in statuses:
            entry = response.model_version_status.add(version=s.version, state=_STATE.Value(s.state))
            entry.status.error_code = _UNKNOWN if s.error else _OK
            entry.status.error_message = s.error
        return response

    def metadata(self, name: str, version: int | None) -> get_model_metadata_pb2.GetModelMetadataResponse:
        mv = self.resolve(name, version)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(name, mv.version))
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in mv.signature_defs.items():
            signature_defs.signature_def[key].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_defs)
        return response


def model_spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(
        name=name, version=wrappers_pb2.Int64Value(value=version), signature_name=signature_name
    )


def _strings(values: list[bytes]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
