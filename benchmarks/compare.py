"""nnumba against NumPy, PyTorch and JAX on this machine, in one run, as Markdown tables.

    python benchmarks/compare.py [--quick] [--repeats N] [--no-torch] [--no-jax]
                                 [--sections training,cnn,rnn,fight,adam,compile] [--against PATH]

Sections (each time is the median of N runs after one untimed warm-up run;
the implementations take turns run by run, so that a change in the machine's
load hits them alike):

1. ``training``: one training epoch of an MLP (Dense layers, ReLU between them)
   (warm-up: up to WARM_SECONDS of epochs of each implementation; 3N runs of the
   rows whose nnumba epoch is shorter than SHORT_EPOCH), float32, softmax
   cross-entropy (mean over the batch), batches in a fixed order (no shuffling),
   from the same initial weights (nnumba's, seed 0) for all (``WORKLOADS``):
   - tiny MLP 64-32-10 over the 1797 digits of scikit-learn: batch 1 with SGD
     (lr 0.01) and with Adam (lr 1e-3), batch 32 with Adam (56 batches of 32
     and a last one of 5);
   - CIFAR-shaped MLP 3072-512-256-10, Adam, on synthetic data: batch 1 over
     256 samples, batch 32 over 2048, batch 256 over 4096;
   - MNIST-1D MLP 40-100-100-10, batch 100, Adam, over the 4000 signals of the
     ``cnn`` section, flattened.
   Columns: the NumPy reference backend (nnumba "numpy"), PyTorch eager on the
   CPU (a hand-written loop: nn.Linear/ReLU, F.cross_entropy, torch.optim.SGD or
   Adam, default thread count), JAX (``common.jax_mlp``: one jax.jit of a
   lax.scan over the epoch's batches of the SGD or Adam step -- torch.optim.Adam's
   update, eps outside the square root -- and one more step on a last, smaller
   batch, so one compiled program per epoch, as nnumba's fused loop) and nnumba
   "cpu"; the speed-ups of cpu over each; the loss over the whole data after
   the epoch, for each (they agree to float32 precision when all four trained
   the same way; a note under the table says where they do not).
   nnumba's times are of ``model.fit(X, y, epochs=1, ...)``, input checks
   included; torch's of the loop alone over tensors already made; JAX's of the
   compiled epoch on device arrays already made, waited for.
   And the limit of each row: the larger of the compute floor (the epoch's
   FLOPs, ``common.train_flops_per_sample`` -- forward, dW and dx of every Dense
   layer but the first's dx, which no one computes -- at the BLAS rate of
   section 5, measured in the same run) and the optimizer's memory floor (its
   epoch's traffic -- SGD reads w, g and writes w; Adam reads w, g, m, v and
   writes w, m, v; per parameter per iteration -- as one pass per iteration
   with those streams and no arithmetic over arrays of the model's parameter
   count, timed in turn with the epochs, the ``adam`` section's memory floor
   at that size); "nnumba / limit" is nnumba cpu's time over it.
2. ``cnn``: one epoch of the MNIST-1D CNN (Conv1D(1, 25, 5, stride 2, padding
   1), ReLU, Conv1D(25, 25, 3, 2, 1), ReLU, Conv1D(25, 25, 3, 2, 1), ReLU,
   Flatten, Dense(125, 10)), batch 100, Adam (lr 1e-3), float32, over the 4000
   training signals of MNIST-1D (the ``mnist1d`` package's make_dataset,
   computed locally; random signals of that shape without it), in a fixed
   order, from nnumba's initial weights (seed 0) for all: the NumPy reference,
   PyTorch eager (torch.nn.Conv1d on the (batch, channels, length) layout, the
   weights mapped as weight[o, c, tap] = W[tap C_in + c, o] and the Dense rows
   permuted from nnumba's step-major flattening to torch's channel-major one),
   JAX (lax.conv_general_dilated on the NWC layout, Adam written out) two ways:
   one jax.jit of a lax.scan over the epoch's batches, and one jitted Adam step
   called from a Python loop (XLA:CPU runs a convolution inside a loop body far
   slower than outside, jax-ml/jax#12868, so the scan is not JAX's best); and
   nnumba cpu. 3N runs each (an epoch is short); the target against JAX is
   against the faster of the two.
3. ``rnn``: one training epoch of two recurrent networks, float32, softmax
   cross-entropy, Adam (lr 1e-3), batches in a fixed order, from nnumba's
   initial weights (seed 0) for all (``RNN_MODELS``):
   - the MNIST-1D GRU baseline: Bidirectional(GRU(1, 6, return_sequences=True))
     over 40 steps, Flatten (480), Dense(480, 10), batch 100, over the 4000
     signals of the ``cnn`` section;
   - LSTM(32, 128) over 50 steps (last state), Dense(128, 10), batch 32, over
     2048 random sequences.
   Columns: PyTorch eager (torch.nn.GRU / LSTM, batch_first, bidirectional for
   the GRU; weight_ih_l0 = W_ih^T, weight_hh_l0 = W_hh^T, b_ih, b_hh as they are;
   torch.set_num_threads(2)), JAX (a jax.jit of a lax.scan over the epoch's
   batches of an Adam step whose forward is a lax.scan over the time steps, the
   input projections of all steps as one product, torch's gate equations) and
   nnumba cpu; 3N runs of each epoch (the GRU's is short; the LSTM's time moves by 20-40%
   from run to run on a 2-core virtual machine, as PyTorch's does).
``fight``: the CIFAR-shaped batch-32 epoch of nnumba cpu and of JAX in one
   process (as a notebook comparing them runs), back to back with no wait in
   rounds of four (nnumba, JAX, JAX, nnumba): each timed right after its own
   epoch and right after the other's, while the threads that one left may still
   spin; the slowdown of each.
4. ``adam``: one Adam step over 10M float32 parameters: textbook NumPy (with
   temporaries), torch.optim.Adam(fused=True) (foreach where fused is refused),
   nnumba's cpu ``adam_step`` kernel; all from the same w, g for the same steps;
   and the memory floor, a pass with the same traffic and no arithmetic.
5. The BLAS rate (with ``training``): the float32 GFLOP/s that numpy.matmul
   reaches on the matrix products of the CIFAR-shaped network at batch 256
   (forward x W for the three layers, dW = x^T dz for the three, dx = dz W^T for
   the last two), run as one more implementation of the batch-256 row (the
   products of that epoch and nothing else, timed in turn with the epochs), and
   the rate each batch-256 epoch achieves counting 7.1 MFLOP per sample, as a
   share of it.
6. ``compile``: compile overhead of a fresh process that imports nnumba and
   fits one epoch on the cpu backend (first epoch minus a steady one), for the
   README's digits MLP 64-64-10 (batch 32, Adam) and the MNIST-1D CNN (batch
   100, Adam), float32 and float64: with an empty Numba cache (one run in a new
   temporary folder: it compiles everything), and with the cache that run
   filled (N runs); and JAX's compile of its CNN epoch, both ways (trace and
   lower, XLA compile, first epoch; a fresh process each run, JAX keeps no
   compilation cache by default).
7. ``--against PATH``: the MLP rows of section 1 on nnumba cpu, for the nnumba
   at PATH (e.g. ``git worktree add /tmp/base <commit>``; imported through
   PYTHONPATH, with a Numba cache folder of its own) and for this checkout,
   each in a worker process of its own, taking turns run by run, in 3 fresh
   pairs of processes (N runs each): a before/after table.
8. The targets, and whether each is met.

``--quick`` shrinks everything (few samples, 1M parameters, one repeat, no
cold compile and no float64 in the compile section; the warm start then uses
Numba's default cache): a smoke test, not a measurement. PyTorch and JAX run in
worker processes of their own, so that their thread pools and nnumba's never
compete; each is left out when it does not import (or with ``--no-torch``,
``--no-jax``; the ``rnn`` section runs without JAX too). The header names the
BLAS library and the kernel architecture it chose (threadpoolctl), and the
machine's load. When OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set (they force
OpenBLAS's kernels, as this machine's environment does), compare.py runs
itself again without them, as a user's machine would measure, and says so;
``--keep-blas-env`` measures with them.
"""
import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

if __package__:  # imported by asv as benchmarks.compare (it holds no benchmarks)
    from . import common
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common

LR = common.LR
# Seconds to wait before each timed run: threads of the implementation timed just
# before (OpenMP, BLAS) spin for a while after their work, and on 2 cores they
# would slow down whichever implementation runs next. The wait is a busy one: a
# sleeping virtual CPU comes back slowly (measured: a 1 s sleep before an epoch
# made it up to 2x slower).
SETTLE = 0.2


def settle():
    end = time.perf_counter() + SETTLE
    while time.perf_counter() < end:
        pass
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
ADAM_SIZE, ADAM_SIZE_QUICK = 10_000_000, 1_000_000
GEMM_BATCH = 256

# (label, model of common.MODELS, optimizer, batch size, samples, samples with --quick)
WORKLOADS = [
    ("tiny 64-32-10, batch 1, SGD", "tiny", "sgd", 1, 1797, 256),
    ("tiny 64-32-10, batch 1, Adam", "tiny", "adam", 1, 1797, 256),
    ("tiny 64-32-10, batch 32, Adam", "tiny", "adam", 32, 1797, 200),
    ("CIFAR 3072-512-256-10, batch 1, Adam", "cifar", "adam", 1, 256, 16),
    ("CIFAR 3072-512-256-10, batch 32, Adam", "cifar", "adam", 32, 2048, 128),
    ("CIFAR 3072-512-256-10, batch 256, Adam", "cifar", "adam", 256, 4096, 512),
    ("MNIST-1D MLP 40-100-100-10, batch 100, Adam", "mnist1d", "adam", 100, common.CNN_SAMPLES,
     400),
]
TINY_SGD, TINY_ADAM, TINY_B32, CIFAR_B1, CIFAR_B32, CIFAR_B256, MNIST1D_MLP = (
    w[0] for w in WORKLOADS)
# The final losses of a row agree to float32 precision when their largest relative
# difference is at most this (an epoch's rounding differences: up to 2e-4 measured, at
# CIFAR batch 256)
LOSS_AGREEMENT = 1e-3
# The arrays an optimizer step streams, per parameter: SGD reads w, g and writes w;
# Adam reads w, g, m, v and writes w, m, v
STREAMS = {"sgd": 3, "adam": 7}

# The MNIST-1D CNN row: (label, samples, samples with --quick); batch common.CNN_BATCH
CNN_ROW = ("MNIST-1D CNN, batch 100, Adam", common.CNN_SAMPLES, 400)

# The compile section: (label, START_SCRIPT model, dtype); --quick keeps the float32 ones
COMPILE_WORKLOADS = [
    ("digits MLP 64-64-10, batch 32, Adam", "digits", "float32"),
    ("digits MLP 64-64-10, batch 32, Adam", "digits", "float64"),
    ("MNIST-1D CNN, batch 100, Adam", "cnn", "float32"),
    ("MNIST-1D CNN, batch 100, Adam", "cnn", "float64"),
]

SECTIONS = ("training", "cnn", "rnn", "fight", "adam", "compile")

# The recurrent networks of the rnn section: label, the recurrent layer (cell, in_features,
# units, return_sequences, bidirectional), steps, the width Dense reads, batch size,
# samples, samples with --quick, and how many times args.repeats the runs (short epochs: more)
RNN_MODELS = {
    "gru": dict(label="MNIST-1D Bidirectional GRU(1, 6), batch 100, Adam", cell="gru",
                features=1, units=6, sequences=True, bidirectional=True, steps=40, flat=480,
                batch=100, n=common.CNN_SAMPLES, n_quick=400, runs=3),
    "lstm": dict(label="LSTM(32, 128), 50 steps, batch 32, Adam", cell="lstm", features=32,
                 units=128, sequences=False, bidirectional=False, steps=50, flat=128, batch=32,
                 n=2048, n_quick=128, runs=3),
}
RNN_TORCH_THREADS = 2

