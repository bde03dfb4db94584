"""An acceptance-only cell: K requests side by side on K slots of one llama-server (``--parallel K``).

The pinned llama-server drafts for every slot (``common_speculative_init`` with one sequence per
slot) and verifies the slots' drafts in one batch, so a small model keeps the GPU busy. Each
request is pinned to a free slot (``id_slot``): its response ``timings`` count its own drafts and
accepts exactly, and its lines of the server's trace log (told apart by slot) give its per-step
counts. ``/metrics`` is not read (its counters mix the slots), and the speed of a request that
shared the server is not a speed: such rows carry ``slots`` = K, and the report says "not
measured". Rows are written by the main thread as requests finish; worker threads only talk HTTP.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .client import Outcome, chat_body, measure_request
from .errors import RequestError, ServerError
from .engine.server import LlamaServer
from .overhead import Stopwatch
from .plan import PlannedRequest, ServerGroup
from .request_rows import record_from


def _measure_on_a_free_slot(server: LlamaServer, body: dict, timeout: float, slots: "queue.Queue[int]",
                            clocks: list[Stopwatch]) -> Outcome:
    slot = slots.get()
    try:  # one request at a time per slot, so the slot's stopwatch is never shared between threads
        return measure_request(server, body, timeout=timeout, slot=slot, clock=clocks[slot])
    finally:
        slots.put(slot)


def run_parallel_group(sweep, group: ServerGroup, pending: list[PlannedRequest]) -> None:
    """Measure ``pending`` on one server with ``sweep.config.parallel`` slots (``sweep``: the
    ``specsweep.sweep.Sweep`` whose cell this is; it starts and stops servers and writes rows). A failed request is
    a row and is tried again (``retries``); a server that dies is restarted; a model whose server
    keeps failing to start is skipped with its cells marked failed, as in a sequential cell."""
    k = sweep.config.parallel
    sampling = sweep.config.sampling
    retries = sweep.config.server.retries
    attempts = sweep.store.attempts(sweep.run.id)
    todo: deque[tuple[PlannedRequest, int]] = deque((r, attempts.get(r.cell, 0) + 1) for r in pending)
    server, server_id, start_failures = None, 0, 0
    clocks = [Stopwatch() for _ in range(k)]  # one per slot
    sweep.progress.describe(f"{group.model_label} · {group.drafting} · depth {group.depth} · {k} slots side by side")
    with ThreadPoolExecutor(max_workers=k, thread_name_prefix="slot") as pool:
        running: dict[Future, tuple[PlannedRequest, int, float]] = {}
        try:
            while todo or running:
                if server is None or (not running and not server.alive()):
                    if server is not None:
                        sweep._stop_server(server, server_id, "died")
                    request, attempt = todo[0]
                    try:
                        server, server_id = sweep._start_server(group, role="parallel")
                        start_failures = 0
                    except (ServerError, RequestError) as exc:
                        server = None
                        start_failures += 1
                        todo.popleft()
                        sweep.store_failure(request, 0, attempt, f"server start failed: {exc}",
                                            getattr(exc, "log_tail", ""))
                        if start_failures > retries:
                            sweep.result.skipped_models.append(group.model_label)
                            sweep.progress.advance()
                            sweep._mark_skipped(group, [r for r, _ in todo], f" ({exc})")
                            return
                        if attempt <= retries:
                            todo.appendleft((request, attempt + 1))
                        else:
                            sweep.progress.advance()
                        continue
                    slots: queue.Queue[int] = queue.Queue()
                    for slot in range(k):
                        slots.put(slot)
                while todo and len(running) < k and server.alive():
                    request, attempt = todo.popleft()
                    body = chat_body(request.prompt.messages, sampling.max_tokens, sampling.temperature,
                                     request.seed, sampling.thinking)
                    # K requests share the machine: each may take up to K times as long as alone.
                    timeout = sweep.request_timeout(request.model_label) * k
                    future = pool.submit(_measure_on_a_free_slot, server, body, timeout, slots, clocks)
                    running[future] = (request, attempt, time.time())
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    request, attempt, started = running.pop(future)
                    try:
                        outcome = future.result()
                    except (RequestError, ServerError) as exc:
                        sweep.store_failure(request, server_id, attempt, str(exc),
                                            getattr(exc, "log_tail", "") or server.log_tail(), started)
                        if attempt <= retries:
                            todo.appendleft((request, attempt + 1))
                        else:
                            sweep.progress.advance()
                        continue
                    with sweep.clock.phase("record"):
                        record = record_from(sweep.run.id, server_id, request, attempt, started, outcome, slots=k)
                    with sweep.clock.phase("store"):
                        sweep.store.add_request(record)
                    sweep.note_wall(request.model_label, outcome.wall_ms / k)
                    sweep.result.performed += 1
                    sweep.progress.advance()
        finally:
            for future in running:
                future.cancel()
            if server is not None:
                sweep._stop_server(server, server_id, "done")  # in-flight requests end with the server
            for clock in clocks:
                sweep.clock.merge(clock)
