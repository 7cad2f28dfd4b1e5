"""Whole-epoch training benchmarks, and the compile time of a fresh process.

``Epoch`` times ``model.fit(X, y, epochs=1, batch_size=batch)`` (Adam, lr 1e-3,
softmax cross-entropy, shuffled with the model's seed) from a freshly built
model, over backend x batch size x model on fixed synthetic data:

- "tiny": the MLP 64-32-10, 1797 samples (the size of scikit-learn's digits);
- "cifar": the MLP 3072-512-256-10 on 2048 CIFAR-shaped samples (not 50,000,
  so that asv's repeats stay short), and only 256 samples at batch size 1
  (2048 single-sample Adam steps over 1.7M parameters would take 5-20 s).

``JaxMlpEpoch`` times the MLP epochs of ``compare.py``'s training section in JAX
(``common.jax_mlp``: one jitted lax.scan over the epoch's batches of the SGD or
Adam step, then one step on a last, smaller batch), on that section's data
(``compare.WORKLOADS``: the tiny MLP on the digits at batch 1 with SGD and Adam
and at batch 32 with Adam, the CIFAR-shaped MLP at batch 1, 32 and 256, the
MNIST-1D MLP at batch 100), batches in order, from nnumba's initial weights;
its setup checks JAX's gradient of the first batch against nnumba's numpy
reference. Skipped (NotImplementedError) where jax does not import.

``Compile`` times a new Python process that imports nnumba and fits one tiny
epoch on the cpu backend, with an empty Numba cache (everything compiles) and
with a warm one (everything loads from the cache).
"""
import os
import shutil
import tempfile

import numpy as np

from .common import (BACKENDS, BATCH_SIZES, MODELS, assert_close, build_model, fresh_process_start,
                     jax_epoch_batches, jax_mlp, model_data, require_backend, sync)
from .compare import WORKLOADS, workload_data

OPTIMIZER = "adam"


def n_samples(model, batch):
    """Samples per benchmarked epoch (see the module docstring)."""
    if model == "tiny":
        return 1797
    return 256 if batch == 1 else 2048


_DATA = {}
_CHECKED = set()


def epoch_data(model, batch):
    key = (model, n_samples(model, batch))
    if key not in _DATA:
        _DATA[key] = model_data(model, key[1])
    return _DATA[key]


def check_against_reference(backend, model, batch):
    """Gradients of the first batch, and the batch losses of three train_steps, on
    ``backend`` against the numpy reference from the same seed (float32 tolerance)."""
    if backend == "numpy" or (backend, model, batch) in _CHECKED:
        return
    X, y = epoch_data(model, batch)
    ours, ref = build_model(model, backend, OPTIMIZER), build_model(model, "numpy", OPTIMIZER)
    xb, yb = X[:batch], y[:batch]
    for k, (g, g_ref) in enumerate(zip(ours.gradients(xb, yb), ref.gradients(xb, yb))):
        assert_close(g, g_ref, f"{model} gradient {k} at batch size {batch}")
    for step in range(3):
        rows = slice(step * batch, (step + 1) * batch)
        loss, loss_ref = ours.train_step(X[rows], y[rows]), ref.train_step(X[rows], y[rows])
        assert_close(loss, loss_ref, f"{model} train_step {step} loss at batch size {batch}")
    _CHECKED.add((backend, model, batch))


class Epoch:
    """Seconds for one epoch of ``fit`` (see the module docstring for sizes)."""

    params = [BACKENDS, BATCH_SIZES, ["tiny", "cifar"]]
    param_names = ["backend", "batch", "model"]
    number = 1
    repeat = (2, 10, 30.0)
    warmup_time = 0.0
    timeout = 600

    def setup(self, backend, batch, model):
        require_backend(backend)
        self.X, self.y = epoch_data(model, batch)
        check_against_reference(backend, model, batch)
        self.model = build_model(model, backend, OPTIMIZER)
        # compile (or load from the cache) the training loop for these shapes and dtypes
        self.model.fit(self.X[:2 * batch], self.y[:2 * batch], epochs=1, batch_size=batch)
        sync(backend)
        self.model = build_model(model, backend, OPTIMIZER)

    def time_epoch(self, backend, batch, model):
        self.model.fit(self.X, self.y, epochs=1, batch_size=batch)
        sync(backend)


