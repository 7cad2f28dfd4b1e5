"""Data-parallel training over MPI: ``model.fit(X, y, distributed="mpi")``.

Start the same script on every process with MPI's launcher::

    mpiexec -n 4 python -m mpi4py train.py       # or: mpiexec -n 4 nnumba train ...

and train with ``model.fit(X, y, batch_size=256, distributed="mpi")``. Every
rank (process) passes the whole data set, as every rank of PyTorch's
DistributedDataParallel holds the whole Dataset; ``batch_size`` is the global
batch. Iteration j of an epoch:

- every rank draws the same order (the ranks start from rank 0's shuffling
  generator) and takes its share of the batch, rows floor(n r / p) to
  floor(n (r + 1) / p) - 1 of its n rows on rank r of p;
- forward and backward run on the share, inside the compiled loop; the output
  gradient is scaled by the share's rows / n, so that the ranks' gradients sum
  to the batch's mean gradient, whatever the split (uneven batches included; a
  rank with no rows, when n < p, adds zeros);
- one allreduce (SUM) of the flat gradient buffer, the batch's loss and its
  correct count, called from the compiled loop (numba-mpi, in place, wrapped in
  a Numba cfunc that the loop calls at its address, so the loop itself stays
  in Numba's on-disk cache); on the numpy and cuda backends the
  same allreduce is staged through the host;
- every rank then checks and clips the same gradient and makes the same
  optimizer step: the weights stay identical, bit for bit, on every rank, which
  a checksum allreduce checks after every epoch.

The result is the single-process training on the same global batches, up to
the order of the additions in the gradient's sums: in float64 the weights after
3 epochs agree to 2e-16 (tests/test_distributed.py). The loss must be a mean over
the batch's rows or elements (every built-in loss and ``CustomLoss`` is; with
sample weights too, which divide by the rows).

Before training, the ranks agree (one gather): every argument is checked on
every rank, and an error on any rank (bad input on one of them, different data
or hyperparameters, a model that cannot be split) is raised on all of them
with the same message, naming the rank. Then rank 0's weights, buffers,
optimizer state, step count, shuffling generator and epoch count are copied to
the others (as DistributedDataParallel broadcasts rank 0's parameters), so
``seed=None`` works. A NaN loss, gradient or update is seen by every rank at
the same iteration (they all see the same sums) and raises the same
``NonFiniteError`` everywhere, after the same rollback. Any other exception in
training (a callback's, Ctrl-C) is raised as it is when every rank raises one;
a rank whose exception the others do not share waits ``FAILURE_TIMEOUT_S`` for
them, then aborts the MPI job (``MPI_Abort``) with its message rather than
leave them waiting for it forever.

Validation data and ``evaluate(..., distributed="mpi")`` are split the same
way, their sums reduced and their outputs gathered for the metrics. ``save``
writes from rank 0 only, atomically, for a model trained with
``distributed="mpi"`` (the ranks hold the same model); a rank that reads the
file next should wait for it (``barrier()``).

Without mpi4py and outside ``mpiexec``, or in a world of one rank,
``distributed="mpi"`` trains exactly as without it, through the same compiled
code. Nothing here imports mpi4py or numba-mpi until a distributed call asks
for them. Refused: layers whose training forward pass couples the rows of a
batch or depends on a row's place in it (``ROW_COUPLED``: BatchNorm's batch
statistics, Dropout's masks hashed from the row index), with an error naming
the layer.
"""
import builtins
import contextlib
import json
import os
import sys
import time
import traceback
import zlib

import numpy as np

from .backends.bundles import Comm

# Seconds a rank whose exception the other ranks do not share waits for them before it
# aborts the MPI job (they may be waiting for it inside a collective operation).
FAILURE_TIMEOUT_S = 30.0

# Layer kinds (class names) that data-parallel training refuses, and why: their training
# forward pass couples the rows of a batch, or depends on a row's place in it.
ROW_COUPLED = {
    "BatchNorm": "normalises with the statistics of the whole batch, which no rank sees (a "
                 "synchronised BatchNorm is not implemented)",
    "Dropout": "draws its masks from each row's position in the batch, which on a rank's "
               "share is another (the masks would not be one process's)",
}

