"""Shared pieces of the benchmark suite: fixed-seed data, models, backend checks.

Everything here is deterministic (seed ``SEED``) and float32, so that every
benchmark, ``compare.py`` and its PyTorch worker see the same numbers.

- ``MODELS``: the tiny MLP 64-32-10, the README's digits MLP 64-64-10, the
  CIFAR-shaped MLP 3072-512-256-10 and the MNIST-1D MLP 40-100-100-10, ReLU
  between Dense layers, softmax cross-entropy on the 10 logits; and "cnn", the
  MNIST-1D CNN of ``CNN_CONVS`` (three Conv1D + ReLU, Flatten, Dense(125, 10))
  on (40, 1) signals.
- ``mnist1d_data(n)``: the MNIST-1D training signals (the ``mnist1d`` package's
  ``make_dataset``, computed, never downloaded), random signals of the same
  shape when the package is missing.
- ``require_backend(name)``: the backend's kernel modules, or
  ``NotImplementedError`` (asv's "skip") for "cuda" without a usable GPU or
  without a complete ``nnumba.backends.cuda`` package.
- ``sync(name)``: waits for the device to finish (CUDA), a no-op on the host.
- ``assert_close``: the float32 check of a fast kernel against the reference.
- ``jax_cnn``, ``jax_cnn_weights``, ``jax_step_epoch``: the same CNN in JAX (loss,
  gradient, a jitted Adam step, and a jitted lax.scan epoch of it) from nnumba's
  weights; ``jax_mlp`` and ``jax_epoch_batches``: the MLPs of ``MODELS`` in JAX
  the same way, with SGD or Adam, an epoch that ends on a smaller batch
  included; ``jax_adam_step``, ``jax_sgd_step``, ``jax_cross_entropy``: the
  pieces they share (torch.optim.Adam's and torch.optim.SGD's updates, the mean
  softmax cross-entropy).
- ``fresh_process_start``: a new Python process that imports nnumba and fits
  one epoch (the tiny MLP by default; the digits MLP or the CNN, float32 or
  float64) on the cpu backend, with NUMBA_CACHE_DIR chosen by the caller (the
  compile-time benchmarks).
"""
import importlib
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

# layer widths, input first ("mnist1d": the MLP on MNIST-1D's 40-sample signals, flattened)
MODELS = {"tiny": (64, 32, 10), "digits": (64, 64, 10), "cifar": (3072, 512, 256, 10),
          "mnist1d": (40, 100, 100, 10)}
N_CLASSES = 10
# the learning rates of make_optimizer (and of the JAX peers)
LR = {"sgd": 0.01, "adam": 1e-3}

# The MNIST-1D CNN: (in_channels, out_channels, kernel_size, stride, padding) of each
# Conv1D (each followed by ReLU), on channels-last (steps, channels) input; then Flatten
# and Dense(CNN_FLAT, N_CLASSES). 40 -> 19 -> 10 -> 5 steps, 5 x 25 = 125 features.
CNN_INPUT = (40, 1)
CNN_CONVS = ((1, 25, 5, 2, 1), (25, 25, 3, 2, 1), (25, 25, 3, 2, 1))
CNN_FLAT = 125
CNN_BATCH = 100
CNN_SAMPLES = 4000  # MNIST-1D's training split

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


def mnist1d_available():
    try:
        importlib.import_module("mnist1d.data")
    except Exception:
        return False
    return True


_MNIST1D = {}
# An .npz (arrays X, y) of the full MNIST-1D training set that mnist1d_data reads instead
# of computing it (make_dataset takes 1-2 s): compare.py writes one for its workers.
MNIST1D_FILE_VAR = "NNUMBA_BENCH_MNIST1D_NPZ"


def save_mnist1d(path):
    """Write the full MNIST-1D training set to ``path`` (an .npz) for MNIST1D_FILE_VAR."""
    X, y = mnist1d_data(CNN_SAMPLES)
    np.savez(path, X=X, y=y)


def mnist1d_data(n=CNN_SAMPLES, seed=SEED):
    """(X, y): the first n of MNIST-1D's 4000 training signals as float32 of shape
    (n, 40, 1) (channels-last) and int64 labels, from ``mnist1d.data.make_dataset``
    with its default arguments (computed here, no download; NumPy's global random
    state is left as it was). Without the mnist1d package: n standard-normal signals
    of that shape with labels from a fixed random linear teacher (``classification_data``)."""
    if not mnist1d_available():
        X, y = classification_data(n, CNN_INPUT[0] * CNN_INPUT[1], seed=seed)
        return X.reshape((n,) + CNN_INPUT), y
    if "data" not in _MNIST1D:
        saved = os.environ.get(MNIST1D_FILE_VAR)
        if saved and os.path.isfile(saved):  # made by a parent process (compare.py)
            with np.load(saved) as f:
                _MNIST1D["data"] = (f["X"], f["y"])
        else:
            from mnist1d.data import make_dataset

            state = np.random.get_state()
            try:
                data = make_dataset()
            finally:
                np.random.set_state(state)
            _MNIST1D["data"] = (data["x"].astype(np.float32).reshape((-1,) + CNN_INPUT),
                                data["y"].astype(np.int64))
    X, y = _MNIST1D["data"]
    if n > len(y):
        raise ValueError(f"MNIST-1D has {len(y)} training signals, {n} asked for")
    return X[:n].copy(), y[:n].copy()


