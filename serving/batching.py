"""Server-side batching: concurrent requests to one signature share one model call.

Requests queue on the event loop. One batch per signature runs at a time (merged, sent to
the version's model process and split again, all on the event loop: no thread, so no hand-off
of the GIL between threads); while it runs, new requests gather, and the next batch takes them
all (up to `max_batch_size` rows). So an idle server answers a lone request at once, and a
busy one makes fewer, larger model calls. `timeout_s` > 0 additionally holds a batch open that long
for more requests, as TF Serving's `batch_timeout_micros` does.

The queue is bounded: a request that would take it over `max_queued_rows` rows is refused
at once with UNAVAILABLE (REST 503 with `Retry-After`), so a flood costs a refusal, never
unbounded memory or unbounded waiting.
"""

import asyncio
import collections
import dataclasses
import time
from typing import Awaitable, Callable

import numpy as np

from serving.errors import ServingError, unavailable

RunFn = Callable[[dict[str, np.ndarray]], Awaitable[dict[str, np.ndarray]]]  # one model call


@dataclasses.dataclass
class _Request:
    inputs: dict[str, np.ndarray]
    size: int
    future: asyncio.Future
    arrived: float


class Batcher:
    def __init__(self, run: RunFn, max_batch_size: int, timeout_s: float, max_queued_rows: int, on_batch: Callable[[int, float], None] | None = None, queue_gauge=None):
        self._run = run
        self._max = max(1, max_batch_size)
        self._timeout = timeout_s
        self._max_queued = max(self._max, max_queued_rows)
        self._on_batch = on_batch
        self._queue_gauge = queue_gauge
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_rows = 0
        self._draining = False
        self._filled: asyncio.Future | None = None
        self.calls = 0  # model calls made, for tests and stats

    def _set_queued(self, rows: int) -> None:
        self._queued_rows = rows
        if self._queue_gauge is not None:
            self._queue_gauge.set(rows)

    async def submit(self, inputs: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
        if self._queued_rows + size > self._max_queued:
            raise unavailable(
                f"the batch queue is full ({self._queued_rows} rows waiting, at most {self._max_queued}: "
                "--max-queued-rows); retry shortly"
            )
        loop = asyncio.get_running_loop()
        request = _Request(inputs, size, loop.create_future(), time.monotonic())
        self._queue.append(request)
        self._set_queued(self._queued_rows + size)
        if self._filled is not None and self._queued_rows >= self._max and not self._filled.done():
            self._filled.set_result(None)
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await request.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self._timeout > 0 and self._queued_rows < self._max:
                    wait = self._queue[0].arrived + self._timeout - time.monotonic()
                    if wait > 0:
                        self._filled = loop.create_future()
                        await asyncio.wait([self._filled], timeout=wait)
                        self._filled = None
                batch = [self._queue.popleft()]
                rows = batch[0].size
                while self._queue and rows + self._queue[0].size <= self._max:
                    request = self._queue.popleft()
                    batch.append(request)
                    rows += request.size
                self._set_queued(self._queued_rows - rows)
                batch = [r for r in batch if not r.future.done()]  # drop requests whose client left
                if not batch:
                    continue
                try:
                    results = await self._run_batch(batch)
                except Exception as e:  # noqa: BLE001 - hand any failure to the callers
                    results = [e] * len(batch)
                for request, result in zip(batch, results):
                    if request.future.done():
                        continue
                    if isinstance(result, BaseException):
                        request.future.set_exception(result)
                    else:
                        request.future.set_result(result)
        finally:
            self._draining = False

    async def _run_batch(self, batch: list[_Request]) -> list:
        """Returns, per request, its outputs or its exception."""
        self.calls += 1
        start = time.perf_counter()
        total = sum(r.size for r in batch)
        try:
            if len(batch) == 1:
                return [await self._run_one(batch[0].inputs)]
            merged = {name: np.concatenate([r.inputs[name] for r in batch]) for name in batch[0].inputs}
            try:
                outputs = await self._run(merged)
            except ServingError:
                # One bad request (say, an example that does not parse) must not fail the others:
                # run each alone so only the guilty one gets the error.
                return [await self._run_one(r.inputs) for r in batch]
            if any(a.ndim == 0 or a.shape[0] != total for a in outputs.values()):
                return [await self._run_one(r.inputs) for r in batch]  # outputs not per row: cannot split
            results, start_row = [], 0
            for request in batch:
                end = start_row + request.size
                results.append({name: a[start_row:end] for name, a in outputs.items()})
                start_row = end
            return results
        finally:
            if self._on_batch is not None:
                self._on_batch(total, time.perf_counter() - start)

    async def _run_one(self, inputs):
        try:
            return await self._run(inputs)
        except Exception as e:  # noqa: BLE001 - returned to the caller, not raised here
            return e
