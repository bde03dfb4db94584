"""The Ray executor: the sweep's server groups spread over the nodes of a Ray cluster.

The driver (this process) starts one Ray actor per server slot (``NodeSlot``: the CPUs and GPUs
of one llama-server, as many as the cluster holds, at most ``--max-concurrent-servers``). Each
slot finds the run's engine on its node and then takes one group at a time: the driver sends it
the group and each request in turn, and writes every row it returns, so the store, resume,
reports and the cross-check are the same as with the local executor. A lost slot (its worker
process or node died) costs only its request in flight: the group's cells without a row go back
to the front of the queue for another slot, a bounded number of times. Ctrl-C stops every
server (gracefully, then by killing the actors, whose servers die with them) and leaves a
resumable run.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

from .. import __version__
from ..engine.locate import Engine
from ..errors import SpecsweepError, UsageError
from ..plan import PlannedRequest, ServerGroup
from .node import EngineSpec, NodeSlot
from .placement import Placement, slot_count, slots_per_node
from .recorder import Call, GroupRun, Recorder

MAX_LOSSES = 3  # a group whose worker is lost more often than this has its remaining cells marked failed
PROBE_TIMEOUT = 5.0  # seconds to reach the cluster's address before Ray is asked to connect
STOP_GRACE = 20.0  # seconds for slots to stop their servers after Ctrl-C before their actors are killed


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed",
                         hint="pip install 'specsweep[ray]'") from None
    return ray


def probe_address(address: str | None, shown: str | None = None) -> None:
    """An address nobody answers at is one error at once (Ray itself would retry for minutes)."""
    if not address:
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=PROBE_TIMEOUT).close()
    except (OSError, ValueError) as exc:
        where = address if shown in (None, address) else f"{shown} ({address})"
        raise UsageError(f"cannot reach the Ray cluster at {where}: {getattr(exc, 'strerror', None) or exc}",
                         hint="start one with 'ray start --head', or check --address") from None


@dataclass(eq=False)
class Slot:
    actor: object
    info: dict = field(default_factory=dict)  # from NodeSlot.setup: node id, host, GPUs, engine
    run: GroupRun | None = None
    calls: object = None  # the run's call iterator
    call: Call | None = None  # the call in flight
    groups: list[str] = field(default_factory=list)

    @property
    def node(self) -> str | None:
        return self.info.get("node_id")


class RayExecutor:
    name = "ray"

    def __init__(self, engine: Engine, address: str | None = None, gpus_per_server: float = 0.0,
                 cpus_per_server: float = 1.0, max_concurrent: int | None = None):
        self.ray = import_ray()
        self.engine = EngineSpec.of(engine)
        self.address = address
        self.gpus = gpus_per_server
        self.cpus = cpus_per_server
        self.limit = max_concurrent
        self.connected = False
        self.slots: list[Slot] = []  # the live ones
        self.set_up: list[Slot] = []  # every slot that reached its node, lost ones too: for provenance
        self.losses: dict[str, int] = {}

    @property
    def servers_get_gpus(self) -> bool:
        """Only slots given GPUs (--gpus-per-server) take the GPU defaults: else servers would pile onto one."""
        return self.gpus > 0

    def connect(self) -> None:
        target = self.address
        if target in (None, "auto"):  # what Ray would connect to: RAY_ADDRESS, or the last 'ray start' here
            try:
                target = self.ray._private.services.canonicalize_bootstrap_address(target)
            except Exception:  # noqa: BLE001 - Ray's own connect below says what is wrong
                target = None
        probe_address(target, shown=self.address or "RAY_ADDRESS")
        try:
            self.ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "RAY_ADDRESS or a new local instance"
            raise UsageError(f"cannot reach the Ray cluster at {where}: {str(exc).splitlines()[0]}",
                             hint="start one with 'ray start --head', or check --address") from None
        self.connected = True

    def close(self) -> None:
        if self.connected:
            self.ray.shutdown()
            self.connected = False

    # the run ------------------------------------------------------------------
    def run(self, work: list[tuple[ServerGroup, list[PlannedRequest]]], recorder: Recorder) -> None:
        if not work:
            return
        ray = self.ray
        count = slot_count(ray.nodes(), self.cpus, self.gpus, self.limit, len(work))
        if count == 0:
            raise UsageError(f"no node of the Ray cluster has room for one server ({self.cpus:g} CPUs, "
                             f"{self.gpus:g} GPUs)", hint="lower --gpus-per-server or --threads, or add nodes")
        self.recorder = recorder
        self.placement = Placement([(group.model_label, (group, pending)) for group, pending in work])
        self.inflight: dict[object, Slot] = {}
        self._provenance = dict(recorder.run.provenance)
        self._earlier_slots = list((self._provenance.get("cluster") or {}).get("slots", []))
        self.slots = []
        recorder.progress.describe(f"starting {count} server slots on the Ray cluster (engine on each node)")
        try:
            for _ in range(count):
                self._add_slot()
            while len(self.placement) or any(slot.run for slot in self.slots):
                if not self.inflight:
                    raise SpecsweepError("every Ray worker of the sweep was lost", hint="resume when the cluster "
                                                                                        "is back")
                ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    self._settle(ref)
        except BaseException:
            self._stop_all()
            raise
        finally:
            for slot in self.slots:
                ray.kill(slot.actor)

    def _add_slot(self) -> None:
        actor = self.ray.remote(NodeSlot).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0, max_task_retries=0,
            scheduling_strategy="SPREAD").remote()
        slot = Slot(actor, call=Call("setup"))
        self.slots.append(slot)
        self.inflight[actor.setup.remote(self.engine)] = slot

    def _settle(self, ref) -> None:
        """A call came back: write what it returned and give its slot the next call."""
        ray = self.ray
        slot = self.inflight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # raised by our code on the node: bad input there
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SpecsweepError):
                raise cause from None
            raise
        except ray.exceptions.RayError as exc:  # the worker process or its node is gone
            self._lost(slot, exc)
            return
        if slot.call.method == "setup":
            if result.get("specsweep") != __version__:
                raise UsageError(f"node {result.get('host')} runs specsweep {result.get('specsweep')}, "
                                 f"the driver {__version__}", hint="install the same version on every node")
            slot.info = result
            self.set_up.append(slot)
            self._write_provenance()
        else:
            slot.run.apply(slot.call, result)
        self._feed(slot)

    def _feed(self, slot: Slot) -> None:
        """The slot's next call: the rest of its group, else the next group for its node, else none."""
        while True:
            if slot.run is None:
                item = self.placement.next_for(slot.node)
                if item is None:
                    return
                group, pending = item
                slot.run = self.recorder.open(group, pending, where=slot.info.get("host", ""))
                if slot.run is None:
                    continue
                slot.calls = slot.run.calls()
                slot.groups.append(slot.run.name)
                self._write_provenance()
            slot.call = next(slot.calls, None)
            if slot.call is None:
                slot.run = None
                continue
            self.inflight[getattr(slot.actor, slot.call.method).remote(*slot.call.args)] = slot
            return

    def _lost(self, slot: Slot, exc: Exception) -> None:
        """Requeue what the slot's group had left (nothing it returned is lost), and replace the slot."""
        self.slots.remove(slot)
        self.ray.kill(slot.actor)
        run = slot.run
        if run is None:
            return  # lost while setting up or idle: the other slots carry on
        run.close("lost")
        missing = run.missing()
        if missing:
            self.losses[run.name] = self.losses.get(run.name, 0) + 1
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if self.losses[run.name] > MAX_LOSSES:
                self.recorder.mark_failed(missing, f"worker lost {self.losses[run.name]} times: {reason}")
            else:
                alive = slots_per_node(self.ray.nodes(), self.cpus, self.gpus)
                self.placement.put_back(run.group.model_label, (run.group, missing),
                                        lost_node=None if slot.node in alive else slot.node)
        self._add_slot()

    def _stop_all(self) -> None:
        """Ctrl-C or an error: every slot stops its server (after its call in flight), then the actors go.
        What those last calls return is still written: the calls in flight, then each ``end`` (which
        brings the row finished behind the last request)."""
        ray = self.ray
        stopping = {ref: (slot, slot.call) for ref, slot in self.inflight.items()
                    if slot.run is not None and slot.call is not None}
        for slot in self.slots:
            if slot.run is not None:
                stopping[slot.actor.end.remote("interrupted")] = (slot, Call("end", ("interrupted",)))
        deadline = time.monotonic() + STOP_GRACE
        try:
            while stopping and time.monotonic() < deadline:
                # ray.wait keeps the order of the refs given: a slot's call in flight before its end
                ready, _ = ray.wait(list(stopping), num_returns=len(stopping), timeout=1.0)
                for ref in ready:
                    slot, call = stopping.pop(ref)
                    try:
                        events = ray.get(ref)
                    except ray.exceptions.RayError:
                        continue  # the worker went meanwhile: its server died with it
                    slot.run.apply(call, events)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: kill at once (the servers die with their actors)
        for slot in self.slots:
            if slot.run is not None:
                slot.run.close("interrupted")

    def _write_provenance(self) -> None:
        """Each slot's node, host, GPUs and engine build, with the groups it ran, in the run's provenance."""
        slots = [{**slot.info, "groups": slot.groups} for slot in self.set_up]
        cluster = {"executor": "ray", "ray": self.ray.__version__, "address": self.address,
                   "slots": self._earlier_slots + slots}
        self._provenance["cluster"] = cluster
        self.recorder.store.update_provenance(self.recorder.run.id, self._provenance)
