"""The default executor: every group in plan order, one server at a time, in this process."""

from __future__ import annotations

from ..engine.locate import Engine
from ..plan import PlannedRequest, ServerGroup
from .recorder import Call, Recorder
from .worker import ServerWorker


class LocalExecutor:
    name = "local"
    servers_get_gpus = True  # the machine's, when the engine has a GPU backend

    def __init__(self, engine: Engine):
        self.engine = engine

    def connect(self) -> None:
        """Nothing to reach: the servers run here."""

    def run(self, work: list[tuple[ServerGroup, list[PlannedRequest]]], recorder: Recorder) -> None:
        worker = ServerWorker(self.engine.server)
        for group, pending in work:
            run = recorder.open(group, pending)
            if run is None:
                continue
            try:
                for call in run.calls():
                    run.apply(call, getattr(worker, call.method)(*call.args))
            finally:  # after Ctrl-C or an error the server stops here, and its row says so
                # (nothing left to stop when the group ended normally); the row finished behind the
                # last request is still written
                run.apply(Call("end", ("interrupted",)), worker.end("interrupted"))
                run.close("interrupted")

    def close(self) -> None:
        """Nothing to release."""
