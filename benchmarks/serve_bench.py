"""Load test for the model server (serving/): throughput and latency over REST and gRPC, a
version swap under load, and hostile clients; every figure the serving targets need, in one
run, printed as tables and a list of targets met or missed.

    .venv/bin/python benchmarks/serve_bench.py --serving-dir output/serving/taxi --model-name taxi
    .venv/bin/python benchmarks/serve_bench.py                    # the demo model (serving/demo_model.py)
    .venv/bin/python benchmarks/serve_bench.py --http uvicorn aiohttp granian --no-swap --no-hostile --rounds 2

Load comes from C programs, so that the load generator does not take the server's CPU as a
Python client would: wrk for REST (`apt-get install -y wrk`) and h2load for gRPC (`apt-get
install -y nghttp2-client`; it sends the serialized PredictRequest as gRPC frames over
HTTP/2, and the gRPC status of each call is read from the server's own metrics). Requests go
to the `serving_json` signature (one row: `--batch 1`; 100 rows: `--batch 100`), with values
made from the model's metadata. Each scenario runs `--warmup` s unmeasured, then `--seconds`.

The server runs in its own process (`python -m serving`, or `benchmarks/http_candidates.py`
for `--http` libraries other than uvicorn) on 127.0.0.1 with free ports, on a temporary copy
of the newest version. With several `--http` libraries, each round runs them in turn (the
order reversed every other round) and prints each one's throughput as a ratio to the first
library's in the same round: on a shared machine only those ratios mean much. `--build
LABEL=DIR` (repeated) compares server trees the same way (another commit's `serving/` and
`components/`, from `git worktree add` or `git archive`), for a change's before and after:

    .venv/bin/python benchmarks/serve_bench.py --serving-dir output/serving/taxi --build base=/tmp/base --build new=. --rounds 2

Each scenario also reports the server's CPU time per request (its own process and, in
parentheses, its model processes): a figure other work on the machine disturbs much less.

Swap: REST (wrk) and gRPC (h2load) load at concurrency 8 each while version 2 (a copy of the
model) is pushed as the Pusher does (`.tmp-2`, then rename); the measured window runs from
the push to 1 s after version 2 is AVAILABLE. Hostile: a second server, with its timeouts
cut to `--hostile-timeout` s so the run takes seconds, gets each kind of bad client while one
healthy client sends a request every 20 ms; each case prints its outcome, the healthy
requests' worst latency, and the server's memory.

`--grpc-floor` adds the gRPC scenarios against `FloorServer`: grpcio's asyncio server alone,
answering a fixed response with no model. It is the ceiling of any gRPC server on grpcio's
asyncio API on this machine, to read the gRPC rows against.

Only loopback traffic; every loop is bounded in time and count.
"""

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import statistics
import threading
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the driver imports TF's protos only
warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
SIGNATURE = "serving_json"
_SAMPLE = {"DT_STRING": "Sun Taxi", "DT_FLOAT": 1.5, "DT_DOUBLE": 1.5}
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "errors": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\\n',
    summary.requests, e.connect + e.read + e.write + e.timeout + e.status, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""
_GRPC_PATH = "/tensorflow.serving.PredictionService/Predict"


def _quiet_env(root=ROOT):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(dict.fromkeys([root, ROOT])))


def _variants(args) -> list[tuple[str, str, str]]:
    """The servers to compare: (label, HTTP library, tree), from `--build` or else `--http`."""
    if not args.build:
        return [(library, library, ROOT) for library in args.http]
    variants = []
    for item in args.build:
        label, _, tree = item.rpartition("=")
        tree = os.path.abspath(tree)
        if not os.path.isfile(os.path.join(tree, "serving", "server.py")):
            sys.exit(f"--build {item}: {tree} holds no serving/server.py")
        variants.append((label or os.path.basename(tree), args.http[0], tree))
    return variants


def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        sys.exit(f"{tool} is not installed: apt-get install -y {package}")


# ------------------------------------------------------------------------------ the server


