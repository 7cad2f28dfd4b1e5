"""Per-kernel benchmarks: dense layers, activations, losses, optimizer steps.

Every class is parametrised over the backend ("numpy" is the pure-NumPy
reference, "cpu" Numba @njit, "cuda" numba.cuda; cuda is skipped without a
GPU). ``setup`` builds fixed-seed float32 data, calls each kernel once (which
compiles it) and checks the result against the numpy reference backend; the
data, the compiled kernels and the check are kept for the process, since
asv_runner re-runs ``setup`` before every timed call. CUDA timings end with a
synchronize.
"""
import numpy as np

from nnumba.backends import codes

from .common import (BACKENDS, BATCH_SIZES, MODELS, assert_close, n_params, require_backend, rng,
                     sync)

ACTIVATIONS = {"sigmoid": codes.SIGMOID, "tanh": codes.TANH, "relu": codes.RELU,
               "leaky_relu": codes.LEAKY_RELU}
ALPHA = 0.01  # LeakyReLU slope (unused by the others)
ACTIVATION_WIDTH = 512  # the first hidden layer of the CIFAR-shaped MLP
N_OUT = MODELS["tiny"][-1]  # 10 logits for the losses

_PREPARED = {}  # (class, params) -> state kept across the setup calls of one process


def _prepared(key, build):
    if key not in _PREPARED:
        _PREPARED[key] = build()
    return _PREPARED[key]


def _normal(gen, shape, scale=1.0):
    return (scale * gen.standard_normal(shape)).astype(np.float32)


def _restore(dst, src):
    """dst[...] = src between two arrays of one backend (host or device)."""
    if hasattr(dst, "copy_to_device"):
        dst.copy_to_device(src)
    else:
        np.copyto(dst, src)


class Dense:
    """A Dense layer fused with ReLU, on the first layer of each model: 64x32 (tiny)
    and 3072x512 (CIFAR-shaped). forward: y = relu(x W + b); backward: dz = dy relu'(y),
    dW = x^T dz, db = sum dz; backward_input: dx = dz W^T. Repeating the backward pass
    leaves dz unchanged (the ReLU mask is 0 or 1), so every call does the same work."""

    params = [BACKENDS, BATCH_SIZES, ["64x32", "3072x512"]]
    param_names = ["backend", "batch", "layer"]

    def setup(self, backend, batch, layer):
        self.backend = backend
        be = require_backend(backend)
        self.dense = be.dense
        self.s = _prepared(("Dense", backend, batch, layer), lambda: self._build(be, batch, layer))

    def _build(self, be, batch, layer):
        n_in, n_out = map(int, layer.split("x"))
        gen = rng(1)
        x = _normal(gen, (batch, n_in))
        w = _normal(gen, (n_in, n_out), np.sqrt(2.0 / n_in))
        b = _normal(gen, n_out, 0.1)
        dy = _normal(gen, (batch, n_out))
        ref = require_backend("numpy").dense
        y_ref = np.empty((batch, n_out), np.float32)
        ref.dense_forward(x, w, b, codes.RELU, ALPHA, y_ref)
        dz_ref, dw_ref, db_ref = dy.copy(), np.empty_like(w), np.empty_like(b)
        ref.dense_backward(x, y_ref, codes.RELU, ALPHA, dz_ref, dw_ref, db_ref)
        dx_ref = np.empty_like(x)
        ref.dense_backward_input(dz_ref, w, dx_ref)

        m = be.memory
        s = dict(x=m.to_backend(x), w=m.to_backend(w), b=m.to_backend(b), y=m.zeros(y_ref.shape, np.float32),
                 dy=m.to_backend(dy), dw=m.zeros(w.shape, np.float32), db=m.zeros(b.shape, np.float32),
                 dx=m.zeros(x.shape, np.float32))
        be.dense.dense_forward(s["x"], s["w"], s["b"], codes.RELU, ALPHA, s["y"])
        be.dense.dense_backward(s["x"], s["y"], codes.RELU, ALPHA, s["dy"], s["dw"], s["db"])
        be.dense.dense_backward_input(s["dy"], s["w"], s["dx"])
        sync(self.backend)
        assert_close(m.to_host(s["y"]), y_ref, "dense_forward y")
        assert_close(m.to_host(s["dy"]), dz_ref, "dense_backward dz")
        assert_close(m.to_host(s["dw"]), dw_ref, "dense_backward dw")
        assert_close(m.to_host(s["db"]), db_ref, "dense_backward db")
        assert_close(m.to_host(s["dx"]), dx_ref, "dense_backward_input dx")
        return s

    def time_forward(self, backend, batch, layer):
        s = self.s
        self.dense.dense_forward(s["x"], s["w"], s["b"], codes.RELU, ALPHA, s["y"])
        sync(backend)

    def time_backward(self, backend, batch, layer):
        s = self.s
        self.dense.dense_backward(s["x"], s["y"], codes.RELU, ALPHA, s["dy"], s["dw"], s["db"])
        sync(backend)

    def time_backward_input(self, backend, batch, layer):
        s = self.s
        self.dense.dense_backward_input(s["dy"], s["w"], s["dx"])
        sync(backend)


