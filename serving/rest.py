"""TF Serving's REST API, as a function of (method, path, body), whatever HTTP server runs it
(`serving/http.py`).

Routes (as TF Serving), where `<v>` is `/versions/<number>` or `/labels/<label>`, or nothing
for the newest version:
  GET  /v1/models/<name>[<v>]              version status
  GET  /v1/models/<name>[<v>]/metadata     signature defs
  POST /v1/models/<name>[<v>]:predict      {"instances": [...]} or {"inputs": ...}
  POST /v1/models/<name>[<v>]:classify     {"examples": [...], "context": {...}}
  POST /v1/models/<name>[<v>]:regress      same as classify
  GET  /monitoring/prometheus/metrics      Prometheus metrics (TF Serving's path)
and, for orchestrators (TF Serving has none):
  GET  /healthz                            liveness: 200 while the process serves
  GET  /readyz                             readiness: 200 when every model has a version
                                           loaded, 503 before and while shutting down
Every error is `{"error": "..."}` with the HTTP status TF Serving gives its status code;
UNAVAILABLE (a full batch queue) also carries `Retry-After`.
"""

import dataclasses
import re

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from components.model_versions import version_number
from serving import jsonio
from serving.errors import ServingError, internal, invalid
from serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from serving.service import InferenceService, RequestRecord
from serving.tensors import array_to_json, columns_to_arrays, json_to_examples, rows_to_arrays

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<verb>predict|classify|regress))?$"
)
JSON = b"application/json"
METRICS_PATH = "/monitoring/prometheus/metrics"
LIVE_PATH, READY_PATH = "/healthz", "/readyz"


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = JSON
    retry_after_s: int | None = None


def error_response(error: ServingError) -> Response:
    return Response(error.http_status, jsonio.dumps({"error": error.message}), retry_after_s=error.retry_after_s)


class RestApi:
    """Turns (method, path, body) into a `Response`."""

    def __init__(self, service: InferenceService, max_json_depth: int):
        self.service = service
        self.max_json_depth = max_json_depth
        self.shutting_down = False  # set by the server when it stops taking traffic

    async def handle(self, method: str, path: str, body: bytes) -> Response:
        path = path.split("?", 1)[0]
        if not path.startswith("/v1/"):
            return self._plain_route(method, path)
        record = RequestRecord("status")
        error = None
        try:
            return Response(200, await self._route(method, path, body, record))
        except ServingError as e:
            error = e
        except Exception:  # noqa: BLE001 - a server fault answers 500 and the server goes on
            error = internal(f"{method} {path}")
        finally:
            record.done(self.service.metrics, "REST", error)
        return error_response(error)

    def _plain_route(self, method: str, path: str) -> Response:
        if method not in ("GET", "HEAD"):
            return error_response(ServingError("NOT_FOUND", f"Malformed request: {method} {path}"))
        if path == METRICS_PATH:
            return Response(200, self.service.metrics.exposition(), METRICS_CONTENT_TYPE.encode())
        if path == LIVE_PATH:
            return Response(200, b'{"status":"live"}')
        if path == READY_PATH:
            if self.shutting_down:
                return Response(503, b'{"status":"shutting down"}')
            if not self.service.ready:
                waiting = sorted(name for name, m in self.service.models.items() if not m.ready)
                return Response(503, jsonio.dumps({"status": "not ready", "waiting_for": waiting}))
            return Response(200, b'{"status":"ready"}')
        return error_response(ServingError("NOT_FOUND", f"Malformed request: {method} {path}"))

    async def _route(self, method: str, path: str, body: bytes, record: RequestRecord) -> bytes:
        match = _ROUTE.match(path)
        if not match:
            raise ServingError("NOT_FOUND", f"Malformed request: {method} {path}")
        name, verb, label = match["name"], match["verb"], match["label"] or ""
        record.api = verb or ("metadata" if match["metadata"] else "status")
        version = None
        if match["version"] is not None:
            version = version_number(match["version"])
            if version is None:
                raise invalid(f"version must be an integer, got '{match['version']}'")
        want = "POST" if verb else "GET"
        if method != want:
            raise ServingError("NOT_FOUND", f"{method} is not allowed here; use {want} {path}", http_status=405)
        if name in self.service.models:
            record.model_name = name
        if match["metadata"]:
            return jsonio.dumps(self._metadata(name, version, label))
        if verb is None:
            status = self.service.status(name, version, label)
            return jsonio.dumps(json_format.MessageToDict(
                status, preserving_proto_field_name=True, including_default_value_fields=True))
        request = jsonio.parse(body, self.max_json_depth)
        if not isinstance(request, dict):
            raise invalid("the request body must be a JSON object")
        mv = self.service.resolve(name, version, label)
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid("'signature_name' must be a string")
        record.found(mv)
        if verb == "predict":
            return await self._predict(mv, signature_name, request, record)
        examples = json_to_examples(request.get("examples"), request.get("context"), mv.feature_kinds)
        if verb == "classify":
            sig, results = await self.service.classify(mv, signature_name, examples)
            record.signature_name = sig.name
            scores = [score for result in results for _, score in result]
            return jsonio.dumps({"results": [[[label, score] for label, score in r] for r in results]},
                                jsonio.non_finite([np.array(scores, np.float32)]))
        sig, results = await self.service.regress(mv, signature_name, examples)
        record.signature_name = sig.name
        return jsonio.dumps({"results": results}, jsonio.non_finite([results]))

    def _metadata(self, name: str, version: int | None, label: str):
        response = self.service.metadata(name, version, label)
        signature_defs = response.metadata["signature_def"]
        unpacked = get_model_metadata_pb2.SignatureDefMap()
        signature_defs.Unpack(unpacked)
        return {
            "model_spec": {
                "name": response.model_spec.name,
                "signature_name": "",
                "version": str(response.model_spec.version.value),
            },
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    unpacked, preserving_proto_field_name=True, including_default_value_fields=True
                )
            },
        }

    async def _predict(self, mv, signature_name: str, request: dict, record: RequestRecord) -> bytes:
        sig = mv.signature(signature_name)
        record.signature_name = sig.name
        if ("instances" in request) == ("inputs" in request):
            raise invalid("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
        row_format = "instances" in request
        if row_format:
            arrays = rows_to_arrays(request["instances"], sig.inputs, sig.fills)
        else:
            arrays = columns_to_arrays(request["inputs"], sig.inputs, sig.fills)
        outputs = await self.service.predict(mv, sig, arrays)
        non_finite = jsonio.non_finite(outputs.values())
        columns = {name: array_to_json(array, name) for name, array in outputs.items()}
        if not row_format:
            return jsonio.dumps({"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}, non_finite)
        rows = sig.batch_size(arrays)
        if any(array.ndim == 0 or array.shape[0] != rows for array in outputs.values()):
            raise invalid("the model's outputs are not one per instance; use the columnar format ('inputs')")
        if len(columns) == 1:
            return jsonio.dumps({"predictions": next(iter(columns.values()))}, non_finite)
        predictions = [{name: column[i] for name, column in columns.items()} for i in range(rows)]
        return jsonio.dumps({"predictions": predictions}, non_finite)
