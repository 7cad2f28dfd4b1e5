"""Optimizer update rules as fused @njit kernels over the flat parameter buffer.

Same names and semantics as ``backends.reference.optim`` (formulas there). Each
step is one pass over memory: every element's gradient, state and parameter
are read once and written once. Called from Python, buffers of at least
PARALLEL_MIN_SIZE elements are split across all cores (prange); the split is
by element, so the result is the same bit for bit as the serial loop.
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
def _adam(i, w, g, m, v, step_size, beta1, beta2, eps_hat, one):
    gi = g[i]
    m[i] = beta1 * m[i] + (one - beta1) * gi
    v[i] = beta2 * v[i] + (one - beta2) * gi * gi
    w[i] -= step_size * m[i] / (np.sqrt(v[i]) + eps_hat)


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
def _adam_serial(w, g, m, v, step_size, beta1, beta2, eps_hat, one):
    for i in range(w.shape[0]):
        _adam(i, w, g, m, v, step_size, beta1, beta2, eps_hat, one)


@njit(**PARALLEL)
def _adam_parallel(w, g, m, v, step_size, beta1, beta2, eps_hat, one):
    for i in prange(w.shape[0]):
        _adam(i, w, g, m, v, step_size, beta1, beta2, eps_hat, one)


def _parallel(w):
    return w.shape[0] >= PARALLEL_MIN_SIZE


# The public steps are plain Python: they pick the serial or the parallel loop.
# Jitted code (optimizer_step, the training loop) calls only the serial loops:
# a cached @njit function that calls a parallel=True one can crash when loaded
# from Numba's cache in another process (numba issues 8578 and 10128), and
# inside the training loop parallel threads compete with BLAS's anyway.

def sgd_step(w, g, lr):
    lr = w.dtype.type(lr)
    (_sgd_parallel if _parallel(w) else _sgd_serial)(w, g, lr)


def momentum_step(w, g, v, lr, beta):
    dt = w.dtype.type
    (_momentum_parallel if _parallel(w) else _momentum_serial)(w, g, v, dt(lr), dt(beta), dt(1))


def rmsprop_step(w, g, s, lr, beta, eps, eps_inside_sqrt):
    dt = w.dtype.type
    (_rmsprop_parallel if _parallel(w) else _rmsprop_serial)(w, g, s, dt(lr), dt(beta), dt(eps),
                                                             bool(eps_inside_sqrt), dt(1))


def adam_step(w, g, m, v, lr, beta1, beta2, eps, t):
    dt = w.dtype.type
    step_size, eps_hat = adam_bias_corrections(lr, beta1, beta2, eps, t)
    (_adam_parallel if _parallel(w) else _adam_serial)(w, g, m, v, dt(step_size), dt(beta1),
                                                       dt(beta2), dt(eps_hat), dt(1))


@njit(**KERNEL)
def adam_bias_corrections(lr, beta1, beta2, eps, t):
    """(lr_t, eps_t) = (lr sqrt(1 - beta2^t) / (1 - beta1^t), eps sqrt(1 - beta2^t)), float64."""
    root = np.sqrt(1.0 - beta2 ** t)
    return lr * root / (1.0 - beta1 ** t), eps * root


@njit(**KERNEL)
def optimizer_step(opt, w, g, state, hp, t):
    """One step of the optimizer with code ``opt`` (see the reference twin), serial."""
    dt = w.dtype.type
    one, lr, beta1, beta2, eps = dt(1), dt(hp[HP_LR]), dt(hp[HP_BETA1]), dt(hp[HP_BETA2]), dt(hp[HP_EPS])
    if opt == SGD:
        _sgd_serial(w, g, lr)
    elif opt == MOMENTUM:
        _momentum_serial(w, g, state[0], lr, beta1, one)
    elif opt == RMSPROP:
        _rmsprop_serial(w, g, state[0], lr, beta1, eps, hp[HP_EPS_INSIDE] != 0, one)
    elif opt == ADAM:
        step_size, eps_hat = adam_bias_corrections(hp[HP_LR], hp[HP_BETA1], hp[HP_BETA2], hp[HP_EPS], t)
        _adam_serial(w, g, state[0], state[1], dt(step_size), beta1, beta2, dt(eps_hat), one)