def cnn_layers():
    """The layers of the MNIST-1D CNN (see CNN_CONVS)."""
    import nnumba as nn

    layers = []
    for c_in, c_out, k, stride, padding in CNN_CONVS:
        layers += [nn.Conv1D(c_in, c_out, k, stride=stride, padding=padding), nn.ReLU()]
    return layers + [nn.Flatten(), nn.Dense(CNN_FLAT, N_CLASSES)]


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
        return nn.optim.SGD(lr=LR["sgd"])
    if name == "adam":
        return nn.optim.Adam(lr=LR["adam"], beta1=0.9, beta2=0.999, eps=1e-8)
    raise ValueError(f"unknown optimizer {name!r}")


def build_model(model, backend, optimizer="adam", seed=SEED, dtype="float32"):
    """A compiled Sequential for MODELS[model] or the "cnn" (softmax cross-entropy), seeded."""
    import nnumba as nn

    if model == "cnn":
        net = nn.Sequential(cnn_layers(), backend=backend, dtype=dtype, seed=seed,
                            input_shape=CNN_INPUT)
    else:
        net = nn.Sequential(mlp_layers(MODELS[model]), backend=backend, dtype=dtype, seed=seed)
    net.compile("cross_entropy", make_optimizer(optimizer))
    return net


def import_jax(dtype="float32"):
    """(jax, jax.numpy), with jax_enable_x64 turned on (process-wide) for float64;
    NotImplementedError when jax does not import (asv's "skip")."""
    try:
        import jax
        import jax.numpy as jnp
    except Exception as exc:
        raise NotImplementedError(f"jax is not available ({exc!r})") from exc
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return jax, jnp


def jax_cross_entropy(forward):
    """loss(params, x, y): the mean over the batch of the softmax cross-entropy of the
    logits ``forward(params, x)`` against the int32 labels y."""
    import jax
    import jax.numpy as jnp

    def loss(params, x, y):
        logits = forward(params, x)
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    return loss


