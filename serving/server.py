"""The model server: command line, start-up, shutdown, and the threads it runs.

    python -m serving --serving-dir DIR --model-name taxi [--rest-port 8501] [--grpc-port 8500]
    python -m serving --model-config-file models.config     # TF Serving's format: several models, labels

Threads: the event loop (uvloop: REST through uvicorn, gRPC through grpc.aio, batching), one
model thread per model (TF calls), and a poller that loads newly pushed versions (and rereads
the model config file when asked to). Port 0 picks a free port; the chosen ports are printed
(`REST listening on http://HOST:PORT`, `gRPC listening on HOST:PORT`) and kept on the
`ModelServer` object for in-process use:

    with ModelServer(ServerConfig(serving_dir=d, model_name="taxi", rest_port=0, grpc_port=0)) as s:
        requests.get(f"{s.rest_url}/v1/models/taxi")

Stopping (`stop()`, SIGTERM or SIGINT): readiness turns 503, both ports stop accepting, the
requests in flight finish (for at most `--grace-seconds`), then the process exits 0.
"""

import argparse
import asyncio
import dataclasses
import gc
import logging
import resource
import signal
import threading
import time

import grpc
import uvloop

from serving import model_config
from serving.errors import ServingError
from serving.grpc_api import add_services
from serving.http import HttpLimits, HttpServer, bind
from serving.jsonio import MAX_DEPTH_LIMIT
from serving.metrics import Metrics
from serving.rest import RestApi
from serving.service import InferenceService, Limits
from serving.versions import ModelVersions, VersionPolicy
from serving.worker import VersionProcess

log = logging.getLogger("serving")
MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    serving_dir: str = ""
    model_name: str = "model"
    model_config_file: str = ""  # TF Serving's ModelServerConfig text file; replaces the two above
    model_config_poll_seconds: float = 0.0  # reread the file this often (0: never), as TF Serving
    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    poll_seconds: float = 2.0
    keep_versions: int = 2
    max_batch_size: int = 1024
    batch_timeout_ms: float = 0.0
    max_queued_rows: int = 16_384
    max_request_bytes: int = 10 * MiB
    max_response_bytes: int = 64 * MiB
    max_instances: int = 10_000
    max_json_depth: int = 32
    max_connections: int = 1024
    max_buffered_bytes: int = 256 * MiB
    max_header_bytes: int = 64 * 1024
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 20.0
    grpc_max_concurrent_rpcs: int = 256
    grace_seconds: float = 10.0


def load_version(model_name: str, version: int, path: str) -> VersionProcess:
    """Loads and warms a version up, in a process of its own (serving/worker.py)."""
    return VersionProcess(model_name, version, path)