# (what, key of the measured value, at least); ("torch" | "numpy" | "jax", label of
# WORKLOADS): that row's cpu speed-up over it
TARGETS = [
    ("tiny batch 1 SGD epoch: cpu vs PyTorch", ("torch", TINY_SGD), 100.0),
    ("tiny batch 1 SGD epoch: cpu vs NumPy", ("numpy", TINY_SGD), 20.0),
    ("tiny batch 1 SGD epoch: cpu vs JAX", ("jax", TINY_SGD), 1.5),
    ("tiny batch 1 Adam epoch: cpu vs PyTorch", ("torch", TINY_ADAM), 100.0),
    ("tiny batch 1 Adam epoch: cpu vs NumPy", ("numpy", TINY_ADAM), 20.0),
    ("tiny batch 1 Adam epoch: cpu vs JAX", ("jax", TINY_ADAM), 1.5),
    ("tiny batch 32 Adam epoch: cpu vs JAX", ("jax", TINY_B32), 1.0),
    ("CIFAR batch 1 epoch: cpu vs PyTorch", ("torch", CIFAR_B1), 4.0),
    ("CIFAR batch 1 epoch: cpu vs JAX", ("jax", CIFAR_B1), 1.0),
    ("CIFAR batch 32 epoch: cpu vs PyTorch", ("torch", CIFAR_B32), 1.5),
    ("CIFAR batch 32 epoch: cpu vs JAX", ("jax", CIFAR_B32), 1.0),
    ("CIFAR batch 256 epoch: cpu vs PyTorch", ("torch", CIFAR_B256), 1.3),
    ("CIFAR batch 256 epoch: cpu vs JAX", ("jax", CIFAR_B256), 1.0),
    ("CIFAR batch 256 epoch: share of the BLAS rate", ("blas",), 0.90),
    ("MNIST-1D MLP epoch: cpu vs JAX", ("jax", MNIST1D_MLP), 1.0),
    ("Adam step 10M: cpu vs torch fused", ("adam", "torch"), 1.0),
    ("Adam step 10M: cpu vs textbook NumPy", ("adam", "numpy"), 15.0),
    ("MNIST-1D CNN epoch: cpu vs PyTorch", ("cnn", "torch"), 2.0),
    ("MNIST-1D CNN epoch: cpu vs JAX (the faster of scan and step loop)", ("cnn", "jax"), 1.0),
    ("MNIST-1D GRU epoch: cpu vs PyTorch", ("gru", "torch"), 5.0),
    ("MNIST-1D GRU epoch: cpu vs JAX (scan of scans)", ("gru", "jax"), 1.0),
    ("LSTM(32, 128) epoch: cpu vs PyTorch", ("lstm", "torch"), 1.5),
    ("LSTM(32, 128) epoch: cpu vs JAX (scan of scans)", ("lstm", "jax"), 1.0),
]


def out(line=""):
    print(line, flush=True)


def workload_data(model, n):
    """The data of a workload: digits for the tiny MLP, MNIST-1D for the CNN and the GRU
    ((n, 40, 1) signals) and for the MNIST-1D MLP (the same, flattened to (n, 40)),
    synthetic for the CIFAR-shaped MLP and the LSTM ((n, steps, features) sequences)."""
    if model == "tiny":
        X, y = common.digits_data()
        return X[:n], y[:n]
    if model == "mnist1d":
        X, y = common.mnist1d_data(n)
        return X.reshape(n, -1), y
    if model in ("cnn", "gru"):
        return common.mnist1d_data(n)
    if model in RNN_MODELS:
        spec = RNN_MODELS[model]
        X, y = common.classification_data(n, spec["steps"] * spec["features"])
        return X.reshape(n, spec["steps"], spec["features"]), y
    return common.model_data(model, n)


def rnn_layers(model):
    """The layers of RNN_MODELS[model]: the recurrent layer (in a Bidirectional when the
    spec says so), Flatten when it returns sequences, Dense(flat, 10)."""
    import nnumba as nn

    spec = RNN_MODELS[model]
    layer = {"gru": nn.GRU, "lstm": nn.LSTM}[spec["cell"]](
        spec["features"], spec["units"], return_sequences=spec["sequences"])
    layers = [nn.Bidirectional(layer) if spec["bidirectional"] else layer]
    if spec["sequences"]:
        layers.append(nn.Flatten())
    return layers + [nn.Dense(spec["flat"], common.N_CLASSES)]


def build_net(model, backend, optimizer="adam", dtype="float32"):
    """``common.build_model``, and the recurrent networks of RNN_MODELS (seeded the same,
    softmax cross-entropy, ``common.make_optimizer``)."""
    if model not in RNN_MODELS:
        return common.build_model(model, backend, optimizer, dtype=dtype)
    import nnumba as nn

    spec = RNN_MODELS[model]
    net = nn.Sequential(rnn_layers(model), backend=backend, dtype=dtype, seed=common.SEED,
                        input_shape=(spec["steps"], spec["features"]))
    net.compile("cross_entropy", common.make_optimizer(optimizer))
    return net


def checksum(X, y):
    return float(np.sum(X, dtype=np.float64)) + float(np.sum(y))


def initial_weights(model, optimizer):
    """nnumba's initial weights for the workload (seed 0; the same on every backend)."""
    return build_net(model, "numpy", optimizer).get_weights()


def adam_arrays(n):
    """w and g of the Adam section: fixed seed, float32."""
    gen = common.rng(7)
    return (gen.standard_normal(n, dtype=np.float32),
            (1e-2 * gen.standard_normal(n, dtype=np.float32)).astype(np.float32))


# ---- nnumba ----------------------------------------------------------------------------------

class NnumbaEpoch:
    """One workload on one nnumba backend: a fresh model from seed 0 per run."""

    def __init__(self, backend, model, optimizer, batch, X, y, warm):
        self.args = (model, backend, optimizer)
        self.batch, self.X, self.y = batch, X, y
        net = build_net(*self.args)
        net.fit(X[:warm], y[:warm], epochs=1, batch_size=batch, shuffle=False)

    def run(self, with_loss, wait=True):
        net = build_net(*self.args)
        if wait:
            settle()
        start = time.perf_counter()
        net.fit(self.X, self.y, epochs=1, batch_size=self.batch, shuffle=False)
        seconds = time.perf_counter() - start
        return seconds, (net.evaluate(self.X, self.y)["loss"] if with_loss else None)


def textbook_adam(w, g, m, v, t, lr=LR["adam"], beta1=BETA1, beta2=BETA2, eps=EPS):
    """Adam as written in the paper, in NumPy with temporaries; returns the new (m, v)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    mhat = m / (1 - beta1 ** t)
    vhat = v / (1 - beta2 ** t)
    w -= lr * mhat / (np.sqrt(vhat) + eps)
    return m, v


_stream_kernels = {}


def stream_passes(arrays, passes=1):
    """``passes`` passes over an optimizer's arrays with its step's memory traffic and no
    arithmetic to speak of: (w, g) as SGD's (reads w, g, writes w), (w, g, m, v) as
    Adam's (reads the four, writes w, m, v); on all cores from the size where the
    optimizer steps use them (PARALLEL_MIN_SIZE). All passes in one compiled call, so
    that a small model's pass is timed without Python's call overhead."""
    from nnumba.backends.cpu._config import PARALLEL_MIN_SIZE

    key = (len(arrays), arrays[0].shape[0] >= PARALLEL_MIN_SIZE)
    if key not in _stream_kernels:
        from numba import njit, prange

        def adam_streams(w, g, m, v, passes):
            # each element loaded once into a local: re-reading m[i] and v[i] after
            # the stores (which may alias w for all LLVM knows) kept the loop scalar,
            # at half the rate in cache
            for _ in range(passes):
                for i in prange(w.shape[0]):
                    gi = g[i]
                    mi = m[i] + gi
                    vi = v[i] - gi
                    m[i] = mi
                    v[i] = vi
                    w[i] = w[i] + (mi + vi)

        def sgd_streams(w, g, passes):
            for _ in range(passes):
                for i in prange(w.shape[0]):
                    w[i] = w[i] + g[i]

        kernel = {4: adam_streams, 2: sgd_streams}[key[0]]
        _stream_kernels[key] = njit(parallel=key[1], error_model="numpy")(kernel)
    _stream_kernels[key](*arrays, passes)


def memory_floor(w, g, m, v):
    """The Adam step's memory traffic with no arithmetic to speak of: reads w, g, m, v
    and writes w, m, v in one pass (``stream_passes``). No Adam step can be much faster
    than this here."""
    stream_passes((w, g, m, v))


class StreamEpoch:
    """The memory floor of an epoch's optimizer steps: ``iterations`` passes of
    ``stream_passes`` over arrays of ``n`` float32 parameters with the streams of
    ``optimizer``'s step (STREAMS), timed as one more implementation of the row."""

    def __init__(self, n, optimizer, iterations):
        gen = common.rng(11)
        count = {"sgd": 2, "adam": 4}[optimizer]
        self.arrays = tuple(1e-3 * gen.standard_normal(n, dtype=np.float32) for _ in range(count))
        self.iterations = iterations
        self.bytes = STREAMS[optimizer] * 4 * n * iterations
        stream_passes(self.arrays, 1)  # compiles

    def run(self, with_loss):
        settle()
        # a call of no passes first: the first call after settle's busy wait took ~75 µs
        # more (measured), as much as the whole floor of a short epoch of the tiny MLP
        stream_passes(self.arrays, 0)
        start = time.perf_counter()
        stream_passes(self.arrays, self.iterations)
        return time.perf_counter() - start, None


# ---- the recurrent networks in PyTorch and JAX ------------------------------------------------
#
# nnumba's recurrent weights are, per direction, W_ih (F, G U), W_hh (U, G U), b_ih, b_hh
# (G U), the gate blocks in torch's order (LSTM i, f, g, o; GRU r, z, n): torch's
# weight_ih_l0 is W_ih^T, weight_hh_l0 W_hh^T (the backward direction's the "_reverse"
# set); a Bidirectional layer's output is [forward, backward] per step, which torch's
# bidirectional output (batch_first) and its Flatten lay out the same way.


def torch_rnn_net(torch, model, weights):
    """The torch.nn.Module of RNN_MODELS[model] (float32) from nnumba's ``weights``: the
    logits of (batch, steps, features) input."""
    spec = RNN_MODELS[model]
    it = iter(weights)
    rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[spec["cell"]](
        spec["features"], spec["units"], batch_first=True, bidirectional=spec["bidirectional"])
    lin = torch.nn.Linear(spec["flat"], common.N_CLASSES)

    def take(array):
        return torch.from_numpy(np.ascontiguousarray(array))

    with torch.no_grad():
        for suffix in ("", "_reverse")[:1 + spec["bidirectional"]]:
            w_ih, w_hh, b_ih, b_hh = (next(it) for _ in range(4))
            for name, value in (("weight_ih", w_ih.T), ("weight_hh", w_hh.T), ("bias_ih", b_ih),
                                ("bias_hh", b_hh)):
                getattr(rnn, f"{name}_l0{suffix}").copy_(take(value))
        lin.weight.copy_(take(next(it).T))
        lin.bias.copy_(take(next(it)))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.lin = rnn, lin

        def forward(self, x):
            h, _ = self.rnn(x)
            return self.lin(h.flatten(1) if spec["sequences"] else h[:, -1])

    return Net()


