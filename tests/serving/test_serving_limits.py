"""Each limit of the server, as a hostile client meets it: the status (or gRPC code) it gets,
and that the server still answers a normal request afterwards. Small limits and short
timeouts keep it fast (benchmarks/serve_bench.py runs the same cases at full size)."""

import json
import socket
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from serving_testlib import MODEL_NAME, ROWS
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

TIMEOUT = 0.6
LIMITS = dict(header_timeout_seconds=TIMEOUT, body_timeout_seconds=TIMEOUT, keep_alive_seconds=TIMEOUT,
              max_connections=6, max_header_bytes=4096, max_json_depth=8, max_buffered_bytes=300_000)
PREDICT = f"/v1/models/{MODEL_NAME}:predict"
BODY = json.dumps({"signature_name": "serving_json", "instances": ROWS}).encode()


@pytest.fixture(scope="module")
def limited(served_model_dir):
    from serving_testlib import start_server

    srv = start_server(served_model_dir, **LIMITS)
    yield srv
    srv.stop()


def healthy(srv) -> None:
    """A normal request is answered, quickly, on a new connection."""
    start = time.perf_counter()
    response = requests.post(srv.rest_url + PREDICT, data=BODY, timeout=10)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(ROWS)
    assert time.perf_counter() - start < 5


def connect(srv) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10)


def reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_of(data: bytes) -> int | None:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def head(length=None, extra="") -> bytes:
    lines = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
    if length is not None:
        lines += f"Content-Length: {length}\r\n"
    return (lines + "\r\n").encode()


def test_half_sent_headers_get_408_and_idle_connections_are_closed(limited):
    slow = [connect(limited) for _ in range(3)]
    idle = [connect(limited) for _ in range(2)]
    for sock in slow:
        sock.sendall(head()[:30])  # half a request line
    started = time.monotonic()
    outcomes = [status_of(reply(sock)) for sock in slow + idle]
    assert outcomes == [408, 408, 408, None, None]  # idle: closed without a word
    assert time.monotonic() - started < TIMEOUT + 3
    healthy(limited)


def test_a_kept_alive_connection_idle_too_long_is_closed(limited):
    with connect(limited) as sock:
        sock.sendall(head(len(BODY)) + BODY)
        first = sock.recv(65536)
        assert status_of(first) == 200
        time.sleep(TIMEOUT + 0.5)
        assert reply(sock) == b""  # closed by the keep-alive timeout
    healthy(limited)


def test_a_body_that_does_not_arrive_in_time_is_408(limited):
    with connect(limited) as sock:
        sock.sendall(head(len(BODY)) + BODY[:10])
        data = reply(sock)
    assert status_of(data) == 408 and b"did not arrive" in data
    healthy(limited)


def test_headers_over_the_limit_are_431(limited):
    with connect(limited) as sock:
        sock.sendall(head(extra="X-Junk: " + "j" * 5000 + "\r\n"))
        data = reply(sock)
    assert status_of(data) == 431
    healthy(limited)


def test_connections_beyond_the_cap_are_refused_then_stale_ones_make_room(limited):
    held = [connect(limited) for _ in range(LIMITS["max_connections"])]
    time.sleep(0.2)
    with connect(limited) as extra:
        data = reply(extra)
    assert status_of(data) == 503 and b"retry-after: 1" in data.lower()
    time.sleep(1.1)  # now the held ones have waited over a second without sending anything
    healthy(limited)  # takes the place of the oldest
    assert reply(held[0]) == b""  # the one evicted
    for sock in held:
        sock.close()