class Activations:
    """Activation forward y = f(z) and backward dy <- dy f'(y) on (batch, 512) float32.
    The backward pass works in place, so ``setup`` restores dy before each timed call
    (``number = 1``: one call per sample)."""

    params = [BACKENDS, BATCH_SIZES, list(ACTIVATIONS)]
    param_names = ["backend", "batch", "activation"]

    def setup(self, backend, batch, activation):
        self.backend = backend
        be = require_backend(backend)
        self.act = be.activations
        self.code = ACTIVATIONS[activation]
        self.s = _prepared(("Activations", backend, batch, activation),
                           lambda: self._build(be, batch))
        _restore(self.s["dy"], self.s["dy0"])

    def _build(self, be, batch):
        gen = rng(2)
        z = _normal(gen, (batch, ACTIVATION_WIDTH), 2.0)
        dy = _normal(gen, z.shape)
        ref = require_backend("numpy").activations
        y_ref = np.empty_like(z)
        ref.activation_forward(self.code, ALPHA, z, y_ref)
        dz_ref = dy.copy()
        ref.activation_backward(self.code, ALPHA, y_ref, dz_ref)

        m = be.memory
        s = dict(z=m.to_backend(z), y=m.zeros(z.shape, np.float32), dy=m.to_backend(dy),
                 dy0=m.to_backend(dy))
        be.activations.activation_forward(self.code, ALPHA, s["z"], s["y"])
        be.activations.activation_backward(self.code, ALPHA, s["y"], s["dy"])
        sync(self.backend)
        assert_close(m.to_host(s["y"]), y_ref, "activation_forward y")
        assert_close(m.to_host(s["dy"]), dz_ref, "activation_backward dz")
        return s

    def time_forward(self, backend, batch, activation):
        self.act.activation_forward(self.code, ALPHA, self.s["z"], self.s["y"])
        sync(backend)

    def time_backward(self, backend, batch, activation):
        self.act.activation_backward(self.code, ALPHA, self.s["y"], self.s["dy"])
        sync(backend)

    time_backward.number = 1


