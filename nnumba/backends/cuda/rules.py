"""User-defined optimizer rules (``nn.optim.rule``) as CUDA kernels.

The contract is ``backends.reference.rules``: the rule (a Python function of
scalars) becomes a device function, called from a generated grid-stride kernel,
one pass over the buffer; the verdict is the built-in steps' (``optim.verdict``).
Compiled once per process and dtype (generated code).
"""
import math  # noqa: F401 (rules may use it)

import numpy as np
from numba import cuda

from ..reference import rules as _ref
from . import _config as cfg
from .optim import verdict

_TEMPLATE = '''
def kernel(w, g, state{hp_params}, t):
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        result = rule(w[i], g[i]{slot_args}{hp_args}, t)
{stores}'''


def compile_rule(function, n_state, hp_columns, dtype):
    """``step(w, g, state, hp, t)`` on device arrays (hp a host float64 vector)."""
    dt = np.dtype(dtype).type
    columns = [int(c) for c in hp_columns]
    hp_names = "".join(f", h{j}" for j in range(len(columns)))
    if n_state:
        stores = "        w[i] = result[0]\n" + "".join(
            f"        state[{k}, i] = result[{k + 1}]\n" for k in range(n_state))
    else:
        stores = "        w[i] = result\n"
    source = _TEMPLATE.format(hp_params=hp_names, hp_args=hp_names, stores=stores,
                              slot_args="".join(f", state[{k}, i]" for k in range(n_state)))
    namespace = {"cuda": cuda, "rule": cuda.jit(**cfg.DEVICE)(function)}
    exec(compile(source, f"<nnumba rule {function.__name__}>", "exec"), namespace)
    kernel = cuda.jit(**cfg.kernel())(namespace["kernel"])

    def step(w, g, state, hp, t):
        if w.shape[0]:
            kernel[cfg.grid(w.shape[0]), cfg.TPB](w, g, state, *(dt(hp[c]) for c in columns),
                                                  int(t))
        return verdict(w, state)

    return step


# ---- user-defined activations (``nn.layers.activation``) ---------------------------------------
_FORWARD = '''
def forward(z, y):
    for i in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        y[i] = f(z[i])
'''
_BACKWARD = '''
def backward(z, y, dy):
    for i in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
{body}'''


class Activations:
    """The contract of ``reference.rules.Activations``, on device arrays (2-D, viewed flat)."""

    def __init__(self, specs, dtype):
        from ..reference.rules import NUMERIC_STEP

        self.kernels = []
        for f, derivative, of in specs:
            namespace = {"cuda": cuda, "f": cuda.jit(**cfg.DEVICE)(f), "STEP": NUMERIC_STEP,
                         "math": math}
            if derivative is None:
                body = ("        zi = z[i] * 1.0\n"
                        "        h = STEP * max(1.0, abs(zi))\n"
                        "        dy[i] *= (f(zi + h) - f(zi - h)) / (2 * h)\n")
            else:
                namespace["d"] = cuda.jit(**cfg.DEVICE)(derivative)
                body = f"        dy[i] *= d({'z' if of == 'input' else 'y'}[i])\n"
            exec(compile(_FORWARD + _BACKWARD.format(body=body), "<nnumba custom activation>",
                         "exec"), namespace)
            self.kernels.append((cuda.jit(**cfg.kernel())(namespace["forward"]),
                                 cuda.jit(**cfg.kernel())(namespace["backward"])))

    def forward(self, index, z, y):
        n = z.size
        if n:
            self.kernels[index][0][cfg.grid(n), cfg.TPB](z.reshape(n), y.reshape(n))

    def backward(self, index, z, y, dy):
        n = z.size
        if n:
            self.kernels[index][1][cfg.grid(n), cfg.TPB](z.reshape(n), y.reshape(n), dy.reshape(n))


def compile_activations(specs, dtype):
    return Activations(specs, dtype)


apply_activation = _ref.apply_activation


# ---- user-defined losses (``nn.losses.loss``) --------------------------------------------------
def compile_loss(value, gradient, dtype):
    """The contract of ``reference.rules.compile_loss`` on device arrays: one kernel writes
    dout and each element's (weighted) term; the terms are summed on the host in float64."""
    f, df = cuda.jit(**cfg.DEVICE)(value), cuda.jit(**cfg.DEVICE)(gradient)

    @cuda.jit(**cfg.kernel())
    def kernel(out, target, weights, weighted, dout, terms, scale):
        n, k = out.shape
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            i, j = e // k, e % k
            w = weights[i] if weighted else scale * 0 + 1
            o, t = out[i, j], target[i, j]
            terms[e] = f(o, t) * w
            dout[i, j] = df(o, t) * (scale * w)

    buffers = {}  # the terms buffer, made once per batch size (not per step)

    def loss(out, target, weights, dout, result):
        n, k = out.shape
        dt = np.dtype(out.dtype).type
        key = (n * k, np.dtype(out.dtype).name)
        if key not in buffers:
            buffers[key] = cuda.device_array(max(n * k, 1), out.dtype)
        terms = buffers[key]
        weighted = weights.shape[0] > 0
        if n * k:
            kernel[cfg.grid(n * k), cfg.TPB](out, target, weights if weighted else out[:, 0],
                                             weighted, dout, terms, dt(1) / dt(n * k))
        host = terms.copy_to_host()[:n * k]
        result.copy_to_device(np.array([np.sum(host, dtype=np.float64) / max(n * k, 1), 0.0]))
        return 0

    return loss


def apply_loss(loss, out, target, weights, dout, result):
    return loss(out, target, weights, dout, result)