def test_oversized_bodies_are_413(limited):
    from serving_testlib import MAX_REQUEST_BYTES

    # Slightly over: read, dropped, and the connection goes on.
    with requests.Session() as session:
        big = b'{"instances": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
        response = session.post(limited.rest_url + PREDICT, data=big, timeout=10)
        assert response.status_code == 413 and "--max-request-bytes" in response.json()["error"]
        assert session.post(limited.rest_url + PREDICT, data=BODY, timeout=10).status_code == 200
    # Far over, announced: answered at once, before the body, and closed.
    with connect(limited) as sock:
        sock.sendall(head(100 * MAX_REQUEST_BYTES))
        data = reply(sock)
    assert status_of(data) == 413 and b"connection: close" in data.lower()
    # Expect: 100-continue over the limit: no 100 Continue, a 413.
    with connect(limited) as sock:
        sock.sendall(head(2 * MAX_REQUEST_BYTES, "Expect: 100-continue\r\n"))
        data = reply(sock)
    assert status_of(data) == 413 and b"100 Continue" not in data
    # Chunked, with no length announced: refused as soon as it is over.
    with connect(limited) as sock:
        sock.sendall(head(extra="Transfer-Encoding: chunked\r\n"))
        chunk = b"%x\r\n%s\r\n" % (32768, b" " * 32768)
        try:
            for _ in range(MAX_REQUEST_BYTES // 32768 + 4):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = reply(sock)
    assert status_of(data) == 413
    healthy(limited)


def test_deeply_nested_json_is_400(limited):
    for body in (b"[" * 9 + b"]" * 9, b"[" * 60_000 + b"]" * 60_000, b'{"a": ' * 20 + b"NaN" + b"}" * 20):
        response = requests.post(limited.rest_url + PREDICT, data=body, timeout=10)
        assert response.status_code == 400, body[:20]
        assert "--max-json-depth" in response.json()["error"]
    shallow = {"signature_name": "serving_json", "inputs": {k: [r[k] for r in ROWS] for k in ROWS[0]}}
    assert requests.post(limited.rest_url + PREDICT, json=shallow, timeout=10).status_code == 200


def test_request_bodies_held_at_once_are_bounded(limited):
    # Two clients each most of the way through a 200 kB body: the second goes over the 300 kB budget.
    payload = b'{"instances": "' + b"x" * 200_000 + b'"}'
    first, second = connect(limited), connect(limited)
    try:
        first.sendall(head(len(payload)) + payload[:190_000])
        time.sleep(0.1)
        second.sendall(head(len(payload)) + payload[:190_000])
        data = reply(second)
        assert status_of(data) == 503 and b"--max-buffered-bytes" in data and b"retry-after" in data.lower()
    finally:
        first.close()
        second.close()
    healthy(limited)


def test_error_bodies_carry_no_server_path_or_exception(limited, served_model_dir):
    for path, body in ((PREDICT, b"{"), (PREDICT, b'{"instances": 3}'), ("/v1/models/other:predict", BODY),
                       ("/v1/models/taxi/versions/9:predict", BODY)):
        response = requests.post(limited.rest_url + path, data=body, timeout=10)
        assert 400 <= response.status_code < 500
        text = response.text
        assert served_model_dir not in text and "Traceback" not in text and "/tmp" not in text


# ---------------------------------------------------------------- the batch queue and gRPC


@pytest.fixture
def slow_batches(serve, served_model_dir):
    """A server whose batches wait 1 s to fill, with room for 64 queued rows, and one gRPC call at a time."""
    return serve(served_model_dir, batch_timeout_ms=1000, max_batch_size=64, max_queued_rows=64,
                 grpc_max_concurrent_rpcs=1)


def _rest_rows(srv, n, results, index):
    rows = [ROWS[i % len(ROWS)] for i in range(n)]
    results[index] = requests.post(srv.rest_url + PREDICT, json={"signature_name": "serving_json", "instances": rows}, timeout=10)


def test_a_full_batch_queue_is_503_with_retry_after(slow_batches):
    results = [None, None]
    first = threading.Thread(target=_rest_rows, args=(slow_batches, 40, results, 0))
    first.start()
    time.sleep(0.3)  # 40 rows wait for the batch to fill
    _rest_rows(slow_batches, 30, results, 1)  # 70 > 64
    first.join()
    assert results[1].status_code == 503 and results[1].headers["Retry-After"] == "1"
    assert "--max-queued-rows" in results[1].json()["error"]
    assert results[0].status_code == 200 and len(results[0].json()["predictions"]) == 40
    healthy(slow_batches)


def _grpc_request(n):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "serving_json"
    rows = [ROWS[i % len(ROWS)] for i in range(n)]
    request.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto([r["trip_miles"] for r in rows], tf.float32))
    request.inputs["company"].CopyFrom(tf.make_tensor_proto([r["company"] for r in rows]))
    request.inputs["trip_start_hour"].CopyFrom(tf.make_tensor_proto([r["trip_start_hour"] for r in rows], tf.int64))
    return request


def test_grpc_full_queue_is_unavailable_and_concurrent_rpcs_are_capped(slow_batches):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(slow_batches.grpc_target))
    results = [None]
    holder = threading.Thread(target=_rest_rows, args=(slow_batches, 40, results, 0))
    holder.start()
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_grpc_request(30), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "--max-queued-rows" in info.value.details()
    holder.join()

    waiting = stub.Predict.future(_grpc_request(1), timeout=10)  # holds the one gRPC slot for ~1 s
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_grpc_request(1), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert waiting.result().outputs["probability"].tensor_shape.dim[0].size == 1
    assert tf.make_ndarray(stub.Predict(_grpc_request(2), timeout=10).outputs["probability"]).shape == (2,)


def test_bodies_that_stall_together_are_refused_over_the_last_tenth_of_the_timeout(serve, served_model_dir):
    """40 clients that stall in the middle of their bodies at the same moment get their 408s
    spread over the timeout's last tenth (60 ms here), not all in one turn of the event loop
    (which held every other request back for ~100 ms for 500 of them)."""
    import selectors

    srv = serve(served_model_dir, body_timeout_seconds=TIMEOUT, max_connections=64)
    socks = [connect(srv) for _ in range(40)]
    selector = selectors.DefaultSelector()
    started = time.monotonic()
    for sock in socks:
        sock.sendall(head(len(BODY)) + BODY[:10])
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    answered = {}
    while len(answered) < len(socks) and time.monotonic() - started < 10:
        for key, _ in selector.select(timeout=1):
            answered[key.fileobj] = (time.monotonic() - started, key.fileobj.recv(4096))
            selector.unregister(key.fileobj)
    for sock in socks:
        sock.close()
    assert len(answered) == len(socks)
    assert all(status_of(data) == 408 for _, data in answered.values())
    times = sorted(t for t, _ in answered.values())
    assert times[0] >= 0.85 * TIMEOUT and times[-1] < TIMEOUT + 1.0
    assert times[-1] - times[0] > 0.025, times  # spread, not answered together
    healthy(srv)
