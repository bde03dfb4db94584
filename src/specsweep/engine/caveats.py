"""What the engine is known to get wrong in a sweep's setting, said before and after it runs."""

from __future__ import annotations

# Measured on an H100 (benchmarks/gpu-draft-counts.md): with CUDA graphs, llama-server's draft-mtp
# drafts differ between identical requests and accept less than with graphs off or on the CPU, on the
# very same generated text. The CUDA backend captures graphs only for single-sequence decoding, so
# one-slot servers are affected and slots decoding side by side are not.
MTP_CUDA_GRAPHS = ("draft-mtp on one-slot CUDA servers with CUDA graphs on: on the pinned engine they spoil "
                   "the assistant's drafts, so acceptance reads low and varies between identical requests "
                   "(H100, same text: 79.9% against 86.9% with graphs off, which matches the CPU build; "
                   "benchmarks/gpu-draft-counts.md). GGML_CUDA_DISABLE_GRAPHS=1 measures the drafter's own "
                   "acceptance; every decode is then about 30% slower, so keep graphs for speed figures.")


def mtp_cuda_graphs_caveat(backend: str | None, environment: dict | None, mtp_on_one_slot: bool,
                           mtp_on_device: bool | None = None) -> str | None:
    """The warning when draft-mtp runs (``mtp_on_one_slot``) on one-slot servers of a CUDA engine
    with graphs on, else None. ggml reads GGML_CUDA_DISABLE_GRAPHS as set or not, whatever its value.
    ``mtp_on_device``: whether those servers' load logs put buffers on a GPU (False: a CUDA build that
    ran on CPUs only, e.g. Ray slots without a GPU; None: not known, as for runs without load logs)."""
    if backend != "cuda" or not mtp_on_one_slot or mtp_on_device is False:
        return None
    if "GGML_CUDA_DISABLE_GRAPHS" in (environment or {}):
        return None
    return MTP_CUDA_GRAPHS


# Measured on an H200 (benchmarks/gpu-speed-h200-cells.md): four one-slot servers sharing the GPU
# without MPS time-slice it, and their draft-mtp drafts read low on the same text even with graphs off,
# as with graphs on; under MPS they draft what one server alone drafts.
MTP_TIME_SLICED = ("draft-mtp on one-slot CUDA servers that shared one GPU without MPS: their processes "
                   "time-sliced it, which on the pinned engine spoils the assistant's drafts as CUDA graphs "
                   "do, even with graphs off (H200, same text: 79.7% against 86.9% sequential or under MPS; "
                   "benchmarks/gpu-speed-h200-cells.md). Let the sweep start its MPS daemon (no --no-mps; "
                   "nvidia-cuda-mps-control on the PATH).")
MPS_RUNNING = ("private daemon", "already running")  # the states of engine.mps.PrivateMps that share a GPU well


def mtp_time_sliced_caveat(backend: str | None, mtp_on_shared_servers: bool, mps: str | None,
                           mtp_on_device: bool | None = None) -> str | None:
    """The warning when draft-mtp ran on one-slot servers side by side (--side-by-side servers or
    cells) of a CUDA engine without an MPS daemon (``mps``: the run's note; None for runs from before
    the note, which had none), else None."""
    if backend != "cuda" or not mtp_on_shared_servers or mtp_on_device is False or mps in MPS_RUNNING:
        return None
    return MTP_TIME_SLICED