def jax_adam_step(grad, dtype="float32", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """step(state, x, y): one Adam step on one batch as torch.optim.Adam takes it (bias
    corrections, eps outside the square root), of the gradient ``grad(params, x, y)``;
    state = (params, m, v, t), from ``jax_adam_state(params)``."""
    import jax.numpy as jnp

    b1, b2, lr, eps = (jnp.asarray(v, dtype) for v in (beta1, beta2, lr, eps))
    one = jnp.asarray(1, dtype)

    def step(state, x, y):
        params, m, v, t = state
        g = grad(params, x, y)
        t = t + one
        m = [b1 * mi + (one - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (one - b2) * gi * gi for vi, gi in zip(v, g)]
        c1, c2 = one - b1 ** t, one - b2 ** t
        params = [p - lr * (mi / c1) / (jnp.sqrt(vi / c2) + eps) for p, mi, vi in zip(params, m, v)]
        return params, m, v, t

    return step


def jax_sgd_step(grad, dtype="float32", lr=0.01):
    """step(params, x, y): one plain SGD step (p - lr g) on one batch; the state is the
    list of params itself."""
    import jax.numpy as jnp

    lr = jnp.asarray(lr, dtype)

    def step(params, x, y):
        return [p - lr * gi for p, gi in zip(params, grad(params, x, y))]

    return step


def jax_cnn(dtype="float32", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, unroll=1):
    """The MNIST-1D CNN in JAX, as a dict of jitted functions of ``params`` (the list
    ``jax_cnn_weights`` makes: per Conv1D a WIO kernel (k, C_in, C_out) and a bias, then
    the Dense W and b):

    - "loss"(params, X, y): the mean softmax cross-entropy of (n, steps, channels)
      signals (NWC, lax.conv_general_dilated) and int32 labels;
    - "grad"(params, X, y): its gradient (jax.grad), a list like params;
    - "step"(state, X, y): one Adam step (``jax_adam_step``: as torch.optim.Adam, eps
      outside the square root) on one batch; state = (params, m, v, t), from
      ``jax_adam_state(params)``;
    - "epoch"(params, Xb, yb): Adam from a zero state over the batches Xb (n_batches,
      batch, steps, channels), yb (n_batches, batch) in order, as one lax.scan
      (``unroll`` passed on); returns the new params.

    On XLA:CPU a convolution inside a loop body runs far slower than the same one
    outside (jax-ml/jax#12868): "epoch" pays that, "step" called from a Python loop
    (``jax_step_epoch``) does not. float64 turns on jax_enable_x64 (process-wide).
    NotImplementedError when jax does not import (asv's "skip")."""
    jax, _ = import_jax(dtype)
    lax = jax.lax

    def forward(params, x):
        h = x
        for j, (_, _, _, stride, padding) in enumerate(CNN_CONVS):
            h = lax.conv_general_dilated(h, params[2 * j], window_strides=(stride,),
                                         padding=[(padding, padding)],
                                         dimension_numbers=("NWC", "WIO", "NWC"))
            h = jax.nn.relu(h + params[2 * j + 1])
        h = h.reshape(h.shape[0], -1)  # (steps, channels) step-major, as nnumba's Flatten
        return h @ params[-2] + params[-1]

    loss = jax_cross_entropy(forward)
    grad = jax.grad(loss)
    step = jax_adam_step(grad, dtype, lr, beta1, beta2, eps)

    def epoch(params, Xb, yb):
        state = jax_adam_state(params)
        (params, _, _, _), _ = lax.scan(lambda s, b: (step(s, *b), None), state, (Xb, yb),
                                        unroll=unroll)
        return params

    return {"loss": jax.jit(loss), "grad": jax.jit(grad), "step": jax.jit(step),
            "epoch": jax.jit(epoch)}


def jax_mlp(sizes, optimizer="adam", dtype="float32", lr=None, beta1=0.9, beta2=0.999, eps=1e-8):
    """The MLP of layer widths ``sizes`` (``mlp_layers``: Dense, ReLU, ..., Dense) in JAX, as
    a dict of jitted functions of ``params``, nnumba's weights (``get_weights``: W (n_in,
    n_out), b per Dense) as they are:

    - "loss"(params, X, y), "grad"(params, X, y): as ``jax_cnn``'s, on (n, n_in) rows;
    - "step"(state, X, y): one step of ``optimizer`` on one batch: "sgd" (``jax_sgd_step``,
      state = params) or "adam" (``jax_adam_step``, state from ``jax_adam_state``);
    - "epoch"(params, Xb, yb, tail=None): the optimizer from its starting state over the
      batches Xb (n_batches, batch, n_in), yb (n_batches, batch) in order, as one
      lax.scan, then one step on ``tail`` = (X, y), the last, smaller batch, when there
      is one; the whole epoch is one compiled program (as nnumba's fused training loop).
      Returns the new params.

    lr: the suite's (``make_optimizer``) when None. NotImplementedError when jax does
    not import (asv's "skip")."""
    jax, _ = import_jax(dtype)
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}")
    lr = LR[optimizer] if lr is None else lr
    n_layers = len(sizes) - 1

    def forward(params, x):
        h = x
        for j in range(n_layers):
            h = h @ params[2 * j] + params[2 * j + 1]
            if j < n_layers - 1:
                h = jax.nn.relu(h)
        return h

    loss = jax_cross_entropy(forward)
    grad = jax.grad(loss)
    if optimizer == "sgd":
        step, start, params_of = jax_sgd_step(grad, dtype, lr), list, (lambda state: state)
    else:
        step = jax_adam_step(grad, dtype, lr, beta1, beta2, eps)
        start, params_of = jax_adam_state, (lambda state: state[0])

    def epoch(params, Xb, yb, tail=None):
        state, _ = jax.lax.scan(lambda s, b: (step(s, *b), None), start(params), (Xb, yb))
        if tail is not None:
            state = step(state, *tail)
        return params_of(state)

    return {"loss": jax.jit(loss), "grad": jax.jit(grad), "step": jax.jit(step),
            "epoch": jax.jit(epoch)}


def jax_epoch_batches(X, y, batch, dtype="float32"):
    """The arguments after ``params`` of ``jax_mlp``'s "epoch" as NumPy arrays: X and y
    (int32) cut into the whole batches (n_batches, batch, ...) and, when n is not a
    multiple of batch, the last rows as the tail (X, y); else None."""
    n_batches = len(y) // batch
    whole = n_batches * batch
    Xb = X[:whole].astype(dtype).reshape((n_batches, batch) + X.shape[1:])
    yb = y[:whole].astype(np.int32).reshape(n_batches, batch)
    tail = None if whole == len(y) else (X[whole:].astype(dtype), y[whole:].astype(np.int32))
    return Xb, yb, tail


def jax_adam_state(params):
    """(params, m, v, t): Adam's starting state for ``jax_cnn``'s "step"."""
    import jax.numpy as jnp

    zeros = [jnp.zeros_like(p) for p in params]
    return list(params), zeros, list(zeros), jnp.zeros((), params[0].dtype)


def jax_step_epoch(step, params, batches):
    """One epoch as a Python loop of the jitted Adam ``step`` over ``batches`` (a list of
    (X, y) device arrays); returns the new params (not waited for)."""
    state = jax_adam_state(params)
    for x, y in batches:
        state = step(state, x, y)
    return state[0]


def jax_cnn_weights(weights, dtype="float32"):
    """nnumba's CNN weights (``get_weights``) as the NumPy arrays of ``jax_cnn``'s params:
    each Conv1D's W[tap C_in + c, o] becomes the WIO kernel [tap, c, o]; the rest as is."""
    weights = [np.asarray(w, dtype=dtype) for w in weights]
    for j, (c_in, c_out, k, _, _) in enumerate(CNN_CONVS):
        weights[2 * j] = weights[2 * j].reshape(k, c_in, c_out)
    return weights


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
import sys
import time
t0 = time.perf_counter()
import json
import numpy as np
import nnumba as nn
t1 = time.perf_counter()
spec = json.loads(sys.argv[1])
dtype = spec["dtype"]
gen = np.random.default_rng(0)
if spec["model"] == "cnn":
    layers = []
    for c_in, c_out, k, stride, padding in spec["convs"]:
        layers += [nn.Conv1D(c_in, c_out, k, stride=stride, padding=padding), nn.ReLU()]
    layers += [nn.Flatten(), nn.Dense(spec["flat"], 10)]
    shape = tuple(spec["input_shape"])
    X = gen.standard_normal((spec["n"],) + shape).astype(dtype)
else:
    sizes, layers, shape = spec["sizes"], [], None
    for i in range(len(sizes) - 1):
        layers.append(nn.Dense(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    X = gen.standard_normal((spec["n"], sizes[0])).astype(dtype)
y = gen.integers(0, 10, spec["n"])
kwargs = {} if shape is None else {"input_shape": shape}
model = nn.Sequential(layers, backend="cpu", dtype=dtype, seed=0, **kwargs)
model.compile("cross_entropy", nn.optim.Adam(lr=1e-3))
model.fit(X, y, epochs=1, batch_size=spec["batch"])
t2 = time.perf_counter()
model.fit(X, y, epochs=1, batch_size=spec["batch"])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_epoch": t2 - t1, "steady_epoch": t3 - t2,
                  "nnumba": nn.__file__}))
