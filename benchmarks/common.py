"""Shared pieces of the benchmark suite: fixed-seed data, models, backend checks.

Everything here is deterministic (seed ``SEED``) and float32, so that every
benchmark, ``compare.py`` and its PyTorch worker see the same numbers.

- ``MODELS``: the tiny MLP 64-32-10 and the CIFAR-shaped MLP 3072-512-256-10,
  ReLU between Dense layers, softmax cross-entropy on the 10 logits.
- ``require_backend(name)``: the backend's kernel modules, or
  ``NotImplementedError`` (asv's "skip") for "cuda" without a usable GPU or
  without a complete ``nnumba.backends.cuda`` package.
- ``sync(name)``: waits for the device to finish (CUDA), a no-op on the host.
- ``assert_close``: the float32 check of a fast kernel against the reference.
- ``fresh_process_start``: a new Python process that imports nnumba and fits
  one tiny epoch on the cpu backend, with NUMBA_CACHE_DIR chosen by the caller
  (the compile-time benchmarks).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

SEED = 0
DTYPE = np.float32
BACKENDS = ["numpy", "cpu", "cuda"]
BATCH_SIZES = [1, 32, 256]

# layer widths, input first
MODELS = {"tiny": (64, 32, 10), "cifar": (3072, 512, 256, 10)}
N_CLASSES = 10

# Fast kernels agree with the reference when |actual - expected| <= RTOL |expected| + ATOL
# max|expected|: a few hundred float32 ulps, room for sums of 3072 products in another order.
RTOL = 1e-4
ATOL = 1e-5

# What a backend must provide for the benchmarks (an incomplete cuda package is skipped).
KERNELS = {
    "memory": ("empty", "zeros", "to_backend", "asarray", "to_host", "copy_from_host"),
    "dense": ("dense_forward", "dense_backward", "dense_backward_input"),
    "activations": ("activation_forward", "activation_backward"),
    "losses": ("mse", "binary_cross_entropy", "cross_entropy", "loss_forward_backward"),
    "optim": ("sgd_step", "momentum_step", "rmsprop_step", "adam_step", "optimizer_step"),
    "network": ("forward", "loss_and_gradients", "train_batches"),
}


# ---- backends --------------------------------------------------------------------------------

def cuda_usable():
    """None when numba.cuda can run kernels on a real GPU, else the reason why not."""
    try:
        from numba import config, cuda
    except Exception as exc:  # numba-cuda missing or broken
        return f"numba.cuda cannot be imported ({exc})"
    if getattr(config, "ENABLE_CUDASIM", 0):
        return "NUMBA_ENABLE_CUDASIM is set: simulator timings mean nothing"
    try:
        if not cuda.is_available():
            return "numba.cuda.is_available() is False"
    except Exception as exc:
        return f"numba.cuda.is_available() failed ({exc})"
    return None


def require_backend(name):
    """The nnumba Backend ``name``, or NotImplementedError when it cannot run here.

    For "cuda": no GPU, the simulator, a missing or incomplete
    ``nnumba.backends.cuda`` (any kernel of ``KERNELS`` absent) all skip.
    """
    from nnumba.backends import get_backend

    if name == "cuda":
        reason = cuda_usable()
        if reason is not None:
            raise NotImplementedError(f"cuda backend skipped: {reason}")
        try:
            backend = get_backend(name)
        except Exception as exc:
            raise NotImplementedError(f"cuda backend skipped: it does not load ({exc!r})") from exc
    else:
        backend = get_backend(name)
    missing = [f"{module}.{fn}" for module, fns in KERNELS.items() for fn in fns
               if not hasattr(getattr(backend, module, None), fn)]
    if missing:
        if name == "cuda":
            raise NotImplementedError(f"cuda backend skipped: incomplete, lacks {', '.join(missing)}")
        raise AttributeError(f"backend {name!r} lacks {', '.join(missing)}")
    return backend


def sync(name):
    """Block until the backend's queued work is done (numba.cuda.synchronize for cuda)."""
    if name == "cuda":
        from numba import cuda

        cuda.synchronize()


