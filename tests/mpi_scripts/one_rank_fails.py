"""Run under ``mpiexec -n 2`` by tests/test_distributed.py: an error on one rank only.

    mpiexec -n 2 python one_rank_fails.py callback|before_fit

callback: rank 0's callback raises at the end of the first epoch while rank 1
goes on into the epoch's checks, where it waits for rank 0: rank 0 must abort
the job (MPI_Abort) after nnumba.distributed.FAILURE_TIMEOUT_S instead of
leaving rank 1 waiting forever. before_fit: rank 1 fails before its fit (as a
script that could not read its data), and joins the agreement that rank 0's fit
starts with: both raise rank 1's error and exit normally.
"""
import sys

import numpy as np

import nnumba as nn
import nnumba.distributed as dist

dist.FAILURE_TIMEOUT_S = 2.0
RANK = dist.rank()
rng = np.random.default_rng(0)
X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
model = nn.Sequential([nn.Dense(6, 3)], backend="numpy", dtype="float64", seed=0)
model.compile("cross_entropy", "sgd")


def broken_on_rank_0(epoch, logs):
    if RANK == 0:
        raise OSError("the disk of rank 0 is full")


if sys.argv[1] == "callback":
    model.fit(X, y, epochs=3, batch_size=8, distributed="mpi", callbacks=[broken_on_rank_0])
    print(f"rank {RANK}: not aborted", flush=True)
else:
    try:
        if RANK == 1:
            try:
                raise FileNotFoundError("data.npz is missing on rank 1")
            except FileNotFoundError as exc:
                dist.join_failure(exc)
                raise
        model.fit(X, y, epochs=1, batch_size=8, distributed="mpi")
    except OSError as exc:
        print(f"rank {RANK}: {type(exc).__name__}: {exc}", flush=True)