"""

# What START_SCRIPT fits: (samples, batch size) and the layers.
START_WORKLOADS = {
    "tiny": "the tiny MLP 64-32-10, 1797 samples, batch 32",
    "digits": "the digits MLP 64-64-10 (the README's), 1797 samples, batch 32",
    "cnn": f"the MNIST-1D CNN, {CNN_SAMPLES} signals of {CNN_INPUT[0]} steps, batch {CNN_BATCH}",
}


def start_spec(model="tiny", dtype="float32"):
    """The JSON argument of START_SCRIPT for ``model`` ("tiny", "digits", "cnn")."""
    if model == "cnn":
        return {"model": "cnn", "dtype": dtype, "convs": CNN_CONVS, "flat": CNN_FLAT,
                "input_shape": CNN_INPUT, "n": CNN_SAMPLES, "batch": CNN_BATCH}
    return {"model": model, "dtype": dtype, "sizes": MODELS[model], "n": 1797, "batch": 32}


def fresh_process_start(cache_dir, timeout=600, model="tiny", dtype="float32", env=None):
    """Run START_SCRIPT in a new interpreter with NUMBA_CACHE_DIR=cache_dir (None: this
    process's environment as it is, by default nnumba's __pycache__) and return a dict of
    seconds: "wall" (the whole process), "import" (import nnumba), "first_epoch" (build,
    compile or load from the cache, fit one epoch of random data with Adam on the cpu
    backend: ``START_WORKLOADS[model]``, in ``dtype``), "steady_epoch" (the same epoch
    again) and "overhead" = first_epoch - steady_epoch, the compile cost; and "nnumba",
    the file nnumba was imported from. ``env``: variables to set in the child (e.g.
    PYTHONPATH)."""
    env = {**os.environ, **(env or {})}
    env.pop("NUMBA_DISABLE_JIT", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", START_SCRIPT, json.dumps(start_spec(model, dtype))],
                          env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the fresh process failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["overhead"] = result["first_epoch"] - result["steady_epoch"]
    return result
