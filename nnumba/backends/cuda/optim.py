"""Optimizer update rules as CUDA kernels: one grid-stride pass over the flat buffer per step.

Same names and semantics as ``backends.reference.optim`` (formulas there).
The host wrappers cast every hyperparameter to w's dtype exactly as the
reference does, and Adam's bias corrections are computed on the host in
float64 by the reference's own ``adam_bias_corrections``, then cast, so the
kernels see the very numbers the reference uses.

The element updates (``sgd_update`` ... ``update``) are device functions taking
the gradient value, shared with the training loops of ``network``, which clip
the gradient first.
"""
import math

from numba import cuda

import numpy as np

from ..codes import (ADAM, HP_BETA1, HP_BETA2, HP_EPS, HP_EPS_INSIDE, HP_LR, MOMENTUM, RMSPROP, SGD,
                     STATUS_OK, STATUS_STATE, STATUS_UPDATE)
from ..reference import optim as _ref
from . import _config as cfg

__all__ = ["sgd_step", "momentum_step", "rmsprop_step", "adam_step", "adam_bias_corrections",
           "optimizer_step", "verdict"]
adam_bias_corrections = _ref.adam_bias_corrections


# One element of each update, for the gradient value gi of w[i]; ``tiny`` is the smallest
# normal number of w's dtype (``smallest_normal``), below which a moving average is flushed
# to 0 (the reference's ``flush_subnormal``; NaN and inf are kept).

def smallest_normal(dtype):
    """The smallest normal number of ``dtype``, in that dtype (the kernels' ``tiny``)."""
    return dtype.type(np.finfo(dtype).tiny)


@cuda.jit(**cfg.DEVICE)
def flushed(x, tiny):
    return tiny - tiny if abs(x) < tiny else x


@cuda.jit(**cfg.DEVICE)
def sgd_update(i, w, gi, lr):
    w[i] -= lr * gi


@cuda.jit(**cfg.DEVICE)
def momentum_update(i, w, gi, v, lr, beta, one, tiny):
    vi = flushed(beta * v[i] + (one - beta) * gi, tiny)
    v[i] = vi
    w[i] -= lr * vi


@cuda.jit(**cfg.DEVICE)
def rmsprop_update(i, w, gi, s, lr, beta, eps, inside, one, tiny):
    si = flushed(beta * s[i] + (one - beta) * gi * gi, tiny)
    s[i] = si
    if inside:
        w[i] -= lr * gi / math.sqrt(si + eps)
    else:
        w[i] -= lr * gi / (math.sqrt(si) + eps)


@cuda.jit(**cfg.DEVICE)
def adam_update(i, w, gi, m, v, step_size, beta1, beta2, eps_hat, one, tiny):
    mi = flushed(beta1 * m[i] + (one - beta1) * gi, tiny)
    vi = flushed(beta2 * v[i] + (one - beta2) * gi * gi, tiny)
    m[i] = mi
    v[i] = vi
    w[i] -= step_size * mi / (math.sqrt(vi) + eps_hat)


@cuda.jit(**cfg.DEVICE)
def update(opt, i, w, gi, state, lr, beta1, beta2, eps, inside, step_size, eps_hat, one, tiny):
    """One element of the step of optimizer ``opt``; state: (n_slots, len(w))."""
    if opt == SGD:
        sgd_update(i, w, gi, lr)
    elif opt == MOMENTUM:
        momentum_update(i, w, gi, state[0], lr, beta1, one, tiny)
    elif opt == RMSPROP:
        rmsprop_update(i, w, gi, state[0], lr, beta1, eps, inside, one, tiny)
    elif opt == ADAM:
        adam_update(i, w, gi, state[0], state[1], step_size, beta1, beta2, eps_hat, one, tiny)


@cuda.jit(**cfg.DEVICE)
def element_status(opt, i, w, state, big):
    """What element i's step left behind: STATUS_STATE when its optimizer state is NaN
    or infinite, else STATUS_UPDATE when w[i] is, else STATUS_OK (the reference's
    ``verdict``, one element; NaN fails every comparison)."""
    if opt != SGD:
        if not abs(state[0, i]) <= big:
            return STATUS_STATE
        if opt == ADAM and not abs(state[1, i]) <= big:
            return STATUS_STATE
    if not abs(w[i]) <= big:
        return STATUS_UPDATE
    return STATUS_OK


@cuda.jit(**cfg.kernel())
def sgd_kernel(w, g, lr):
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        sgd_update(i, w, g[i], lr)


@cuda.jit(**cfg.kernel())
def momentum_kernel(w, g, v, lr, beta, tiny):
    one = w.dtype.type(1)
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        momentum_update(i, w, g[i], v, lr, beta, one, tiny)


@cuda.jit(**cfg.kernel())
def rmsprop_kernel(w, g, s, lr, beta, eps, inside, tiny):
    one = w.dtype.type(1)
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        rmsprop_update(i, w, g[i], s, lr, beta, eps, inside, one, tiny)


@cuda.jit(**cfg.kernel())
def adam_kernel(w, g, m, v, step_size, beta1, beta2, eps_hat, tiny):
    one = w.dtype.type(1)
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        adam_update(i, w, g[i], m, v, step_size, beta1, beta2, eps_hat, one, tiny)


def _launch(kernel, w, *args):
    if w.shape[0]:
        kernel[cfg.grid(w.shape[0]), cfg.TPB](w, *args)


def sgd_step(w, g, lr):
    """w <- w - lr g."""
    _launch(sgd_kernel, w, g, w.dtype.type(lr))


def momentum_step(w, g, v, lr, beta):
    """v <- beta v + (1 - beta) g;  w <- w - lr v."""
    dt = w.dtype.type
    _launch(momentum_kernel, w, g, v, dt(lr), dt(beta), smallest_normal(w.dtype))


def rmsprop_step(w, g, s, lr, beta, eps, eps_inside_sqrt):
    """s <- beta s + (1 - beta) g^2;  w <- w - lr g / sqrt(s + eps)  (or / (sqrt(s) + eps))."""
    dt = w.dtype.type
    _launch(rmsprop_kernel, w, g, s, dt(lr), dt(beta), dt(eps), bool(eps_inside_sqrt),
            smallest_normal(w.dtype))


def adam_step(w, g, m, v, lr, beta1, beta2, eps, t):
    """Adam with bias correction, in the paper's efficient form (see the reference)."""
    dt = w.dtype.type
    step_size, eps_hat = adam_bias_corrections(lr, beta1, beta2, eps, t)
    _launch(adam_kernel, w, g, m, v, dt(step_size), dt(beta1), dt(beta2), dt(eps_hat),
            smallest_normal(w.dtype))


def hyperparameters(opt, hp, dtype):
    """(lr, beta1, beta2, eps, inside) of the float64 vector hp, cast as the reference does."""
    dt = dtype.type
    return (dt(hp[HP_LR]), dt(hp[HP_BETA1]), dt(hp[HP_BETA2]), dt(hp[HP_EPS]),
            bool(hp[HP_EPS_INSIDE] != 0))


def verdict(w, state):
    """The reference's ``verdict`` of device arrays (copied to the host: this is the
    stand-alone step's check; the training loops check on the device)."""
    return _ref.verdict(w.copy_to_host(), state.copy_to_host() if state.size else np.zeros(0))


# the reference's host-side dispatch over this backend's four steps (state on the device)
optimizer_step = _ref.step_dispatcher(sgd_step, momentum_step, rmsprop_step, adam_step, verdict)
