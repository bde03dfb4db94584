"""K server groups at once on this machine: ``--parallel K --side-by-side cells``.

An acceptance-only sweep's cells need not wait for each other: each lane here is a ``ServerWorker``
on a thread of its own that takes the next group, runs its cell on a one-slot traced server of its
own (``parallel.SideBySide`` in "cells" mode: one request at a time, as in a sequential sweep), and
takes the next. So K servers run side by side, and a server's start overlaps the other lanes' requests, which
K slots of one server per cell cannot do (its 25 starts stay one after another).

This process drives every lane as the Ray executor drives its actors: it hands each lane one call
at a time (``GroupRun.calls``) and writes what comes back, so SQLite is written by this thread alone
and the store, resume and reports are those of any sweep. After Ctrl-C every lane finishes its call
in flight (a request: seconds on a GPU), its row is written, and its server stops.

On a CUDA engine the lanes' servers share the GPU through a private MPS daemon (``engine.mps``):
without it K processes time-slice the GPU and each decodes several times slower than alone.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from ..engine.locate import Engine
from ..errors import Interrupted
from ..plan import PlannedRequest, ServerGroup
from .local import LocalExecutor
from .recorder import Call, GroupRun, Recorder
from .worker import ServerWorker

STOP_GRACE = 120.0  # seconds for the lanes' calls in flight to end after Ctrl-C before a second one is needed


@dataclass(eq=False)
class Lane:
    worker: ServerWorker
    pool: ThreadPoolExecutor  # one thread: the worker's calls run in order
    run: GroupRun | None = None
    calls: object = None  # the run's call iterator
    call: Call | None = None  # the call in flight


class LanesExecutor(LocalExecutor):
    """The local executor's machine and MPS daemon (``connect``, ``close``), with K groups at once."""

    name = "lanes"

    def __init__(self, engine: Engine, lanes: int, mps: bool = True):
        super().__init__(engine, share_gpu=True, mps=mps)
        self.width = lanes
        self.run_notes = {"lanes": lanes, **self.run_notes}  # the parent's MPS note (share_gpu)

    def run(self, work: list[tuple[ServerGroup, list[PlannedRequest]]], recorder: Recorder) -> None:
        queue = deque(work)
        lanes = [Lane(ServerWorker(self.engine.server), ThreadPoolExecutor(1, thread_name_prefix=f"cells-{i}"))
                 for i in range(min(self.width, len(work)))]
        inflight: dict[Future, Lane] = {}

        def feed(lane: Lane) -> None:
            """The lane's next call: the rest of its group, else the next group, else none."""
            while True:
                if lane.run is None:
                    if not queue:
                        return
                    lane.run = recorder.open(*queue.popleft())
                    if lane.run is None:  # its model was given up on: its cells are marked failed
                        continue
                    lane.calls = lane.run.calls()
                lane.call = next(lane.calls, None)
                if lane.call is None:
                    lane.run = None
                    continue
                inflight[lane.pool.submit(getattr(lane.worker, lane.call.method), *lane.call.args)] = lane
                return

        try:
            for lane in lanes:
                feed(lane)
            while inflight:
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in finished:
                    lane = inflight.pop(future)
                    lane.run.apply(lane.call, future.result())
                    feed(lane)
        except BaseException:
            self._stop_all(lanes, inflight)
            raise
        finally:
            for lane in lanes:
                lane.pool.shutdown(wait=False)

    @staticmethod
    def _stop_all(lanes: list[Lane], inflight: dict[Future, Lane]) -> None:
        """Ctrl-C or an error: each lane's call in flight ends (its rows are written), then its server
        stops and the stop is written. A second Ctrl-C or SIGTERM stops the waiting: the servers still
        open are written as interrupted, and each lane's thread ends its queued calls, its server's stop
        among them, before the process exits."""
        stopping: dict[Future, tuple[Lane, Call]] = {f: (lane, lane.call) for f, lane in inflight.items()}
        for lane in lanes:
            if lane.run is not None:  # runs after the call in flight: the lane's pool has one thread
                end = Call("end", ("interrupted",))
                stopping[lane.pool.submit(lane.worker.end, "interrupted")] = (lane, end)
        try:
            pending = set(stopping)
            while pending:
                finished, pending = wait(pending, timeout=STOP_GRACE, return_when=FIRST_COMPLETED)
                if not finished:
                    break
                # a lane's call in flight comes back before its end: the same thread ran both in order
                for future in sorted(finished, key=lambda f: stopping[f][1].method == "end"):
                    lane, call = stopping[future]
                    try:
                        events = future.result()
                    except Exception:  # noqa: BLE001 - the error being raised already says what went wrong
                        continue
                    lane.run.apply(call, events)
        except (KeyboardInterrupt, Interrupted):  # the second stop signal (SIGTERM raises Interrupted)
            pass
        for lane in lanes:
            if lane.run is not None:
                lane.run.close("interrupted")