def jax_rnn(model, dtype="float32", lr=LR["adam"], beta1=BETA1, beta2=BETA2, eps=EPS):
    """RNN_MODELS[model] in JAX, as ``common.jax_cnn``'s dict of jitted functions ("loss",
    "grad", "step", "epoch", same arguments; the state of "step" from
    ``common.jax_adam_state``) of ``params``, nnumba's weights (``get_weights``) as they
    are. The forward pass: per direction, the input projections of all steps as one
    product, then a lax.scan over the steps (``reverse=True`` for the backward direction)
    of torch's cell equations; "epoch" is a lax.scan over the batches of the Adam step, so
    the whole epoch is one jitted call with the time loop inside. NotImplementedError when
    jax does not import (asv's "skip")."""
    jax, jnp = common.import_jax(dtype)
    lax, sigmoid = jax.lax, jax.nn.sigmoid
    spec = RNN_MODELS[model]
    u, keep = spec["units"], spec["sequences"]

    def gru_cell(w_hh, b_hh):
        def cell(h, xp):  # xp: x_t W_ih + b_ih, (batch, 3U)
            gh = h @ w_hh + b_hh
            r = sigmoid(xp[:, :u] + gh[:, :u])
            z = sigmoid(xp[:, u:2 * u] + gh[:, u:2 * u])
            n = jnp.tanh(xp[:, 2 * u:] + r * gh[:, 2 * u:])
            h = (1 - z) * n + z * h
            return h, (h if keep else None)
        return cell

    def lstm_cell(w_hh, b_hh):
        def cell(state, xp):  # xp: x_t W_ih + b_ih, (batch, 4U)
            h, c = state
            g = xp + h @ w_hh + b_hh
            c = sigmoid(g[:, u:2 * u]) * c + sigmoid(g[:, :u]) * jnp.tanh(g[:, 2 * u:3 * u])
            h = sigmoid(g[:, 3 * u:]) * jnp.tanh(c)
            return (h, c), (h if keep else None)
        return cell

    def direction(p, x, reverse):
        """(last state h, the states of every step (batch, steps, U) or None)."""
        w_ih, w_hh, b_ih, b_hh = p
        xp = jnp.swapaxes(x @ w_ih + b_ih, 0, 1)  # (steps, batch, G U), time-major
        h0 = jnp.zeros((x.shape[0], u), x.dtype)
        if spec["cell"] == "gru":
            h, hs = lax.scan(gru_cell(w_hh, b_hh), h0, xp, reverse=reverse)
        else:
            (h, _), hs = lax.scan(lstm_cell(w_hh, b_hh), (h0, h0), xp, reverse=reverse)
        return h, (None if hs is None else jnp.swapaxes(hs, 0, 1))

    def forward(params, x):
        h, hs = direction(params[:4], x, False)
        if spec["bidirectional"]:
            h_b, hs_b = direction(params[4:8], x, True)
            hs = None if hs is None else jnp.concatenate([hs, hs_b], axis=2)
            h = jnp.concatenate([h, h_b], axis=1)
        h = hs.reshape(hs.shape[0], -1) if keep else h  # step-major, as nnumba's Flatten
        return h @ params[-2] + params[-1]

    loss = common.jax_cross_entropy(forward)
    grad = jax.grad(loss)
    # as common.jax_cnn's (torch.optim.Adam: eps outside the root)
    step = common.jax_adam_step(grad, dtype, lr, beta1, beta2, eps)

    def epoch(params, Xb, yb):
        (params, _, _, _), _ = lax.scan(lambda s, b: (step(s, *b), None),
                                        common.jax_adam_state(params), (Xb, yb))
        return params

    return {"loss": jax.jit(loss), "grad": jax.jit(grad), "step": jax.jit(step),
            "epoch": jax.jit(epoch)}


# ---- the worker processes ---------------------------------------------------------------------
#
# PyTorch, JAX and (for --against) nnumba itself are timed in child processes of their
# own: one JSON request per line on stdin, one JSON reply per line on stdout. Every
# worker answers "epoch_setup" (build the workload's data, check it against the
# parent's by a checksum, run one untimed warm-up epoch) and "epoch_run" (one timed
# epoch from the initial weights; the final loss over the whole data on request).