def assert_close(actual, expected, what):
    """Raise AssertionError when ``actual`` and the reference ``expected`` differ beyond
    float32 tolerance (RTOL relative, ATOL times the largest |expected|)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, reference {expected.shape}")
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    err = np.abs(actual - expected)
    bound = RTOL * np.abs(expected) + ATOL * scale
    if not np.all(err <= bound):  # also catches NaN
        i = int(np.argmax(np.where(np.isnan(err), np.inf, err - bound)))
        raise AssertionError(f"{what} differs from the numpy reference: at flat index {i}, "
                             f"{actual.flat[i]!r} vs {expected.flat[i]!r} "
                             f"(tolerance {bound.flat[i]:.3g})")


# ---- data and models -------------------------------------------------------------------------

def rng(offset=0):
    """A generator seeded with SEED + offset."""
    return np.random.default_rng(SEED + offset)


def classification_data(n, n_in, n_classes=N_CLASSES, seed=SEED):
    """(X, y): n standard-normal float32 rows and int64 labels from a fixed random
    linear teacher plus noise, so that the loss can fall during training."""
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, n_in), dtype=np.float32)
    teacher = gen.standard_normal((n_in, n_classes)) / np.sqrt(n_in)
    scores = X @ teacher + 0.5 * gen.standard_normal((n, n_classes))
    return X, np.argmax(scores, axis=1).astype(np.int64)


def digits_data(seed=SEED):
    """scikit-learn's 1797 handwritten digits (shipped with it, no download): pixels
    scaled to [0, 1] as float32, int64 labels, rows in a fixed shuffled order."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    return (X[order] / 16.0).astype(np.float32), y[order].astype(np.int64)


def model_data(model, n, seed=SEED):
    """n rows of synthetic classification data sized for MODELS[model]."""
    return classification_data(n, MODELS[model][0], MODELS[model][-1], seed)


def mlp_layers(sizes):
    """[Dense, ReLU, Dense, ReLU, ..., Dense] for the widths ``sizes``."""
    import nnumba as nn

    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Dense(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return layers


def make_optimizer(name):
    """The optimizers of the suite: "sgd" (lr 0.01) and "adam" (lr 1e-3, torch's defaults)."""
    import nnumba as nn

    if name == "sgd":
        return nn.optim.SGD(lr=0.01)
    if name == "adam":
        return nn.optim.Adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    raise ValueError(f"unknown optimizer {name!r}")


def build_model(model, backend, optimizer="adam", seed=SEED):
    """A compiled float32 Sequential for MODELS[model] (softmax cross-entropy), seeded."""
    import nnumba as nn

    net = nn.Sequential(mlp_layers(MODELS[model]), backend=backend, dtype="float32", seed=seed)
    net.compile("cross_entropy", make_optimizer(optimizer))
    return net


def n_params(model):
    """The number of parameters (weights and biases) of MODELS[model]."""
    sizes = MODELS[model]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def train_flops_per_sample(model):
    """Multiply-add FLOPs of one training sample through MODELS[model]: 2 n_in n_out per
    layer for the forward product, the same for dW = x^T dz, and the same for
    dx = dz W^T except at the first layer (7,093,248 for the CIFAR-shaped net)."""
    sizes = MODELS[model]
    layers = [2 * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * sum(layers) + sum(layers[1:])


# ---- a fresh process (compile time) -----------------------------------------------------------

START_SCRIPT = r"""
import time
t0 = time.perf_counter()
import json
import numpy as np
import nnumba as nn
t1 = time.perf_counter()
gen = np.random.default_rng(0)
X = gen.standard_normal((1797, 64), dtype=np.float32)
y = gen.integers(0, 10, 1797)
model = nn.Sequential([nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10)], backend="cpu",
                      dtype="float32", seed=0)
model.compile("cross_entropy", nn.optim.Adam(lr=1e-3))
model.fit(X, y, epochs=1, batch_size=32)
t2 = time.perf_counter()
model.fit(X, y, epochs=1, batch_size=32)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_epoch": t2 - t1, "steady_epoch": t3 - t2}))
"""


def fresh_process_start(cache_dir, timeout=600):
    """Run START_SCRIPT in a new interpreter with NUMBA_CACHE_DIR=cache_dir (None: this
    process's environment as it is, by default nnumba's __pycache__) and return a dict of seconds: "wall" (the whole
    process), "import" (import nnumba), "first_epoch" (build, compile or load from the
    cache, fit one tiny epoch: 1797 samples, batch 32, Adam), "steady_epoch" (the same
    epoch again) and "overhead" = first_epoch - steady_epoch, the compile cost."""
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", START_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the fresh process failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["overhead"] = result["first_epoch"] - result["steady_epoch"]
    return result