class Server:
    """A server process on free ports, stopped by `stop()`."""

    def __init__(self, serving_dir, model_name, workdir, http="uvicorn", extra_args=(), log_name="server.log", root=ROOT):
        """`root`: the tree whose `serving` package runs (another build, for `--build`)."""
        program = ["-m", "serving"] if http == "uvicorn" else [os.path.join(ROOT, "benchmarks", "http_candidates.py"), "--library", http]
        command = [sys.executable, *program, "--serving-dir", serving_dir, "--model-name", model_name,
                   "--host", HOST, "--rest-port", "0", "--grpc-port", "0", "--poll-seconds", "0.2", *extra_args]
        self.log_path = os.path.join(workdir, log_name)
        self.model_name = model_name
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=log, text=True, env=_quiet_env(root))
        rest_line, grpc_line = self.process.stdout.readline(), self.process.stdout.readline()
        if not grpc_line.startswith("gRPC listening"):
            self.process.kill()
            sys.exit(f"server did not start: {rest_line!r} {grpc_line!r}; see {self.log_path}")
        self.rest_port = int(rest_line.rsplit(":", 1)[1])
        self.grpc_port = int(grpc_line.rsplit(":", 1)[1])

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.rest_port}{path}"

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url(path), timeout=10) as response:
            return json.load(response)

    def statuses(self) -> dict[int, str]:
        body = self.get_json(f"/v1/models/{self.model_name}")
        return {int(v["version"]): v["state"] for v in body["model_version_status"]}

    def grpc_counts(self) -> tuple[int, int]:
        """(OK, not OK) gRPC predict calls so far, from the server's metrics."""
        with urllib.request.urlopen(self.url("/monitoring/prometheus/metrics"), timeout=10) as response:
            text = response.read().decode()
        ok = bad = 0
        for line in text.splitlines():
            if line.startswith("serving_requests_total{") and 'entrypoint="GRPC"' in line and 'api="predict"' in line:
                count = float(line.rsplit(" ", 1)[1])
                if 'status="OK"' in line:
                    ok += count
                else:
                    bad += count
        return int(ok), int(bad)

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time (user + system) the server's own process and its model processes (its
        descendants) have used so far: per request, figures other work on the machine disturbs
        much less than req/s."""
        tick = os.sysconf("SC_CLK_TCK")
        children: dict[int, list[int]] = {}
        times: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
        own, descendants, todo = times.get(self.process.pid, 0.0), 0.0, list(children.get(self.process.pid, []))
        while todo:
            pid = todo.pop()
            descendants += times.get(pid, 0.0)
            todo.extend(children.get(pid, []))
        return own, descendants

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _inputs_from_metadata(server: Server) -> dict:
    signature = server.get_json(f"/v1/models/{server.model_name}/metadata")["metadata"]["signature_def"]["signature_def"][SIGNATURE]
    return {name: (info["dtype"], _SAMPLE.get(info["dtype"], 7)) for name, info in signature["inputs"].items()}


class FloorServer(Server):
    """grpc.aio's own cost a call (`--grpc-floor`): TF Serving's PredictionService on grpc.aio
    and uvloop, with the server's default limits (`serving.server.ServerConfig`), answering every Predict with one
    fixed one-row PredictResponse: no model, no batching, no conversion to arrays. What no
    gRPC server written on grpcio's asyncio API can go below on this machine."""

    def __init__(self, workdir):
        self.log_path = os.path.join(workdir, "floor-server.log")
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--floor-server"], cwd=ROOT,
                                            stdout=subprocess.PIPE, stderr=log, text=True, env=_quiet_env())
        line = self.process.stdout.readline()
        if not line.startswith("gRPC listening"):
            self.process.kill()
            sys.exit(f"the gRPC floor server did not start: {line!r}; see {self.log_path}")
        self.grpc_port = int(line.rsplit(":", 1)[1])

    def grpc_counts(self) -> tuple[int, int]:
        return 0, 0  # no metrics: its rows count h2load's answers, with no unmeasured warm-up


