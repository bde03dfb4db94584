"""A private MPS daemon, so that several servers share one NVIDIA GPU without time-slicing.

Without MPS each process on a GPU has a context of its own and the GPU switches between them: four
one-slot llama-servers of a launch-bound model each decoded ~10x slower side by side than alone on an
H100 (benchmarks/gpu-speed-h100.md). Under MPS (NVIDIA's Multi-Process Service) their kernels run in
one shared context, side by side; a launch-bound probe on the same H100 went from 2.1x to 3.4x the
throughput of one process with four (benchmarks/mps-probe-h100/).

The daemon started here is the run's own: its pipe and log folders are a fresh temporary folder, so
it neither finds nor disturbs a daemon someone else runs, and it is told to quit when the sweep ends.
The servers find it through ``CUDA_MPS_PIPE_DIRECTORY`` in the environment they inherit. It changes
no GPU setting (the compute mode stays as it is).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CONTROL = "nvidia-cuda-mps-control"
DEFAULT_PIPE = Path("/tmp/nvidia-mps")  # where a daemon started without settings listens
START_WAIT = 10.0  # seconds for the daemon's control pipe to appear
VARIABLES = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")


def control_daemon_running(proc: Path = Path("/proc")) -> bool:
    """Whether a process of that name runs on this machine: a control pipe left behind by a daemon that
    died is no daemon."""
    for comm in proc.glob("[0-9]*/comm"):
        try:
            # The kernel keeps 15 characters of a name: the control daemon's and its server's read the
            # same, and a server runs only under a control daemon.
            if comm.read_text().strip() == CONTROL[:15]:
                return True
        except OSError:
            continue  # the process ended meanwhile, or is not ours to read
    return False


def running_daemon(environ: dict[str, str] | None = None) -> Path | None:
    """The pipe folder of an MPS daemon this process's children would already use, if one runs."""
    environ = os.environ if environ is None else environ
    pipe = Path(environ.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_PIPE)
    return pipe if (pipe / "control").exists() and control_daemon_running() else None


class PrivateMps:
    """``start`` a daemon of the run's own (or find one running), ``stop`` it; ``state`` says which."""

    def __init__(self, control: str | None = None):
        self.control = control or shutil.which(CONTROL)
        self.folder: Path | None = None
        self.saved: dict[str, str | None] = {}
        self.state = "off"

    def start(self) -> str:
        """One of "already running", "private daemon" or "unavailable: why"; never raises."""
        if running_daemon() is not None:
            self.state = "already running"
            return self.state
        if self.control is None:
            self.state = f"unavailable: {CONTROL} not found"
            return self.state
        self.folder = Path(tempfile.mkdtemp(prefix="specsweep-mps-"))
        env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(self.folder / "pipe"),
               "CUDA_MPS_LOG_DIRECTORY": str(self.folder / "log")}
        for name in ("pipe", "log"):
            (self.folder / name).mkdir()
        try:
            done = subprocess.run([self.control, "-d"], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=START_WAIT)
            if done.returncode != 0:
                return self._give_up((done.stderr or done.stdout).strip() or f"exit status {done.returncode}", env)
            deadline = time.monotonic() + START_WAIT
            while not (self.folder / "pipe" / "control").exists():
                if time.monotonic() > deadline:
                    return self._give_up("its control pipe did not appear", env)
                time.sleep(0.05)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self._give_up(str(exc), env)
        except BaseException:  # Ctrl-C while it starts: a daemon it may have forked must not outlive the run
            self._give_up("interrupted", env)
            raise
        for name in VARIABLES:  # the servers inherit them (engine.server.server_env)
            self.saved[name] = os.environ.get(name)
            os.environ[name] = env[name]
        self.state = "private daemon"
        return self.state

    def _give_up(self, why: str, env: dict[str, str]) -> str:
        # A daemon that forked but never answered would run on with nobody to stop it: tell it to quit
        # through its own pipe (where none listens the control program just fails).
        self._quit(env)
        self._remove_folder()
        self.state = f"unavailable: {why.splitlines()[0] if why else 'unknown'}"
        return self.state

    def stop(self) -> None:
        """Tell the run's own daemon to quit (it waits for its clients, the stopped servers)."""
        if self.state != "private daemon":
            return
        self._quit()  # through the run's own pipe: CUDA_MPS_PIPE_DIRECTORY is still ours here
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.saved.clear()
        self._remove_folder()
        self.state = "stopped"

    def _quit(self, env: dict[str, str] | None = None) -> None:
        """``quit`` to the daemon whose pipe ``env`` names (None: the one this process's children use)."""
        try:
            subprocess.run([self.control], input="quit\n", env=env, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the daemon goes with the machine; its folder goes now

    def _remove_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