class Losses:
    """Each loss fused with its gradient, on (batch, 10) float32 logits: mse and binary
    cross-entropy against float targets, softmax cross-entropy against int64 labels.
    Writes dL/dout and result = (mean loss, correct count)."""

    params = [BACKENDS, BATCH_SIZES, ["mse", "binary_cross_entropy", "cross_entropy"]]
    param_names = ["backend", "batch", "loss"]

    def setup(self, backend, batch, loss):
        self.backend = backend
        be = require_backend(backend)
        self.kernel = getattr(be.losses, loss)
        self.s = _prepared(("Losses", backend, batch, loss), lambda: self._build(be, batch, loss))

    def _build(self, be, batch, loss):
        gen = rng(3)
        out = _normal(gen, (batch, N_OUT), 3.0)
        if loss == "cross_entropy":
            target = gen.integers(0, N_OUT, batch).astype(np.int64)
        elif loss == "binary_cross_entropy":
            target = gen.integers(0, 2, (batch, N_OUT)).astype(np.float32)
        else:
            target = _normal(gen, (batch, N_OUT))
        dout_ref, result_ref = np.empty_like(out), np.zeros(2)
        getattr(require_backend("numpy").losses, loss)(out, target, dout_ref, result_ref)

        m = be.memory
        s = dict(out=m.to_backend(out), target=m.to_backend(target),
                 dout=m.zeros(out.shape, np.float32), result=m.zeros(2, np.float64))
        self.kernel(s["out"], s["target"], s["dout"], s["result"])
        sync(self.backend)
        assert_close(m.to_host(s["dout"]), dout_ref, f"{loss} gradient")
        assert_close(m.to_host(s["result"]), result_ref, f"{loss} value and correct count")
        return s

    def time_loss(self, backend, batch, loss):
        s = self.s
        self.kernel(s["out"], s["target"], s["dout"], s["result"])
        sync(backend)


def _optimizer_call(optim, name, s, t):
    """One step of optimizer ``name`` over the flat buffers in s (lr and betas of the suite)."""
    if name == "sgd":
        optim.sgd_step(s["w"], s["g"], 0.01)
    elif name == "momentum":
        optim.momentum_step(s["w"], s["g"], s["v"], 0.01, 0.9)
    elif name == "rmsprop":
        optim.rmsprop_step(s["w"], s["g"], s["v"], 1e-3, 0.9, 1e-8, True)
    else:
        optim.adam_step(s["w"], s["g"], s["m"], s["v"], 1e-3, 0.9, 0.999, 1e-8, t)


def _optimizer_state(be, backend, name, size, seed):
    """Fixed-seed w, g (and state) of ``size`` float32 elements, checked after one step."""
    gen = rng(seed)
    host = dict(w=_normal(gen, size), g=_normal(gen, size, 1e-2),
                m=_normal(gen, size, 1e-3), v=np.abs(_normal(gen, size, 1e-4)))
    ref = {k: a.copy() for k, a in host.items()}
    _optimizer_call(require_backend("numpy").optim, name, ref, 10)
    m = be.memory
    s = {k: m.to_backend(a) for k, a in host.items()}
    _optimizer_call(be.optim, name, s, 10)
    sync(backend)
    for k in ("w", "m", "v"):
        assert_close(m.to_host(s[k]), ref[k], f"{name} step {k}")
    return s


class Optimizers:
    """One optimizer step over a flat float32 parameter buffer the size of the tiny MLP
    (2,410 parameters) or of the CIFAR-shaped MLP (1,707,274), updated in place with
    its state (Adam at step t = 10; the step count does not change the work)."""

    params = [BACKENDS, ["sgd", "momentum", "rmsprop", "adam"], ["tiny", "cifar"]]
    param_names = ["backend", "optimizer", "model"]

    def setup(self, backend, optimizer, model):
        self.backend = backend
        be = require_backend(backend)
        self.optim = be.optim
        self.s = _prepared(("Optimizers", backend, optimizer, model),
                           lambda: _optimizer_state(be, backend, optimizer, n_params(model), 4))

    def time_step(self, backend, optimizer, model):
        _optimizer_call(self.optim, optimizer, self.s, 10)
        sync(backend)


class AdamLarge:
    """One Adam step over 10,000,000 float32 parameters (w, g, m, v: 160 MB of memory
    traffic in, 120 MB out): a test of memory bandwidth and of the parallel path."""

    params = [BACKENDS]
    param_names = ["backend"]
    timeout = 120

    def setup(self, backend):
        self.backend = backend
        be = require_backend(backend)
        self.optim = be.optim
        self.s = _prepared(("AdamLarge", backend),
                           lambda: _optimizer_state(be, backend, "adam", 10_000_000, 5))

    def time_adam_step(self, backend):
        _optimizer_call(self.optim, "adam", self.s, 10)
        sync(backend)
