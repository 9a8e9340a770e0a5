"""HTTP for the REST API: uvicorn (with httptools' C parser, on uvloop) runs `RestApi`, with the
limits a server facing unknown clients needs. Chosen by measuring it beside aiohttp and
granian (benchmarks/RESULTS_serving.md).

Limits (each a `--flag` of the server; `HttpLimits` holds them):
- at most `max_connections` connections are open: a new one takes the place of the oldest
  that has been waiting more than a second for its first request's headers (idle or slow),
  else it is answered 503 and closed at once;
- a request's headers must arrive within `header_timeout_s` of the connection's start (or of
  the first byte of the next request on a kept-alive connection), else the connection is
  closed (with a 408 if part of them came); they may be at most `max_header_bytes`, else
  431 and close;
- its body must arrive within `body_timeout_s`, else 408 and close; a body larger than
  `max_request_bytes` is 413: read and dropped when it is at most 4x the limit (the
  connection goes on; a client that sent `Expect: 100-continue` is told before it sends
  it), else answered at once and the connection closed;
- the bodies being read or waiting to be parsed take at most `max_buffered_bytes` in all;
  past it, a request is answered 503 with `Retry-After` (so memory is bounded whatever the
  number of clients);
- a kept-alive connection idle for `keep_alive_s` is closed (uvicorn's own timeout).

The header and body timeouts each end somewhere in their last tenth (`_spread`): clients that
connected together and stall together (a slow-body attack, or a stalled proxy in front of
hundreds of clients) are answered over that tenth, not all in one turn of the event loop,
which held every other request back for ~100 ms for 500 of them.
uvicorn already refuses malformed HTTP with 400 and closes, and answers pipelined
requests in order.
"""

import asyncio
import dataclasses
import logging
import random
import socket

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.errors import ServingError
from serving.metrics import Metrics
from serving.rest import Response, RestApi, error_response

log = logging.getLogger("serving")


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 20.0
    max_header_bytes: int = 64 * 1024
    max_request_bytes: int = 10 * 1024 * 1024
    max_buffered_bytes: int = 256 * 1024 * 1024
    grace_s: float = 10.0  # on stop: how long requests in flight may take to finish