def _raise_fd_limit(wanted: int) -> None:
    """Raises this process's open-file limit to what the connection cap needs (up to the hard
    limit), so that the cap, not the limit, is what refuses a flood of connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("the open-file limit (%d) is below what --max-connections %d needs; new connections "
                    "may fail before the cap refuses them", target, wanted - 256)


class ModelServer:
    """Serves the configured models' versions over REST and gRPC until `stop()`."""

    def __init__(self, config: ServerConfig, http_server=HttpServer):
        """`http_server`: the REST transport (benchmarks/http_candidates.py tries others)."""
        if config.max_json_depth > MAX_DEPTH_LIMIT:
            raise ValueError(f"--max-json-depth is at most {MAX_DEPTH_LIMIT}")
        self.config = config
        self.metrics = Metrics()
        self._specs = self._read_models()
        self.service = InferenceService(
            {spec.name: self._versions(spec) for spec in self._specs},
            Limits(config.max_batch_size, config.batch_timeout_ms / 1000.0, config.max_instances,
                   config.max_queued_rows),
            self.metrics,
        )
        self.api = RestApi(self.service, config.max_json_depth)
        self._http_server = http_server
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._startup_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_serving: asyncio.Event | None = None
        self._threads: list[threading.Thread] = []

    # ---- the models

    def _read_models(self) -> list[model_config.ModelSpec]:
        cfg = self.config
        if cfg.model_config_file:
            return model_config.read(cfg.model_config_file)
        if not cfg.serving_dir:
            raise model_config.ConfigError("give --serving-dir (with --model-name) or --model-config-file")
        policy = VersionPolicy("latest", num_versions=max(1, cfg.keep_versions))
        return [model_config.ModelSpec(cfg.model_name, cfg.serving_dir, policy)]

    def _versions(self, spec: model_config.ModelSpec) -> ModelVersions:
        return ModelVersions(spec.name, spec.base_path, load_version, spec.policy, spec.label_map,
                             on_change=lambda states, name=spec.name: self.metrics.set_versions(name, states))

    @property
    def versions(self) -> ModelVersions:
        """The only model's versions (a server of one model)."""
        [versions] = self.service.models.values()
        return versions

    def _reload_config(self) -> None:
        """Applies a changed model config file: new models are loaded, removed ones dropped
        (requests holding them finish), others get the new labels and version policy."""
        try:
            specs = self._read_models()
        except model_config.ConfigError as e:
            log.error("keeping the current models: %s", e)
            return
        if specs == self._specs:
            return
        models = {}
        for spec in specs:
            current = self.service.models.get(spec.name)
            if current is not None and current.base_path == spec.base_path:
                current.set_labels(spec.label_map, spec.policy)
                models[spec.name] = current
            else:
                models[spec.name] = self._versions(spec)
                models[spec.name].poll()
        dropped = sorted(set(self.service.models) - set(models))
        self.service.models = models
        self._specs = specs
        for name in dropped:
            self.metrics.set_versions(name, {})
        log.info("model config reloaded: serving %s%s", sorted(models), f"; dropped {dropped}" if dropped else "")

    # ---- start and stop

    @property
    def rest_url(self) -> str:
        return f"http://{_host_port(self.config.host, self.rest_port)}"

    @property
    def grpc_target(self) -> str:
        return _host_port(self.config.host, self.grpc_port)

    def start(self) -> "ModelServer":
        """Loads the versions already on disk, then listens; returns once both ports are bound."""
        _raise_fd_limit(self.config.max_connections + 256)
        for versions in self.service.models.values():
            versions.poll()
        # TensorFlow's import leaves millions of Python objects that every full garbage
        # collection would walk again (a pause of 100s of ms, in the middle of requests):
        # they live as long as the process, so the collector is told to leave them be.
        gc.freeze()
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
        """Graceful: refuses new work, lets requests in flight finish within the grace period."""
        self.api.shutting_down = True
        self._stopping.set()
        if self._loop is not None and self._stop_serving is not None:
            self._loop.call_soon_threadsafe(self._stop_serving.set)
        for thread in self._threads:
            thread.join(timeout=self.config.grace_seconds + 10)
        for versions in self.service.models.values():
            for version in versions.loaded.values():
                version.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _poll_thread(self) -> None:
        cfg = self.config
        next_config_read = time.monotonic() + cfg.model_config_poll_seconds
        while not self._stopping.wait(cfg.poll_seconds):
            try:
                if cfg.model_config_file and cfg.model_config_poll_seconds > 0 and time.monotonic() >= next_config_read:
                    next_config_read = time.monotonic() + cfg.model_config_poll_seconds
                    self._reload_config()
                for versions in list(self.service.models.values()):
                    versions.poll()
            except Exception:  # noqa: BLE001 - keep polling whatever one poll hit
                log.exception("polling the models failed")

    def _serve_thread(self) -> None:
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._startup_error = e
            self._ready.set()
        finally:
            loop.close()

    def _http_limits(self) -> HttpLimits:
        cfg = self.config
        return HttpLimits(
            max_connections=cfg.max_connections,
            header_timeout_s=cfg.header_timeout_seconds,
            body_timeout_s=cfg.body_timeout_seconds,
            keep_alive_s=cfg.keep_alive_seconds,
            max_header_bytes=cfg.max_header_bytes,
            max_request_bytes=cfg.max_request_bytes,
            max_buffered_bytes=cfg.max_buffered_bytes,
            grace_s=cfg.grace_seconds,
        )

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_serving = asyncio.Event()
        cfg = self.config
        sock = bind(cfg.host, cfg.rest_port)
        self.rest_port = sock.getsockname()[1]
        http = self._http_server(self.api, self._http_limits(), self.metrics)
        rpc = grpc.aio.server(
            maximum_concurrent_rpcs=cfg.grpc_max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", cfg.max_request_bytes),
                ("grpc.max_send_message_length", cfg.max_response_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        add_services(rpc, self.service)
        try:
            self.grpc_port = rpc.add_insecure_port(_host_port(cfg.host, cfg.grpc_port))
        except RuntimeError as e:
            sock.close()
            raise OSError(f"cannot listen for gRPC on {_host_port(cfg.host, cfg.grpc_port)}: {e}") from None
        await http.start(sock)
        await rpc.start()
        self._ready.set()
        await self._stop_serving.wait()
        await asyncio.gather(rpc.stop(grace=cfg.grace_seconds), http.stop())


def _host_port(host: str, port) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_FLAGS = {  # config field -> help; the flag is --field-with-dashes
    "serving_dir": "the model base path: holds one directory per integer version",
    "model_name": "name in the URLs and ModelSpec",
    "model_config_file": "TF Serving's --model_config_file (ModelServerConfig text): several models, version "
                         "policies and labels; replaces --serving-dir and --model-name",
    "model_config_poll_seconds": "reread the model config file this often; 0: never",
    "host": "address to listen on",
    "rest_port": "0 picks a free port",
    "grpc_port": "0 picks a free port",
    "poll_seconds": "how often to look for new versions",
    "keep_versions": "how many of the newest versions stay loaded (--serving-dir)",
    "max_batch_size": "rows per model call",
    "batch_timeout_ms": "extra wait for a batch to fill; 0 runs as soon as the model is free",
    "max_queued_rows": "rows waiting for the model, per signature; more is 503 / UNAVAILABLE",
    "max_request_bytes": "larger REST bodies get 413, gRPC messages RESOURCE_EXHAUSTED",
    "max_response_bytes": "larger gRPC responses are RESOURCE_EXHAUSTED",
    "max_instances": "rows per request; more is 400 / INVALID_ARGUMENT",
    "max_json_depth": "deeper-nested JSON bodies get 400",
    "max_connections": "REST connections beyond this are answered 503 and closed",
    "max_buffered_bytes": "request bodies held at once, in all; past it 503 with Retry-After",
    "max_header_bytes": "larger request headers get 431",
    "header_timeout_seconds": "request headers must arrive within this, else 408",
    "body_timeout_seconds": "a request body must arrive within this, else 408",
    "keep_alive_seconds": "an idle kept-alive connection is closed after this",
    "grpc_max_concurrent_rpcs": "gRPC calls running at once; more are RESOURCE_EXHAUSTED",
    "grace_seconds": "on SIGTERM, how long requests in flight may take to finish",
}


def parse_args(argv: list[str] | None) -> ServerConfig:
    defaults = ServerConfig()
    p = argparse.ArgumentParser(prog="serve", description="Serve models with TF Serving's REST and gRPC APIs.")
    for field in dataclasses.fields(ServerConfig):
        default = getattr(defaults, field.name)
        p.add_argument("--" + field.name.replace("_", "-"), type=type(default), default=default,
                       help=f"{_FLAGS[field.name]} (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.serving_dir and not args.model_config_file:
        p.error("give --serving-dir (with --model-name) or --model-config-file")
    return ServerConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerConfig)})


def main(argv: list[str] | None = None) -> int:
    """Runs the server until SIGINT or SIGTERM, then stops gracefully and returns 0.
    `argv` excludes the program name."""
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    done = threading.Event()  # set by SIGINT or SIGTERM, from now on (also while starting)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        server = ModelServer(config)
        server.start()
    except (OSError, ServingError, ValueError) as e:
        print(f"serve: {e}", flush=True)
        return 1
    print(f"REST listening on {server.rest_url}", flush=True)
    print(f"gRPC listening on {server.grpc_target}", flush=True)
    done.wait()
    log.info("stopping: finishing the requests in flight (at most %g s)", config.grace_seconds)
    server.stop()
    return 0