def blas_info():
    """threadpoolctl's view of the BLAS/OpenMP libraries loaded in this process: a list
    of short descriptions (library, version, kernel architecture, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    found = []
    for lib in threadpool_info():
        text = f"{lib.get('internal_api', '?')} {lib.get('version') or ''}".strip()
        if lib.get("architecture"):
            text += f", architecture {lib['architecture']}"
        text += f", {lib.get('num_threads')} threads"
        if lib.get("threading_layer"):
            text += f" ({lib['threading_layer']})"
        found.append(f"{text} [{os.path.basename(lib.get('filepath', ''))}]")
    return found or ["none loaded"]


def serve(handlers, hello):
    """The request loop of a worker: ``handlers[cmd](req) -> reply``."""
    reply = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the pipe

    def send(obj):
        reply.write(json.dumps(obj) + "\n")
        reply.flush()

    try:
        hello = hello()
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return
    send(hello)
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            send({})
            return
        send(handlers[req["cmd"]](req))


def torch_worker_main():
    """Serve PyTorch measurements (the epochs of sections 1 to 3, the Adam step). An
    "epoch_setup" with "threads" sets torch's thread count for its epochs (the rnn
    section's RNN_TORCH_THREADS); without, and for the Adam step, torch's default."""
    state, mod = {}, {}

    def hello():
        t0 = time.perf_counter()
        try:
            import torch
        except Exception as exc:
            raise RuntimeError(f"import torch failed: {exc!r}") from exc
        mod["torch"], mod["threads"] = torch, torch.get_num_threads()
        return {"version": torch.__version__, "threads": torch.get_num_threads(),
                "import": time.perf_counter() - t0, "blas": blas_info()}

    def make_net(model, weights):
        torch = mod["torch"]
        if model in RNN_MODELS:
            return torch_rnn_net(torch, model, weights)
        it = iter(weights)
        mods = []

        def take(shape_of_torch, array):
            return torch.from_numpy(np.ascontiguousarray(array).reshape(shape_of_torch))

        with torch.no_grad():
            if model == "cnn":
                steps = common.CNN_INPUT[0]
                for c_in, c_out, k, stride, padding in common.CNN_CONVS:
                    conv = torch.nn.Conv1d(c_in, c_out, k, stride=stride, padding=padding)
                    # nnumba's W[tap C_in + c, o] is torch's weight[o, c, tap]
                    W = next(it).reshape(k, c_in, c_out).transpose(2, 1, 0)
                    conv.weight.copy_(take(conv.weight.shape, W))
                    conv.bias.copy_(torch.from_numpy(next(it)))
                    mods += [conv, torch.nn.ReLU()]
                    steps = (steps + 2 * padding - k) // stride + 1
                channels = common.CNN_CONVS[-1][1]
                assert steps * channels == common.CNN_FLAT
                lin = torch.nn.Linear(common.CNN_FLAT, common.N_CLASSES)
                # nnumba flattens (steps, channels) step-major: row t C + c; torch flattens
                # (channels, steps) channel-major: column c L + t
                W = next(it).reshape(steps, channels, -1).transpose(1, 0, 2).reshape(common.CNN_FLAT, -1)
                lin.weight.copy_(take(lin.weight.shape, W.T))
                lin.bias.copy_(torch.from_numpy(next(it)))
                mods += [torch.nn.Flatten(), lin]
            else:
                sizes = common.MODELS[model]
                for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                    lin = torch.nn.Linear(a, b)
                    lin.weight.copy_(take(lin.weight.shape, next(it).T))
                    lin.bias.copy_(torch.from_numpy(next(it)))
                    mods.append(lin)
                    if i < len(sizes) - 2:
                        mods.append(torch.nn.ReLU())
        return torch.nn.Sequential(*mods)

    def make_opt(name, params):
        torch = mod["torch"]
        if name == "sgd":
            return torch.optim.SGD(params, lr=LR["sgd"])
        return torch.optim.Adam(params, lr=LR["adam"], betas=(BETA1, BETA2), eps=EPS)

    def epoch(n_rows, with_loss):
        torch = mod["torch"]
        F = torch.nn.functional
        s = state
        net = make_net(s["model"], s["weights"])
        opt = make_opt(s["optimizer"], net.parameters())
        X, y, batch = s["X"], s["y"], s["batch"]
        settle()
        start = time.perf_counter()
        for i in range(0, n_rows, batch):
            opt.zero_grad()
            loss = F.cross_entropy(net(X[i:i + batch]), y[i:i + batch])
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
        final = None
        if with_loss:
            with torch.no_grad():
                final = float(F.cross_entropy(net(X), y))
        return seconds, final

    def epoch_setup(req):
        torch = mod["torch"]
        X, y = workload_data(req["model"], req["n"])
        state.clear()
        torch.set_num_threads(req.get("threads") or mod["threads"])
        Xt = X.transpose(0, 2, 1) if req["model"] == "cnn" else X  # (batch, channels, length)
        state.update(model=req["model"], optimizer=req["optimizer"], batch=req["batch"],
                     X=torch.from_numpy(np.ascontiguousarray(Xt)), y=torch.from_numpy(y),
                     weights=initial_weights(req["model"], req["optimizer"]))
        epoch(req["warm"], False)
        return {"checksum": checksum(X, y), "threads": torch.get_num_threads()}

    def epoch_run(req):
        seconds, final = epoch(state["X"].shape[0], req["with_loss"])
        return {"seconds": seconds, "loss": final}

    def adam_setup(req):
        torch = mod["torch"]
        w, g = adam_arrays(req["n"])
        state.clear()
        torch.set_num_threads(mod["threads"])
        p = torch.nn.Parameter(torch.from_numpy(w))
        p.grad = torch.from_numpy(g)
        mode = "fused"
        try:
            opt = torch.optim.Adam([p], lr=LR["adam"], betas=(BETA1, BETA2), eps=EPS, fused=True)
            opt.step()  # the warm-up step (t = 1)
        except (RuntimeError, ValueError, TypeError) as exc:
            mode = f"foreach (fused refused: {exc})"
            p.data.copy_(torch.from_numpy(adam_arrays(req["n"])[0]))
            opt = torch.optim.Adam([p], lr=LR["adam"], betas=(BETA1, BETA2), eps=EPS, foreach=True)
            opt.step()
        state.update(p=p, opt=opt)
        return {"mode": mode}

    def adam_step(req):
        settle()
        start = time.perf_counter()
        state["opt"].step()
        return {"seconds": time.perf_counter() - start}

    def adam_save(req):
        np.save(req["path"], state["p"].detach().numpy())
        return {}

    serve({"epoch_setup": epoch_setup, "epoch_run": epoch_run, "adam_setup": adam_setup,
           "adam_step": adam_step, "adam_save": adam_save}, hello)


def jax_worker_main():
    serve(*jax_service())


def jax_service():
    """The handlers and hello of the JAX worker: JAX measurements of the MNIST-1D CNN epoch (``common.jax_cnn``), NWC layout,
    in the parent's batch order from nnumba's initial weights, two ways: "scan", one
    jax.jit of a lax.scan over the epoch's batches; "step", one jitted Adam step called
    from a Python loop over the batches (the usual JAX training loop; on XLA:CPU a
    convolution inside a loop body is much slower, jax-ml/jax#12868). "epoch_setup"
    also reports, for each, the time to trace and lower, to compile, and of the first
    run, so that a fresh worker measures JAX's compile cost. The recurrent networks of
    RNN_MODELS (``jax_rnn``) run the same way; "variants" in "epoch_setup" picks which
    of the two are compiled (both by default). The MLPs of common.MODELS
    (``common.jax_mlp``, SGD or Adam) run as "scan" only: one jitted lax.scan over the
    whole batches, then a step on the last, smaller batch when there is one, in the same
    compiled program."""
    state, mod = {}, {}

    def hello():
        t0 = time.perf_counter()
        try:
            import jax
            import jax.numpy as jnp
        except Exception as exc:
            raise RuntimeError(f"import jax failed: {exc!r}") from exc
        mod.update(jax=jax, jnp=jnp)
        return {"version": jax.__version__, "devices": [str(d) for d in jax.devices()],
                "import": time.perf_counter() - t0, "blas": blas_info()}

    def build(model, optimizer, dtype):
        """(the jitted functions, nnumba's initial weights as params' NumPy arrays)."""
        if model in common.MODELS:
            fns = common.jax_mlp(common.MODELS[model], optimizer, dtype, lr=LR[optimizer],
                                 beta1=BETA1, beta2=BETA2, eps=EPS)
            return fns, [np.asarray(w, dtype) for w in initial_weights(model, optimizer)]
        if (model != "cnn" and model not in RNN_MODELS) or optimizer != "adam":
            raise ValueError("the JAX worker runs the MLPs of common.MODELS, and the MNIST-1D "
                             "CNN and RNN_MODELS with Adam only")
        if model == "cnn":
            fns = common.jax_cnn(dtype, lr=LR["adam"], beta1=BETA1, beta2=BETA2, eps=EPS)
            return fns, common.jax_cnn_weights(initial_weights("cnn", "adam"), dtype)
        return jax_rnn(model, dtype), [np.asarray(w, dtype) for w in initial_weights(model, "adam")]

    def epoch_setup(req):
        jax, jnp = mod["jax"], mod["jnp"]
        model, optimizer = req["model"], req.get("optimizer", "adam")
        mlp = model in common.MODELS
        dtype = req.get("dtype", "float32")
        variants = req.get("variants", ("scan",) if mlp else ("scan", "step"))
        X, y = workload_data(model, req["n"])
        batch = req["batch"]
        if not mlp and req["n"] % batch:
            raise ValueError("the JAX CNN and recurrent epochs need whole batches")
        if mlp and "step" in variants:
            raise ValueError("the JAX MLP epoch runs as a scan only")
        state.clear()
        fns, state["weights"] = build(model, optimizer, dtype)
        Xb, yb, tail = common.jax_epoch_batches(X, y, batch, dtype)
        # the arguments of the scan after params: the tail batch only for the MLPs
        state["scan_args"] = (jnp.asarray(Xb), jnp.asarray(yb)) + (
            (None if tail is None else tuple(jnp.asarray(a) for a in tail),) if mlp else ())
        if "step" in variants:
            state["batches"] = [(jnp.asarray(Xb[i]), jnp.asarray(yb[i])) for i in range(len(yb))]
        state["X"], state["y"] = jnp.asarray(X.astype(dtype)), jnp.asarray(y.astype(np.int32))
        params = fresh_params()
        reply = {"checksum": checksum(X, y)}
        for name in ("scan", "step"):
            if name not in variants:
                continue
            fn, args = ((fns["epoch"], (params,) + state["scan_args"]) if name == "scan" else
                        (fns["step"], (common.jax_adam_state(params),) + state["batches"][0]))
            t0 = time.perf_counter()
            lowered = fn.lower(*args)
            t1 = time.perf_counter()
            compiled = lowered.compile()
            t2 = time.perf_counter()
            if name == "scan":
                jax.block_until_ready(compiled(*args))
                state["scan"] = compiled
            else:
                state["step"] = compiled
                jax.block_until_ready(common.jax_step_epoch(compiled, params, state["batches"]))
            t3 = time.perf_counter()
            reply[name] = {"trace": t1 - t0, "compile": t2 - t1, "first_run": t3 - t2}
        state["loss"] = fns["loss"]
        jax.block_until_ready(fns["loss"](params, state["X"], state["y"]))  # compiles the loss
        return reply

    def fresh_params():
        return [mod["jnp"].asarray(w) for w in state["weights"]]

    def epoch_run(req):
        jax = mod["jax"]
        params = jax.block_until_ready(fresh_params())
        variant = req.get("variant", "scan")
        if req.get("settle", True):
            settle()
        start = time.perf_counter()
        if variant == "scan":
            params = state["scan"](params, *state["scan_args"])
        else:
            params = common.jax_step_epoch(state["step"], params, state["batches"])
        params = jax.block_until_ready(params)
        seconds = time.perf_counter() - start
        final = float(state["loss"](params, state["X"], state["y"])) if req["with_loss"] else None
        return {"seconds": seconds, "loss": final}

    return {"epoch_setup": epoch_setup, "epoch_run": epoch_run}, hello


def nnumba_worker_main():
    serve(*nnumba_service())


def nnumba_service():
    """The handlers and hello of the nnumba worker: nnumba cpu epochs (NnumbaEpoch) from
    whichever nnumba this process imports (PYTHONPATH decides: --against)."""
    state = {}

    def hello():
        t0 = time.perf_counter()
        import numba

        import nnumba

        return {"version": getattr(nnumba, "__version__", "?"), "file": nnumba.__file__,
                "import": time.perf_counter() - t0,
                "cache": os.environ.get("NUMBA_CACHE_DIR", "(Numba's default)"),
                "numba": numba.__version__}

    def epoch_setup(req):
        X, y = workload_data(req["model"], req["n"])
        state["impl"] = NnumbaEpoch(req.get("backend", "cpu"), req["model"], req["optimizer"],
                                    req["batch"], X, y, req["warm"])
        return {"checksum": checksum(X, y)}

    def epoch_run(req):
        seconds, loss = state["impl"].run(req["with_loss"], req.get("settle", True))
        return {"seconds": seconds, "loss": loss}

    def numpy_mix(req):
        """Rounds of: a NumPy product (the user's own code), the nnumba epoch, the same
        NumPy product again; the median times of the epoch and of the second product."""
        a = common.rng(3).standard_normal((req["size"], req["size"]), dtype=np.float32)
        a @ a
        epochs, products = [], []
        for _ in range(req["rounds"]):
            settle()
            a @ a
            epochs.append(state["impl"].run(False, wait=False)[0])
            t0 = time.perf_counter()
            a @ a
            products.append(time.perf_counter() - t0)
        return {"epoch": median(epochs), "product": median(products)}

    return {"epoch_setup": epoch_setup, "epoch_run": epoch_run, "numpy_mix": numpy_mix}, hello


def shared_worker_main():
    """JAX and nnumba in one process (the ``fight`` section): the JAX worker's requests,
    and the nnumba worker's as "nnumba_setup" and "nnumba_run"."""
    (jax_handlers, jax_hello), (nn_handlers, nn_hello) = jax_service(), nnumba_service()
    serve({**jax_handlers, "nnumba_setup": nn_handlers["epoch_setup"],
           "nnumba_run": nn_handlers["epoch_run"]},
          lambda: {"jax": jax_hello(), "nnumba": nn_hello()})


WORKERS = {"torch": torch_worker_main, "jax": jax_worker_main, "nnumba": nnumba_worker_main,
           "shared": shared_worker_main}


class Worker:
    """A worker process (see ``serve``) of ``kind`` in WORKERS; ``env``: variables to set
    in it (PYTHONPATH, NUMBA_CACHE_DIR)."""

    def __init__(self, kind, env=None):
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.hello = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} worker died (see its output above)")
        return json.loads(line)

    def ask(self, cmd, **kwargs):
        self.proc.stdin.write(json.dumps(dict(cmd=cmd, **kwargs)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def setup_epoch(self, X, y, **kwargs):
        """epoch_setup, checking that the worker built the same data as this process."""
        reply = self.ask("epoch_setup", **kwargs)
        if "checksum" not in reply or abs(reply["checksum"] - checksum(X, y)) > 1e-6 * abs(checksum(X, y)):
            raise RuntimeError(f"the {self.kind} worker built different data")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            self.proc.wait(timeout=30)


def start_worker(kind, wanted=True, env=None):
    """A Worker, or None (with a line saying why) when it is not wanted or does not start."""
    if not wanted:
        return None
    worker = Worker(kind, env)
    if "error" in worker.hello:
        out(f"({kind} left out: {worker.hello['error']})")
        worker.close()
        return None
    return worker


# ---- formatting ------------------------------------------------------------------------------

def fmt_s(seconds):
    if seconds is None:
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_x(ratio):
    return "n/a" if ratio is None else f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def ratio(slow, fast):
    return None if slow is None or fast is None else slow / fast


def median(values):
    return float(np.median(values)) if values else None


# ---- sections --------------------------------------------------------------------------------

MLP_IMPLS = (("numpy", "NumPy ref"), ("torch", "PyTorch"), ("jax", "JAX"), ("cpu", "nnumba cpu"))


WARM_SECONDS = 0.5  # the warm-up epochs of each implementation of a row (at most)
SHORT_EPOCH = 0.05  # an nnumba epoch shorter than this: 3N timed runs of its row


def warm_up(epoch):
    """Run ``epoch`` (returning its seconds) until WARM_SECONDS of them have passed, at
    least once and at most 200 times; return the last one's seconds."""
    spent, seconds = 0.0, 0.0
    for _ in range(200):
        seconds = epoch()
        spent += seconds
        if spent >= WARM_SECONDS:
            break
    return seconds


def measure_mlp_row(args, workload, torch_worker, jax_worker):
    """One row of WORKLOADS: the median epoch time of each of MLP_IMPLS, of the memory
    floor of its optimizer steps ("floor", StreamEpoch) and, for the CIFAR row at batch
    GEMM_BATCH, of its products alone ("blas", BlasEpoch), all taking turns run by run
    after warm-up epochs (``warm_up``); 3N runs for a row whose nnumba epoch is short
    (SHORT_EPOCH); and the final losses."""
    label, model, optimizer, batch, n_full, n_quick = workload
    n = n_quick if args.quick else n_full
    X, y = workload_data(model, n)
    iterations = -(-n // batch)  # a last, smaller batch counts as one
    # a whole epoch of warm-up: the first seconds after large arrays are allocated
    # run slow on this virtual machine (measured: 350-460 ms epochs, then 175 ms)
    impls = {b: NnumbaEpoch(b, model, optimizer, batch, X, y, n) for b in ("numpy", "cpu")}
    impls["floor"] = StreamEpoch(common.n_params(model), optimizer, iterations)
    if model == "cifar" and batch == GEMM_BATCH:
        impls["blas"] = BlasEpoch(n)
    workers = {"torch": torch_worker, "jax": jax_worker}
    for worker in workers.values():
        if worker is not None:
            worker.setup_epoch(X, y, model=model, optimizer=optimizer, batch=batch, n=n, warm=n)
    if jax_worker is not None:
        jax_worker.ask("epoch_run", with_loss=False)  # the warm-up epoch (setup ran the first)
    # and more warm-up epochs of the short rows, up to WARM_SECONDS of each implementation:
    # one tiny epoch is a few ms, and in the first runs of a row the tiny epochs took
    # 1.4x their later time (3.7-3.8 ms, then 2.7-2.8), JAX's likewise
    runs = args.repeats
    if not args.quick:  # (--quick is a smoke test: one warm-up epoch, one run)
        warm_cpu = warm_up(lambda: impls["cpu"].run(False, wait=False)[0])
        warm_up(lambda: impls["numpy"].run(False, wait=False)[0])
        for worker in workers.values():
            if worker is not None:
                warm_up(lambda: worker.ask("epoch_run", with_loss=False)["seconds"])
        runs = args.repeats if warm_cpu > SHORT_EPOCH else 3 * args.repeats
    times = {k: [] for k in ("blas", "floor", "numpy", "torch", "jax", "cpu")}
    losses = {}
    for r in range(runs):
        last = r == runs - 1
        for name in times:
            if name in workers:
                if workers[name] is None:
                    continue
                reply = workers[name].ask("epoch_run", with_loss=last)
            elif name in impls:
                reply = dict(zip(("seconds", "loss"), impls[name].run(last)))
            else:
                continue
            times[name].append(reply["seconds"])
            if last and reply["loss"] is not None:
                losses[name] = reply["loss"]
    t = {k: median(v) for k, v in times.items()}
    ref = losses["numpy"]
    return dict(label=label, model=model, optimizer=optimizer, batch=batch, samples=n,
                iterations=iterations, times=t, losses=losses,
                loss_diffs={k: abs(v - ref) / abs(ref) for k, v in losses.items()},
                vs_numpy=ratio(t["numpy"], t["cpu"]), vs_torch=ratio(t["torch"], t["cpu"]),
                vs_jax=ratio(t["jax"], t["cpu"]), blas=impls.get("blas"),
                stream_bytes=impls["floor"].bytes)


def add_limits(row, blas_rate):
    """The row's floors: "compute_floor", its FLOPs (common.train_flops_per_sample) at
    ``blas_rate`` (FLOP/s; None: not measured); "memory_floor", the time of its optimizer
    steps' traffic alone (StreamEpoch); "limit", the larger, "bound", which one; and
    "vs_limit", nnumba cpu's time over the limit."""
    row["flops"] = common.train_flops_per_sample(row["model"]) * row["samples"]
    row["compute_floor"] = None if blas_rate is None else row["flops"] / blas_rate
    row["memory_floor"] = row["times"]["floor"]
    floors = {k: row[f"{k}_floor"] for k in ("compute", "memory") if row[f"{k}_floor"] is not None}
    row["bound"] = max(floors, key=floors.get) if floors else None
    row["limit"] = floors.get(row["bound"])
    row["vs_limit"] = ratio(row["times"]["cpu"], row["limit"])


def mnist1d_source():
    """Where the MNIST-1D signals come from, in words."""
    if common.mnist1d_available():
        return "MNIST-1D's training signals (mnist1d.make_dataset, computed here)"
    return "random signals of MNIST-1D's shape (mnist1d not installed)"


def section_training(args, torch_worker, jax_worker, results):
    source = mnist1d_source()
    out("## One training epoch (float32, softmax cross-entropy)")
    out()
    warm = "one warm-up epoch" if args.quick else (
        f"warm-up epochs (up to {WARM_SECONDS:g} s of each implementation; "
        f"{3 * args.repeats} runs for rows whose nnumba epoch is under {SHORT_EPOCH * 1e3:.0f} ms)")
    out(f"Median of {args.repeats} after {warm}, the implementations taking turns; tiny rows "
        f"on scikit-learn's digits, CIFAR rows on synthetic data, the MNIST-1D row on {source}, "
        "flattened; batches in order, from nnumba's initial weights (seed 0) for all. PyTorch: "
        "eager, a process of its own. JAX: one jax.jit of a lax.scan over the epoch's batches of "
        "the SGD or Adam step (and one more step on a last, smaller batch: one compiled program "
        "per epoch), a process of its own. Final loss: over the whole data after the epoch; "
        "rel. diff: the largest against the NumPy reference's.")
    out()
    rows = [measure_mlp_row(args, w, torch_worker, jax_worker) for w in WORKLOADS]
    results["epochs"] = rows
    blas_row = next((r for r in rows if r["blas"] is not None), None)
    blas_rate = None
    if blas_row is not None:
        blas_flops = common.train_flops_per_sample("cifar") * blas_row["samples"]
        blas_rate = blas_flops / blas_row["times"]["blas"]
    for row in rows:
        add_limits(row, blas_rate)
    names = " | ".join(name for _, name in MLP_IMPLS)
    out(f"| workload | samples | {names} | limit | nnumba / limit | cpu vs NumPy | cpu vs PyTorch "
        f"| cpu vs JAX | final loss {' / '.join(name for _, name in MLP_IMPLS)} | max rel. diff |")
    out("|---|---:|" + "---:|" * len(MLP_IMPLS) + "---:|---:|---:|---:|---:|---|---:|")
    notes = []
    for row in rows:
        t, losses = row["times"], row["losses"]
        limit = "n/a" if row["limit"] is None else f"{fmt_s(row['limit'])} ({row['bound']})"
        loss_text = " / ".join("n/a" if losses.get(k) is None else f"{losses[k]:.5f}"
                               for k, _ in MLP_IMPLS)
        out(f"| {row['label']} | {row['samples']} | "
            + " | ".join(fmt_s(t[k]) for k, _ in MLP_IMPLS)
            + f" | {limit} | {fmt_x(row['vs_limit'])} | {fmt_x(row['vs_numpy'])} "
            f"| {fmt_x(row['vs_torch'])} | {fmt_x(row['vs_jax'])} | {loss_text} "
            f"| {max(row['loss_diffs'].values()):.1e} |")
        apart = [f"{name} by {row['loss_diffs'][k]:.1e}" for k, name in MLP_IMPLS
                 if row["loss_diffs"].get(k, 0.0) > LOSS_AGREEMENT]
        if apart:
            notes.append(f"- {row['label']}: the final loss differs from the NumPy reference's "
                         f"beyond float32 rounding over an epoch (relative {LOSS_AGREEMENT:g}): "
                         f"{', '.join(apart)}; those did not train the same way.")
    out()
    for note in notes:
        out(note)
    if notes:
        out()
    rate_text = "not measured" if blas_rate is None else f"{blas_rate / 1e9:.1f} GFLOP/s"
    out(f"limit: the larger of two floors measured in this run, the compute floor (the epoch's "
        f"FLOPs at the BLAS rate of the batch-{GEMM_BATCH} products, {rate_text}, see below) and "
        "the memory floor (the time a pass with the optimizer step's streams and no arithmetic "
        "takes over arrays of the model's parameter count, once per iteration); nnumba / limit: "
        "nnumba cpu's epoch time over it, so 1.0 would be an epoch as fast as this machine's "
        "BLAS and memory allow with everything else free.")
    out()
    out("| workload | iterations | FLOPs (forward, dW, dx) | compute floor | optimizer traffic "
        "| memory floor | stream rate |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        memory = row["memory_floor"]
        out(f"| {row['label']} | {row['iterations']} | {row['flops'] / 1e9:.3g} G "
            f"| {fmt_s(row['compute_floor'])} | {row['stream_bytes'] / 1e9:.3g} GB "
            f"| {fmt_s(memory)} | {row['stream_bytes'] / memory / 1e9:.1f} GB/s |")
    out()
    out("FLOPs: 2 n_in n_out per sample for each Dense layer's forward product and its dW, "
        "and for its dx except the first layer's, which no implementation computes. Optimizer "
        f"traffic: {STREAMS['sgd']} float32 streams per parameter per SGD step (read w, g; "
        f"write w), {STREAMS['adam']} per Adam step (read w, g, m, v; write w, m, v); the "
        "passes run serially below the size where nnumba's steps use all cores.")
    out()


CNN_IMPLS = (("numpy", "NumPy ref"), ("torch", "PyTorch"), ("jax_scan", "JAX scan"),
             ("jax_step", "JAX step loop"), ("cpu", "nnumba cpu"))


def section_cnn(args, torch_worker, jax_worker, results):
    label, n_full, n_quick = CNN_ROW
    n, batch = (n_quick if args.quick else n_full), common.CNN_BATCH
    runs = args.repeats if args.quick else 3 * args.repeats
    source = mnist1d_source()
    out("## MNIST-1D CNN epoch (float32, softmax cross-entropy)")
    out()
    out(f"Conv1D(1, 25, 5, stride 2, padding 1), ReLU, Conv1D(25, 25, 3, 2, 1), ReLU, "
        f"Conv1D(25, 25, 3, 2, 1), ReLU, Flatten (125), Dense(125, 10); {n} of {source}, "
        f"{common.CNN_INPUT[0]} steps, batch {batch}, Adam (lr {LR['adam']:g}), no shuffling, "
        f"from nnumba's initial weights (seed 0) for all. Median of {runs} after a warm-up epoch, "
        "the implementations taking turns; PyTorch and JAX each in a process of its own. "
        "PyTorch: eager, torch.nn.Conv1d on (batch, channels, length). JAX (conv_general_dilated "
        "on NWC, Adam written out): \"scan\" is one jax.jit of a lax.scan over the epoch's "
        "batches; \"step loop\" is one jitted Adam step called from a Python loop over the "
        "batches, since XLA:CPU runs a convolution inside a loop body far slower than outside "
        "(jax-ml/jax#12868). Final loss: over the whole data after the epoch.")
    out()
    X, y = workload_data("cnn", n)
    impls = {b: NnumbaEpoch(b, "cnn", "adam", batch, X, y, n) for b in ("numpy", "cpu")}
    jax_setup = None
    if torch_worker is not None:
        torch_worker.setup_epoch(X, y, model="cnn", optimizer="adam", batch=batch, n=n, warm=n)
    if jax_worker is not None:
        jax_setup = jax_worker.setup_epoch(X, y, model="cnn", optimizer="adam", batch=batch, n=n, warm=n)
        for variant in ("scan", "step"):  # the warm-up epochs (setup ran each once)
            jax_worker.ask("epoch_run", variant=variant, with_loss=False)
    times, losses = {k: [] for k, _ in CNN_IMPLS}, {}
    for r in range(runs):
        last = r == runs - 1
        for name, _ in CNN_IMPLS:
            if name == "torch" and torch_worker is not None:
                reply = torch_worker.ask("epoch_run", with_loss=last)
            elif name.startswith("jax") and jax_worker is not None:
                reply = jax_worker.ask("epoch_run", variant=name[4:], with_loss=last)
            elif name in impls:
                reply = dict(zip(("seconds", "loss"), impls[name].run(last)))
            else:
                continue
            times[name].append(reply["seconds"])
            if last:
                losses[name] = reply["loss"]
    t = {k: median(v) for k, v in times.items()}
    ref_loss = losses["numpy"]
    diff = max(abs(v - ref_loss) / abs(ref_loss) for v in losses.values())
    jax_best = min((t[k] for k in ("jax_scan", "jax_step") if t[k] is not None), default=None)
    row = dict(label=label, samples=n, times=t, losses=losses, loss_diff=diff,
               vs_numpy=ratio(t["numpy"], t["cpu"]), vs_torch=ratio(t["torch"], t["cpu"]),
               vs_jax_scan=ratio(t["jax_scan"], t["cpu"]), vs_jax_step=ratio(t["jax_step"], t["cpu"]),
               vs_jax=ratio(jax_best, t["cpu"]), jax_setup=jax_setup, runs=times)
    results["cnn"] = row
    out("| workload | samples | " + " | ".join(name for _, name in CNN_IMPLS)
        + " | cpu vs NumPy | cpu vs PyTorch | cpu vs JAX scan | cpu vs JAX step loop "
        "| final loss " + " / ".join(name for _, name in CNN_IMPLS) + " | max rel. diff |")
    out("|---|---:|" + "---:|" * len(CNN_IMPLS) + "---:|---:|---:|---:|---|---:|")
    loss_text = " / ".join("n/a" if losses.get(k) is None else f"{losses[k]:.5f}" for k, _ in CNN_IMPLS)
    out(f"| {label} | {n} | " + " | ".join(fmt_s(t[k]) for k, _ in CNN_IMPLS)
        + f" | {fmt_x(row['vs_numpy'])} | {fmt_x(row['vs_torch'])} | {fmt_x(row['vs_jax_scan'])} "
        f"| {fmt_x(row['vs_jax_step'])} | {loss_text} | {diff:.1e} |")
    # the fastest run of each: on a shared machine, another process taking a core slows
    # the implementations whose threads meet at barriers (OpenMP, OpenBLAS) by up to 100x
    best = {k: (min(v) if v else None) for k, v in times.items()}
    row["best"] = best
    out(f"| (fastest of the {runs}) | {n} | " + " | ".join(fmt_s(best[k]) for k, _ in CNN_IMPLS)
        + f" | {fmt_x(ratio(best['numpy'], best['cpu']))} | {fmt_x(ratio(best['torch'], best['cpu']))} "
        f"| {fmt_x(ratio(best['jax_scan'], best['cpu']))} | {fmt_x(ratio(best['jax_step'], best['cpu']))} "
        "| | |")
    out()
    spread = ", ".join(f"{name} {fmt_s(min(times[k]))} to {fmt_s(max(times[k]))}"
                       for k, name in CNN_IMPLS if times[k])
    out(f"Fastest to slowest of the {runs} runs: {spread}. When the slowest are many times the "
        "fastest, other processes took cores during the run: the medians then mean little.")
    out()


RNN_IMPLS = (("torch", "PyTorch"), ("jax_scan", "JAX scan"), ("cpu", "nnumba cpu"))


def section_rnn(args, torch_worker, jax_worker, results):
    """The rnn section: one epoch of each RNN_MODELS network, PyTorch eager, JAX's scan of
    scans and nnumba cpu taking turns (the order reversed every other run)."""
    source = ("MNIST-1D's training signals (mnist1d.make_dataset, computed here, as the CNN's)"
              if common.mnist1d_available() else "random signals of MNIST-1D's shape (mnist1d not installed)")
    out("## Recurrent epochs (float32, softmax cross-entropy)")
    out()
    out(f"Bidirectional(GRU(1, 6, return_sequences=True)) over 40 steps, Flatten (480), "
        f"Dense(480, 10), batch 100, on {source}; LSTM(32, 128) over 50 steps (its last state), "
        f"Dense(128, 10), batch 32, on random sequences (a fixed random linear teacher's labels). "
        f"Adam (lr {LR['adam']:g}), no shuffling, from nnumba's initial weights (seed 0) for all. "
        f"PyTorch: eager torch.nn.GRU / LSTM (batch_first), torch.set_num_threads("
        f"{RNN_TORCH_THREADS}), a process of its own. JAX: one jax.jit of a lax.scan over the "
        "epoch's batches of the Adam step, whose forward is a lax.scan over the time steps (the "
        "input projections of all steps as one product before it), a process of its own. nnumba "
        "cpu: model.fit(epochs=1), input checks included. Medians of the runs after a warm-up "
        "epoch, the three taking turns (the order reversed every other run). Final loss: over "
        "the whole data after the epoch; rel. diff: the largest of PyTorch's and JAX's against "
        "nnumba cpu's.")
    out()
    head = " | ".join(name for _, name in RNN_IMPLS)
    out(f"| workload | samples | runs | {head} | cpu vs PyTorch | cpu vs JAX scan "
        f"| final loss {' / '.join(name for _, name in RNN_IMPLS)} | max rel. diff |")
    out("|---|---:|---:|" + "---:|" * len(RNN_IMPLS) + "---:|---:|---|---:|")
    results["rnn"], spreads = {}, []
    for model, spec in RNN_MODELS.items():
        n, batch = (spec["n_quick"] if args.quick else spec["n"]), spec["batch"]
        runs = args.repeats if args.quick else spec["runs"] * args.repeats
        X, y = workload_data(model, n)
        cpu = NnumbaEpoch("cpu", model, "adam", batch, X, y, n)
        threads = None
        if torch_worker is not None:
            threads = torch_worker.setup_epoch(X, y, model=model, optimizer="adam", batch=batch, n=n,
                                               warm=n, threads=RNN_TORCH_THREADS)["threads"]
        if jax_worker is not None:
            jax_worker.setup_epoch(X, y, model=model, optimizer="adam", batch=batch, n=n, warm=n,
                                   variants=["scan"])
            jax_worker.ask("epoch_run", variant="scan", with_loss=False)  # the warm-up epoch
        times, losses = {k: [] for k, _ in RNN_IMPLS}, {}
        for r in range(runs):
            last = r == runs - 1
            for name, _ in (RNN_IMPLS if r % 2 == 0 else RNN_IMPLS[::-1]):
                if name == "torch" and torch_worker is not None:
                    reply = torch_worker.ask("epoch_run", with_loss=last)
                elif name == "jax_scan" and jax_worker is not None:
                    reply = jax_worker.ask("epoch_run", variant="scan", with_loss=last)
                elif name == "cpu":
                    reply = dict(zip(("seconds", "loss"), cpu.run(last)))
                else:
                    continue
                times[name].append(reply["seconds"])
                if last:
                    losses[name] = reply["loss"]
        del cpu
        t = {k: median(v) for k, v in times.items()}
        best = {k: (min(v) if v else None) for k, v in times.items()}
        diff = max(abs(v - losses["cpu"]) / abs(losses["cpu"]) for v in losses.values())
        row = dict(label=spec["label"], samples=n, times=t, best=best, losses=losses,
                   loss_diff=diff, vs_torch=ratio(t["torch"], t["cpu"]),
                   vs_jax=ratio(t["jax_scan"], t["cpu"]), torch_threads=threads, runs=times)
        results["rnn"][model] = row
        loss_text = " / ".join("n/a" if losses.get(k) is None else f"{losses[k]:.5f}" for k, _ in RNN_IMPLS)
        out(f"| {spec['label']} | {n} | {runs} | " + " | ".join(fmt_s(t[k]) for k, _ in RNN_IMPLS)
            + f" | {fmt_x(row['vs_torch'])} | {fmt_x(row['vs_jax'])} | {loss_text} | {diff:.1e} |")
        # the fastest run of each: see section_cnn
        out(f"| (fastest of the {runs}) | {n} | {runs} | " + " | ".join(fmt_s(best[k]) for k, _ in RNN_IMPLS)
            + f" | {fmt_x(ratio(best['torch'], best['cpu']))} "
            f"| {fmt_x(ratio(best['jax_scan'], best['cpu']))} | | |")
        spreads.append(f"{model.upper()}: " + ", ".join(
            f"{name} {fmt_s(min(times[k]))} to {fmt_s(max(times[k]))}" for k, name in RNN_IMPLS if times[k]))
    out()
    out(f"Fastest to slowest of the runs: {'; '.join(spreads)}. When the slowest are many times "
        "the fastest, other processes took cores during the run: the medians then mean little.")
    out()


def products_blas():
    """Whose BLAS nnumba cpu's matrix products run in, in this process: "NumPy" (its own
    library, ``backends.cpu._blas``) or "SciPy" (the one Numba's np.dot calls)."""
    from nnumba.backends.cpu import _blas

    return "NumPy" if _blas.available(np.float32) else "SciPy"


MIX_PRODUCT = 1024  # the NumPy product of fight_numpy: float32 (1024 x 1024) @ (1024 x 1024)


def fight_numpy(args, results):
    """The CIFAR-shaped batch-256 epoch between two NumPy products in one process (a user's
    own NumPy code around fit): nnumba's products run in NumPy's own BLAS (``backends.cpu.
    _blas``), so the process has one BLAS thread pool, not two."""
    label, model, optimizer, batch, n_full, n_quick = next(w for w in WORKLOADS if w[0] == CIFAR_B256)
    n = (n_quick if args.quick else n_full) // 2
    worker = start_worker("nnumba")
    try:
        X, y = workload_data(model, n)
        worker.setup_epoch(X, y, model=model, optimizer=optimizer, batch=batch, n=n, warm=n)
        mix = worker.ask("numpy_mix", size=MIX_PRODUCT, rounds=args.repeats)
        library = products_blas()
    finally:
        worker.close()
    results["fight_numpy"] = mix
    out(f"{label}, {n} samples, in one process with NumPy's own products: rounds of a float32 "
        f"({MIX_PRODUCT} x {MIX_PRODUCT}) @ ({MIX_PRODUCT} x {MIX_PRODUCT}) `numpy.matmul`, "
        f"the epoch, the same product again; median of {args.repeats} rounds. nnumba's products "
        f"run in {library}'s BLAS here"
        f"{' (one thread pool in the process)' if library == 'NumPy' else ' (two thread pools)'}: the epoch "
        f"took **{fmt_s(mix['epoch'])}**, the NumPy product right after it "
        f"**{fmt_s(mix['product'])}**.")
    out()


def section_fight(args, results):
    """The CIFAR-shaped batch-32 epoch of nnumba and of JAX in ONE process (a notebook that
    compares libraries), each timed after its own epoch and right after the other's; and
    nnumba's epoch between NumPy's own products (``fight_numpy``)."""
    label, model, optimizer, batch, n_full, n_quick = next(w for w in WORKLOADS if w[0] == CIFAR_B32)
    n = n_quick if args.quick else n_full
    out("## Two thread pools in one process")
    out()
    fight_numpy(args, results)
    out(f"{label}, {n} samples, nnumba cpu and JAX (the training section's scan) in one worker "
        f"process: XLA's thread pool and the BLAS threads nnumba's products run on share its 2 "
        f"cores. Epochs back to back with no wait between them, in rounds of four (nnumba, JAX, "
        f"JAX, nnumba), so that each library is timed as often right after its own epoch as "
        f"right after the other's, whatever threads that one left spinning; median of "
        f"{args.repeats} rounds.")
    out()
    worker = start_worker("shared", not args.no_jax)
    if worker is None:
        return
    try:
        X, y = workload_data(model, n)
        worker.setup_epoch(X, y, model=model, optimizer=optimizer, batch=batch, n=n)
        worker.ask("nnumba_setup", model=model, optimizer=optimizer, batch=batch, n=n, warm=n)

        def epoch(who):
            cmd = "nnumba_run" if who == "cpu" else "epoch_run"
            return worker.ask(cmd, with_loss=False, settle=False)["seconds"]

        epoch("jax")  # warm-ups: the first round then starts after an nnumba epoch
        epoch("cpu")
        alone, after = {"cpu": [], "jax": []}, {"cpu": [], "jax": []}
        for _ in range(args.repeats):
            alone["cpu"].append(epoch("cpu"))
            after["jax"].append(epoch("jax"))
            alone["jax"].append(epoch("jax"))
            after["cpu"].append(epoch("cpu"))
    finally:
        worker.close()
    fight = {when: {who: median(times) for who, times in got.items()}
             for when, got in (("alone", alone), ("after", after))}
    results["fight"] = fight
    out("| in one process | JAX | nnumba cpu | cpu vs JAX |")
    out("|---|---:|---:|---:|")
    for when, text in (("alone", "each after its own epoch"), ("after", "each right after the other's")):
        t = fight[when]
        out(f"| {text} | {fmt_s(t['jax'])} | {fmt_s(t['cpu'])} | {fmt_x(t['jax'] / t['cpu'])} |")
    out()
    out(f"Right after the other library's epoch, nnumba's epoch took "
        f"{fight['after']['cpu'] / fight['alone']['cpu']:.2f} times its time after its own, "
        f"JAX's {fight['after']['jax'] / fight['alone']['jax']:.2f} times.")
    out()


def section_adam(args, torch_worker, results):
    n = ADAM_SIZE_QUICK if args.quick else ADAM_SIZE
    out(f"## One Adam step over {n:,} float32 parameters")
    out()
    from nnumba.backends import get_backend

    cpu = get_backend("cpu").optim
    w0, g = adam_arrays(n)
    w_np, m_np, v_np = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    w_cpu, m_cpu, v_cpu = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    del w0
    mode = None
    if torch_worker is not None:
        mode = torch_worker.ask("adam_setup", n=n)["mode"]
    # the warm-up step, t = 1 (torch's was made by adam_setup)
    m_np, v_np = textbook_adam(w_np, g, m_np, v_np, 1)
    cpu.adam_step(w_cpu, g, m_cpu, v_cpu, LR["adam"], BETA1, BETA2, EPS, 1)
    floor_arrays = (w_cpu.copy(), g, np.zeros_like(g), np.zeros_like(g))
    memory_floor(*floor_arrays)  # compiles
    times = {"numpy": [], "torch": [], "cpu": [], "floor": []}
    for t in range(2, args.repeats + 2):
        settle()
        start = time.perf_counter()
        m_np, v_np = textbook_adam(w_np, g, m_np, v_np, t)
        times["numpy"].append(time.perf_counter() - start)
        if torch_worker is not None:
            times["torch"].append(torch_worker.ask("adam_step")["seconds"])
        settle()
        start = time.perf_counter()
        cpu.adam_step(w_cpu, g, m_cpu, v_cpu, LR["adam"], BETA1, BETA2, EPS, t)
        times["cpu"].append(time.perf_counter() - start)
        settle()
        start = time.perf_counter()
        memory_floor(*floor_arrays)
        times["floor"].append(time.perf_counter() - start)
    del floor_arrays
    diffs = {"cpu": float(np.max(np.abs(w_cpu - w_np)))}
    if torch_worker is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "w.npy")
            torch_worker.ask("adam_save", path=path)
            diffs["torch"] = float(np.max(np.abs(np.load(path) - w_np)))
    t = {k: median(v) for k, v in times.items()}
    results["adam"] = dict(n=n, times=t, mode=mode, numpy=ratio(t["numpy"], t["cpu"]),
                           torch=ratio(t["torch"], t["cpu"]), diffs=diffs)
    torch_label = "PyTorch Adam" + ("" if mode is None else f" ({mode})")
    gbytes = 7 * 4 * n / 1e9  # reads w, g, m, v and writes w, m, v
    out(f"Median of {args.repeats} steps after a warm-up step; all from the same w and g, "
        f"{args.repeats + 1} steps each. Memory traffic of one fused pass: {gbytes:.2f} GB.")
    out()
    out("| implementation | time per step | GB/s (fused pass) | cpu speed-up | max abs diff of w vs textbook |")
    out("|---|---:|---:|---:|---:|")
    rows = [("textbook NumPy (temporaries)", "numpy"), (torch_label, "torch"),
            ("nnumba cpu adam_step", "cpu"),
            ("memory floor: the same 7 streams, no arithmetic", "floor")]
    for label, key in rows:
        if t[key] is None:
            out(f"| {label} | n/a | | | |")
            continue
        diff = {"numpy": "(reference)", "floor": "(not a step)"}.get(
            key, f"{diffs.get(key, float('nan')):.1e}")
        out(f"| {label} | {fmt_s(t[key])} | {gbytes / t[key]:.1f} | {fmt_x(ratio(t[key], t['cpu']))} "
            f"| {diff} |")
    out()
    results["adam"]["floor"] = t["floor"]
    out(f"nnumba's step takes {t['cpu'] / t['floor']:.2f}x the time of the memory floor, so "
        f"no step can be more than {t['numpy'] / t['floor']:.1f}x faster than this run's "
        f"textbook NumPy, whose time depends on whether the kernel backs its {4 * n / 1e6:.0f} MB "
        "temporaries with huge pages.")
    out()


class BlasEpoch:
    """The matrix products of one epoch of the CIFAR-shaped network at batch GEMM_BATCH,
    and nothing else: for each batch, x W for the three layers, dW = x^T dz for the
    three and dx = dz W^T for the last two (the first layer's dx is not needed), each
    numpy.matmul into a preallocated output, on transposed views where nnumba uses them."""

    def __init__(self, n):
        B, sizes = GEMM_BATCH, common.MODELS["cifar"]
        gen = common.rng(9)
        self.n_batches = n // B
        self.products = []  # (name, a, b, out)
        for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:])):
            x = gen.standard_normal((B, k), dtype=np.float32)
            w = gen.standard_normal((k, m), dtype=np.float32)
            dz = gen.standard_normal((B, m), dtype=np.float32)
            self.products.append((f"layer {i + 1} x W: {B}x{k} @ {k}x{m}", x, w, np.empty((B, m), np.float32)))
            self.products.append((f"layer {i + 1} x^T dz: {k}x{B} @ {B}x{m}", x.T, dz,
                                  np.empty((k, m), np.float32)))
            if i > 0:
                self.products.append((f"layer {i + 1} dz W^T: {B}x{m} @ {m}x{k}", dz, w.T,
                                      np.empty((B, k), np.float32)))
        self.flops_per_batch = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for _, a, b, _ in self.products)
        assert self.flops_per_batch == common.train_flops_per_sample("cifar") * B
        self.per_product = [[] for _ in self.products]
        self.run(False)

    def run(self, with_loss):
        clock = time.perf_counter
        spent = [0.0] * len(self.products)
        settle()
        start = clock()
        for _ in range(self.n_batches):
            for j, (_, a, b, c) in enumerate(self.products):
                t0 = clock()
                np.matmul(a, b, out=c)
                spent[j] += clock() - t0
        seconds = clock() - start
        for j, s in enumerate(spent):
            self.per_product[j].append(s / self.n_batches)
        return seconds, None