def _raw_response(status: int, reason: str, message: str, retry_after: bool = False) -> bytes:
    body = ('{"error":"%s"}' % message).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        + ("retry-after: 1\r\n" if retry_after else "")
        + "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _JoinedWrites:
    """A transport that sends the writes of one turn of the event loop as one: uvicorn writes
    a response's head and its body separately, two send() system calls and two TCP segments
    (the socket has TCP_NODELAY); joined, a response costs one of each. Everything but
    `write` and `close` goes to the real transport."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport, loop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():  # else the client is gone: nothing to send
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _spread(timeout_s: float) -> float:
    """A timeout cut to somewhere in its last tenth, so that timeouts started together do
    not all expire in the same instant."""
    return timeout_s * (0.9 + 0.1 * random.random())


# At the cap, a new connection may take the place of a fresh one (no request answered yet)
# that has been open at least this long without sending its headers.
_EVICTABLE_AFTER_S = 1.0


def _protocol_class(limits: HttpLimits, metrics: Metrics):
    """uvicorn's httptools protocol, with the connection cap, the header timeout and the
    header size limit added (uvicorn has none of the three).

    At the cap, a new connection takes the place of the oldest connection that has had no
    request answered and has waited more than a second for its headers (closed, or answered
    408 if it sent part of them), so that slow or idle clients cannot lock new ones out for
    long; kept-alive connections of clients already served are not evicted (their keep-alive
    timeout closes them). With no such connection, the new one is answered 503 and closed."""
    too_many = _raw_response(503, "Service Unavailable", "the server has too many connections; retry shortly", True)
    slow = _raw_response(408, "Request Timeout", f"the request headers did not arrive within {limits.header_timeout_s:g} s")
    too_large = _raw_response(431, "Request Header Fields Too Large", f"the request headers are over {limits.max_header_bytes} bytes")
    live: set = set()  # connections open and not being closed
    fresh: dict = {}  # connection -> when it opened, for those with no request answered yet (oldest first)

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._header_timer = None
            self._header_bytes = 0
            self._eof = False
            if len(live) >= limits.max_connections and not self._evict_one():
                metrics.refused("connections")
                transport.write(too_many)
                transport.close()
                return
            self.transport = _JoinedWrites(transport, self.loop)
            live.add(self)
            metrics.connections.inc()
            fresh[self] = self.loop.time()
            self._start_header_timer()

        def connection_lost(self, exc):
            self._forget()
            super().connection_lost(exc)

        def _evict_one(self) -> bool:
            """Closes the oldest fresh connection still without headers; False if none is old enough."""
            for oldest, opened in fresh.items():
                if self.loop.time() - opened < _EVICTABLE_AFTER_S:
                    return False
                metrics.refused("connections_evicted")
                oldest._close(slow if oldest._header_bytes else b"")
                return True
            return False

        def _forget(self) -> None:
            fresh.pop(self, None)
            self._stop_header_timer()
            if self in live:
                live.discard(self)
                metrics.connections.dec()

        def _close(self, response: bytes) -> None:
            self._forget()
            if not self.transport.is_closing():
                if response:
                    self.transport.write(response)
                self.transport.close()

        def _start_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(_spread(limits.header_timeout_s), self._headers_late)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            metrics.refused("header_timeout")
            self._close(slow if self._header_bytes else b"")

        def data_received(self, data: bytes) -> None:
            if self._header_timer is not None:  # waiting for headers: count theirs, not the body's
                end = data.find(b"\r\n\r\n")
                self._header_bytes += len(data) if end < 0 else end
                if self._header_bytes > limits.max_header_bytes:
                    metrics.refused("header_size")
                    self._close(too_large)
                    return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self.transport.is_closing() and self in live:
                self._start_header_timer()  # from the first byte of a kept-alive connection's next request

        def on_headers_complete(self) -> None:
            self._stop_header_timer()
            self._header_bytes = 0
            fresh.pop(self, None)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._eof and not self.transport.is_closing():
                self.transport.close()

        def eof_received(self):
            # A client that half-closes after its request still gets the answer; then the
            # connection closes (uvicorn would close it at once).
            self._eof = True
            return self.cycle is not None and not self.cycle.response_complete

    return LimitedHttpToolsProtocol


class HttpApp:
    """The ASGI application: reads the body within the limits, runs the REST API, answers."""

    def __init__(self, api: RestApi, limits: HttpLimits, metrics: Metrics):
        self.api = api
        self.limits = limits
        self.metrics = metrics
        self.buffered = 0  # bytes of request bodies held now

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body, reserved, close = await self._read_body(scope, receive)
        if isinstance(body, Response):
            return await _send(send, body, close)
        try:
            response = await self.api.handle(scope["method"], scope["path"], body)
        finally:
            self.buffered -= reserved
        await _send(send, response, close)

    async def _read_body(self, scope, receive):
        """(body, bytes reserved in the budget, close the connection after?), or a Response
        to send instead of running the request."""
        limits = self.limits
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return _error(400, "INVALID_ARGUMENT", "bad Content-Length"), 0, True
        max_bytes = limits.max_request_bytes
        if length is not None and length > max_bytes:
            self.metrics.refused("body_size")
            if length > 4 * max_bytes or _expects_continue(scope):
                return _too_large(max_bytes), 0, True  # not sent yet (100-continue), or too much to read for nothing
            drained = await self._drain(receive, length)
            return _too_large(max_bytes), 0, not drained
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _spread(limits.body_timeout_s)
        reserved = 0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    self.metrics.refused("body_timeout")
                    message = f"the request body did not arrive within {limits.body_timeout_s:g} s"
                    return _error(408, "DEADLINE_EXCEEDED", message), 0, True
                if message["type"] == "http.disconnect":
                    return _error(400, "INVALID_ARGUMENT", "the client went away"), 0, True
                chunk = message.get("body", b"")
                if chunk:
                    if len(body) + len(chunk) > max_bytes:
                        self.metrics.refused("body_size")
                        return _too_large(max_bytes), 0, True
                    if self.buffered + len(chunk) > limits.max_buffered_bytes:
                        self.metrics.refused("buffered_bytes")
                        error = ServingError("UNAVAILABLE", "the server holds too many request bodies now "
                                             "(--max-buffered-bytes); retry shortly", retry_after_s=1)
                        return error_response(error), 0, True
                    self.buffered += len(chunk)
                    reserved += len(chunk)
                    body += chunk
                if not message.get("more_body", False):
                    reserved, kept = 0, reserved  # from here on, the caller gives it back
                    return body, kept, False
        finally:
            self.buffered -= reserved

    async def _drain(self, receive, length: int) -> bool:
        """Reads and drops a body (within the body timeout); whether it was read whole."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _spread(self.limits.body_timeout_s)
        seen = 0
        while seen < length:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                return False
            if message["type"] == "http.disconnect":
                return False
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return True


def _expects_continue(scope) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"])


def _error(status: int, code: str, message: str) -> Response:
    return error_response(ServingError(code, message, http_status=status))


def _too_large(max_bytes: int) -> Response:
    return _error(413, "RESOURCE_EXHAUSTED", f"the request body is over {max_bytes} bytes (--max-request-bytes)")


async def _send(send, response: Response, close: bool) -> None:
    headers = [(b"content-type", response.content_type), (b"content-length", str(len(response.body)).encode())]
    if response.retry_after_s is not None:
        headers.append((b"retry-after", str(response.retry_after_s).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; OSError names the address when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen for REST on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


class HttpServer:
    """uvicorn, serving `api` on a socket, within `limits`, until `stop()`."""

    def __init__(self, api: RestApi, limits: HttpLimits, metrics: Metrics):
        self.app = HttpApp(api, limits, metrics)
        config = uvicorn.Config(
            self.app,
            loop="none",  # the server's own loop (uvloop)
            http=_protocol_class(limits, metrics),
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=limits.keep_alive_s,
            timeout_graceful_shutdown=limits.grace_s,
            backlog=2048,
            server_header=False,
            proxy_headers=False,  # clients' addresses are not used; its middleware cost ~10% a request
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task | None = None

    async def start(self, sock: socket.socket) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError("the REST server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stops accepting, lets requests in flight finish (within the grace period), closes."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
