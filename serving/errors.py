"""One error type for everything a request can get wrong, with its REST and gRPC faces.

The codes are TensorFlow's canonical status codes, mapped to HTTP the way TF Serving's REST
server maps them, so a client sees the same status from our server as from the real one.
A message is meant for the client: it names the field at fault and never carries a server
path or a stack trace (those go to the server's log).
"""

import itertools
import logging
import re

import grpc

log = logging.getLogger("serving")

# code name -> HTTP status, as TF Serving's http_rest_api_handler maps them.
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "DEADLINE_EXCEEDED": 408,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNKNOWN": 500,
}


class ServingError(Exception):
    """A request that cannot be served, with a message meant for the person who sent it.

    `retry_after_s`: for UNAVAILABLE (a full queue, a server shutting down), how long the
    client should wait before it tries again (REST's `Retry-After` header)."""

    def __init__(self, code: str, message: str, http_status: int | None = None, retry_after_s: int | None = None):
        super().__init__(message)
        assert code in _HTTP_STATUS, code
        self.code = code
        self.message = message
        self.http_status = http_status or _HTTP_STATUS[code]
        self.retry_after_s = retry_after_s

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


def unavailable(message: str, retry_after_s: int = 1) -> ServingError:
    return ServingError("UNAVAILABLE", message, retry_after_s=retry_after_s)


class LoadError(Exception):
    """A version that could not be loaded; the message says why (no exception type to add)."""


_error_ids = itertools.count(1)


def internal(where: str) -> ServingError:
    """A fault in the server, not the client's: the exception being handled goes to the log
    under a number, and the client gets only that number."""
    error_id = next(_error_ids)
    log.exception("internal error %d in %s", error_id, where)
    return ServingError("INTERNAL", f"internal server error {error_id}; the server's log has the details")


# An absolute path of two or more parts, as TensorFlow puts them in its messages.
_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+[\w.@+-]*")


def without_paths(message: str) -> str:
    """A message from a library (TensorFlow, a loader) with every filesystem path replaced by
    `<path>`, fit to send to a client."""
    return _PATH.sub("<path>", message)
