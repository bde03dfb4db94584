"""What a worker reports, in the order the driver applies it (``recorder.GroupRun.apply``).

Workers never touch the store: every server start and stop, request row, replayed count and
stopwatch reading travels back as one of these, so the Ray executor can run workers on other
machines while this process stays the only writer of SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import RequestRecord, ServerRecord


@dataclass(frozen=True)
class ServerStarted:
    key: int  # the worker's own number for this server; requests name it in server_id
    record: ServerRecord


@dataclass(frozen=True)
class ServerStopped:
    key: int
    reason: str  # "done", "died", "interrupted"
    peak_memory: tuple[int, str] | None = None  # (bytes, source) sampled just before the stop


@dataclass(frozen=True)
class RequestDone:
    record: RequestRecord  # server_id is the worker's key (0: no server)


@dataclass(frozen=True)
class RowBehind:
    """A request succeeded; its row is being finished behind the next request and comes later."""

    cell: tuple


@dataclass(frozen=True)
class Settled:
    """A request of a side-by-side cell has its final row (the rows of failed tries came before)."""

    cell: tuple


@dataclass(frozen=True)
class Drained:
    """A side-by-side cell has nothing left to send or wait for."""


@dataclass(frozen=True)
class CountsReplayed:
    """The per-step counts of a stored request (its row id), from a traced replay."""

    row_id: int
    record: RequestRecord


@dataclass(frozen=True)
class Unconfirmed:
    """The warm-up drafted nothing although drafting was asked for (normal for n-gram types)."""

    group: str


@dataclass(frozen=True)
class GaveUp:
    """The group's server kept failing to start: the model is skipped."""

    cause: str


@dataclass(frozen=True)
class Overhead:
    """The worker's own time per phase since its last report (``specsweep.overhead.Stopwatch``)."""

    phases: dict
