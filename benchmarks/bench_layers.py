"""The MNIST-1D CNN (the op-table layers: Conv1D, ReLU, Flatten, Dense) and two
recurrent networks: one epoch of training per backend, the same epochs in JAX as
peers, and the compile time of a fresh process.

``CnnEpoch`` times ``model.fit(X, y, epochs=1, batch_size=100, shuffle=False)``
(Adam, lr 1e-3, softmax cross-entropy, float32) from a freshly built model of
``common.cnn_layers`` -- Conv1D(1, 25, 5, stride 2, padding 1), ReLU,
Conv1D(25, 25, 3, 2, 1), ReLU, Conv1D(25, 25, 3, 2, 1), ReLU, Flatten,
Dense(125, 10) -- over 4000 signals of 40 steps, channels-last: MNIST-1D's
training signals where the ``mnist1d`` package is installed (computed, never
downloaded), random signals of that shape otherwise.

``JaxCnnEpoch`` times the same epoch in JAX (``common.jax_cnn``,
lax.conv_general_dilated on NWC, Adam written out) from the same initial weights
on the same batches, as one jitted lax.scan over the 40 batches ("scan") and as
a jitted Adam step called from a Python loop ("step"); its setup checks JAX's
gradient of the first batch against nnumba's numpy reference. Skipped
(NotImplementedError) where jax does not import.

``GruEpoch`` and ``LstmEpoch`` time one epoch of ``fit`` (Adam, lr 1e-3, batches
in order, float32) of ``compare.RNN_MODELS``' networks: the MNIST-1D GRU baseline,
Bidirectional(GRU(1, 6, return_sequences=True)) over 40 steps, Flatten (480),
Dense(480, 10), batch 100, over the CNN's 4000 signals; and LSTM(32, 128) over 50
steps, Dense(128, 10), batch 32, over 2048 random sequences. Their setup checks the
first batch's gradients and three train_steps against the numpy reference.
``JaxRnnEpoch`` times the same epochs in JAX (``compare.jax_rnn``: a jitted lax.scan
over the batches of an Adam step whose forward is a lax.scan over the steps) from
the same initial weights on the same batches, after checking JAX's gradient of the
first batch against nnumba's numpy reference; skipped where jax does not import.

``CnnCompile`` times a new Python process that imports nnumba and fits one CNN
epoch on the cpu backend, with an empty Numba cache and with a warm one (as
``bench_training.Compile`` for the MLP).
"""
import os
import shutil
import tempfile

import numpy as np

from .common import (BACKENDS, CNN_BATCH, CNN_SAMPLES, assert_close, build_model, fresh_process_start,
                     jax_cnn, jax_cnn_weights, jax_step_epoch, mnist1d_data, require_backend, sync)
from .compare import RNN_MODELS, build_net, jax_rnn, workload_data

OPTIMIZER = "adam"
_DATA = {}
_CHECKED = set()


def cnn_data():
    """(X, y) of the benchmarked epoch: CNN_SAMPLES signals (see the module docstring)."""
    if "data" not in _DATA:
        _DATA["data"] = mnist1d_data(CNN_SAMPLES)
    return _DATA["data"]


def rnn_data(model):
    """(X, y) of the benchmarked recurrent epoch (``compare.workload_data``)."""
    if model not in _DATA:
        _DATA[model] = workload_data(model, RNN_MODELS[model]["n"])
    return _DATA[model]


def check_against_reference(backend, model="cnn"):
    """Gradients of the first batch, and the batch losses of three train_steps, on
    ``backend`` against the numpy reference from the same seed (float32 tolerance)."""
    if backend == "numpy" or (backend, model) in _CHECKED:
        return
    X, y = cnn_data() if model == "cnn" else rnn_data(model)
    batch = CNN_BATCH if model == "cnn" else RNN_MODELS[model]["batch"]
    ours, ref = build_net(model, backend, OPTIMIZER), build_net(model, "numpy", OPTIMIZER)
    xb, yb = X[:batch], y[:batch]
    for k, (g, g_ref) in enumerate(zip(ours.gradients(xb, yb), ref.gradients(xb, yb))):
        assert_close(g, g_ref, f"{model} gradient {k}")
    for step in range(3):
        rows = slice(step * batch, (step + 1) * batch)
        loss, loss_ref = ours.train_step(X[rows], y[rows]), ref.train_step(X[rows], y[rows])
        assert_close(loss, loss_ref, f"{model} train_step {step} loss")
    _CHECKED.add((backend, model))


