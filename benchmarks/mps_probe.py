"""Does MPS stop K processes on one GPU from time-slicing? A launch-bound probe.

Each worker process does what a small model's decode does on a GPU: many tiny kernels with a
synchronisation after every "token". Run alone, then K at once without MPS, then K at once under
a private MPS daemon (started by the caller: CUDA_MPS_PIPE_DIRECTORY set). Prints steps per second
per process and the aggregate.

    python3 benchmarks/mps_probe.py K STEPS
"""

import multiprocessing as mp
import sys
import time


def worker(steps: int, ready, go, out) -> None:
    import torch

    x = torch.randn(256, 256, device="cuda")
    w = torch.randn(256, 256, device="cuda")
    for _ in range(50):  # warm
        x = torch.tanh(x @ w)
    torch.cuda.synchronize()
    ready.set()
    go.wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        for _ in range(40):  # ~40 small kernels a step
            x = torch.tanh(x @ w) * 0.5
        torch.cuda.synchronize()
    out.put(steps / (time.perf_counter() - t0))


def run(k: int, steps: int) -> list[float]:
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    readies = [ctx.Event() for _ in range(k)]
    procs = [ctx.Process(target=worker, args=(steps, r, go, out)) for r in readies]
    for p in procs:
        p.start()
    for r in readies:
        r.wait()
    go.set()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


if __name__ == "__main__":
    k, steps = int(sys.argv[1]), int(sys.argv[2])
    for n in (1, k):
        rates = run(n, steps)
        print(f"{n} process(es): steps/s each {', '.join(f'{r:.0f}' for r in rates)}; aggregate {sum(rates):.0f}",
              flush=True)
