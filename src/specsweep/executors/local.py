"""The default executor: every group in plan order, one server at a time, in this process."""

from __future__ import annotations

from ..engine.locate import Engine
from ..engine.mps import PrivateMps
from ..plan import PlannedRequest, ServerGroup
from .recorder import Call, Recorder
from .worker import ServerWorker


class LocalExecutor:
    name = "local"
    servers_get_gpus = True  # the machine's, when the engine has a GPU backend

    def __init__(self, engine: Engine, share_gpu: bool = False, mps: bool = True):
        """``share_gpu``: several servers of the sweep run at once (--side-by-side servers or cells); on
        a CUDA engine they then share the GPU through a private MPS daemon (``engine.mps``), unless
        ``mps`` is False (--no-mps)."""
        self.engine = engine
        self.mps = PrivateMps() if share_gpu and mps and engine.backend == "cuda" else None
        # In the run's notes: whether servers side by side had an MPS daemon.
        self.run_notes: dict = {"mps": "off" if self.mps is None else "not started"} if share_gpu else {}

    def connect(self) -> None:
        """Nothing to reach: the servers run here. Servers that share a GPU get its MPS daemon first."""
        if self.mps is not None:
            self.run_notes["mps"] = self.mps.start()

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
        """The MPS daemon, if this sweep started one, quits."""
        if self.mps is not None:
            self.mps.stop()