# float32 gradients are summed in float32 (numba-mpi's dtype table gets the float32
# entry it means to have: its np.dtype("float") key is float64). True sums a float64
# copy instead (slower: measured in benchmarks/mpi_scaling.py).
REDUCE_FLOAT32_VIA_FLOAT64 = False

# The allreduce runs in place (MPI_IN_PLACE) where numba-mpi's binding allows it; False
# reduces from one buffer into another, as numba-mpi's allreduce does (for measurements).
REDUCE_IN_PLACE = True

# the environment variables through which MPI launchers announce the number of ranks
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
_LAUNCHER_RANK = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
_PAYLOAD = 1 << 14   # bytes each rank sends in an agreement


def launched():
    """The number of processes MPI's launcher started, read from its environment (1
    outside mpiexec); imports nothing."""
    for name in _LAUNCHER_SIZE:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def launcher_rank():
    """This process's rank as MPI's launcher announces it (0 outside mpiexec); imports
    nothing."""
    for name in _LAUNCHER_RANK:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def rank():
    """This process's rank (0 outside MPI). Initialises MPI when mpi4py is installed."""
    w = _world_or_none()
    return launcher_rank() if w is None else w.rank


def size():
    """The number of ranks (1 outside MPI)."""
    w = _world_or_none()
    return launched() if w is None else w.size


def is_root():
    """Whether this process is rank 0: the one that prints and writes files."""
    return rank() == 0


def barrier():
    """Wait until every rank gets here (nothing to wait for outside MPI), e.g. before
    reading a file that rank 0 has just saved."""
    w = _world_or_none()
    if w is not None:
        w.comm.Barrier()


def world(distributed):
    """The MPI world for ``distributed`` (fit's and evaluate's argument), or None for
    training alone: distributed None or False; "mpi" without mpi4py outside mpiexec;
    "mpi" in a world of one rank."""
    if distributed is None or distributed is False:
        return None
    if distributed != "mpi":
        raise ValueError(f"distributed must be None or 'mpi', got {distributed!r}")
    try:
        from mpi4py import MPI  # noqa: F401
    except ImportError:
        if launched() > 1:
            raise ImportError(f"distributed='mpi' under an MPI launcher ({launched()} processes) "
                              f"needs mpi4py and numba-mpi: pip install 'nnumba[mpi]'") from None
        return None
    w = _world_or_none()
    if w is None:
        return None
    try:
        import numba_mpi  # noqa: F401
    except ImportError:
        raise ImportError("distributed='mpi' needs numba-mpi (the allreduce inside the compiled "
                          "loop): pip install 'nnumba[mpi]'") from None
    return w


_worlds = []


def _world_or_none():
    """The process's _World when mpi4py is installed and there is more than one rank."""
    if _worlds:
        return _worlds[0]
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    if MPI.COMM_WORLD.Get_size() == 1:
        return None
    _worlds.append(_World(MPI))
    return _worlds[0]


def join_failure(exc):
    """For a command-line program whose rank failed before its fit or evaluate: take
    that call's part in the agreement of the other ranks, so that they raise the same
    error (or abort the job after FAILURE_TIMEOUT_S when they never get there). Does
    nothing outside a multi-rank MPI world."""
    w = _world_or_none() if "mpi4py" in sys.modules or launched() > 1 else None
    if w is not None:
        w.exchange({"error": _describe(exc, w)}, bounded=True, what=exc)


