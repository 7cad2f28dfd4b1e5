"""Optimizer update rules as fused @njit kernels over the flat parameter buffer.

Same names and semantics as ``backends.reference.optim`` (formulas there). Each
step is one pass over memory: every element's gradient, state and parameter
are read once and written once. Buffers of at least PARALLEL_MIN_SIZE elements
are split across all cores (prange); the split is by element, so the result is
the same bit for bit as the serial loop.
"""
import numpy as np
from numba import njit, prange

from ..codes import ADAM, HP_BETA1, HP_BETA2, HP_EPS, HP_EPS_INSIDE, HP_LR, MOMENTUM, RMSPROP, SGD
from ._config import INLINE, KERNEL, PARALLEL, PARALLEL_MIN_SIZE


# One element of each update; inlined into a serial and a parallel loop.

@njit(**INLINE)
def _sgd(i, w, g, lr):
    w[i] -= lr * g[i]


@njit(**INLINE)
def _momentum(i, w, g, v, lr, beta, one):
    v[i] = beta * v[i] + (one - beta) * g[i]
    w[i] -= lr * v[i]


@njit(**INLINE)
def _rmsprop(i, w, g, s, lr, beta, eps, inside, one):
    gi = g[i]
    s[i] = beta * s[i] + (one - beta) * gi * gi
    if inside:
        w[i] -= lr * gi / np.sqrt(s[i] + eps)
    else:
        w[i] -= lr * gi / (np.sqrt(s[i]) + eps)


@njit(**INLINE)
def _adam(i, w, g, m, v, step_size, beta1, beta2, eps, bc2_sqrt, one):
    gi = g[i]
    m[i] = beta1 * m[i] + (one - beta1) * gi
    v[i] = beta2 * v[i] + (one - beta2) * gi * gi
    w[i] -= step_size * m[i] / (np.sqrt(v[i]) / bc2_sqrt + eps)


@njit(**KERNEL)
def _sgd_serial(w, g, lr):
    for i in range(w.shape[0]):
        _sgd(i, w, g, lr)


@njit(**PARALLEL)
def _sgd_parallel(w, g, lr):
    for i in prange(w.shape[0]):
        _sgd(i, w, g, lr)


@njit(**KERNEL)
def _momentum_serial(w, g, v, lr, beta, one):
    for i in range(w.shape[0]):
        _momentum(i, w, g, v, lr, beta, one)


@njit(**PARALLEL)
def _momentum_parallel(w, g, v, lr, beta, one):
    for i in prange(w.shape[0]):
        _momentum(i, w, g, v, lr, beta, one)


@njit(**KERNEL)
def _rmsprop_serial(w, g, s, lr, beta, eps, inside, one):
    for i in range(w.shape[0]):
        _rmsprop(i, w, g, s, lr, beta, eps, inside, one)


@njit(**PARALLEL)
def _rmsprop_parallel(w, g, s, lr, beta, eps, inside, one):
    for i in prange(w.shape[0]):
        _rmsprop(i, w, g, s, lr, beta, eps, inside, one)


@njit(**KERNEL)
def _adam_serial(w, g, m, v, step_size, beta1, beta2, eps, bc2_sqrt, one):
    for i in range(w.shape[0]):
        _adam(i, w, g, m, v, step_size, beta1, beta2, eps, bc2_sqrt, one)


@njit(**PARALLEL)
def _adam_parallel(w, g, m, v, step_size, beta1, beta2, eps, bc2_sqrt, one):
    for i in prange(w.shape[0]):
        _adam(i, w, g, m, v, step_size, beta1, beta2, eps, bc2_sqrt, one)


@njit(**KERNEL)
def sgd_step(w, g, lr):
    lr = w.dtype.type(lr)
    if w.shape[0] >= PARALLEL_MIN_SIZE:
        _sgd_parallel(w, g, lr)
    else:
        _sgd_serial(w, g, lr)


@njit(**KERNEL)
def momentum_step(w, g, v, lr, beta):
    one = w.dtype.type(1)
    lr, beta = w.dtype.type(lr), w.dtype.type(beta)
    if w.shape[0] >= PARALLEL_MIN_SIZE:
        _momentum_parallel(w, g, v, lr, beta, one)
    else:
        _momentum_serial(w, g, v, lr, beta, one)


@njit(**KERNEL)
def rmsprop_step(w, g, s, lr, beta, eps, eps_inside_sqrt):
    one = w.dtype.type(1)
    lr, beta, eps = w.dtype.type(lr), w.dtype.type(beta), w.dtype.type(eps)
    inside = bool(eps_inside_sqrt)
    if w.shape[0] >= PARALLEL_MIN_SIZE:
        _rmsprop_parallel(w, g, s, lr, beta, eps, inside, one)
    else:
        _rmsprop_serial(w, g, s, lr, beta, eps, inside, one)


@njit(**KERNEL)
def adam_bias_corrections(lr, beta1, beta2, t):
    """(lr / (1 - beta1^t), sqrt(1 - beta2^t)) in float64."""
    return lr / (1.0 - beta1 ** t), np.sqrt(1.0 - beta2 ** t)


@njit(**KERNEL)
def adam_step(w, g, m, v, lr, beta1, beta2, eps, t):
    one = w.dtype.type(1)
    step_size, bc2_sqrt = adam_bias_corrections(lr, beta1, beta2, t)
    args = (w.dtype.type(step_size), w.dtype.type(beta1), w.dtype.type(beta2), w.dtype.type(eps),
            w.dtype.type(bc2_sqrt), one)
    if w.shape[0] >= PARALLEL_MIN_SIZE:
        _adam_parallel(w, g, m, v, *args)
    else:
        _adam_serial(w, g, m, v, *args)


@njit(**KERNEL)
def optimizer_step(opt, w, g, state, hp, t):
    """One step of the optimizer with code ``opt`` (see the reference twin)."""
    if opt == SGD:
        sgd_step(w, g, hp[HP_LR])
    elif opt == MOMENTUM:
        momentum_step(w, g, state[0], hp[HP_LR], hp[HP_BETA1])
    elif opt == RMSPROP:
        rmsprop_step(w, g, state[0], hp[HP_LR], hp[HP_BETA1], hp[HP_EPS], hp[HP_EPS_INSIDE] != 0)
    elif opt == ADAM:
        adam_step(w, g, state[0], state[1], hp[HP_LR], hp[HP_BETA1], hp[HP_BETA2], hp[HP_EPS], t)
