"""A managed llama-server: start on 127.0.0.1, wait for health, watch, stop.

Modelled on llama.cpp's own ``tools/server/tests/utils.py``: logs go to a file
(never an undrained pipe), every health poll checks that the process is still
alive, and stopping is terminate -> wait -> kill. A *traced* server runs with
``LLAMA_TRACE=1`` so that it logs one line per verification step
("accepted a/b draft tokens"); that gives exact per-step draft lengths, which
``/metrics`` does not have, at the cost of one short log line per step. Speed is
measured on untraced servers (see ``specsweep.sweep``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from ..errors import ServerError
from .options import ServerOptions

HOST = "127.0.0.1"
# Always on: metrics, no web UI, loopback only. ``--parallel`` is the number of slots: 1 unless
# a sweep runs requests side by side, so that /metrics deltas around a request belong to it.
# Log verbosity 4 ("trace") makes llama.cpp log its buffer sizes at load (specsweep.engine.memory);
# during a request it adds a few lines before and after the timed work, none per step.
FIXED_ARGS = ("--metrics", "--no-webui", "--log-verbosity", "4")


# A server that left a request unanswered gets this long to exit on SIGTERM before SIGKILL: a busy
# one stops within a decode step, a hung one never does (the default 10 s is only waiting).
UNANSWERED_STOP_GRACE_S = 3.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: the server gets signals as a server started from a shell does, and
    Linux SIGKILLs it if the thread that started it dies (specsweep, or a Ray worker, even by SIGKILL).

    Exec keeps the signal mask, and a Ray worker's threads block SIGINT and SIGTERM: a server started
    there ignored the stop signal, and outlived its killed worker. SIGKILL, not SIGTERM, on the parent's
    death: nobody is left to wait for a graceful stop, which can hang on a request in flight."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def server_env(traced: bool = True) -> dict[str, str]:
    """The environment for llama-server: ours, minus LLAMA_ARG_* that would silently change its settings,
    with the per-step trace (``LLAMA_TRACE``) on or off as asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_") and k != "LLAMA_TRACE"}
    if traced:
        env["LLAMA_TRACE"] = "1"
    return env


# Variables that steer what llama.cpp computes or how (ggml backends, CUDA, llama.cpp's own switches such
# as GGML_CUDA_DISABLE_GRAPHS or LLAMA_GRAPH_REUSE_DISABLE): servers inherit them, so runs record them.
ENGINE_ENV_PREFIXES = ("GGML_", "LLAMA_", "CUDA_")


def engine_environment() -> dict[str, str]:
    """The variables of ``server_env`` that steer the engine, as this process would pass them on
    (``LLAMA_TRACE`` is the tool's own and set per server)."""
    return {k: v for k, v in sorted(server_env(traced=False).items()) if k.startswith(ENGINE_ENV_PREFIXES)}


# Engine variables that do not change what is computed: the device (CUDA_*: which GPU, launch timing),
# llama.cpp's log format and its download cache.
NOT_COMPUTING_PREFIXES = ("CUDA_", "LLAMA_LOG_", "LLAMA_CACHE")


def computing_environment() -> dict[str, str]:
    """The engine variables that may change what llama.cpp computes (GGML_*, LLAMA_*): part of a run's
    identity."""
    return {k: v for k, v in engine_environment().items() if not k.startswith(NOT_COMPUTING_PREFIXES)}


def tail_text(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def parse_metrics(text: str) -> tuple[dict[str, float], dict[int, float]]:
    """Prometheus text -> ({name: value}, {position: accepted}) for the llamacpp: series."""
    values: dict[str, float] = {}
    per_pos: dict[int, float] = {}
    for line in text.splitlines():
        if not line.startswith("llamacpp:"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part[len("llamacpp:"):]
        if name.startswith("spec_decode_num_accepted_tokens_per_pos_total{"):
            pos = int(name.split('position="', 1)[1].split('"', 1)[0])
            per_pos[pos] = float(value)
        else:
            values[name] = float(value)
    return values, per_pos


class LlamaServer:
    """One llama-server process. Use as a context manager, or call start()/stop()."""

    def __init__(self, binary: Path, options: ServerOptions, log_path: Path,
                 start_timeout: float = 120.0, traced: bool = True, slots: int = 1):
        self.binary = Path(binary)
        self.options = options
        self.log_path = Path(log_path)
        self.start_timeout = start_timeout
        self.traced = traced
        self.slots = slots
        self.log_start = 0  # where this start's output begins in the (appended) log file
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.argv: list[str] = []
        self.props: dict = {}
        self.warm_metrics = None  # the /metrics scrape after the warm-up request (the first "before")
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            # Plain HTTP to 127.0.0.1: no certificate store to load (verify=True costs ~45 ms per server).
            self._client = httpx.Client(base_url=self.base_url, timeout=30.0, verify=False)
        return self._client

    def __enter__(self) -> "LlamaServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        return tail_text(self.log_path, lines)

    def start(self) -> None:
        self.port = free_port()
        self.argv = [str(self.binary), *self.options.argv(), "--host", HOST, "--port", str(self.port),
                     *FIXED_ARGS, "--parallel", str(self.slots)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.log_start = log.tell()
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                # A session of its own: a terminal's Ctrl-C signals the whole foreground process group,
                # and the server must not die under a request the sweep is letting finish; specsweep
                # stops it, and PR_SET_PDEATHSIG (_die_with_parent) still ends it if specsweep dies.
                self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, env=server_env(self.traced),
                                                preexec_fn=_die_with_parent, start_new_session=True)
            except OSError as exc:
                raise ServerError(f"cannot start {self.binary}: {exc.strerror}") from None
        try:
            self._wait_healthy()
            self.props = self.client.get("/props").json()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            self.check_alive("while loading the model")
            try:
                response = self.client.get("/health", timeout=2.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"llama-server did not become healthy within {self.start_timeout:.0f} s",
                                  log_tail=self.log_tail())
            time.sleep(0.05)

    def load_log(self) -> str:
        """What this start of the server has logged so far (the load lines, once healthy)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_start)
                return fh.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self, when: str = "") -> None:
        if self.process is None:
            raise ServerError("llama-server was never started")
        code = self.process.poll()
        if code is not None:
            tail = self.log_tail()
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), "no log output")
            raise ServerError(f"llama-server exited with code {code} {when}: {last.strip()}".replace("  ", " "),
                              log_tail=tail, exit_code=code)

    def metrics(self) -> tuple[dict[str, float], dict[int, float]]:
        response = self.client.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    def stop_unanswered(self) -> None:
        """A request went unanswered (timed out, or a bad response): stop a hung or confused server,
        with a short grace, so that the retry starts on a fresh one."""
        if self.alive():
            self.stop(grace=UNANSWERED_STOP_GRACE_S)

    def stop(self, grace: float = 10.0) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