class CnnEpoch:
    """Seconds for one epoch of ``fit`` of the MNIST-1D CNN (4000 signals, batch 100)."""

    params = [BACKENDS]
    param_names = ["backend"]
    number = 1
    repeat = (2, 10, 30.0)
    warmup_time = 0.0
    timeout = 600

    def setup(self, backend):
        require_backend(backend)
        self.X, self.y = cnn_data()
        check_against_reference(backend)
        self.model = build_model("cnn", backend, OPTIMIZER)
        # compile (or load from the cache) the training loop for these shapes and dtypes
        self.model.fit(self.X[:2 * CNN_BATCH], self.y[:2 * CNN_BATCH], epochs=1,
                       batch_size=CNN_BATCH, shuffle=False)
        sync(backend)
        self.model = build_model("cnn", backend, OPTIMIZER)

    def time_epoch(self, backend):
        self.model.fit(self.X, self.y, epochs=1, batch_size=CNN_BATCH, shuffle=False)
        sync(backend)


class JaxCnnEpoch:
    """Seconds for the same epoch in JAX, float32: the peer of ``CnnEpoch``. ``variant``
    "scan": one jitted lax.scan over the batches; "step": a jitted Adam step called from
    a Python loop over them (XLA:CPU runs convolutions inside a loop body much slower,
    jax-ml/jax#12868)."""

    params = [["scan", "step"]]
    param_names = ["variant"]
    number = 1
    repeat = (2, 10, 30.0)
    warmup_time = 0.0
    timeout = 600
    dtype = "float32"

    def setup(self, variant):
        fns = jax_cnn(self.dtype)  # NotImplementedError without jax: asv skips
        import jax
        import jax.numpy as jnp

        X, y = cnn_data()
        ref = build_model("cnn", "numpy", OPTIMIZER)
        weights = jax_cnn_weights(ref.get_weights(), self.dtype)
        start = jax.block_until_ready([jnp.asarray(w) for w in weights])
        # JAX's gradient of the first batch against the numpy reference's
        xb, yb = X[:CNN_BATCH], y[:CNN_BATCH]
        grads = fns["grad"](start, jnp.asarray(xb.astype(self.dtype)), jnp.asarray(yb.astype(np.int32)))
        for k, (g, g_ref) in enumerate(zip(grads, ref.gradients(xb, yb))):
            assert_close(np.asarray(g).reshape(g_ref.shape), g_ref, f"JAX cnn gradient {k}")
        n_batches = len(y) // CNN_BATCH
        Xb = X[:n_batches * CNN_BATCH].astype(self.dtype).reshape((n_batches, CNN_BATCH) + X.shape[1:])
        yb = y[:n_batches * CNN_BATCH].astype(np.int32).reshape(n_batches, CNN_BATCH)
        if variant == "scan":
            epoch, data = fns["epoch"], (jnp.asarray(Xb), jnp.asarray(yb))
            self.run = lambda: epoch(start, *data)
        else:
            step = fns["step"]
            batches = [(jnp.asarray(Xb[i]), jnp.asarray(yb[i])) for i in range(n_batches)]
            self.run = lambda: jax_step_epoch(step, start, batches)
        self.wait = jax.block_until_ready
        self.wait(self.run())  # compiles

    def time_epoch(self, variant):
        self.wait(self.run())


