"""TF Serving's REST API on a small HTTP/1.1 server written on asyncio streams.

Routes (as TF Serving):
  GET  /v1/models/<name>[/versions/<v>]              version status
  GET  /v1/models/<name>[/versions/<v>]/metadata     signature defs
  POST /v1/models/<name>[/versions/<v>]:predict      {"instances": [...]} or {"inputs": ...}
  POST /v1/models/<name>[/versions/<v>]:classify     {"examples": [...], "context": {...}}
  POST /v1/models/<name>[/versions/<v>]:regress      same as classify
Every error is `{"error": "..."}` with the HTTP status TF Serving gives its status code.
The HTTP layer speaks keep-alive, Content-Length and chunked bodies, and `Expect: 100-continue`.
"""

import asyncio
import json
import logging
import re

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from components.model_versions import version_number
from serving.errors import ServingError, invalid
from serving.service import InferenceService
from serving.tensors import array_to_json, columns_to_arrays, float32_to_json, json_to_examples, rows_to_arrays

log = logging.getLogger("serving")

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<verb>predict|classify|regress))?$"
)
_REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable",
}
_MAX_HEADER_BYTES = 64 * 1024


def _json_body(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _error_body(message: str) -> bytes:
    return _json_body({"error": message})


class RestApi:
    """Turns (method, path, body) into (status, JSON body)."""

    def __init__(self, service: InferenceService):
        self.service = service

    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            return 200, _json_body(await self._route(method, path.split("?", 1)[0], body))
        except ServingError as e:
            return e.http_status, _error_body(e.message)
        except Exception as e:  # noqa: BLE001 - a server fault answers 500 and the server goes on
            log.exception("internal error serving %s %s", method, path)
            return 500, _error_body(f"internal server error: {type(e).__name__}: {e}")

    async def _route(self, method: str, path: str, body: bytes):
        match = _ROUTE.match(path)
        if not match:
            raise ServingError("NOT_FOUND", f"Malformed request: {method} {path}")
        name, verb = match["name"], match["verb"]
        version = None
        if match["version"] is not None:
            version = version_number(match["version"])
            if version is None:
                raise invalid(f"version must be an integer, got '{match['version']}'")
        want = "POST" if verb else "GET"
        if method != want:
            raise ServingError("NOT_FOUND", f"{method} is not allowed here; use {want} {path}", http_status=405)
        if match["metadata"]:
            return self._metadata(name, version)
        if verb is None:
            return json_format.MessageToDict(
                self.service.status(name, version),
                preserving_proto_field_name=True,
                including_default_value_fields=True,
            )
        request = _parse_json(body)
        mv = self.service.resolve(name, version)
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid("'signature_name' must be a string")
        if verb == "predict":
            return await self._predict(mv, signature_name, request)
        examples = json_to_examples(request.get("examples"), request.get("context"), mv.feature_kinds)
        if verb == "classify":
            _, results = await self.service.classify(mv, signature_name, examples)
            return {"results": [[[label, float32_to_json(score)] for label, score in r] for r in results]}
        _, results = await self.service.regress(mv, signature_name, examples)
        return {"results": [float32_to_json(value) for value in results]}

    def _metadata(self, name: str, version: int | None):
        response = self.service.metadata(name, version)
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

    async def _predict(self, mv, signature_name: str, request: dict):
        sig = mv.signature(signature_name)
        if ("instances" in request) == ("inputs" in request):
            raise invalid("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
        row_format = "instances" in request
        if row_format:
            arrays = rows_to_arrays(request["instances"], sig.inputs)
        else:
            arrays = columns_to_arrays(request["inputs"], sig.inputs)
        outputs = await self.service.predict(mv, sig, arrays)
        columns = {name: array_to_json(array, name) for name, array in outputs.items()}
        if not row_format:
            return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
        rows = sig.batch_size(arrays)
        if any(array.ndim == 0 or array.shape[0] != rows for array in outputs.values()):
            raise invalid("the model's outputs are not one per instance; use the columnar format ('inputs')")
        if len(columns) == 1:
            return {"predictions": next(iter(columns.values()))}
        return {"predictions": [{name: column[i] for name, column in columns.items()} for i in range(rows)]}


def _parse_json(body: bytes) -> dict:
    try:
        request = json.loads(body)  # accepts NaN and Infinity, as TF Serving's parser does
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(request, dict):
        raise invalid("the request body must be a JSON object")
    return request


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class HttpServer:
    """Minimal HTTP/1.1 server: one request at a time per connection, kept alive."""

    def __init__(self, api: RestApi, max_body_bytes: int):
        self.api = api
        self.max_body_bytes = max_body_bytes
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._connection, host, port, limit=_MAX_HEADER_BYTES)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # the client went away or sent something unreadable: drop the connection
        finally:
            self._connections.discard(task)
            writer.close()

    async def _one_request(self, reader, writer) -> bool:
        """Serves one request; returns whether to keep the connection open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                self._respond(writer, 400, _error_body("incomplete HTTP request"), close=True)
            return False
        except asyncio.LimitOverrunError:
            self._respond(writer, 431, _error_body("request headers are too large"), close=True)
            return False
        try:
            method, target, version, headers = _parse_head(head)
        except _HttpError as e:
            self._respond(writer, e.status, _error_body(str(e)), close=True)
            return False
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        try:
            body, drained = await self._read_body(reader, writer, headers)
        except _HttpError as e:
            # The body's length is unknown, so the connection cannot carry another request.
            self._respond(writer, e.status, _error_body(str(e)), close=True)
            return False
        if body is None:
            message = f"the request body is larger than this server's limit of {self.max_body_bytes} bytes (--max-request-bytes)"
            keep_alive = keep_alive and drained  # unread body bytes would be taken for the next request
            self._respond(writer, 413, _error_body(message), close=not keep_alive)
            return keep_alive
        status, payload = await self.api.handle(method, target, body)
        self._respond(writer, status, payload, close=not keep_alive)
        if writer.transport.get_write_buffer_size() > 64 * 1024:
            await writer.drain()
        return keep_alive

    async def _read_body(self, reader, writer, headers) -> tuple[bytes | None, bool]:
        """The body, or (None, drained) when it is over the limit; `drained` tells whether its
        bytes were read and thrown away, so the connection can go on."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._read_chunked(reader, writer, headers)
        length_text = headers.get("content-length")
        if length_text is None:
            return b"", True
        if not length_text.isdigit():
            raise _HttpError(400, f"bad Content-Length: {length_text!r}")
        length = int(length_text)
        if length > self.max_body_bytes:
            if headers.get("expect", "").lower() == "100-continue" or length > 4 * self.max_body_bytes:
                return None, False  # the client has not sent it (or too much to read for nothing)
            await _discard(reader, length)
            return None, True
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return await reader.readexactly(length), True

    async def _read_chunked(self, reader, writer, headers) -> tuple[bytes | None, bool]:
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        parts, size = [], 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                chunk = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _HttpError(400, "bad chunk size in chunked body") from None
            if chunk == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts), True
            size += chunk
            if size > self.max_body_bytes:
                return None, False
            parts.append(await reader.readexactly(chunk))
            await reader.readexactly(2)

    @staticmethod
    def _respond(writer, status: int, body: bytes, close: bool) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        writer.write(head.encode("latin-1") + body)


async def _discard(reader: asyncio.StreamReader, length: int) -> None:
    while length > 0:
        chunk = await reader.read(min(length, 1 << 20))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(chunk)


def _parse_head(head: bytes):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400, f"malformed request line: {lines[0][:100]!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _HttpError(400, f"malformed header line: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers
