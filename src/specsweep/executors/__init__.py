"""Executors: who runs a sweep's server groups, and where.

Every executor has the same small interface, used by ``sweep.Sweep``:

    connect()                 reach what runs the servers (nothing for the local executor)
    run(work, recorder)       measure [(group, pending requests)], every event written by ``recorder``
    close()                   let it go
    servers_get_gpus          whether its servers have GPUs (then a GPU engine's defaults apply)

The measuring itself is ``worker.ServerWorker`` (store-free: ``events`` out; side-by-side cells
in ``parallel``), the writing is ``recorder.Recorder`` (the driver's side, the only writer of the
store). ``local.LocalExecutor``
calls a worker in-process, one group after another; ``ray_cluster.RayExecutor`` calls workers
that live in Ray actors on cluster nodes (``node.NodeSlot``), several at once.
"""
