"""Where specsweep's own time goes during a sweep: a stopwatch per phase.

Everything outside the HTTP request itself is the tool's cost: reading ``/metrics``, reading the
server log, tokenizing the generated text again, writing the store. The sweep times each phase
and keeps the totals with the run (``notes["overhead"]``), so ``benchmarks/gpu_speed.py`` can
show the breakdown against the engine's own time.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

# The phases, in the order a request passes through them, then the per-server ones.
PHASES = ("metrics", "request", "log", "tokenize", "record", "finish_wait", "behind", "store", "replay",
          "server_start", "server_rows", "server_stop")
# Not the tool's per-request cost: the requests themselves (engine time), the work done behind the
# next request (tokenizing an answer again and building its row while the next one runs: only
# ``finish_wait``, waiting for it, sits between requests), the traced replays, and what each server
# costs once (start and warm-up, its store rows, its stop).
NOT_PER_REQUEST = ("request", "behind", "replay", "server_start", "server_rows", "server_stop")


def per_request_tool_phases(phases: dict) -> dict[str, float]:
    """Seconds of the tool's own per-request phases (scrapes, log reads, tokenizing, rows, store
    writes) from a ``Stopwatch.to_json`` reading."""
    return {name: v["seconds"] for name, v in phases.items() if name not in NOT_PER_REQUEST}


@dataclass
class Stopwatch:
    """Seconds and counts per phase. ``phase`` nests: time inside an inner phase counts there only."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    _inner: float = 0.0  # time spent in nested phases of the phase now running

    @contextmanager
    def phase(self, name: str):
        outer_inner, self._inner = self._inner, 0.0
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.add(name, spent - self._inner)
            self._inner = outer_inner + spent

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    def merge(self, other: "Stopwatch") -> None:
        for name, seconds in other.seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.counts[name] = self.counts.get(name, 0) + other.counts.get(name, 0)

    @classmethod
    def from_json(cls, data: dict) -> "Stopwatch":
        """The stopwatch ``to_json`` wrote (a worker's reading, sent to the driver)."""
        return cls({name: v["seconds"] for name, v in data.items()}, {name: v["count"] for name, v in data.items()})

    def to_json(self) -> dict:
        return {name: {"seconds": round(self.seconds[name], 6), "count": self.counts[name]}
                for name in sorted(self.seconds, key=lambda n: (PHASES.index(n) if n in PHASES else len(PHASES), n))}


class NullStopwatch(Stopwatch):
    """Times nothing (for callers that do not want a breakdown)."""

    @contextmanager
    def phase(self, name: str):
        yield

    def add(self, name: str, seconds: float) -> None:
        pass