class EpochMemory:
    """Peak resident memory of a process that ran one epoch of ``fit`` (the data, the
    model and its workspaces included; same sizes as ``Epoch``, whose setup checks
    the results)."""

    params = Epoch.params
    param_names = Epoch.param_names
    timeout = 600

    def setup(self, backend, batch, model):
        require_backend(backend)
        self.X, self.y = epoch_data(model, batch)
        self.model = build_model(model, backend, OPTIMIZER)

    def peakmem_epoch(self, backend, batch, model):
        self.model.fit(self.X, self.y, epochs=1, batch_size=batch)
        sync(backend)


# compare.WORKLOADS by short names: "tiny-b1-sgd" is (model "tiny", batch 1, SGD)
JAX_WORKLOADS = {f"{model}-b{batch}-{optimizer}": (model, optimizer, batch, n)
                 for _, model, optimizer, batch, n, _ in WORKLOADS}


class JaxMlpEpoch:
    """Seconds for one MLP epoch of compare.py's training section in JAX, float32 (see the
    module docstring): the peer of its nnumba cpu rows."""

    params = [list(JAX_WORKLOADS)]
    param_names = ["workload"]
    number = 1
    repeat = (2, 10, 30.0)
    warmup_time = 0.0
    timeout = 600
    dtype = "float32"

    def setup(self, workload):
        model, optimizer, batch, n = JAX_WORKLOADS[workload]
        fns = jax_mlp(MODELS[model], optimizer, self.dtype)  # NotImplementedError without jax
        import jax
        import jax.numpy as jnp

        X, y = workload_data(model, n)
        ref = build_model(model, "numpy", optimizer)
        start = jax.block_until_ready([jnp.asarray(w.astype(self.dtype))
                                       for w in ref.get_weights()])
        # JAX's gradient of the first batch against the numpy reference's
        xb, yb = X[:batch], y[:batch]
        grads = fns["grad"](start, jnp.asarray(xb.astype(self.dtype)),
                            jnp.asarray(yb.astype(np.int32)))
        for k, (g, g_ref) in enumerate(zip(grads, ref.gradients(xb, yb))):
            assert_close(np.asarray(g), g_ref, f"JAX {workload} gradient {k}")
        Xb, yb, tail = jax_epoch_batches(X, y, batch, self.dtype)
        data = (jnp.asarray(Xb), jnp.asarray(yb),
                None if tail is None else tuple(jnp.asarray(a) for a in tail))
        epoch = fns["epoch"]
        self.run = lambda: epoch(start, *data)
        self.wait = jax.block_until_ready
        self.wait(self.run())  # compiles

    def time_epoch(self, workload):
        self.wait(self.run())


class Compile:
    """Seconds for a new process to import nnumba and fit one tiny epoch (64-32-10,
    1797 samples, batch 32, Adam) on the cpu backend. ``time_compile_cold``: with
    NUMBA_CACHE_DIR an empty folder, so every kernel compiles; ``time_start_warm_cache``:
    with a cache folder filled by an earlier process (``setup_cache``)."""

    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0
    timeout = 600

    def setup_cache(self):
        cache_dir = os.path.abspath("nnumba-numba-cache")
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
        fresh_process_start(cache_dir)
        return cache_dir

    setup_cache.timeout = 600

    def setup(self, cache_dir):
        self.scratch = tempfile.mkdtemp(prefix="nnumba-cold-cache-")

    def teardown(self, cache_dir):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def time_compile_cold(self, cache_dir):
        fresh_process_start(tempfile.mkdtemp(dir=self.scratch))

    def time_start_warm_cache(self, cache_dir):
        fresh_process_start(cache_dir)

