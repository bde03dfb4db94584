"""An acceptance-only cell: K requests side by side (``--parallel K``), in one of three ways.

* ``slots``: K slots of one llama-server. The pinned server drafts for every slot
  (``common_speculative_init`` with one sequence per slot) and verifies the slots' drafts in one
  batch: one copy of the model, but batched numerics, so a request's tokens (and its acceptance)
  may differ from the same request alone. Each request is pinned to a free slot (``id_slot``); its
  lines of the server's trace log are told apart by slot.
* ``servers``: K one-slot servers of the cell, one request per server as in a sequential sweep,
  at K copies of the model. Each lane starts its own server on its own thread, so K servers start
  at once, and without a ``threads`` setting each gets 1/K of the cores.
* ``cells``: K cells at once (``executors.lanes``), each here on one one-slot server of its own
  that runs the cell's requests one after another: like ``servers``, with K servers on the
  machine (1/K of the cores each) and their starts overlapping the other cells' requests.

On one GPU the K processes of ``servers`` and ``cells`` time-slice without MPS: each request ran
~8-10x slower than alone, and draft-mtp drafts read low (benchmarks/gpu-speed-h100.md,
gpu-speed-h200-cells.md). So on a CUDA engine the sweep starts an MPS daemon (``engine.mps``);
under it four cells at once drafted what one server alone drafts, 3.1-3.3x faster than a
sequential sweep on an H200.

Either way a request's response ``timings`` count its own drafts and accepts exactly and its trace
log slice gives its per-step counts; ``/metrics`` is not read, and the speed of a request that
shared the machine is not a speed: such rows carry ``slots`` = K, and the report says "not
measured".

``SideBySide`` is the worker's side of such a cell. Its lane threads only talk HTTP (and, for
``servers``, start their lane's server); the requests stay in flight between the driver's
``collect`` calls, and each call returns the rows of the requests that finished meanwhile (at
least one), so the driver writes every row as soon as it can.
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from ..client import Outcome, chat_body, measure_request
from ..config import ONE_SLOT_SERVERS
from ..engine.options import ServerOptions
from ..engine.server import LlamaServer
from ..errors import RequestError, ServerError
from ..overhead import Stopwatch
from ..plan import PlannedRequest
from ..request_rows import record_from
from .events import Drained, GaveUp, RequestDone, Settled


def lane_options(options: ServerOptions, k: int) -> ServerOptions:
    """A lane server's options: without a thread count of the sweep's own, K servers share the
    cores (llama-server takes them all by default, and K sets of spinning threads on the same cores
    slowed decoding several hundredfold on a 16-core GPU host)."""
    if options.settings.threads is not None:
        return options
    return replace(options, settings=replace(options.settings, threads=max(1, (os.cpu_count() or 1) // k)))


@dataclass
class Lane:
    """One of the K places a request runs: a slot of the shared server, or a server of its own."""

    index: int
    clock: Stopwatch = field(default_factory=Stopwatch)  # only its own thread uses it
    server: LlamaServer | None = None  # ``servers``: this lane's server
    key: int = 0
    first_peak: tuple | None = None


@dataclass
class LaneResult:
    outcome: Outcome | None = None
    error: Exception | None = None
    server_key: int = 0
    started_events: list = field(default_factory=list)  # a server this lane started for the request
    start_failed: bool = False


class SideBySide:
    """One side-by-side cell on ``worker`` (a ``worker.ServerWorker``). A failed request is a row and
    is tried again up to ``retries`` times; a server that dies is restarted; servers that keep
    failing to start give the model up, as in a sequential cell."""

    def __init__(self, worker, requests: list[tuple[PlannedRequest, int]]):
        self.worker = worker
        self.k = worker.task.parallel  # requests side by side on the machine
        self.cells = worker.task.side_by_side == "cells"
        self.width = 1 if self.cells else self.k  # requests of this cell in flight at once
        self.own_servers = worker.task.side_by_side in ONE_SLOT_SERVERS
        retries = worker.task.group.options.settings.retries
        # (request, its next attempt number, tries left in this run)
        self.todo: deque[tuple[PlannedRequest, int, int]] = deque((r, before + 1, retries) for r, before in requests)
        self.running: dict[Future, tuple[PlannedRequest, int, int, float, Lane]] = {}
        self.pool = ThreadPoolExecutor(max_workers=self.width, thread_name_prefix="lane")
        self.lanes = [Lane(i) for i in range(self.width)]
        self.free: queue.SimpleQueue[Lane] = queue.SimpleQueue()
        for lane in self.lanes:
            self.free.put(lane)
        self.start_failures = 0
        self.lane_options = lane_options(worker.task.group.options, self.k) if self.own_servers else None

    # the shared server (slots) ------------------------------------------------------
    def _start_shared(self, events: list) -> bool:
        """A fresh server for the cell; on failure the first waiting request gets the failed row."""
        worker = self.worker
        if worker.server is not None:
            events += worker.stop_server("died")
        request, attempt, left = self.todo.popleft()
        try:
            events += worker.start_server("parallel")
        except (ServerError, RequestError) as exc:
            events.append(worker.failure(request, 0, attempt, f"server start failed: {exc}",
                                         getattr(exc, "log_tail", "")))
            self._start_failed(request, attempt, left, str(exc), events)
            return False
        self.todo.appendleft((request, attempt, left))
        self.start_failures = 0
        return True

    def _start_failed(self, request: PlannedRequest, attempt: int, left: int, cause: str, events: list) -> None:
        self.start_failures += 1
        if self.start_failures > self.worker.task.group.options.settings.retries:
            events += [Settled(request.cell), GaveUp(f" ({cause})")]  # the driver marks the rest failed
            self.todo.clear()
        else:
            self._again(request, attempt, left, events)

    def _again(self, request: PlannedRequest, attempt: int, left: int, events: list) -> None:
        """Try ``request`` again if it has tries left; else it is settled with the failed row it has."""
        if left > 0:
            self.todo.appendleft((request, attempt + 1, left - 1))
        else:
            events.append(Settled(request.cell))

    # a lane's thread -------------------------------------------------------------------
    def _run_in_lane(self, lane: Lane, body: dict, timeout: float) -> LaneResult:
        result = LaneResult()
        if not self.own_servers:
            result.server_key = self.worker.server_key
            try:
                result.outcome = measure_request(self.worker.server, body, timeout=timeout, slot=lane.index,
                                                 clock=lane.clock)
            except (RequestError, ServerError) as exc:
                result.error = exc
            return result
        if lane.server is None or not lane.server.alive():
            if lane.server is not None:  # died: its row says so (the driver writes it with the failure)
                result.started_events += self.worker.retire(lane.server, lane.key, lane.first_peak, "died",
                                                            lane.clock, alone=False)
                lane.server = None
            try:
                suffix = f"-cells{self.k}" if self.cells else f"-np{self.k}-{lane.index}"
                lane.server, lane.key, lane.first_peak, started = self.worker.spawn(
                    "parallel", 1, suffix, lane.clock, self.lane_options, alone=False)
                result.started_events += started
            except (ServerError, RequestError) as exc:
                result.error, result.start_failed = exc, True
                return result
        result.server_key = lane.key
        try:
            result.outcome = measure_request(lane.server, body, timeout=timeout, clock=lane.clock, read_metrics=False)
        except (RequestError, ServerError) as exc:
            result.error = exc
            if isinstance(exc, RequestError):
                lane.server.stop_unanswered()
        return result

    # the driver's calls -------------------------------------------------------------------
    def collect(self) -> list:
        worker, sampling = self.worker, self.worker.task.sampling
        events: list = []
        while self.todo or self.running:
            if not self.own_servers:
                server = worker.server
                if server is None or (not self.running and not server.alive()):
                    if not self._start_shared(events):
                        continue
            while self.todo and len(self.running) < self.width and (self.own_servers or worker.server.alive()):
                request, attempt, left = self.todo.popleft()
                lane = self.free.get_nowait()
                body = chat_body(request.prompt.messages, sampling.max_tokens, sampling.temperature, request.seed,
                                 sampling.thinking)
                # K requests share the machine: each may take up to K times as long as alone.
                timeout = worker.request_timeout(request.model_label) * self.k
                future = self.pool.submit(self._run_in_lane, lane, body, timeout)
                self.running[future] = (request, attempt, left, time.time(), lane)
            if not self.running:
                continue
            finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in finished:
                events += self._settle(future)
            return events
        events.append(Drained())
        return events

    def _settle(self, future: Future) -> list:
        worker = self.worker
        request, attempt, left, started, lane = self.running.pop(future)
        self.free.put(lane)
        result: LaneResult = future.result()
        events = list(result.started_events)
        if result.start_failed:
            events.append(worker.failure(request, 0, attempt, f"server start failed: {result.error}",
                                         getattr(result.error, "log_tail", "")))
            self._start_failed(request, attempt, left, str(result.error), events)
            return events
        if result.error is not None:
            server = lane.server if self.own_servers else worker.server
            tail = getattr(result.error, "log_tail", "") or (server.log_tail() if server else "")
            events.append(worker.failure(request, result.server_key, attempt, str(result.error), tail, started))
            self._again(request, attempt, left, events)
            return events
        self.start_failures = 0
        with worker.clock.phase("record"):
            record = record_from(worker.task.run_id, result.server_key, request, attempt, started, result.outcome,
                                 slots=self.k)
        worker.note_wall(request.model_label, result.outcome.wall_ms / self.k)
        return events + [RequestDone(record), Settled(request.cell)]

    def _retire_lanes(self, reason: str) -> list:
        events: list = []
        for lane in self.lanes:
            if lane.server is not None:
                events += self.worker.retire(lane.server, lane.key, lane.first_peak, reason, self.worker.clock,
                                             alone=False)
                lane.server = None
        return events

    def close(self, reason: str) -> list:
        """After the shared server stopped (the requests in flight end with it): stop the lanes' own
        servers, and count the lanes' time."""
        for future in self.running:
            future.cancel()
        events = self._retire_lanes(reason)  # a request still in flight ends with its server
        self.pool.shutdown(wait=True, cancel_futures=True)
        events += self._retire_lanes(reason)  # one a lane was starting meanwhile
        self.running.clear()
        for lane in self.lanes:
            self.worker.clock.merge(lane.clock)
        return events
