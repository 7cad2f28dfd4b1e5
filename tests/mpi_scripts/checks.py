"""Run under ``mpiexec -n 2`` by tests/test_distributed.py: many checks in one launch.

    mpiexec -n 2 python checks.py OUT_DIR [CHECK ...]

Each rank writes OUT_DIR/rank<r>.json: {check: result}. A result is a dict of
numbers and strings (relative differences from single-process training, CRCs
of the weights' bytes to compare across the ranks, error messages), or
{"exception": "Class: message"} when a check raised where it should not. The
parent asserts on them; this script asserts nothing, so that every rank always
reaches the end (and every check's collective operations) in step.
"""
import json
import os
import sys
import traceback
import zlib

import numpy as np

import nnumba as nn
import nnumba.distributed as dist

L = nn.layers
OUT = sys.argv[1]
RANK, SIZE = dist.rank(), dist.size()
results = {}


def flat(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


def crc(model):
    return zlib.crc32(flat(model).tobytes())


def rel(a, b):
    a, b = flat(a), flat(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def check(fn):
    name = fn.__name__
    if len(sys.argv) > 2 and name not in sys.argv[2:]:
        return fn
    try:
        results[name] = fn()
    except Exception as exc:  # noqa: BLE001 (reported to the parent, which fails the test)
        results[name] = {"exception": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()}
    return fn


def mlp_data(n=203, n_in=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)), rng.integers(0, classes, n)


def mlp(backend="cpu", dtype="float64", seed=3, lr=1e-2, optimizer=None):
    m = nn.Sequential([nn.Dense(12, 16), nn.ReLU(), nn.Dense(16, 4)], backend=backend, dtype=dtype,
                      seed=seed)
    m.compile("cross_entropy", optimizer or nn.optim.Adam(lr),
              metrics=["accuracy", "top_2_accuracy"])
    return m


def pair(make, X, y, alone=None, **fit):
    """(distributed model, single-process model, their histories), trained alike (the
    single-process one made by ``alone``, default ``make``)."""
    a, b = make(), (alone or make)()
    ha = a.fit(X, y, distributed="mpi", **fit)
    hb = b.fit(X, y, **fit)
    return a, b, ha, hb


def compare(a, b, ha, hb):
    la, lb = np.array(ha.history["loss"]), np.array(hb.history["loss"])
    out = {"rel": rel(a, b), "crc": crc(a), "loss_rel": float(np.abs(la - lb).max() / lb.max()),
           "t": a.optimizer.t, "t_single": b.optimizer.t, "epochs": a.epochs_trained}
    if "val_loss" in ha.history:
        out["val_rel"] = float(abs(ha.history["val_loss"][-1] - hb.history["val_loss"][-1])
                               / hb.history["val_loss"][-1])
        out["val_acc"] = [ha.history["val_accuracy"][-1], hb.history["val_accuracy"][-1]]
    return out


@check
def mlp_float64():
    """3 epochs, shuffled, an uneven last batch (203 = 6 x 32 + 11: 5 and 6 rows)."""
    X, y = mlp_data()
    return compare(*pair(mlp, X, y, epochs=3, batch_size=32, validation_data=(X[:50], y[:50])))


@check
def mlp_float32():
    X, y = mlp_data()
    return compare(*pair(lambda: mlp(dtype="float32"), X, y, epochs=3, batch_size=32))


@check
def conv_op_table():
    """The op-table loop: Conv1D, max pooling, a Residual block, Dense."""
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((61, 20, 1)), rng.integers(0, 3, 61)

    def make():
        m = nn.Sequential([L.Conv1D(1, 4, 5, 2, 1), nn.ReLU(), L.MaxPool1D(2),
                           L.Residual([L.Conv1D(4, 4, 3, 1, 1), nn.Tanh()]), L.Flatten(),
                           nn.Dense(16, 3)], backend="cpu", dtype="float64", seed=5,
                          input_shape=(20, 1))
        m.compile("cross_entropy", nn.optim.Adam(1e-2))
        return m

    return compare(*pair(make, X, y, epochs=3, batch_size=16))


@check
def batches_smaller_than_ranks():
    """batch_size 1 (one rank idle in every batch), and a last batch of one row. Alone, the
    numpy reference trains them (the cpu loop's few-rows paths would cost a compilation;
    the distributed loop never takes them)."""
    X, y = mlp_data(n=9)
    one = compare(*pair(mlp, X, y, epochs=2, batch_size=1, alone=lambda: mlp(backend="numpy")))
    X, y = mlp_data(n=33)
    last = compare(*pair(mlp, X, y, epochs=2, batch_size=16, alone=lambda: mlp(backend="numpy")))
    return {"batch_1": one, "last_1": last}


@check
def numpy_weighted():
    """The reference backend, with sample and class weights (the loss divides by the rows)."""
    X, y = mlp_data(n=53)
    w = np.random.default_rng(2).uniform(0.2, 2.0, 53)
    return compare(*pair(lambda: mlp(backend="numpy"), X, y, epochs=2, batch_size=8,
                         sample_weight=w, class_weight={0: 2.0, 3: 0.5}))


@check
def evaluate_reduced():
    X, y = mlp_data()
    m = mlp()
    m.fit(X, y, epochs=1, batch_size=32, distributed="mpi")
    a = m.evaluate(X[:77], y[:77], distributed="mpi", batch_size=10)
    b = m.evaluate(X[:77], y[:77])
    return {"loss_rel": abs(a["loss"] - b["loss"]) / b["loss"],
            "same_metrics": all(a[k] == b[k] for k in b if k != "loss"), "keys": sorted(a)}


@check
def resume():
    """Save after 2 distributed epochs (rank 0 writes), go on for 1 with 2 ranks; the
    parent goes on for 1 alone from the same file."""
    X, y = mlp_data()
    path = os.path.join(OUT, "two_epochs.npz")
    m = mlp()
    m.fit(X, y, epochs=2, batch_size=32, distributed="mpi")
    m.save(path)
    dist.barrier()
    loaded = nn.load(path, backend="cpu")
    loaded.fit(X, y, epochs=3, initial_epoch=loaded.epochs_trained, batch_size=32,
               distributed="mpi")
    single = mlp()
    single.fit(X, y, epochs=3, batch_size=32)
    return {"rel": rel(loaded, single), "crc": crc(loaded), "epochs": loaded.epochs_trained,
            "written_by_me": os.path.exists(path) and RANK == 0}


def error_of(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


@check
def bad_input_on_one_rank():
    X, y = mlp_data()
    bad = X.copy()
    if RANK == 1:
        bad[17, 3] = np.nan
    m = mlp()
    before = crc(m)
    nan = error_of(lambda: m.fit(bad, y, epochs=1, batch_size=32, distributed="mpi"))
    other = y.copy()
    if RANK == 1:
        other[5] = (other[5] + 1) % 4
    differs = error_of(lambda: m.fit(X, other, epochs=1, batch_size=32, distributed="mpi"))
    bn = nn.Sequential([nn.Dense(12, 8), L.BatchNorm(8), nn.ReLU(), nn.Dense(8, 4)],
                       backend="cpu", dtype="float64", seed=1)
    bn.compile("cross_entropy", "adam")
    refused = error_of(lambda: bn.fit(X, y, epochs=1, batch_size=32, distributed="mpi"))
    unchanged = crc(m) == before and m.optimizer.t == 0
    # and the model still trains afterwards, the ranks in step
    m.fit(X, y, epochs=1, batch_size=32, distributed="mpi")
    return {"nan": nan, "differs": differs, "refused": refused, "unchanged": unchanged,
            "after": crc(m)}


@check
def divergence_on_all_ranks():
    X, y = mlp_data()
    m = mlp()
    m.fit(X, y, epochs=1, batch_size=32, distributed="mpi")
    before = crc(m)
    message = error_of(lambda: m.fit(X * 1e200, y, epochs=2, batch_size=32, distributed="mpi"))
    # an update that overflows at the 4th step: rolled back, the 3 steps before it replayed
    # (with their allreduces), as one process does. Tiny inputs in batches 1-3, large ones in
    # batch 4: its weight gradient times lr = 1e300 overflows, its loss does not.
    X4 = X.copy()
    X4[:96] *= 1e-300
    X4[96:128] *= 1e10
    def linear():
        m = nn.Sequential([nn.Dense(12, 4)], backend="cpu", dtype="float64", seed=3)
        m.compile("cross_entropy", nn.optim.SGD(lr=1e300))
        return m

    a, b = linear(), linear()
    updates = [error_of(lambda: a.fit(X4, y, epochs=1, batch_size=32, shuffle=False,
                                      distributed="mpi")),
               error_of(lambda: b.fit(X4, y, epochs=1, batch_size=32, shuffle=False))]
    return {"message": message, "unchanged": crc(m) == before, "t": m.optimizer.t,
            "update": updates, "update_rel": rel(a, b), "update_t": [a.optimizer.t, b.optimizer.t],
            "update_crc": crc(a)}


@check
def callbacks_on_the_ranks():
    """A callback that raises on every rank raises there alike (no abort); a stop asked for
    by one rank's callback stops every rank."""
    X, y = mlp_data()

    def fails(epoch, logs):
        if epoch == 1:
            raise ValueError(f"callback failed after epoch {epoch + 1}")

    m = mlp()
    raised = error_of(lambda: m.fit(X, y, epochs=3, batch_size=32, distributed="mpi",
                                    callbacks=[fails]))

    def stop_on_rank_0(epoch, logs):
        if RANK == 0:
            m.stop_training = True

    stopped = mlp()
    m = stopped
    stopped.fit(X, y, epochs=3, batch_size=32, distributed="mpi", callbacks=[stop_on_rank_0])
    return {"raised": raised, "stopped_after": stopped.epochs_trained}


@check
def cuda_simulator():
    """The cuda backend (Numba's simulator here): the op-table loop over the cuda kernels,
    the allreduce staged through the host."""
    try:
        import numba.cuda  # noqa: F401
    except ImportError:
        return {"skipped": "numba.cuda is missing"}
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import cuda_setup  # the simulator's race-free shared arrays

    from nnumba.backends.cuda import _config as cfg

    if cuda_setup.SIMULATOR:  # tiny launches: the simulator runs each thread in Python
        for name, value in cuda_setup.SMALL.items():
            setattr(cfg, name, value)
    X, y = mlp_data(n=8)
    return compare(*pair(lambda: mlp(backend="cuda"), X, y, epochs=1, batch_size=4))


with open(os.path.join(OUT, f"rank{RANK}.json"), "w") as f:
    json.dump({"size": SIZE, "results": results}, f, indent=1)