def _describe(exc, w):
    return [type(exc).__name__, str(exc)[:_PAYLOAD // 4], w.rank]


def _rebuilt(name, message):
    """The exception another rank raised: its built-in class (ValueError, OSError,
    KeyboardInterrupt ...) with its message, or a RuntimeError."""
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls() if cls is KeyboardInterrupt else cls(message)
        except TypeError:  # a class whose constructor takes other arguments
            return RuntimeError(f"{name}: {message}")
    return RuntimeError(f"{name}: {message}")


def _agreed(exc):
    """Mark exc as raised on every rank alike (no failure protocol needed)."""
    exc._nnumba_agreed = True
    return exc


# An array of more bytes than this is checksummed on an even sample of its rows that
# size (crc32 runs at about 1.4 GB/s here: a 614 MB CIFAR-10 training set would cost 0.45 s
# per fit; its sample, 25 ms), the first and last rows and its shape always included.
CHECKSUM_BYTES = 1 << 25


def _checksum(*arrays):
    """CRC-32 of the arrays' bytes (host arrays; rows sampled beyond CHECKSUM_BYTES), chained."""
    crc = 0
    for a in arrays:
        a = np.asarray(a)
        crc = zlib.crc32(repr((a.shape, a.dtype.str)).encode(), crc)
        if a.nbytes > CHECKSUM_BYTES and a.ndim and a.shape[0] > 2:
            step = -(-a.nbytes // CHECKSUM_BYTES)
            a = a[np.r_[0:a.shape[0]:step, a.shape[0] - 1]]
        a = np.ascontiguousarray(a)
        crc = zlib.crc32(a.view(np.uint8).reshape(-1) if a.size else b"", crc)
    return crc


class _World:
    """MPI's world as nnumba uses it: rank, size, the reducers and buffers of the
    compiled loops, the agreements, and the failure protocol (on a duplicate of the
    world communicator, so that it never matches the training's collectives).
    Making one is no collective operation: ``rank()`` may be called on some ranks."""

    def __init__(self, MPI):
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.errors = None  # made by every rank together, after an agreement (in_step)
        self.threads = None
        self._reducers, self._buffers = {}, {}

    def in_step(self):
        """After an agreement, every rank at the same point: make what needs all of them
        (the failure protocol's communicator, once)."""
        if self.errors is None:
            self.errors = self.comm.Dup()

    # ---- the failure protocol ----------------------------------------------------------------
    def _wait(self, request, bounded, what):
        if not bounded:
            request.Wait()
            return
        deadline = time.monotonic() + FAILURE_TIMEOUT_S
        while not request.Test():
            if time.monotonic() > deadline:
                self.abort(what)
            time.sleep(0.002)

    def abort(self, exc):
        """Print this rank's error and abort the whole MPI job."""
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) \
            if isinstance(exc, BaseException) else str(exc)
        err = sys.__stderr__ or sys.stderr  # (the command line silences the other ranks' stderr)
        err.write(f"nnumba: rank {self.rank} of {self.size}: {detail.rstrip()}\n"
                  f"nnumba: the other ranks did not stop within {FAILURE_TIMEOUT_S:g} s "
                  f"(they wait for this one): aborting the MPI job\n")
        err.flush()
        time.sleep(0.5)  # (for mpiexec to forward the message before it kills the job)
        self.comm.Abort(1)

    def exchange(self, payload, bounded, what=None):
        """Every rank's payload (a JSON-able dict), through one nonblocking allgather that
        an unbounded wait (a rank that got here well) or a bounded one (a rank that
        failed, ``what``) completes."""
        data = json.dumps(payload).encode()
        while len(data) > _PAYLOAD - 8 and payload.get("error"):  # a long message: cut
            name, message, r = payload["error"]
            payload = dict(payload, error=[name, message[:len(message) // 2] + " ...", r])
            data = json.dumps(payload).encode()
        if len(data) > _PAYLOAD - 8:  # (facts are a few short strings: never)
            data = json.dumps({"error": ["RuntimeError", "an agreement too long to send",
                                         self.rank]}).encode()
        send = np.zeros(_PAYLOAD, np.uint8)
        send[:8] = np.frombuffer(np.int64(len(data)).tobytes(), np.uint8)
        send[8:8 + len(data)] = np.frombuffer(data, np.uint8)
        recv = np.zeros((self.size, _PAYLOAD), np.uint8)
        MPI = self.MPI
        self._wait(self.comm.Iallgather([send, MPI.BYTE], [recv, MPI.BYTE]), bounded, what)
        out = []
        for row in recv:
            n = int(np.frombuffer(row[:8].tobytes(), np.int64)[0])
            out.append(json.loads(row[8:8 + n].tobytes().decode()))
        return out

    def agree(self, payload, error=None):
        """The agreement before a distributed call: raise the first rank's error on every
        rank (the same class and message, naming that rank), else return the payloads."""
        payload = dict(payload, error=None if error is None else _describe(error, self))
        everyone = self.exchange(payload, bounded=error is not None, what=error)
        errors = [got["error"] for got in everyone if got["error"]]
        if errors:
            name, message, r = errors[0]
            if len(errors) < self.size or any(e[:2] != errors[0][:2] for e in errors):
                message = f"on rank {r} of {self.size}: {message}"  # (not every rank's error)
            raise _agreed(_rebuilt(name, message)) from error
        return everyone

    def failed(self, exc):
        """An exception in training on this rank: when every rank has one, each raises its
        own; otherwise the others wait in a collective operation for this rank, which
        therefore aborts the job after FAILURE_TIMEOUT_S."""
        if self.errors is None:  # (no agreement yet: nothing to share it on)
            self.abort(exc)
        self._wait(self.errors.Ibarrier(), bounded=True, what=exc)

    # ---- the compiled loops' part ----------------------------------------------------------------
    def comm_bundle(self, n_params, dtype):
        """The loops' ``Comm``: this rank, the reducer for dtype, and its buffers of
        n_params + 2 elements (made once per size and dtype): one buffer, reduced in place
        (``comm.recv is comm.send``), or two that take turns."""
        dtype = np.dtype(dtype)
        via64 = dtype == np.float32 and (REDUCE_FLOAT32_VIA_FLOAT64 or not _float32_in_numba_mpi())
        kind = (dtype.name, via64, REDUCE_IN_PLACE)
        if kind not in self._reducers:
            self._reducers[kind] = _make_reducer(dtype, via64, REDUCE_IN_PLACE)
        reduce, in_place = self._reducers[kind]
        key = (n_params, dtype.name, via64, in_place)
        if key not in self._buffers:
            count = n_params + 2
            send = np.zeros(count, dtype)
            self._buffers[key] = (send, send if in_place else np.zeros(count, dtype),
                                  np.zeros(2 * count if via64 else 1))
        send, recv, scratch = self._buffers[key]
        return Comm(self.rank, self.size, reduce, send, recv, scratch)

    def blas_threads(self):
        """BLAS threads per rank: the cores of this node shared among its ranks."""
        if self.threads is None:
            local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
            ranks_here = local.Get_size()
            local.Free()
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:
                cores = os.cpu_count() or 1
            self.threads = max(1, cores // ranks_here)
        return self.threads

    def sum(self, values):
        """The float64 values summed over the ranks."""
        a = np.asarray(values, np.float64)
        out = np.empty_like(a)
        self.comm.Allreduce(a, out, op=self.MPI.SUM)
        return out

    def gather_rows(self, local, n):
        """The (rows, k) blocks of the ranks (rows as ``_share`` splits n), stacked in rank
        order into (n, k)."""
        bounds = [_share(n, r, self.size) for r in range(self.size)]
        counts = np.array([b - a for a, b in bounds]) * local.shape[1]
        displ = np.array([a for a, _ in bounds]) * local.shape[1]
        out = np.empty((n, local.shape[1]), np.float64)
        self.comm.Allgatherv(np.ascontiguousarray(local, np.float64),
                             [out, counts, displ, self.MPI.DOUBLE])
        return out.astype(local.dtype, copy=False)


def _share(n, r, p):
    return n * r // p, n * (r + 1) // p


_float32_patched = []


def _float32_in_numba_mpi():
    """Give numba-mpi's dtype table its float32 entry (MPI_FLOAT), which it means to have:
    its key np.dtype("float") is float64. False when the table is not where it was."""
    if not _float32_patched:
        try:
            from mpi4py import MPI
            from numba_mpi.common import _MPI_DTYPES

            _MPI_DTYPES.setdefault(np.dtype(np.float32), MPI._addressof(MPI.FLOAT))
            _float32_patched.append(True)
        except (ImportError, AttributeError, TypeError):
            _float32_patched.append(False)
    return _float32_patched[0]


def _make_reducer(dtype, via_float64, in_place):
    """(reduce, reduces in place): ``reduce(send, recv, count, scratch)`` is numba-mpi's
    allreduce (SUM) of ``count`` elements of dtype at address send into recv, as a Numba
    cfunc (compiled per process: it holds MPI's handles, which Numba cannot cache; about
    0.7 s). With send == recv it reduces in place (MPI_IN_PLACE, through numba-mpi's
    binding of MPI_Allreduce, which its allreduce does not offer): no copy of the send
    buffer into the receive one, measured 1.0-1.7 ms against 1.6-3.5 ms for the CIFAR-
    shaped network's 6.8 MB on 2 ranks here. via_float64 (float32 data) sums a float64
    copy in scratch (2 count elements)."""
    import numba_mpi
    from numba import carray, cfunc, types

    nb = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    from .backends.cpu.rules import REDUCE_SIGNATURE as signature
    from .backends.cpu.rules import pointer_to

    ptr, ptr64 = pointer_to(nb), pointer_to(types.float64)
    SUM = numba_mpi.Operator.SUM
    if via_float64:
        @cfunc(signature, cache=False)
        def reduce(send, recv, count, scratch):
            s, r = carray(ptr(send), count), carray(ptr(recv), count)
            w = carray(ptr64(scratch), 2 * count)
            for i in range(count):
                w[i] = s[i]
            status = numba_mpi.allreduce(w[:count], w[count:], SUM)
            for i in range(count):
                r[i] = w[count + i]
            return status

        return reduce, in_place
    if in_place:
        with contextlib.suppress(Exception):  # numba-mpi's internals moved: out of place
            return _in_place_reducer(ptr, signature, SUM), True

    @cfunc(signature, cache=False)
    def reduce(send, recv, count, scratch):
        return numba_mpi.allreduce(carray(ptr(send), count), carray(ptr(recv), count), SUM)

    return reduce, False


def _in_place_reducer(ptr, signature, SUM):
    import numba_mpi
    from mpi4py import MPI
    from numba import carray, cfunc
    from numba_mpi.api.allreduce import _MPI_Allreduce
    from numba_mpi.common import _MPI_Comm_World_ptr
    from numba_mpi.utils import _mpi_addr, _mpi_dtype

    IN_PLACE = np.uint64(int(MPI.IN_PLACE) & 0xFFFFFFFFFFFFFFFF)  # MPICH's (void *) -1

    @cfunc(signature, cache=False)
    def reduce(send, recv, count, scratch):
        r = carray(ptr(recv), count)
        if send == recv:
            return _MPI_Allreduce(IN_PLACE, r.ctypes.data, count, _mpi_dtype(r), _mpi_addr(SUM),
                                  _mpi_addr(_MPI_Comm_World_ptr))
        return numba_mpi.allreduce(carray(ptr(send), count), r, SUM)

    return reduce


class Run:
    """One distributed fit or evaluate on this rank: the agreement before it, the
    failure protocol around it, and what it needs between the ranks."""

    def __init__(self, w):
        self.world = w
        self.rank, self.size = w.rank, w.size
        self.agreed = False
        self.comm = None
        self._limits = []

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        for undo in reversed(self._limits):
            undo()
        self._limits = []
        if exc is None or getattr(exc, "_nnumba_agreed", False):
            return False
        if not self.agreed:  # the others wait in (or are on their way to) the agreement
            self.agreed = True
            self.world.agree({}, error=exc)  # raises the agreed error
        self.world.failed(exc)  # returns when every rank failed; aborts the job otherwise
        _agreed(exc)
        return False

    # ---- before training ---------------------------------------------------------------------
    def agree(self, model, facts, arrays, training=True):
        """The agreement: every rank got here without an error, with the same facts
        (a dict) and the same arrays (checksums); raises on every rank otherwise. For
        training, the model must have no ROW_COUPLED layer."""
        refused = [f"{layer!r}, which {ROW_COUPLED[type(layer).__name__]}"
                   for layer in _flat_layers(model.layers)
                   if training and type(layer).__name__ in ROW_COUPLED]
        if refused:
            raise ValueError(f"distributed='mpi' cannot split the batches of a model with "
                             f"{'; '.join(refused)}. Train it without distributed, or without "
                             f"that layer")
        facts = dict(facts)
        for name, parts in arrays.items():
            facts[name] = f"checksum {_checksum(*parts):#010x}"
        self.agreed = True
        everyone = self.world.agree({"facts": facts})
        self.world.in_step()
        for r, got in enumerate(everyone[1:], 1):
            for name, mine in everyone[0]["facts"].items():
                theirs = got["facts"].get(name)
                if theirs != mine:
                    raise _agreed(ValueError(
                        f"distributed='mpi': every rank must pass the same model, arguments and "
                        f"data (each takes its share of every batch), but {name} differs between "
                        f"rank 0 ({mine}) and rank {r} ({theirs})"))

    def start_training(self, model):
        """After the agreement: rank 0's model state on every rank, this rank's share of
        the cores for BLAS, and the loops' Comm."""
        w = self.world
        memory = model._backend.memory
        opt = model.optimizer
        for array in (model._params, model._buffers, opt.state):
            if array.size:
                host = memory.to_host(array)
                w.comm.Bcast(host, root=0)
                memory.copy_from_host(array, host)
        counters = w.comm.bcast((opt.t, model.epochs_trained,
                                 model._shuffle_rng.bit_generator.state, model._dropout_seed),
                                root=0)
        opt.t, model.epochs_trained, model._shuffle_rng.bit_generator.state, \
            model._dropout_seed = counters
        model._replica_rank = self.rank
        self._limit_threads(w.blas_threads())
        self.comm = w.comm_bundle(model.plan.n_params, model.dtype)

    def _limit_threads(self, threads):
        """BLAS (every BLAS library loaded, SciPy's that numba calls included) and Numba's
        own parallel loops on ``threads`` threads until the call ends."""
        import numba

        from .backends.cpu.network import _blas_controller  # (made once: 2 ms; a limit 20 us)

        limits = _blas_controller().limit(limits=threads, user_api="blas")
        self._limits.append(limits.restore_original_limits)
        before = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        self._limits.append(lambda: numba.set_num_threads(before))

    def warn_small_batches(self, batch_size):
        if batch_size < self.size and self.rank == 0:
            import warnings

            warnings.warn(f"batch_size={batch_size} is smaller than the {self.size} ranks: in each "
                          f"batch some ranks have no rows and only add zeros", UserWarning,
                          stacklevel=4)

    # ---- during training ---------------------------------------------------------------------
    def end_epoch(self, model, epoch):
        """After each epoch: the weights' checksums agree on every rank (else raise on every
        rank), and a stop asked for on any rank stops them all."""
        host = model._backend.memory.to_host(model._params)
        crc = zlib.crc32(host.view(np.uint8))  # every byte of the weights
        got = np.empty(3, np.int64)
        self.world.comm.Allreduce(np.array([crc, -crc, int(bool(model.stop_training))], np.int64),
                                  got, op=self.world.MPI.MAX)
        if got[0] != -got[1]:
            raise _agreed(RuntimeError(
                f"distributed='mpi': after epoch {epoch + 1} the weights differ between the "
                f"ranks (checksums from {-got[1]:#010x} to {got[0]:#010x}): the ranks did not "
                f"make the same updates (a different BLAS or library version on some ranks?)"))
        model.stop_training = bool(got[2])

    # ---- evaluation --------------------------------------------------------------------------
    def rows(self, n):
        """This rank's rows [lo, hi) of n."""
        return _share(n, self.rank, self.size)

    def combine(self, loss_sum, correct, outputs, n):
        """The sums over the ranks, and the outputs of all n rows (None: not kept)."""
        loss_sum, correct = self.world.sum([loss_sum, correct])
        if outputs is not None:
            outputs = self.world.gather_rows(outputs, n)
        return float(loss_sum), float(correct), outputs


def _flat_layers(layers):
    """The layers, with those inside a Residual (or any layer holding ``layers``) and a
    wrapper's ``layer`` listed in their place."""
    for layer in layers:
        inner = getattr(layer, "layers", None)
        if isinstance(inner, (list, tuple)):
            yield from _flat_layers(inner)
        else:
            yield layer
            wrapped = getattr(layer, "layer", None)
            if wrapped is not None and not isinstance(wrapped, (list, tuple, str, int)):
                yield from _flat_layers([wrapped])
