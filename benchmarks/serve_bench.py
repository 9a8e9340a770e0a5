"""Load test for the model server (serving/): throughput and latency over REST and gRPC, and a
version swap under load that must fail no request.

    .venv/bin/python benchmarks/serve_bench.py                       # the demo model
    .venv/bin/python benchmarks/serve_bench.py --serving-dir DIR --model-name taxi

The server runs in its own process on 127.0.0.1 (free ports), serving a temporary copy of the
newest version in the serving dir (the swap adds a version to that copy, never to DIR). Load
comes from separate processes (one per protocol), each running `concurrency` closed-loop
clients on keep-alive connections for `--seconds` (or `--max-requests`) per scenario, after a
short warm-up. Requests use the `serving_json` signature, with inputs made from the model's
metadata. Only loopback traffic; every loop is bounded in time and count.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
SIGNATURE = "serving_json"
_SAMPLE = {"DT_STRING": "Sun Taxi", "DT_FLOAT": 1.5, "DT_DOUBLE": 1.5}


# ------------------------------------------------------------------------------ load workers


def _percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _summary(latencies, errors, elapsed):
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
    }


async def _run_clients(one_request, concurrency, seconds, max_requests, warmup_s, stop_file=None):
    """Closed loop: each client sends its next request when the last is answered. Stops after
    `seconds` (after the warm-up), `max_requests`, or as soon as `stop_file` exists."""
    latencies, errors, count = [], 0, 0
    measuring = False
    stop_at = time.perf_counter() + warmup_s + seconds

    async def watch_stop_file():
        nonlocal stop_at
        while time.perf_counter() < stop_at:
            if os.path.exists(stop_file):
                stop_at = time.perf_counter()
            await asyncio.sleep(0.1)

    async def client(index):
        nonlocal errors, count
        send = await one_request(index)
        while time.perf_counter() < stop_at and count < max_requests:
            start = time.perf_counter()
            ok = await send()
            if measuring:
                count += 1
                latencies.append(time.perf_counter() - start)
                errors += 0 if ok else 1

    tasks = [asyncio.ensure_future(client(i)) for i in range(concurrency)]
    if stop_file:
        watcher = asyncio.ensure_future(watch_stop_file())
    await asyncio.sleep(warmup_s)
    measuring, began = True, time.perf_counter()
    await asyncio.gather(*tasks)
    if stop_file:
        watcher.cancel()
    return _summary(latencies, errors, time.perf_counter() - began)


def _rest_factory(port, model, instance, batch):
    body = json.dumps({"signature_name": SIGNATURE, "instances": [instance] * batch}).encode()
    head = (
        f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def one_request(_):
        reader, writer = await asyncio.open_connection(HOST, port)

        async def send():
            writer.write(head + body)
            response_head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in response_head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            return response_head.startswith(b"HTTP/1.1 200")

        return send

    return one_request


def _grpc_factory(port, model, inputs, batch):
    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    for name, (dtype, value) in inputs.items():
        proto = tensor_pb2.TensorProto(
            dtype=types_pb2.DataType.Value(dtype),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=batch)]),
        )
        if dtype == "DT_STRING":
            proto.string_val.extend([value.encode()] * batch)
        elif dtype in ("DT_FLOAT", "DT_DOUBLE"):
            (proto.float_val if dtype == "DT_FLOAT" else proto.double_val).extend([value] * batch)
        else:
            proto.int64_val.extend([value] * batch)
        request.inputs[name].CopyFrom(proto)
    stubs = []  # one channel (HTTP/2 multiplexes the clients), made inside the worker's event loop

    async def one_request(_):
        if not stubs:
            stubs.append(prediction_service_pb2_grpc.PredictionServiceStub(grpc.aio.insecure_channel(f"{HOST}:{port}")))
        stub = stubs[0]

        async def send():
            try:
                await stub.Predict(request, timeout=30)
                return True
            except grpc.RpcError:
                return False

        return send

    return one_request


def worker_main(spec: dict) -> None:
    """Runs in a load process: each scenario in turn, one JSON line of results per scenario."""
    if spec["protocol"] == "grpc":
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401 - slow import, done first
    print("READY", flush=True)
    go_file, deadline = spec.get("go_file"), time.time() + 120
    while go_file and not os.path.exists(go_file) and time.time() < deadline:
        time.sleep(0.02)
    for scenario in spec["scenarios"]:
        batch = scenario["batch"]
        if spec["protocol"] == "rest":
            factory = _rest_factory(spec["rest_port"], spec["model"], spec["instance"], batch)
        else:
            factory = _grpc_factory(spec["grpc_port"], spec["model"], spec["inputs"], batch)
        result = asyncio.run(
            _run_clients(
                factory, scenario["concurrency"], spec["seconds"], spec["max_requests"], spec["warmup"],
                spec.get("stop_file"),
            )
        )
        print(json.dumps(dict(scenario, protocol=spec["protocol"], **result)), flush=True)


# ------------------------------------------------------------------------------ driver


def _prepare_serving_dir(args, workdir) -> str:
    serving_dir = os.path.join(workdir, args.model_name)
    if args.serving_dir:
        versions = [int(n) for n in os.listdir(args.serving_dir) if n.isdigit()]
        if not versions:
            sys.exit(f"no integer version directory in {args.serving_dir}")
        shutil.copytree(os.path.join(args.serving_dir, str(max(versions))), os.path.join(serving_dir, "1"))
    else:
        code = f"from serving import demo_model; demo_model.push({serving_dir!r}, 1)"
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=_quiet_env(), stderr=subprocess.DEVNULL)
    return serving_dir


def _quiet_env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)


def _start_server(args, serving_dir):
    command = [
        sys.executable, "-m", "serving", "--serving-dir", serving_dir, "--model-name", args.model_name,
        "--host", HOST, "--rest-port", "0", "--grpc-port", "0", "--poll-seconds", "0.5",
    ] + args.server_arg
    log = open(os.path.join(os.path.dirname(serving_dir), "server.log"), "w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=_quiet_env())
    rest_line, grpc_line = process.stdout.readline(), process.stdout.readline()
    if not grpc_line.startswith("gRPC listening"):
        process.kill()
        sys.exit(f"server did not start: {rest_line!r} {grpc_line!r}")
    return process, int(rest_line.rsplit(":", 1)[1]), int(grpc_line.rsplit(":", 1)[1])


def _inputs_from_metadata(rest_port, model):
    url = f"http://{HOST}:{rest_port}/v1/models/{model}/metadata"
    with urllib.request.urlopen(url, timeout=10) as response:
        signature = json.load(response)["metadata"]["signature_def"]["signature_def"][SIGNATURE]
    inputs = {}
    for name, info in signature["inputs"].items():
        dtype = info["dtype"]
        inputs[name] = (dtype, _SAMPLE.get(dtype, 7))
    return inputs


def _start_worker(spec):
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_quiet_env(),
    )


def _collect(process):
    results = [json.loads(line) for line in process.stdout if line.startswith("{")]
    process.wait(timeout=60)
    return results


def _status(rest_port, model):
    url = f"http://{HOST}:{rest_port}/v1/models/{model}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return {int(v["version"]): v["state"] for v in json.load(response)["model_version_status"]}


def _swap_under_load(args, base_spec, serving_dir, rest_port):
    """REST and gRPC load at concurrency 8 while version 2 is pushed (copy, then rename). The
    load runs on until version 2 has been AVAILABLE for 1 s (at most 90 s), so the swap itself
    happens under load however long the model takes to load."""
    warmup, lead = 0.5, max(2.0, args.seconds)
    go_file = os.path.join(os.path.dirname(serving_dir), "start-swap-load")
    stop_file = os.path.join(os.path.dirname(serving_dir), "stop-swap-load")
    spec = dict(base_spec, seconds=90.0, warmup=warmup, go_file=go_file, stop_file=stop_file,
                scenarios=[{"concurrency": 8, "batch": 1}])
    workers = [_start_worker(dict(spec, protocol=p)) for p in ("rest", "grpc")]
    for worker in workers:  # both load the same time, once the gRPC one has imported TensorFlow
        worker.stdout.readline()
    open(go_file, "w").close()
    time.sleep(warmup + lead)
    tmp = os.path.join(serving_dir, ".tmp-2")
    shutil.copytree(os.path.join(serving_dir, "1"), tmp)
    os.rename(tmp, os.path.join(serving_dir, "2"))
    pushed = time.monotonic()
    swapped_after = None
    while time.monotonic() - pushed < 80 and swapped_after is None:
        if _status(rest_port, base_spec["model"]).get(2) == "AVAILABLE":
            swapped_after = time.monotonic() - pushed
        time.sleep(0.05)
    time.sleep(1.0)
    open(stop_file, "w").close()
    results = [r for w in workers for r in _collect(w)]
    for r in results:
        r["scenario"] = "swap"
    return results, swapped_after


def _table(rows):
    header = "| protocol | rows/request | concurrency | requests | errors | req/s | predictions/s | p50 ms | p99 ms | max ms |"
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['protocol']}{' (swap)' if r.get('scenario') == 'swap' else ''} | {r['batch']} | {r['concurrency']} | "
            f"{r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['rps'] * r['batch']:.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--serving-dir", help="serving dir to take the newest version from (default: build the demo model)")
    p.add_argument("--model-name", default="taxi")
    p.add_argument("--seconds", type=float, default=4.0, help="measured time per scenario")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each scenario")
    p.add_argument("--max-requests", type=int, default=100_000, help="cap per scenario")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 100], help="rows per request")
    p.add_argument("--protocols", nargs="+", default=["rest", "grpc"], choices=["rest", "grpc"])
    p.add_argument("--no-swap", action="store_true", help="skip the version swap under load")
    p.add_argument("--server-arg", action="append", default=[], help="extra flag for the server, e.g. --server-arg=--batch-timeout-ms=1")
    args = p.parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as workdir:
        serving_dir = _prepare_serving_dir(args, workdir)
        server, rest_port, grpc_port = _start_server(args, serving_dir)
        try:
            inputs = _inputs_from_metadata(rest_port, args.model_name)
            base = {
                "model": args.model_name, "rest_port": rest_port, "grpc_port": grpc_port,
                "instance": {name: value for name, (_, value) in inputs.items()}, "inputs": inputs,
                "seconds": args.seconds, "warmup": args.warmup, "max_requests": args.max_requests,
            }
            scenarios = [{"concurrency": c, "batch": b} for b in args.batch for c in args.concurrency]
            rows = []
            for protocol in args.protocols:
                worker = _start_worker(dict(base, protocol=protocol, scenarios=scenarios))
                for row in _collect(worker):
                    rows.append(row)
                    print(_table([row]).splitlines()[-1], flush=True)
            swap_note = ""
            if not args.no_swap:
                swap_rows, swapped_after = _swap_under_load(args, base, serving_dir, rest_port)
                rows += swap_rows
                failed = sum(r["errors"] for r in swap_rows)
                swap_note = (
                    f"\nswap: version 2 AVAILABLE {swapped_after:.2f} s after the push; "
                    f"{sum(r['requests'] for r in swap_rows)} requests during the run, {failed} failed"
                    if swapped_after is not None else "\nswap: version 2 did not become AVAILABLE within 80 s"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    print()
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores; server and load generator on the same machine, over loopback")
    print(f"load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in load_before)}, "
          f"after: {'/'.join(f'{x:.1f}' for x in load_after)} (above ~0.5 means other work shared the cores)")
    print(_table(rows) + swap_note)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
