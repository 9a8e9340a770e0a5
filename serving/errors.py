"""One error type for everything a request can get wrong, with its REST and gRPC faces.

The codes are TensorFlow's canonical status codes, mapped to HTTP the way TF Serving's REST
server maps them, so a client sees the same status from our server as from the real one.
"""

import grpc

# code name -> HTTP status, as TF Serving's http_rest_api_handler maps them.
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNKNOWN": 500,
}


class ServingError(Exception):
    """A request that cannot be served, with a message meant for the person who sent it."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(message)
        assert code in _HTTP_STATUS, code
        self.code = code
        self.message = message
        self.http_status = http_status or _HTTP_STATUS[code]

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return grpc.StatusCode[self.code]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def precondition(message: str) -> ServingError:
    return ServingError("FAILED_PRECONDITION", message)
