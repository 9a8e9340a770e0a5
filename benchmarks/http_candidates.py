"""The model server with its REST API on another HTTP library, for the side-by-side measure
that chose uvicorn (`benchmarks/serve_bench.py --http aiohttp granian uvicorn`).

    python benchmarks/http_candidates.py --library aiohttp <python -m serving flags>

Everything but the HTTP layer is the product's server (`serving.server.ModelServer`): the same
REST API, batching, gRPC and models. Only the speed is compared here: these adapters read the
body and answer, without the server's limits (`serving/http.py` has those, for uvicorn).
They need the library installed beside the lock's packages (the lock pins only uvicorn):
    .venv/bin/uv pip install aiohttp==3.14.5 granian==2.8.7
"""

import argparse
import asyncio
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serving.server import HttpServer, ModelServer, parse_args  # noqa: E402


class AiohttpServer:
    """aiohttp's low-level server (its C HTTP parser), on the server's uvloop."""

    def __init__(self, api, limits, metrics):
        self.api = api
        self._server = None

    async def start(self, sock):
        from aiohttp import web

        async def handler(request):
            response = await self.api.handle(request.method, request.path, await request.read())
            return web.Response(status=response.status, body=response.body,
                                headers={"content-type": response.content_type.decode()})

        self._server = await asyncio.get_running_loop().create_server(
            web.Server(handler, access_log=None), sock=sock)

    async def stop(self):
        self._server.close()
        await self._server.wait_closed()


class GranianServer:
    """granian (Rust, hyper) in embedded mode, with its RSGI interface (faster than its ASGI)."""

    def __init__(self, api, limits, metrics):
        self.api = api
        self._server = None
        self._task = None

    async def start(self, sock):
        from granian.constants import Interfaces
        from granian.server.embed import Server

        host, port = sock.getsockname()[:2]
        sock.close()  # granian binds its own socket

        async def app(scope, proto):
            response = await self.api.handle(scope.method, scope.path, await proto())
            proto.response_bytes(response.status, [("content-type", response.content_type.decode())], response.body)

        self._server = Server(app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False,
                              websockets=False)
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        await asyncio.sleep(0.5)

    async def stop(self):
        self._server.stop()
        await self._task


LIBRARIES = {"uvicorn": HttpServer, "aiohttp": AiohttpServer, "granian": GranianServer}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--library", choices=sorted(LIBRARIES), required=True)
    known, rest = p.parse_known_args(argv)
    server = ModelServer(parse_args(rest), http_server=LIBRARIES[known.library]).start()
    print(f"REST listening on {server.rest_url}", flush=True)
    print(f"gRPC listening on {server.grpc_target}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
