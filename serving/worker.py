"""Each loaded version runs in a process of its own: loading, warming and running a model
never take the serving process's interpreter (its GIL), so a version that loads while the
server is busy does not hold the event loop back, and the HTTP/JSON work and the model's work
run on two cores.

The processes are forked from one process (`serving/forkserver.py`) that has imported
TensorFlow and this module once, so a new one starts in milliseconds and shares those pages. A version's process loads the
SavedModel (`serving.model.LoadedVersion`), replays its warmup (`serving.warmup`), reports
its signatures, then runs one call at a time from a pipe: the serving process's event loop
writes a batch (numpy arrays) to the pipe and goes on serving; it reads the outputs when the
pipe turns readable (no thread in between, so no waiting for the GIL). The process ends
when the server drops the version and the last request holding it has finished, when the
server stops, or when the server's process dies (the pipe closes).
"""

import asyncio
import gc
import logging
import os
import signal
import weakref

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2

from serving import forkserver
from serving.errors import LoadError, ServingError, unavailable
from serving.model import LoadedVersion, VersionBase
from serving.warmup import warm_up

log = logging.getLogger("serving")

class VersionProcess(VersionBase):
    """A version whose model runs in its own process; raises what loading raised."""

    def __init__(self, model_name: str, version: int, path: str):
        context = forkserver.context()
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, model_name, version, path),
                                        name=f"model-{model_name}-{version}", daemon=True)
        self._process.start()
        child.close()
        self._finalizer = weakref.finalize(self, _stop, self._conn, self._process)
        self._one_call: asyncio.Lock | None = None  # made on the event loop, at the first call
        try:
            reply = self._conn.recv()
        except (EOFError, OSError):
            self._finalizer()
            raise LoadError(f"the model process exited while loading (exit code {self._process.exitcode})") from None
        if reply[0] != "ready":
            self._finalizer()
            raise LoadError(reply[1])
        _, serialized, callable_names, warmup_requests = reply
        defs = {name: meta_graph_pb2.SignatureDef.FromString(data) for name, data in serialized.items()}
        super().__init__(model_name, version, path, defs, callable_names)
        self.warmup_requests = warmup_requests

    async def call(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a signature in the version's process, from the event loop. One call at a time:
        the process is then always waiting for the request, so writing it never waits for the
        model. A caller cancelled midway (a gRPC client gone) does not cut the exchange short,
        which would leave its answer in the pipe for the next call."""
        return await asyncio.shield(asyncio.get_running_loop().create_task(self._exchange(signature_name, inputs)))

    async def _exchange(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._one_call is None:
            self._one_call = asyncio.Lock()
        async with self._one_call:
            loop = asyncio.get_running_loop()
            answered = loop.create_future()
            try:
                fd = self._conn.fileno()
                self._conn.send((signature_name, inputs))
                loop.add_reader(fd, _set_none, answered)
                try:
                    await answered
                finally:
                    loop.remove_reader(fd)
                    # uvloop's add_reader (libuv's poll) turns the pipe non-blocking, where a
                    # recv of an answer larger than the pipe's buffer could find only its first
                    # part there (BlockingIOError), and a send of a large request fail alike.
                    os.set_blocking(fd, True)
                reply = self._conn.recv()  # the rest of the answer follows its first byte at once
            except (EOFError, OSError, ValueError):
                log.error("model %s version %d: its process is gone (exit code %s)",
                          self.model_name, self.version, self._process.exitcode)
                raise unavailable(f"version {self.version} of model {self.model_name} is not running; retry") from None
        if reply[0] == "ok":
            return reply[1]
        raise ServingError(reply[1], reply[2])

    def close(self) -> None:
        self._finalizer()


def _set_none(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _stop(conn, process) -> None:
    try:
        conn.send(None)
    except (OSError, ValueError):
        pass
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join(timeout=10)
    conn.close()


def _serve(conn, model_name: str, version: int, path: str) -> None:
    """The version's process: load, warm up, then answer calls until told to stop."""
    # The server stops its model processes itself; a Ctrl-C to the terminal's process group
    # must not end them before the requests in flight are done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        loaded = LoadedVersion(model_name, version, path)
        count = warm_up(loaded)
    except Exception as e:  # noqa: BLE001 - reported to the server, which reports the version END
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    gc.freeze()  # the model's objects stay: full collections need not walk them (serving/server.py)
    serialized = {name: d.SerializeToString() for name, d in loaded.signature_defs.items()}
    conn.send(("ready", serialized, list(loaded.signatures), count))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if message is None:
            return
        signature_name, inputs = message
        try:
            conn.send(("ok", loaded.run(signature_name, inputs)))
        except ServingError as e:
            conn.send(("error", e.code, e.message))
        except Exception:  # noqa: BLE001 - a fault in the model, not the client's
            logging.getLogger("serving").exception("model %s version %d: a call failed", model_name, version)
            conn.send(("error", "INTERNAL", "internal error in the model; the server's log has the details"))
