"""How much memory a llama-server uses: its own load log, and what the device or the OS reports.

At load the pinned llama.cpp logs every buffer it allocates, one line each (at log verbosity 4,
which every managed server runs with):

    load_tensors:        CUDA0 model buffer size =   48.50 MiB
    llama_kv_cache:      CUDA0 KV buffer size =   12.00 MiB
    llama_context:   CUDA_Host  output buffer size =  0.75 MiB
    sched_reserve:       CUDA0 compute buffer size =  30.02 MiB

Before the real load it may probe whether the model fits (``-fit``): those passes log the same
lines with a model buffer of 0.00 MiB and are left out. Lines after the draft model (or the MTP
draft context) starts loading belong to the drafter. Buffers named ``CPU…`` or ``…_Host`` are
host memory; the others (``CUDA0``, ``Metal``, …) are on a device.

The peak a process really used is measured beside it: device memory by ``nvidia-smi`` per
process (sampled: llama.cpp allocates at load, so samples after the warm-up and at the end of a
cell see its peak), else the peak resident set (``VmHWM``) that Linux keeps for the process.
"""

from __future__ import annotations

import re
import subprocess

MIB = 1024 * 1024

BUFFER_RE = re.compile(r"(?P<device>[A-Za-z0-9_]+)\s+(?P<kind>model|KV|RS|output|compute) buffer size\s*=\s*"
                       r"(?P<mib>[\d.]+) MiB")
MODEL_START_RE = re.compile(r"llama_model_loader: loaded meta data with .* from (?P<path>.+?) \(version")
DRAFT_START_RE = re.compile(r"common_speculative_init_result: (loading draft model|creating MTP draft context)")
OFFLOADED_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
KINDS = {"model": "model", "KV": "kv", "RS": "kv", "output": "output", "compute": "compute"}


def is_host(device: str) -> bool:
    return device.upper().startswith("CPU") or device.endswith("_Host")


def _section(lines: list[str]) -> dict:
    """Buffers by kind and device (bytes; a compute buffer reserved again counts at its largest),
    and the layers offloaded."""
    buffers: dict[str, dict[str, int]] = {}
    offloaded = None
    for line in lines:
        match = BUFFER_RE.search(line)
        if match:
            kind, device = KINDS[match.group("kind")], match.group("device")
            size = round(float(match.group("mib")) * MIB)
            per_device = buffers.setdefault(kind, {})
            if kind == "compute":
                per_device[device] = max(per_device.get(device, 0), size)
            else:
                per_device[device] = per_device.get(device, 0) + size
            continue
        match = OFFLOADED_RE.search(line)
        if match:
            offloaded = f"{match.group(1)}/{match.group(2)}"
    return {"buffers": buffers, "offloaded": offloaded}


def parse_load_log(text: str) -> dict | None:
    """{"target": section, "draft": section or None, "kinds": {kind: bytes}, "device_bytes": …,
    "host_bytes": …} from a server's load log (``LlamaServer.load_log``), or None when it shows no
    real model load. ``kinds`` sums target and drafter over every device.

    A section is {"buffers": {kind: {device: bytes}}, "offloaded": "N/M" or None}; kinds are
    model, kv (KV and recurrent-state caches), output and compute."""
    lines = text.splitlines()
    real_start = None
    current_start = None
    for index, line in enumerate(lines):
        if MODEL_START_RE.search(line):
            current_start = index
            continue
        match = BUFFER_RE.search(line)
        if match and match.group("kind") == "model" and float(match.group("mib")) > 0 and current_start is not None:
            real_start = current_start  # the first model load that allocated something: not a -fit probe
            break
    if real_start is None:
        return None
    draft_start = next((i for i in range(real_start, len(lines)) if DRAFT_START_RE.search(lines[i])), None)
    target = _section(lines[real_start:draft_start])
    draft = _section(lines[draft_start:]) if draft_start is not None else None
    totals = {"device_bytes": 0, "host_bytes": 0}
    kinds: dict[str, int] = {}
    for section in (target, draft):
        for kind, per_device in (section or {}).get("buffers", {}).items():
            for device, size in per_device.items():
                totals["host_bytes" if is_host(device) else "device_bytes"] += size
                kinds[kind] = kinds.get(kind, 0) + size
    return {"target": target, "draft": draft, "kinds": kinds, **totals}


def peak_rss_bytes(pid: int) -> int | None:
    """The largest resident set the process has had (``VmHWM``), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _nvidia_smi(query: str) -> list[list[str]] | None:
    try:
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [[p.strip() for p in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def gpu_process_bytes(pid: int) -> int | None:
    """Device memory ``nvidia-smi`` reports for the process (summed over GPUs); None without one."""
    rows = _nvidia_smi("--query-compute-apps=pid,used_memory") or []
    sizes = [int(size) * MIB for found, size in (r for r in rows if len(r) == 2) if found == str(pid) and size.isdigit()]
    return sum(sizes) if sizes else None


def gpu_used_bytes() -> int | None:
    """Memory in use on every GPU together (``memory.used``); None without a GPU."""
    rows = _nvidia_smi("--query-gpu=memory.used")
    sizes = [int(r[0]) * MIB for r in rows or [] if r and r[0].isdigit()]
    return sum(sizes) if sizes else None


def sample_peak(pid: int | None, on_gpu: bool, alone: bool = True) -> tuple[int, str] | None:
    """(bytes, source) for the process now: on a GPU host the device memory ``nvidia-smi`` lists
    for it, or, where the process is not listed (a container's PIDs are not the host's) and the
    server runs ``alone``, the memory in use on the GPUs ("nvidia-smi-device"); else its peak
    resident set. Beside other servers of the sweep (side-by-side lanes) the device's total is not
    this server's: then nothing is sampled."""
    if pid is None:
        return None
    if on_gpu:
        used = gpu_process_bytes(pid)
        if used is not None:
            return used, "nvidia-smi"
        if not alone:
            return None
        used = gpu_used_bytes()
        if used is not None:
            return used, "nvidia-smi-device"
    rss = peak_rss_bytes(pid)
    return (rss, "rss") if rss is not None else None