def section_gemm(args, results):
    out(f"## BLAS rate on the CIFAR-shaped network's products at batch {GEMM_BATCH}")
    out()
    row = next((r for r in results.get("epochs", []) if r.get("blas") is not None), None)
    if row is None:
        out("(not measured)")
        out()
        return
    blas = row["blas"]
    per_sample_flops = common.train_flops_per_sample("cifar")
    blas_seconds = row["times"]["blas"]
    blas_rate = per_sample_flops * row["samples"] / blas_seconds
    results["blas_rate"] = blas_rate
    out(f"The products alone of the batch-{GEMM_BATCH} epoch above ({row['samples']} samples, "
        f"{per_sample_flops / 1e6:.2f} MFLOP per sample: forward, dW, and dx except the first "
        f"layer's), numpy.matmul (BLAS: {blas_name()}), timed in turn with the epochs: "
        f"{fmt_s(blas_seconds)}, {fmt_s(blas_seconds / row['samples'])} per sample, "
        f"**{blas_rate / 1e9:.1f} GFLOP/s**.")
    out()
    out("| product (per batch) | median time | GFLOP/s |")
    out("|---|---:|---:|")
    for (name, a, b, _), samples in zip(blas.products, blas.per_product):
        seconds = median(samples)
        out(f"| {name} | {fmt_s(seconds)} | {2 * a.shape[0] * a.shape[1] * b.shape[1] / seconds / 1e9:.1f} |")
    out()
    out(f"| batch-{GEMM_BATCH} epoch ({row['samples']} samples) | time | GFLOP/s achieved | share of the BLAS rate |")
    out("|---|---:|---:|---:|")
    for key, label in MLP_IMPLS:
        seconds = row["times"][key]
        if seconds is None:
            out(f"| {label} | n/a | | |")
            continue
        rate = per_sample_flops * row["samples"] / seconds
        if key == "cpu":
            results["blas_share"] = rate / blas_rate
        out(f"| {label} | {fmt_s(seconds)} | {rate / 1e9:.1f} | {100 * rate / blas_rate:.0f}% |")
    out()