def floor_server_main() -> None:
    import grpc
    import uvloop
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.server import ServerConfig

    response = predict_pb2.PredictResponse()
    response.model_spec.name, response.model_spec.signature_name = "floor", SIGNATURE
    response.outputs["outputs"].float_val.append(0.5)

    class Floor(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):
            return response

    async def serve():
        limits = ServerConfig()
        server = grpc.aio.server(maximum_concurrent_rpcs=limits.grpc_max_concurrent_rpcs, options=[
            ("grpc.max_receive_message_length", limits.max_request_bytes),
            ("grpc.max_send_message_length", limits.max_response_bytes), ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Floor(), server)
        port = server.add_insecure_port(f"{HOST}:0")
        await server.start()
        print(f"gRPC listening on {HOST}:{port}", flush=True)
        await server.wait_for_termination()

    uvloop.new_event_loop().run_until_complete(serve())


# ------------------------------------------------------------------------------ load generators


def _rest_body(workdir, model_inputs, batch) -> str:
    instance = {name: value for name, (_, value) in model_inputs.items()}
    path = os.path.join(workdir, f"rest-{batch}.json")
    with open(path, "w") as f:
        json.dump({"signature_name": SIGNATURE, "instances": [instance] * batch}, f)
    return path


def _grpc_body(workdir, model_name, model_inputs, batch) -> str:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SIGNATURE
    for name, (dtype, value) in model_inputs.items():
        proto = tensor_pb2.TensorProto(
            dtype=types_pb2.DataType.Value(dtype),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=batch)]),
        )
        if dtype == "DT_STRING":
            proto.string_val.extend([value.encode()] * batch)
        elif dtype == "DT_FLOAT":
            proto.float_val.extend([value] * batch)
        elif dtype == "DT_DOUBLE":
            proto.double_val.extend([value] * batch)
        else:
            proto.int64_val.extend([value] * batch)
        request.inputs[name].CopyFrom(proto)
    message = request.SerializeToString()
    path = os.path.join(workdir, f"grpc-{batch}.bin")
    with open(path, "wb") as f:
        f.write(b"\0" + struct.pack(">I", len(message)) + message)  # one uncompressed gRPC frame
    return path


