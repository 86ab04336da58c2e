"""How many CPU threads torch may use for one fit.

torch's default is one thread per core. Its parallel regions end in a
barrier, so when another process holds a core the whole region waits for the
descheduled thread: on the shared 2-core machine (load 15–20) a 1,000 × 500
fit took 80–90 s with 2 threads against 10–14 s with one, and the issue
measured 3–12× on larger fits. On a small problem extra threads cannot pay
for their start-up and barriers even on an idle machine. So a fit uses more
than one thread only when its E-step is large *and* cores are free when it
starts (``bench/bench_calibration_threads.py`` measures both). The number of
threads does not change the numbers: the parallel kernels here (sparse
matmul by rows, reductions over items) split work, not sums; a test checks it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["WORK_PER_THREAD", "choose_threads", "torch_threads"]

WORK_PER_THREAD = 50_000_000
"""Observations × quadrature nodes of an E-step that one more thread must have to pay."""


def choose_threads(n_obs: int, n_quad: int, *, load: float | None = None) -> int:
    """Threads for a fit of ``n_obs`` observations on ``n_quad`` nodes.

    At most torch's current setting (so ``OMP_NUM_THREADS`` or an explicit
    ``torch.set_num_threads`` stays an upper bound), at most one per
    ``WORK_PER_THREAD``, and at most the cores the 1-minute load average leaves
    free (this process counted as one of the load).
    """
    if load is None:
        load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    free = max(1, int(cores - load + 1))
    by_size = max(1, n_obs * n_quad // WORK_PER_THREAD)
    return max(1, min(torch.get_num_threads(), by_size, free))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