class _RnnEpoch:
    """One epoch of ``fit`` of RNN_MODELS[self.model] (the subclasses' ``time_epoch``)."""

    params = [BACKENDS]
    param_names = ["backend"]
    number = 1
    repeat = (2, 10, 30.0)
    warmup_time = 0.0
    timeout = 600
    model = None

    def setup(self, backend):
        require_backend(backend)
        self.X, self.y = rnn_data(self.model)
        self.batch = RNN_MODELS[self.model]["batch"]
        check_against_reference(backend, self.model)
        self.net = build_net(self.model, backend, OPTIMIZER)
        # compile (or load from the cache) the training loop for these shapes and dtypes
        self.net.fit(self.X[:2 * self.batch], self.y[:2 * self.batch], epochs=1,
                     batch_size=self.batch, shuffle=False)
        sync(backend)
        self.net = build_net(self.model, backend, OPTIMIZER)

    def epoch(self, backend):
        self.net.fit(self.X, self.y, epochs=1, batch_size=self.batch, shuffle=False)
        sync(backend)


class GruEpoch(_RnnEpoch):
    """Seconds for one epoch of the MNIST-1D GRU baseline (4000 signals, batch 100)."""

    model = "gru"

    def time_epoch(self, backend):
        self.epoch(backend)


class LstmEpoch(_RnnEpoch):
    """Seconds for one epoch of LSTM(32, 128) over 50 steps (2048 sequences, batch 32)."""

    model = "lstm"

    def time_epoch(self, backend):
        self.epoch(backend)


class JaxRnnEpoch:
    """Seconds for the epochs of ``GruEpoch`` and ``LstmEpoch`` in JAX, float32: one jitted
    lax.scan over the batches of an Adam step whose forward is a lax.scan over the steps."""

    params = [sorted(RNN_MODELS)]
    param_names = ["model"]
    number = 1
    repeat = (2, 10, 30.0)
    warmup_time = 0.0
    timeout = 600
    dtype = "float32"

    def setup(self, model):
        fns = jax_rnn(model, self.dtype)  # NotImplementedError without jax: asv skips
        import jax
        import jax.numpy as jnp

        X, y = rnn_data(model)
        batch = RNN_MODELS[model]["batch"]
        ref = build_net(model, "numpy", OPTIMIZER)
        start = jax.block_until_ready([jnp.asarray(w.astype(self.dtype)) for w in ref.get_weights()])
        # JAX's gradient of the first batch against the numpy reference's
        xb, yb = X[:batch], y[:batch]
        grads = fns["grad"](start, jnp.asarray(xb.astype(self.dtype)), jnp.asarray(yb.astype(np.int32)))
        for k, (g, g_ref) in enumerate(zip(grads, ref.gradients(xb, yb))):
            assert_close(np.asarray(g), g_ref, f"JAX {model} gradient {k}")
        n_batches = len(y) // batch
        Xb = X[:n_batches * batch].astype(self.dtype).reshape((n_batches, batch) + X.shape[1:])
        yb = y[:n_batches * batch].astype(np.int32).reshape(n_batches, batch)
        epoch, data = fns["epoch"], (jnp.asarray(Xb), jnp.asarray(yb))
        self.run = lambda: epoch(start, *data)
        self.wait = jax.block_until_ready
        self.wait(self.run())  # compiles

    def time_epoch(self, model):
        self.wait(self.run())


class CnnCompile:
    """Seconds for a new process to import nnumba and fit one CNN epoch (4000 random
    signals, batch 100, Adam, float32) on the cpu backend. ``time_compile_cold``: with
    NUMBA_CACHE_DIR an empty folder, so every kernel compiles; ``time_start_warm_cache``:
    with a cache folder filled by an earlier process (``setup_cache``)."""

    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0
    timeout = 600

    def setup_cache(self):
        cache_dir = os.path.abspath("nnumba-numba-cache-cnn")
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
        fresh_process_start(cache_dir, model="cnn")
        return cache_dir

    setup_cache.timeout = 600

    def setup(self, cache_dir):
        self.scratch = tempfile.mkdtemp(prefix="nnumba-cold-cache-cnn-")

    def teardown(self, cache_dir):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def time_compile_cold(self, cache_dir):
        fresh_process_start(tempfile.mkdtemp(dir=self.scratch), model="cnn")

    def time_start_warm_cache(self, cache_dir):
        fresh_process_start(cache_dir, model="cnn")