def _wrk(server, workdir, body_path, concurrency, seconds, stop_when=None) -> dict:
    """One wrk run; `stop_when()` (polled) ends it early with SIGINT, after which wrk reports."""
    script = os.path.join(workdir, "post.lua")
    with open(script, "w") as f:
        f.write(_WRK_SCRIPT)
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", script,
               server.url(f"/v1/models/{server.model_name}:predict")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, BENCH_BODY=body_path))
    if stop_when is not None:
        while process.poll() is None and not stop_when():
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
    out = process.communicate(timeout=seconds + 30)[0]
    match = re.search(r"^RESULT (.*)$", out, re.M)
    if not match:
        raise RuntimeError(f"wrk printed no result: {out[-500:]}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / result["seconds"] if result["seconds"] else 0.0
    return result


def _h2load(server, workdir, body_path, concurrency, seconds, warmup, stop_when=None) -> dict:
    """One h2load run over HTTP/2 (gRPC frames); latencies from its per-request log, gRPC
    failures from the server's metrics."""
    log_path = os.path.join(workdir, "h2load.log")
    connections = min(concurrency, 4)
    streams = max(1, concurrency // connections)
    command = ["h2load", f"-c{connections}", f"-m{streams}", "-D", f"{seconds:g}", f"--warm-up-time={warmup:g}",
               "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body_path,
               "--log-file", log_path, f"http://{HOST}:{server.grpc_port}{_GRPC_PATH}"]
    ok_before, bad_before = server.grpc_counts()
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if stop_when is not None:
        while process.poll() is None and not stop_when():
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
    process.communicate(timeout=seconds + warmup + 30)
    ended = time.time()
    ok_after, bad_after = server.grpc_counts()
    starts, latencies, http_errors = [], [], 0
    with open(log_path) as f:
        for line in f:
            start_us, status, duration_us = line.split("\t")[:3]
            starts.append(int(start_us) / 1e6)
            latencies.append(int(duration_us) / 1000)
            http_errors += status != "200"
    measured_from = started + (warmup if stop_when is None else 0)
    window = [lat for start, lat in zip(starts, latencies) if start >= measured_from]
    window.sort()
    span = (ended if stop_when is not None else measured_from + seconds) - measured_from
    return {
        "requests": len(window), "errors": http_errors + (bad_after - bad_before), "seconds": span,
        "rps": len(window) / span if span else 0.0,
        "p50_ms": _percentile(window, 0.50), "p99_ms": _percentile(window, 0.99),
        "max_ms": window[-1] if window else float("nan"),
        "server_ok": ok_after - ok_before,
    }


def _percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _load(server, workdir, bodies, protocol, batch, concurrency, args, stop_when=None) -> dict:
    """One scenario's figures, with the server's CPU milliseconds per request (`cpu_ms`)."""
    if protocol == "rest":
        if stop_when is None and args.warmup > 0:
            _wrk(server, workdir, bodies[protocol, batch], concurrency, args.warmup)
        cpu = server.cpu_seconds()
        result = _wrk(server, workdir, bodies[protocol, batch], concurrency, 600 if stop_when else args.seconds, stop_when)
        served = result["requests"]
    else:
        cpu = server.cpu_seconds()  # h2load's warm-up is part of its run: counted by the server's metrics
        result = _h2load(server, workdir, bodies[protocol, batch], concurrency, 600 if stop_when else args.seconds,
                         args.warmup if stop_when is None else 0, stop_when)
        served = result["server_ok"]
    (own0, models0), (own1, models1) = cpu, server.cpu_seconds()
    per = 1000 / served if served else float("nan")
    result["cpu_ms"], result["model_cpu_ms"] = (own1 - own0 + models1 - models0) * per, (models1 - models0) * per
    return result


# ------------------------------------------------------------------------------ the sections


def _prepare_serving_dir(args, workdir) -> str:
    serving_dir = os.path.join(workdir, "models", args.model_name)
    if args.serving_dir:
        versions = [int(n) for n in os.listdir(args.serving_dir) if re.fullmatch(r"[0-9]+", n)]
        if not versions:
            sys.exit(f"no version directory (ASCII digits) in {args.serving_dir}")
        shutil.copytree(os.path.join(args.serving_dir, str(max(versions))), os.path.join(serving_dir, "1"))
    else:
        code = f"from serving import demo_model; demo_model.push({serving_dir!r}, 1)"
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=_quiet_env(), stderr=subprocess.DEVNULL)
    return serving_dir


def throughput(args, workdir, serving_dir) -> list[dict]:
    rows = []
    variants = _variants(args)
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for label, library, tree in order:
            server = Server(serving_dir, args.model_name, workdir, library, args.server_arg, root=tree)
            try:
                inputs = _inputs_from_metadata(server)
                bodies = {}
                for batch in args.batch:
                    bodies["rest", batch] = _rest_body(workdir, inputs, batch)
                    bodies["grpc", batch] = _grpc_body(workdir, args.model_name, inputs, batch)
                for protocol in args.protocols:
                    for batch in args.batch:
                        for concurrency in args.concurrency:
                            result = _load(server, workdir, bodies, protocol, batch, concurrency, args)
                            row = dict(result, http=label, round=round_index + 1, protocol=protocol,
                                       batch=batch, concurrency=concurrency)
                            rows.append(row)
                            print(_table_line(row), flush=True)
            finally:
                server.stop()
    return rows


def grpc_floor(args, workdir) -> list[dict]:
    """The same gRPC scenarios against `FloorServer`, with the bodies `throughput` wrote."""
    rows, floor = [], FloorServer(workdir)
    try:
        for batch in args.batch:
            for concurrency in args.concurrency:
                cpu = floor.cpu_seconds()
                result = _h2load(floor, workdir, os.path.join(workdir, f"grpc-{batch}.bin"), concurrency, args.seconds, 0)
                own = floor.cpu_seconds()[0] - cpu[0]
                per = 1000 / result["requests"] if result["requests"] else float("nan")
                row = dict(result, cpu_ms=own * per, model_cpu_ms=0.0, http="grpc.aio floor", round=1,
                           protocol="grpc", batch=batch, concurrency=concurrency)
                rows.append(row)
                print(_table_line(row), flush=True)
    finally:
        floor.stop()
    return rows


def swap(args, workdir, serving_dir, variant) -> dict:
    """Load on REST and gRPC while version 2 is pushed; the window is push -> AVAILABLE + 1 s."""
    _, library, tree = variant
    server = Server(serving_dir, args.model_name, workdir, library, args.server_arg, "swap-server.log", root=tree)
    try:
        inputs = _inputs_from_metadata(server)
        bodies = {("rest", 1): _rest_body(workdir, inputs, 1),
                  ("grpc", 1): _grpc_body(workdir, args.model_name, inputs, 1)}
        before = _load(server, workdir, bodies, "rest", 1, 8, argparse.Namespace(warmup=0.5, seconds=2.0))
        state = {"available_at": None, "pushed_at": None}

        def done() -> bool:
            if state["pushed_at"] is None:
                return False
            if state["available_at"] is None:
                try:
                    if server.statuses().get(2) == "AVAILABLE":
                        state["available_at"] = time.monotonic()
                except (OSError, urllib.error.URLError):
                    pass
                return time.monotonic() - state["pushed_at"] > 120
            return time.monotonic() > state["available_at"] + 1.0


        results = {}

        def run(protocol):
            results[protocol] = _load(server, workdir, bodies, protocol, 1, 8, args, stop_when=done)

        threads = [threading.Thread(target=run, args=(p,)) for p in ("rest", "grpc")]
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # both loads running
        tmp = os.path.join(serving_dir, ".tmp-2")
        shutil.copytree(os.path.join(serving_dir, "1"), tmp)
        os.rename(tmp, os.path.join(serving_dir, "2"))
        state["pushed_at"] = time.monotonic()
        for thread in threads:
            thread.join()
        swapped = state["available_at"] - state["pushed_at"] if state["available_at"] else None
        return {"before": before, "rest": results["rest"], "grpc": results["grpc"], "swapped_after_s": swapped}
    finally:
        server.stop()
        shutil.rmtree(os.path.join(serving_dir, "2"), ignore_errors=True)


# ---- hostile clients


def probe_main(port: int, model: str, body_path: str, stop_path: str) -> None:
    """A well-behaved client in its own process: a predict every 20 ms on a kept-alive
    connection (a new one when the server closes it), until `stop_path` exists; prints its
    latencies and failures as JSON."""
    import http.client

    with open(body_path, "rb") as f:
        body = f.read()
    latencies, failures, connection = [], [], None
    deadline = time.monotonic() + 600
    while not os.path.exists(stop_path) and time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(HOST, port, timeout=10)
            connection.request("POST", f"/v1/models/{model}:predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies.append((time.perf_counter() - start) * 1000)
            if response.status != 200:
                failures.append(response.status)
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as e:
            failures.append(type(e).__name__)
            connection = None
        time.sleep(0.02)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


class Probe:
    def __init__(self, server, body_path, workdir):
        self.stop_path = os.path.join(workdir, f"probe-stop-{time.monotonic_ns()}")
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--probe", json.dumps([server.rest_port, server.model_name, body_path, self.stop_path])],
            stdout=subprocess.PIPE, text=True, env=_quiet_env())

    def finish(self) -> dict:
        open(self.stop_path, "w").close()
        out = self.process.communicate(timeout=60)[0]
        return json.loads(out.strip().splitlines()[-1])


async def _open(port, count, first_bytes: bytes):
    """`count` connections, each sending `first_bytes` then waiting."""
    async def one():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError as e:
            return None, type(e).__name__
        if first_bytes:
            writer.write(first_bytes)
        return (reader, writer), None

    return await asyncio.gather(*[one() for _ in range(count)])


async def _outcomes(connections, wait_s: float) -> dict:
    """How each connection ended within `wait_s`: its HTTP status, 'closed' (no answer) or 'open'."""
    async def one(item):
        conn, error = item
        if conn is None:
            return f"connect failed ({error})"
        reader, writer = conn
        try:
            data = await asyncio.wait_for(reader.read(4096), wait_s)
        except asyncio.TimeoutError:
            writer.close()
            return "still open"
        except OSError:
            return "reset"
        writer.close()
        match = re.match(rb"HTTP/1\.1 (\d+)", data)
        return match.group(1).decode() if match else "closed"

    counts: dict = {}
    for outcome in await asyncio.gather(*[one(c) for c in connections]):
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


async def _hostile_cases(server: Server, body_path: str, workdir: str, timeout_s: float, max_connections: int, max_bytes: int):
    port, model = server.rest_port, server.model_name
    path = f"/v1/models/{model}:predict"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    wait = timeout_s * 3 + 5

    async def case(name, run):
        probe = Probe(server, body_path, workdir)
        await asyncio.sleep(1.0)  # the probe is up and served before the case starts
        rss_before = server.rss_mb()
        started = time.perf_counter()
        outcome = await run()
        elapsed = time.perf_counter() - started
        rss_after = server.rss_mb()
        healthy = probe.finish()
        latencies = sorted(healthy["latencies"])
        return {"case": name, "outcome": outcome, "seconds": round(elapsed, 1),
                "healthy_requests": len(latencies), "healthy_failed": len(healthy["failures"]),
                "healthy_p50_ms": _percentile(latencies, 0.5), "healthy_max_ms": latencies[-1] if latencies else float("nan"),
                "rss_mb": f"{rss_before:.0f} -> {rss_after:.0f}"}

    async def slow_headers():
        conns = await _open(port, 3000, head.encode())  # headers never finished
        return await _outcomes(conns, wait)

    async def idle():
        conns = await _open(port, 3000, b"")
        return await _outcomes(conns, wait)

    async def slow_bodies():
        conns = await _open(port, 500, (head + "Content-Length: 1000\r\n\r\n{\"instances\": [").encode())
        return await _outcomes(conns, wait)

    async def flood():
        conns = await _open(port, max_connections + 500, b"")
        counts = await _outcomes(conns, 1.0)  # the refused ones are answered at once
        for conn, _ in conns:
            if conn is not None:
                conn[1].close()
        return counts

    async def send_and_read(data: bytes, chunks=()):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(data)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        try:
            reply = await asyncio.wait_for(reader.read(4096), wait)
        except (OSError, asyncio.TimeoutError) as e:
            return type(e).__name__
        finally:
            writer.close()
        match = re.match(rb"HTTP/1\.1 (\d+)", reply)
        return match.group(1).decode() if match else "closed"

    async def oversized():
        results = {}
        results["Content-Length over the limit"] = await send_and_read(
            (head + f"Content-Length: {max_bytes + 1}\r\n\r\n").encode() + b" " * (max_bytes + 1))
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        results["chunked, over the limit"] = await send_and_read(
            (head + "Transfer-Encoding: chunked\r\n\r\n").encode(), [chunk] * (max_bytes // 65536 + 8))
        deep = b"[" * 100_000 + b"]" * 100_000
        results["nested 100,000 deep"] = await send_and_read((head + f"Content-Length: {len(deep)}\r\n\r\n").encode() + deep)
        return results

    cases = [
        ("3,000 connections that send half the headers", slow_headers),
        ("3,000 idle connections", idle),
        ("500 connections that send half a body", slow_bodies),
        (f"{max_connections + 500} connections at once (cap {max_connections})", flood),
        ("oversized and deeply nested bodies", oversized),
    ]
    return [await case(name, run) for name, run in cases]


def hostile(args, workdir, serving_dir, variant) -> list[dict]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    t = f"{args.hostile_timeout:g}"
    max_connections, max_bytes = 1024, 10 * 1024 * 1024
    extra = ["--header-timeout-seconds", t, "--body-timeout-seconds", t, "--keep-alive-seconds", t,
             "--max-connections", str(max_connections), "--max-request-bytes", str(max_bytes)]
    server = Server(serving_dir, args.model_name, workdir, "uvicorn", args.server_arg + extra, "hostile-server.log", root=variant[2])
    try:
        body_path = _rest_body(workdir, _inputs_from_metadata(server), 1)
        results = asyncio.run(_hostile_cases(server, body_path, workdir, args.hostile_timeout, max_connections, max_bytes))
        after = urllib.request.urlopen(server.url(f"/v1/models/{args.model_name}"), timeout=10).status
        results.append({"case": "afterwards: model status", "outcome": after})
        return results
    finally:
        server.stop()


# ------------------------------------------------------------------------------ output


def _table_line(r) -> str:
    return (f"| {r['http']} | {r['round']} | {r['protocol']} | {r['batch']} | {r['concurrency']} | {r['requests']} | "
            f"{r['errors']} | {r['rps']:.0f} | {r['rps'] * r['batch']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
            f"{r['cpu_ms']:.2f} ({r['model_cpu_ms']:.2f}) |")


def _print_throughput(rows, labels, comparing_http):
    print("| server | round | protocol | rows/request | concurrency | requests | errors | req/s | predictions/s | p50 ms | p99 ms | max ms "
          "| server CPU ms/request (of it, the model processes) |")
    print("|" + "---|" * 13)
    for r in rows:
        print(_table_line(r))
    if len(labels) <= 1:
        return
    print(f"\nrelative to {labels[0]} in the same round, per scenario (rows/request x concurrency), "
          "then the geometric mean" + (" (gRPC does not go through the HTTP library, so its ratios show how much "
                                      "the machine drifted)" if comparing_http else "") + ":")
    for label, protocol in [(lab, proto) for lab in labels[1:] for proto in ("rest", "grpc")]:
        ratios, p99s, cpus, cells = [], [], [], []
        for r in rows:
            if r["http"] != label or r["protocol"] != protocol:
                continue
            base = [b for b in rows if b["http"] == labels[0] and b["round"] == r["round"]
                    and (b["protocol"], b["batch"], b["concurrency"]) == (r["protocol"], r["batch"], r["concurrency"])]
            if base and base[0]["rps"] > 0 and r["rps"] > 0:
                ratios.append(r["rps"] / base[0]["rps"])
                p99s.append(r["p99_ms"] / base[0]["p99_ms"])
                cpus.append(r["cpu_ms"] / base[0]["cpu_ms"])
                cells.append(f"{r['batch']}x{r['concurrency']}: {ratios[-1]:.2f}/{cpus[-1]:.2f}")
        if ratios:
            print(f"  {label} {protocol}: throughput {statistics.geometric_mean(ratios):.2f}, p99 "
                  f"{statistics.geometric_mean(p99s):.2f}, server CPU per request {statistics.geometric_mean(cpus):.2f} "
                  f"(over {len(ratios)}; throughput/CPU per scenario: {', '.join(cells)})")


def _targets(rows, swap_result, hostile_result, main_library):
    def best(protocol, batch, concurrency=None):
        found = [r for r in rows if r["http"] == main_library and r["protocol"] == protocol and r["batch"] == batch
                 and (concurrency is None or r["concurrency"] == concurrency)]
        return max(found, key=lambda r: r["rps"]) if found else None

    lines = []
    rest1 = best("rest", 1, 32)
    if rest1:
        ok = rest1["rps"] >= 2500 and rest1["p99_ms"] <= 25
        lines.append(f"{'met ' if ok else 'MISSED'} single-example REST at concurrency 32: {rest1['rps']:.0f} req/s (>= 2500), p99 {rest1['p99_ms']:.1f} ms (<= 25)")
    grpc1 = best("grpc", 1, 32)
    if grpc1 and rest1:
        ok = grpc1["rps"] >= rest1["rps"]
        lines.append(f"{'met ' if ok else 'MISSED'} single-example gRPC at least as fast as REST (concurrency 32): {grpc1['rps']:.0f} vs {rest1['rps']:.0f} req/s")
    for protocol in ("rest", "grpc"):
        r = best(protocol, 100)
        if r:
            ok = r["rps"] * 100 >= 50_000
            lines.append(f"{'met ' if ok else 'MISSED'} 100-example requests over {protocol}: {r['rps'] * 100:.0f} predictions/s (>= 50,000; best concurrency {r['concurrency']})")
    if swap_result:
        failed = swap_result["rest"]["errors"] + swap_result["grpc"]["errors"]
        p99 = max(swap_result["rest"]["p99_ms"], swap_result["grpc"]["p99_ms"])
        ok = failed == 0 and p99 <= 50
        lines.append(f"{'met ' if ok else 'MISSED'} version swap under load: {failed} failed, p99 {p99:.1f} ms during the swap (0, <= 50)")
    if hostile_result:
        worst = max((c["healthy_max_ms"] for c in hostile_result if "healthy_max_ms" in c), default=float("nan"))
        failed = sum(c.get("healthy_failed", 0) for c in hostile_result)
        ok = worst <= 50 and failed == 0
        lines.append(f"{'met ' if ok else 'MISSED'} healthy requests through the hostile cases: worst {worst:.1f} ms (<= 50), {failed} failed")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serving-dir", help="serving dir to take the newest version from (default: build the demo model)")
    p.add_argument("--model-name", default="taxi")
    p.add_argument("--http", nargs="+", default=["uvicorn"], choices=["uvicorn", "aiohttp", "granian"],
                   help="HTTP libraries to compare (the first is the reference of the ratios)")
    p.add_argument("--build", action="append", default=[], metavar="LABEL=DIR",
                   help="a tree whose serving/ package to run (e.g. another commit's, from git worktree or git "
                        "archive); several compare builds as --http compares libraries (the first is the reference)")
    p.add_argument("--rounds", type=int, default=1, help="rounds over the libraries or builds, alternating their order")
    p.add_argument("--seconds", type=float, default=4.0, help="measured time per scenario")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each scenario")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 100], help="rows per request")
    p.add_argument("--protocols", nargs="+", default=["rest", "grpc"], choices=["rest", "grpc"])
    p.add_argument("--no-swap", action="store_true", help="skip the version swap under load")
    p.add_argument("--no-hostile", action="store_true", help="skip the hostile clients")
    p.add_argument("--hostile-timeout", type=float, default=2.0, help="the hostile server's header, body and keep-alive timeouts")
    p.add_argument("--server-arg", action="append", default=[], help="extra flag for the server, e.g. --server-arg=--batch-timeout-ms=1")
    p.add_argument("--grpc-floor", action="store_true",
                   help="also run the gRPC scenarios against grpc.aio answering a fixed response (no model): its floor")
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.floor_server:
        floor_server_main()
        return 0
    if args.probe:
        probe_main(*json.loads(args.probe))
        return 0
    _need("wrk", "wrk")
    _need("h2load", "nghttp2-client")

    load_before = os.getloadavg()
    started = time.time()
    variants = _variants(args)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as workdir:
        serving_dir = _prepare_serving_dir(args, workdir)
        rows = throughput(args, workdir, serving_dir)
        if args.grpc_floor:
            rows += grpc_floor(args, workdir)
        swaps = {} if args.no_swap else {v[0]: swap(args, workdir, serving_dir, v) for v in variants}
        hostiles = {} if args.no_hostile else {v[0]: hostile(args, workdir, serving_dir, v) for v in variants}
    load_after = os.getloadavg()
    print()
    print(f"machine: {os.cpu_count()} cores; server and load generators (wrk, h2load) on the same machine, over loopback; "
          f"{time.time() - started:.0f} s")
    print(f"load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in load_before)}, "
          f"after: {'/'.join(f'{x:.1f}' for x in load_after)} (above ~1 means other work shared the cores)")
    print()
    labels = [v[0] for v in variants]
    _print_throughput(rows, labels, not args.build)
    for label, swap_result in swaps.items():
        print(f"\nswap (REST and gRPC at concurrency 8 each; {label}): version 2 AVAILABLE "
              f"{swap_result['swapped_after_s']:.2f} s after the push" if swap_result["swapped_after_s"] is not None
              else f"\nswap ({label}): version 2 did not become AVAILABLE within 120 s")
        print("| window | protocol | requests | errors | req/s | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|---|---|---|")
        for window, key in (("before the push", "before"), ("push to AVAILABLE + 1 s", "rest"), ("push to AVAILABLE + 1 s", "grpc")):
            r = swap_result[key]
            protocol = "grpc" if key == "grpc" else "rest"
            print(f"| {window} | {protocol} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |")
    for label, hostile_result in hostiles.items():
        print(f"\nhostile clients ({label}; a server with --header/--body/--keep-alive timeouts of {args.hostile_timeout:g} s, "
              "--max-connections 1024, --max-request-bytes 10 MiB; a healthy client, in its own process, sends a request "
              "every 20 ms on a kept-alive connection throughout)")
        print("| case | outcome (HTTP status: connections) | s | healthy requests | failed | healthy p50 ms | healthy max ms | server RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        for c in hostile_result:
            if "healthy_max_ms" in c:
                print(f"| {c['case']} | {json.dumps(c['outcome'])} | {c['seconds']} | {c['healthy_requests']} | {c['healthy_failed']} | "
                      f"{c['healthy_p50_ms']:.1f} | {c['healthy_max_ms']:.1f} | {c['rss_mb']} |")
            else:
                print(f"| {c['case']} | {c['outcome']} | | | | | | |")
    for label in labels:
        print(f"\ntargets ({label}):" if len(labels) > 1 else "\ntargets:")
        for line in _targets(rows, swaps.get(label), hostiles.get(label), label):
            print("  " + line)
    floor = [r for r in rows if r["http"] == "grpc.aio floor" and r["batch"] == 1 and r["concurrency"] == 32]
    if floor:
        print(f"  (gRPC's floor: grpc.aio answering a fixed response with no model, 1 row at concurrency 32: "
              f"{floor[0]['rps']:.0f} req/s, {floor[0]['cpu_ms']:.2f} ms of server CPU a call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
