"""The sweep's ETA: at the pace of the whole invocation, so that server starts neither swing it nor
go uncounted."""

from __future__ import annotations

from specsweep.progress import SweepProgress


def test_the_eta_counts_server_starts_as_part_of_the_pace():
    now = [0.0]
    progress = SweepProgress(get_time=lambda: now[0], disable=True)
    progress.start(total=45, completed=5)  # 5 requests done by an earlier invocation
    for _ in range(2):  # two servers: each takes 40 s to start, then 10 requests at 1 s each
        now[0] += 40.0
        for _ in range(10):
            now[0] += 1.0
            progress.advance()
    # 20 requests took 100 s with their starts, so the 20 left take 100 s: rich's rate over the last
    # 30 s said 20 s, and the resumed 5 requests must not count as done at this pace
    assert progress.seconds_left == 100.0
    now[0] += 20.0  # half way through the next server's start
    assert progress.seconds_left == 120.0  # slower, as it is, but no several-fold swing
    progress.stop()