def section_compile(args, results):
    out("## Compile overhead of a fresh process")
    out()
    out("A new interpreter imports nnumba and fits one epoch of random data on the cpu backend "
        "(build, compile or load from Numba's cache, fit), then the same epoch again; compile "
        "overhead = first epoch - second epoch. Cold: NUMBA_CACHE_DIR a new empty folder (one "
        f"run: everything compiles); warm: the folder that run filled (median of {args.repeats} "
        "runs). Digits MLP: 1797 samples; CNN: 4000 signals of 40 steps.")
    out()
    out("| workload | dtype | Numba cache | runs | process wall time | import nnumba | first epoch "
        "| steady epoch | compile overhead |")
    out("|---|---|---|---:|---:|---:|---:|---:|---:|")

    def row(label, dtype, cache, runs):
        med = {k: median([r[k] for r in runs]) for k in runs[0] if k != "nnumba"}
        out(f"| {label} | {dtype} | {cache} | {len(runs)} | {fmt_s(med['wall'])} | {fmt_s(med['import'])} "
            f"| {fmt_s(med['first_epoch'])} | {fmt_s(med['steady_epoch'])} | {fmt_s(med['overhead'])} |")
        return med

    results["compile"] = []
    for label, model, dtype in COMPILE_WORKLOADS:
        if args.quick and dtype != "float32":
            continue
        entry = dict(label=label, model=model, dtype=dtype)
        if args.quick:
            common.fresh_process_start(None, model=model, dtype=dtype)  # fills the default cache
            entry["warm"] = row(label, dtype, "warm (Numba's default, --quick)",
                                [common.fresh_process_start(None, model=model, dtype=dtype)])
        else:
            tmp = tempfile.mkdtemp(prefix="nnumba-compare-cache-")
            try:
                entry["cold"] = row(label, dtype, "cold (empty folder)",
                                    [common.fresh_process_start(tmp, model=model, dtype=dtype)])
                entry["warm"] = row(label, dtype, "warm (filled by the cold run)",
                                    [common.fresh_process_start(tmp, model=model, dtype=dtype)
                                     for _ in range(args.repeats)])
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        results["compile"].append(entry)
        if model == "digits" and dtype == "float32":
            results["warm"] = entry["warm"]
            if "cold" in entry:
                results["cold"] = entry["cold"]
    out()
    if args.no_jax:
        return
    label, n_full, n_quick = CNN_ROW
    n = n_quick if args.quick else n_full
    runs = 1 if args.quick else min(args.repeats, 3)
    out(f"JAX's compile of its CNN epoch (both forms of the CNN section, {n} signals): a fresh "
        f"worker process per run (JAX keeps no compilation cache by default, so every process "
        f"compiles; the scan is compiled first, then the step), median of {runs}. Compile overhead "
        "= trace and lower + XLA compile + first epoch - steady epoch, as nnumba's first epoch - "
        "steady epoch; the import of jax is not in it (nnumba's import is not in its either).")
    out()
    out("| workload | dtype | runs | import jax | trace and lower | XLA compile | first epoch "
        "| steady epoch | compile overhead |")
    out("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    X, y = workload_data("cnn", n)
    results["jax_compile"] = []
    for dtype in ("float32",) if args.quick else ("float32", "float64"):
        samples = {"scan": [], "step": []}
        for _ in range(runs):
            worker = start_worker("jax")
            if worker is None:
                return
            try:
                reply = worker.setup_epoch(X, y, model="cnn", optimizer="adam", batch=common.CNN_BATCH,
                                           n=n, warm=n, dtype=dtype)
                for variant, got in samples.items():
                    steady = worker.ask("epoch_run", variant=variant, with_loss=False)["seconds"]
                    r = reply[variant]
                    got.append(dict(import_=worker.hello["import"], trace=r["trace"],
                                    compile=r["compile"], first_run=r["first_run"], steady=steady,
                                    overhead=r["trace"] + r["compile"] + r["first_run"] - steady))
            finally:
                worker.close()
        for variant, got in samples.items():
            med = {k: median([r[k] for r in got]) for k in got[0]}
            results["jax_compile"].append(dict(dtype=dtype, variant=variant, **med))
            name = "JAX scan" if variant == "scan" else "JAX step loop"
            out(f"| {name}, {label} | {dtype} | {runs} | {fmt_s(med['import_'])} | {fmt_s(med['trace'])} "
                f"| {fmt_s(med['compile'])} | {fmt_s(med['first_run'])} | {fmt_s(med['steady'])} "
                f"| {fmt_s(med['overhead'])} |")
    out()


AGAINST_ROUNDS = 3  # fresh pairs of worker processes (1 with --quick)


def section_against(args, results):
    """Before/after: the MLP rows on nnumba cpu for the nnumba at args.against and for this
    checkout, each in a worker process of its own, alternating run by run; AGAINST_ROUNDS
    fresh pairs of processes, since one process can be steadily faster or slower than the
    next on this virtual machine (where its arrays land)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    before_path = os.path.abspath(args.against)
    envs = {"before": {"PYTHONPATH": before_path}, "after": {"PYTHONPATH": root}}
    rounds = 1 if args.quick else AGAINST_ROUNDS
    out(f"## Before/after: the MLP epochs on nnumba cpu, {before_path} against this checkout")
    out()
    cache = tempfile.mkdtemp(prefix="nnumba-compare-against-cache-")
    envs["before"]["NUMBA_CACHE_DIR"] = cache
    names = ("before", "after")
    times = {w[0]: {k: [] for k in names} for w in WORKLOADS}
    per_process = {w[0]: {k: [] for k in names} for w in WORKLOADS}
    losses = {w[0]: {} for w in WORKLOADS}
    try:
        for rnd in range(rounds):
            workers = {}
            try:
                for name in (names if rnd % 2 == 0 else names[::-1]):
                    workers[name] = Worker("nnumba", envs[name])
                    if "error" in workers[name].hello:
                        raise RuntimeError(f"the {name} worker failed: {workers[name].hello['error']}")
                if rnd == 0:
                    for name, path in (("before", before_path), ("after", root)):
                        hello = workers[name].hello
                        out(f"- {name}: {git_text(path)}; nnumba imported from `{hello['file']}`, "
                            f"Numba cache {hello['cache']}")
                    out()
                for label, model, optimizer, batch, n_full, n_quick in WORKLOADS:
                    n = n_quick if args.quick else n_full
                    X, y = workload_data(model, n)
                    for worker in workers.values():
                        worker.setup_epoch(X, y, model=model, optimizer=optimizer, batch=batch,
                                           n=n, warm=n)
                    got = {k: [] for k in names}
                    for r in range(args.repeats):
                        for name in (names if r % 2 == 0 else names[::-1]):
                            reply = workers[name].ask("epoch_run", with_loss=r == 0 and rnd == 0)
                            got[name].append(reply["seconds"])
                            if reply["loss"] is not None:
                                losses[label][name] = reply["loss"]
                    for name in names:
                        times[label][name] += got[name]
                        per_process[label][name].append(median(got[name]))
            finally:
                for worker in workers.values():
                    worker.close()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out(f"{rounds} fresh pair{'s' * (rounds > 1)} of worker processes, each timing every workload "
        f"{args.repeats} time{'s' * (args.repeats > 1)} after a warm-up epoch (in the first pair, "
        "that compiles), the two "
        "taking turns (which goes first alternates run by run and pair by pair); same workloads, "
        "data and seeds as the first table. Median and fastest over all runs; the median of each "
        "process, since one process can be steadily faster than the next on this machine. "
        "After vs before > 1: this checkout is faster.")
    out()
    out("| workload | samples | before | after | after vs before | fastest before / after "
        "| fastest after vs before | process medians before; after | final loss before / after "
        "| rel. diff |")
    out("|---|---:|---:|---:|---:|---|---:|---|---|---:|")
    results["against"] = []
    for label, model, optimizer, batch, n_full, n_quick in WORKLOADS:
        n = n_quick if args.quick else n_full
        t = {k: median(v) for k, v in times[label].items()}
        best = {k: min(v) for k, v in times[label].items()}
        loss = losses[label]
        diff = abs(loss["after"] - loss["before"]) / abs(loss["before"])
        speed = ratio(t["before"], t["after"])
        results["against"].append(dict(label=label, times=t, best=best, losses=loss, speedup=speed,
                                       runs=times[label], per_process=per_process[label]))
        procs = "; ".join(", ".join(fmt_s(x) for x in per_process[label][k]) for k in names)
        out(f"| {label} | {n} | {fmt_s(t['before'])} | {fmt_s(t['after'])} | {fmt_x(speed)} "
            f"| {fmt_s(best['before'])} / {fmt_s(best['after'])} "
            f"| {fmt_x(ratio(best['before'], best['after']))} | {procs} "
            f"| {loss['before']:.5f} / {loss['after']:.5f} | {diff:.1e} |")
    out()


def git_text(path):
    """'<short commit> <subject, shortened>' of the git checkout at path, '+ changes' when its
    tracked files differ from that commit."""
    def git(*cmd):
        proc = subprocess.run(["git", "-C", path, *cmd], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    head = git("log", "-1", "--format=%h %s")
    if head is None:
        return f"{path} (not a git checkout)"
    if len(head) > 70:
        head = head[:67] + "..."
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"`{path}` at {head}" + (" + uncommitted changes" if dirty else "")


def section_targets(results, have):
    out("## Targets")
    out()
    out("| target | measured | met |")
    out("|---|---:|---|")
    epochs = {row["label"]: row for row in results.get("epochs", [])}
    for what, key, least in TARGETS:
        value = None
        if key[0] in ("torch", "numpy", "jax") and key[1] in epochs:
            value = epochs[key[1]]["vs_" + key[0]]
        elif key[0] == "blas":
            value = results.get("blas_share")
        elif key[0] == "adam" and "adam" in results:
            value = results["adam"][key[1]]
        elif key[0] == "cnn" and "cnn" in results:
            value = results["cnn"]["vs_" + key[1]]
        elif key[0] in RNN_MODELS and key[0] in results.get("rnn", {}):
            value = results["rnn"][key[0]]["vs_" + key[1]]
        if value is None:
            needs = ("jax" if "jax" in key else "torch" if "torch" in key else None)
            why = "not measured" if needs is None or have[needs] else \
                f"{'JAX' if needs == 'jax' else 'PyTorch'} left out"
            out(f"| {what} >= {f'{least:.0%}' if key[0] == 'blas' else f'{least:g}x'} | n/a | n/a ({why}) |")
            continue
        if key[0] == "blas":
            out(f"| {what} >= {least:.0%} | {value:.0%} | {'yes' if value >= least else '**no**'} |")
        else:
            out(f"| {what} >= {least:g}x | {fmt_x(value)} | {'yes' if value >= least else '**no**'} |")
    warm = results.get("warm")
    if warm is not None:
        met = "yes" if warm["overhead"] < 1.0 else "**no**"
        out(f"| warm-cache start, digits MLP float32: compile overhead < 1 s | {fmt_s(warm['overhead'])} "
            f"| {met} |")
    out()


def blas_name():
    try:
        return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:
        return "unknown"


def cpu_clock():
    """(machine busy CPU seconds from /proc/stat, this process's and its waited-for
    children's CPU seconds) or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def others_text(start_clock, wall):
    """How busy the rest of the machine was while compare.py ran (the CPU time of every
    other process, from /proc/stat): the cores it used on average."""
    end = cpu_clock()
    if start_clock is None or end is None or wall <= 0:
        return ""
    others = (end[0] - start_clock[0]) - (end[1] - start_clock[1])
    return (f"Other processes (and hypervisor steal) used {max(others, 0.0) / wall:.2f} of the "
            f"{os.cpu_count()} cores on average during the run (/proc/stat; under 0.1 is a quiet "
            "machine).")


def load_text():
    try:
        return "Load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + "."
    except OSError:
        return ""


# Variables that force OpenBLAS's choice of kernels and cache sizes. A user's machine does
# not set them, so compare.py measures without them (this machine's environment sets
# OPENBLAS_CORETYPE=Haswell: AVX2 kernels at about 60% of the SkylakeX ones OpenBLAS picks
# itself on these cores).
FORCING_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def rerun_without(forced):
    """Replace this process with the same command without the variables ``forced`` (the
    header then names the kernels BLAS chose, from threadpoolctl)."""
    print(f"compare.py: {', '.join(f'{k}={os.environ[k]}' for k in forced)} forces OpenBLAS's "
          "kernels, which a user's machine does not; running again without "
          f"{' and '.join(forced)} (--keep-blas-env keeps them)", file=sys.stderr, flush=True)
    env = {k: v for k, v in os.environ.items() if k not in forced}
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


def blas_env_text():
    return ", ".join(f"{k}={os.environ[k]}" if k in os.environ else f"{k} unset"
                     for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                               "OMP_NUM_THREADS"))


def header(args, torch_worker, jax_worker):
    import numba

    out("# nnumba: CPU comparison on this machine")
    out()
    torch_text = "not used"
    if torch_worker is not None:
        torch_text = f"{torch_worker.hello['version']} ({torch_worker.hello['threads']} threads)"
    jax_text = "not used"
    if jax_worker is not None:
        jax_text = f"{jax_worker.hello['version']} ({', '.join(jax_worker.hello['devices'])})"
    out(f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
        f"Python {platform.python_version()}, NumPy {np.__version__} (BLAS {blas_name()}), "
        f"Numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
        f"PyTorch {torch_text}, JAX {jax_text}. "
        f"{'--quick: smoke test sizes, not a measurement. ' if args.quick else ''}"
        f"Speed-ups are time of the other / time of nnumba cpu. {load_text()}")
    out()
    import nnumba

    out(f"nnumba imported from `{os.path.dirname(nnumba.__file__)}`: "
        f"{git_text(os.path.dirname(os.path.dirname(os.path.abspath(nnumba.__file__))))}.")
    try:  # Numba's np.dot calls SciPy's BLAS (scipy.linalg.cython_blas): load it to list it
        importlib.import_module("scipy.linalg.cython_blas")
        scipy_text = (" (NumPy's is numpy.libs' openblas; nnumba cpu's products run in "
                      f"{products_blas()}'s)")
    except ImportError:
        scipy_text = ""
    out(f"BLAS kernels (threadpoolctl), this process{scipy_text}: {'; '.join(blas_info())}. "
        f"Environment: {blas_env_text()}.")
    if torch_worker is not None:
        out(f"PyTorch worker (threadpoolctl): {'; '.join(torch_worker.hello['blas'])}.")
    if jax_worker is not None:
        out(f"JAX worker (threadpoolctl; XLA:CPU's own products are not listed): "
            f"{'; '.join(jax_worker.hello.get('blas', ['n/a']))}.")
    out()


def main(argv=None):
    flags = sys.argv[1:] if argv is None else argv
    forced = [k for k in FORCING_BLAS_VARIABLES if k in os.environ]
    if forced and argv is None and not {"--keep-blas-env", "--worker", "--torch-worker"} & \
            {f.split("=")[0] for f in flags}:
        rerun_without(forced)  # does not return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 5, 1 with --quick)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-jax", action="store_true", help="leave JAX out")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--against", metavar="PATH", default=None,
                        help="also time the MLP rows on the nnumba checkout at PATH (imported "
                             "through PYTHONPATH, its own Numba cache) against this one")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="measure with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as they are set "
                             "(by default compare.py runs again without them)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        args.worker = "torch"
    if args.worker:
        return WORKERS[args.worker]()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = [x for x in sections if x not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    if args.against is not None and not os.path.isdir(os.path.join(args.against, "nnumba")):
        parser.error(f"--against {args.against}: no nnumba package folder there")

    started, start_clock = time.perf_counter(), cpu_clock()
    needs_torch = any(x in sections for x in ("training", "cnn", "rnn", "adam"))
    needs_jax = any(x in sections for x in ("training", "cnn", "rnn", "fight"))
    results = {}
    scratch = tempfile.mkdtemp(prefix="nnumba-compare-")
    torch_worker = jax_worker = None
    try:
        if common.mnist1d_available() and (args.against is not None or any(
                x in sections for x in ("training", "cnn", "rnn", "compile"))):
            # computed once (make_dataset takes 1-2 s), read by every worker process
            path = os.path.join(scratch, "mnist1d.npz")
            common.save_mnist1d(path)
            os.environ[common.MNIST1D_FILE_VAR] = path
        torch_worker = start_worker("torch", needs_torch and not args.no_torch)
        jax_worker = start_worker("jax", needs_jax and not args.no_jax)
        try:
            header(args, torch_worker, jax_worker)
            if "training" in sections:
                section_training(args, torch_worker, jax_worker, results)
            if "cnn" in sections:
                section_cnn(args, torch_worker, jax_worker, results)
            if "rnn" in sections:
                section_rnn(args, torch_worker, jax_worker, results)
            if "fight" in sections:
                section_fight(args, results)
            if "adam" in sections:
                section_adam(args, torch_worker, results)
        finally:
            for worker in (torch_worker, jax_worker):
                if worker is not None:
                    worker.close()
        if "training" in sections:
            section_gemm(args, results)
        if "compile" in sections:
            section_compile(args, results)
        if args.against is not None:
            section_against(args, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        os.environ.pop(common.MNIST1D_FILE_VAR, None)
    # False: wanted for a section that ran, and left out (--no-torch, --no-jax, no import)
    section_targets(results, {"torch": torch_worker is not None or not needs_torch,
                              "jax": jax_worker is not None or not needs_jax})
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "none (no parallel kernel ran)"
    wall = time.perf_counter() - started
    out(f"(Numba threading layer: {layer}; compare.py took {wall:.0f} s. {load_text()} "
        f"{others_text(start_clock, wall)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
