"""The model server: command line, start-up, and the threads it runs.

    python -m serving --serving-dir DIR --model-name taxi [--rest-port 8501] [--grpc-port 8500]

Threads: the event loop (REST and gRPC requests, batching), one model thread (TF calls), and a
poller that loads newly pushed versions. Port 0 picks a free port; the chosen ports are printed
(`REST listening on http://HOST:PORT`, `gRPC listening on HOST:PORT`) and kept on the
`ModelServer` object for in-process use:

    with ModelServer(ServerConfig(serving_dir=d, model_name="taxi", rest_port=0, grpc_port=0)) as s:
        requests.get(f"{s.rest_url}/v1/models/taxi")
"""

import argparse
import asyncio
import dataclasses
import logging
import signal
import threading

import grpc

from serving.errors import ServingError
from serving.grpc_api import add_services
from serving.model import LoadedVersion
from serving.rest import HttpServer, RestApi
from serving.service import InferenceService, Limits
from serving.versions import ModelVersions

log = logging.getLogger("serving")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    serving_dir: str
    model_name: str = "model"
    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    poll_seconds: float = 2.0
    keep_versions: int = 2
    max_batch_size: int = 1024
    batch_timeout_ms: float = 0.0
    max_request_bytes: int = 10 * 1024 * 1024
    max_instances: int = 10_000


def _load_and_warm_up(version: int, path: str) -> LoadedVersion:
    loaded = LoadedVersion(version, path)
    loaded.warm_up()
    return loaded


class ModelServer:
    """Serves one model's versions over REST and gRPC until `stop()`."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.versions = ModelVersions(config.model_name, config.serving_dir, config.keep_versions, _load_and_warm_up)
        self.service = InferenceService(
            self.versions,
            Limits(config.max_batch_size, config.batch_timeout_ms / 1000.0, config.max_instances),
        )
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._startup_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_serving: asyncio.Event | None = None
        self._threads: list[threading.Thread] = []

    @property
    def rest_url(self) -> str:
        return f"http://{_host_port(self.config.host, self.rest_port)}"

    @property
    def grpc_target(self) -> str:
        return _host_port(self.config.host, self.grpc_port)

    def start(self) -> "ModelServer":
        """Loads the versions already on disk, then listens; returns once both ports are bound."""
        self.versions.poll()
        serve = threading.Thread(target=self._serve_thread, name="serving-loop", daemon=True)
        serve.start()
        self._ready.wait()
        if self._startup_error is not None:
            serve.join()
            raise self._startup_error
        poller = threading.Thread(target=self._poll_thread, name="serving-poller", daemon=True)
        poller.start()
        self._threads = [serve, poller]
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._loop is not None and self._stop_serving is not None:
            self._loop.call_soon_threadsafe(self._stop_serving.set)
        for thread in self._threads:
            thread.join(timeout=10)
        self.service.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _poll_thread(self) -> None:
        while not self._stopping.wait(self.config.poll_seconds):
            try:
                self.versions.poll()
            except Exception:  # noqa: BLE001 - keep polling whatever one poll hit
                log.exception("polling %s failed", self.config.serving_dir)

    def _serve_thread(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._startup_error = e
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_serving = asyncio.Event()
        cfg = self.config
        http = HttpServer(RestApi(self.service), cfg.max_request_bytes)
        self.rest_port = await http.start(cfg.host, cfg.rest_port)
        rpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", cfg.max_request_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ]
        )
        add_services(rpc, self.service)
        try:
            self.grpc_port = rpc.add_insecure_port(_host_port(cfg.host, cfg.grpc_port))
        except RuntimeError as e:
            await http.stop()
            raise OSError(f"cannot listen for gRPC on {_host_port(cfg.host, cfg.grpc_port)}: {e}") from None
        await rpc.start()
        self._ready.set()
        await self._stop_serving.wait()
        await rpc.stop(grace=1.0)
        await http.stop()


def _host_port(host: str, port) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_args(argv: list[str] | None) -> ServerConfig:
    defaults = ServerConfig(serving_dir="")
    p = argparse.ArgumentParser(prog="serve", description="Serve a model directory with TF Serving's REST and gRPC APIs.")
    p.add_argument("--serving-dir", required=True, help="the model base path: holds one directory per integer version")
    p.add_argument("--model-name", default=defaults.model_name, help="name in the URLs and ModelSpec (default: %(default)s)")
    p.add_argument("--host", default=defaults.host, help="address to listen on (default: %(default)s)")
    p.add_argument("--rest-port", type=int, default=defaults.rest_port, help="0 picks a free port (default: %(default)s)")
    p.add_argument("--grpc-port", type=int, default=defaults.grpc_port, help="0 picks a free port (default: %(default)s)")
    p.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds, help="how often to look for new versions (default: %(default)s)")
    p.add_argument("--keep-versions", type=int, default=defaults.keep_versions, help="how many of the newest versions stay loaded (default: %(default)s)")
    p.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size, help="rows per model call (default: %(default)s)")
    p.add_argument("--batch-timeout-ms", type=float, default=defaults.batch_timeout_ms, help="extra wait for a batch to fill; 0 runs as soon as the model is free (default: %(default)s)")
    p.add_argument("--max-request-bytes", type=int, default=defaults.max_request_bytes, help="larger REST bodies get 413, gRPC messages RESOURCE_EXHAUSTED (default: %(default)s)")
    p.add_argument("--max-instances", type=int, default=defaults.max_instances, help="rows per request (default: %(default)s)")
    args = p.parse_args(argv)
    return ServerConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerConfig)})


def main(argv: list[str] | None = None) -> int:
    """Runs the server until SIGINT or SIGTERM. `argv` excludes the program name."""
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = ModelServer(config)
    try:
        server.start()
    except (OSError, ServingError) as e:
        print(f"serve: {e}", flush=True)
        return 1
    print(f"REST listening on {server.rest_url}", flush=True)
    print(f"gRPC listening on {server.grpc_target}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0
