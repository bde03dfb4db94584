"""An acceptance-only cell: K requests side by side on K slots of one llama-server (``--parallel K``).

The pinned llama-server drafts for every slot (``common_speculative_init`` with one sequence per
slot) and verifies the slots' drafts in one batch, so a small model keeps the GPU busy. Each
request is pinned to a free slot (``id_slot``): its response ``timings`` count its own drafts and
accepts exactly, and its lines of the server's trace log (told apart by slot) give its per-step
counts. ``/metrics`` is not read (its counters mix the slots), and the speed of a request that
shared the server is not a speed: such rows carry ``slots`` = K, and the report says "not
measured".

``SlotRun`` is the worker's side of such a cell. Its threads only talk HTTP; the requests stay
in flight between the driver's ``collect`` calls, and each call returns the rows of the requests
that finished meanwhile (at least one), so the driver writes every row as soon as it can.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ..client import Outcome, chat_body, measure_request
from ..engine.server import LlamaServer
from ..errors import RequestError, ServerError
from ..overhead import Stopwatch
from ..plan import PlannedRequest
from ..request_rows import record_from
from .events import Drained, GaveUp, RequestDone, Settled


def _measure_on_a_free_slot(server: LlamaServer, body: dict, timeout: float, slots: "queue.Queue[int]",
                            clocks: list[Stopwatch]) -> Outcome:
    slot = slots.get()
    try:  # one request at a time per slot, so the slot's stopwatch is never shared between threads
        return measure_request(server, body, timeout=timeout, slot=slot, clock=clocks[slot])
    finally:
        slots.put(slot)


class SlotRun:
    """One side-by-side cell on ``worker`` (a ``worker.ServerWorker``, which starts and stops its
    servers). A failed request is a row and is tried again up to ``retries`` times; a server that
    dies is restarted; a server that keeps failing to start gives the model up, as in a
    sequential cell."""

    def __init__(self, worker, requests: list[tuple[PlannedRequest, int]]):
        self.worker = worker
        self.k = worker.task.parallel
        # (request, its next attempt number, tries left in this run)
        retries = worker.task.group.options.settings.retries
        self.todo: deque[tuple[PlannedRequest, int, int]] = deque((r, before + 1, retries) for r, before in requests)
        self.running: dict[Future, tuple[PlannedRequest, int, int, float]] = {}
        self.pool = ThreadPoolExecutor(max_workers=self.k, thread_name_prefix="slot")
        self.clocks = [Stopwatch() for _ in range(self.k)]  # one per slot
        self.free: queue.Queue[int] = queue.Queue()
        self.start_failures = 0

    def _again(self, request: PlannedRequest, attempt: int, left: int, events: list) -> None:
        """Try ``request`` again if it has tries left; else it is settled with the failed row it has."""
        if left > 0:
            self.todo.appendleft((request, attempt + 1, left - 1))
        else:
            events.append(Settled(request.cell))

    def _start(self, events: list) -> bool:
        """A fresh server for the cell; on failure the first waiting request gets the failed row."""
        worker = self.worker
        if worker.server is not None:
            events += worker.stop_server("died")
        request, attempt, left = self.todo.popleft()
        try:
            events += worker.start_server("parallel")
        except (ServerError, RequestError) as exc:
            self.start_failures += 1
            events.append(worker.failure(request, 0, attempt, f"server start failed: {exc}",
                                         getattr(exc, "log_tail", "")))
            if self.start_failures > worker.task.group.options.settings.retries:
                events += [Settled(request.cell), GaveUp(f" ({exc})")]
                self.todo.clear()
                return False
            self._again(request, attempt, left, events)
            return False
        self.todo.appendleft((request, attempt, left))
        self.start_failures = 0
        self.free = queue.Queue()
        for slot in range(self.k):
            self.free.put(slot)
        return True

    def collect(self) -> list:
        worker, sampling = self.worker, self.worker.task.sampling
        events: list = []
        while self.todo or self.running:
            server = worker.server
            if server is None or (not self.running and not server.alive()):
                if not self._start(events):
                    continue
                server = worker.server
            while self.todo and len(self.running) < self.k and server.alive():
                request, attempt, left = self.todo.popleft()
                body = chat_body(request.prompt.messages, sampling.max_tokens, sampling.temperature, request.seed,
                                 sampling.thinking)
                # K requests share the machine: each may take up to K times as long as alone.
                timeout = worker.request_timeout(request.model_label) * self.k
                future = self.pool.submit(_measure_on_a_free_slot, server, body, timeout, self.free, self.clocks)
                self.running[future] = (request, attempt, left, time.time())
            if not self.running:
                continue
            finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in finished:
                events += self._settle(future, server)
            return events
        events.append(Drained())
        return events

    def _settle(self, future: Future, server: LlamaServer) -> list:
        worker = self.worker
        request, attempt, left, started = self.running.pop(future)
        events: list = []
        try:
            outcome = future.result()
        except (RequestError, ServerError) as exc:
            events.append(worker.failure(request, worker.key, attempt, str(exc),
                                         getattr(exc, "log_tail", "") or server.log_tail(), started))
            self._again(request, attempt, left, events)
            return events
        with worker.clock.phase("record"):
            record = record_from(worker.task.run_id, worker.key, request, attempt, started, outcome, slots=self.k)
        worker.note_wall(request.model_label, outcome.wall_ms / self.k)
        return [RequestDone(record), Settled(request.cell)]

    def close(self) -> None:
        """After the server stopped: the requests in flight have ended with it; the slots' time is counted."""
        for future in self.running:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.running.clear()
        for clock in self.clocks:
            self.worker.clock.merge(clock)
