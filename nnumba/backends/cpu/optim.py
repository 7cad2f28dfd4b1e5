"""Optimizer update rules as fused @njit kernels over the flat parameter buffer.

Same names and semantics as ``backends.reference.optim`` (formulas there). Each
step is one pass over memory: every element's gradient, state and parameter
are read once and written once. Called from Python, buffers of at least
PARALLEL_MIN_SIZE elements are split across all cores (prange); the split is
by element, so the result is the same bit for bit as the serial loop.

``outer_product_step`` updates a weight matrix whose gradient x^T dz of a few
rows is formed one row at a time as it goes, so that gradient is never written
to memory.
"""
import numpy as np
from numba import njit, prange

from ..codes import (ADAM, HP_BETA1, HP_BETA2, HP_EPS, HP_EPS_INSIDE, HP_LR, MOMENTUM, N_HP, RMSPROP,
                     SGD, STATUS_OK, STATUS_STATE, STATUS_UPDATE)
from ._config import INLINE, KERNEL, PARALLEL, PARALLEL_MIN_SIZE
from ._views import flat_view


@njit(**KERNEL)
def adam_bias_corrections(lr, beta1, beta2, eps, t):
    """(lr_t, eps_t) = (lr sqrt(1 - beta2^t) / (1 - beta1^t), eps sqrt(1 - beta2^t)), float64."""
    root = np.sqrt(1.0 - beta2 ** t)
    return lr * root / (1.0 - beta1 ** t), eps * root


@njit(**KERNEL)
def constants(w, hp, t, adam):
    """The hyperparameters of step t in w's dtype: (lr, beta1, beta2, eps, eps inside the
    square root, Adam's lr_t, Adam's eps_t, 1, the smallest normal number). Adam's two are computed only when ``adam``
    (their two powers cost about 50 ns, a quarter of a small network's SGD step); else
    they are lr and eps, which no other rule reads."""
    dt = w.dtype.type
    step_size, eps_hat = hp[HP_LR], hp[HP_EPS]
    if adam:
        step_size, eps_hat = adam_bias_corrections(hp[HP_LR], hp[HP_BETA1], hp[HP_BETA2],
                                                   hp[HP_EPS], t)
    return (dt(hp[HP_LR]), dt(hp[HP_BETA1]), dt(hp[HP_BETA2]), dt(hp[HP_EPS]),
            hp[HP_EPS_INSIDE] != 0, dt(step_size), dt(eps_hat), dt(1), dt(np.finfo(w.dtype).tiny))


# One element of each rule, from the gradient value gi; inlined into the loops below.

@njit(**INLINE)
def _flushed(x, tiny):
    """x, or 0 when |x| < tiny, the smallest normal number (the reference's
    ``flush_subnormal``; NaN and inf are kept)."""
    return tiny - tiny if abs(x) < tiny else x


@njit(**INLINE)
def _sgd(i, w, gi, lr):
    w[i] -= lr * gi


@njit(**INLINE)
def _momentum(i, w, gi, v, lr, beta, one, tiny):
    vi = _flushed(beta * v[i] + (one - beta) * gi, tiny)
    v[i] = vi
    w[i] -= lr * vi


@njit(**INLINE)
def _rmsprop(i, w, gi, s, lr, beta, eps, inside, one, tiny):
    si = _flushed(beta * s[i] + (one - beta) * gi * gi, tiny)
    s[i] = si
    if inside:
        w[i] -= lr * gi / np.sqrt(si + eps)
    else:
        w[i] -= lr * gi / (np.sqrt(si) + eps)


@njit(**INLINE)
def _adam(i, w, gi, m, v, step_size, beta1, beta2, eps_hat, one, tiny):
    mi = _flushed(beta1 * m[i] + (one - beta1) * gi, tiny)
    vi = _flushed(beta2 * v[i] + (one - beta2) * gi * gi, tiny)
    m[i] = mi
    v[i] = vi
    w[i] -= step_size * mi / (np.sqrt(vi) + eps_hat)


# The loops take the float64 hyperparameters and convert them themselves (a tuple
# of float32 constants made in jitted code would come back to Python as float64).
# One loop per rule, the branch outside it, so that each loop vectorises; s0, s1
# are the state rows a rule uses (Momentum: v; RMSprop: s; Adam: m, v), w where none.

@njit(**KERNEL)
def step_serial(opt, w, g, s0, s1, hp, t):
    return _loops(opt, w, g, s0, s1, constants(w, hp, t, opt == ADAM))


@njit(**INLINE)
def finite(a, big):
    """|a| <= the dtype's largest number: False for inf and NaN (NaN compares false)."""
    return abs(a) <= big


@njit(**INLINE)
def _verdict(ok_w, ok_s):
    """The STATUS_* code of a step whose parameters (ok_w) and state (ok_s) stayed finite."""
    return STATUS_STATE if not ok_s else (STATUS_OK if ok_w else STATUS_UPDATE)


@njit(**KERNEL)
def _loops(opt, w, g, s0, s1, c):
    """One step of every element; returns the verdict on what it wrote (STATUS_OK,
    STATUS_UPDATE or STATUS_STATE). The checks are and-reductions in the same pass:
    no extra memory traffic, and they vectorise with the loop."""
    if opt == SGD:
        return sgd_loop(w, g, c)
    if opt == MOMENTUM:
        return momentum_loop(w, g, s0, c)
    if opt == RMSPROP:
        return rmsprop_loop(w, g, s0, c)
    return adam_loop(w, g, s0, s1, c)


# One loop per rule (``c`` the tuple of ``constants``), called by ``_loops`` and, one each,
# by the built-in C callbacks (``rules.builtin_step``), which compile only their own.

@njit(**KERNEL)
def sgd_loop(w, g, c):
    lr, big, ok_w = c[0], np.finfo(w.dtype).max, True
    for i in range(w.shape[0]):
        _sgd(i, w, g[i], lr)
        ok_w &= finite(w[i], big)
    return _verdict(ok_w, True)


@njit(**KERNEL)
def momentum_loop(w, g, v, c):
    lr, beta, one, tiny = c[0], c[1], c[7], c[8]
    big, ok_w, ok_s = np.finfo(w.dtype).max, True, True
    for i in range(w.shape[0]):
        _momentum(i, w, g[i], v, lr, beta, one, tiny)
        ok_w &= finite(w[i], big)
        ok_s &= finite(v[i], big)
    return _verdict(ok_w, ok_s)


@njit(**KERNEL)
def rmsprop_loop(w, g, s, c):
    lr, beta, eps, inside, one, tiny = c[0], c[1], c[3], c[4], c[7], c[8]
    big, ok_w, ok_s = np.finfo(w.dtype).max, True, True
    for i in range(w.shape[0]):
        _rmsprop(i, w, g[i], s, lr, beta, eps, inside, one, tiny)
        ok_w &= finite(w[i], big)
        ok_s &= finite(s[i], big)
    return _verdict(ok_w, ok_s)


@njit(**KERNEL)
def adam_loop(w, g, m, v, c):
    beta1, beta2, step_size, eps_hat, one, tiny = c[1], c[2], c[5], c[6], c[7], c[8]
    big, ok_w, ok_s = np.finfo(w.dtype).max, True, True
    for i in range(w.shape[0]):
        _adam(i, w, g[i], m, v, step_size, beta1, beta2, eps_hat, one, tiny)
        ok_w &= finite(w[i], big)
        ok_s &= finite(m[i], big) & finite(v[i], big)
    return _verdict(ok_w, ok_s)


@njit(**PARALLEL)
def _step_parallel(opt, w, g, s0, s1, hp, t):
    lr, beta1, beta2, eps, inside, step_size, eps_hat, one, tiny = constants(w, hp, t, opt == ADAM)
    if opt == SGD:
        for i in prange(w.shape[0]):
            _sgd(i, w, g[i], lr)
    elif opt == MOMENTUM:
        for i in prange(w.shape[0]):
            _momentum(i, w, g[i], s0, lr, beta1, one, tiny)
    elif opt == RMSPROP:
        for i in prange(w.shape[0]):
            _rmsprop(i, w, g[i], s0, lr, beta1, eps, inside, one, tiny)
    elif opt == ADAM:
        for i in prange(w.shape[0]):
            _adam(i, w, g[i], s0, s1, step_size, beta1, beta2, eps_hat, one, tiny)


def _step(opt, w, g, s0, s1, lr, beta1=0.0, beta2=0.0, eps=0.0, inside=False, t=1):
    hp = np.zeros(N_HP)
    hp[[HP_LR, HP_BETA1, HP_BETA2, HP_EPS, HP_EPS_INSIDE]] = lr, beta1, beta2, eps, inside
    loop = _step_parallel if w.shape[0] >= PARALLEL_MIN_SIZE else step_serial
    loop(opt, w, g, s0, s1, hp, t)


# The public steps are plain Python: they pick the serial or the parallel loop.
# Jitted code (optimizer_step, the training loop) calls only the serial loops:
# a cached @njit function that calls a parallel=True one can crash when loaded
# from Numba's cache in another process (numba issues 8578 and 10128; reproduced
# here), and inside the training loop parallel threads compete with BLAS's. Even
# next to single-threaded BLAS (batch 1) a parallel step per layer per iteration
# lost: 1.8x faster alone, 2-6x slower between other programs' runs, as every
# parallel region waited for the other virtual CPU to wake up.

def sgd_step(w, g, lr):
    _step(SGD, w, g, w, w, lr)


def momentum_step(w, g, v, lr, beta):
    _step(MOMENTUM, w, g, v, w, lr, beta)


def rmsprop_step(w, g, s, lr, beta, eps, eps_inside_sqrt):
    _step(RMSPROP, w, g, s, w, lr, beta, eps=eps, inside=eps_inside_sqrt)


def adam_step(w, g, m, v, lr, beta1, beta2, eps, t):
    _step(ADAM, w, g, m, v, lr, beta1, beta2, eps, t=t)


@njit(**INLINE)
def state_rows(opt, w, state, start, stop):
    """The state rows of parameters start:stop that optimizer ``opt`` uses (w where none)."""
    s0 = flat_view(state, start, stop - start) if opt != SGD else w
    s1 = flat_view(state, state.shape[1] + start, stop - start) if opt == ADAM else w
    return s0, s1


@njit(**KERNEL)
def optimizer_step(opt, w, g, state, hp, t):
    """One step of the optimizer with code ``opt`` (see the reference twin), serial;
    returns the verdict on what it wrote (STATUS_OK, STATUS_UPDATE or STATUS_STATE)."""
    s0, s1 = state_rows(opt, w, state, 0, w.shape[0])
    return step_serial(opt, w, g, s0, s1, hp, t)


@njit(**KERNEL)
def outer_product_step(opt, w, x, dz, coef, clip_value, s0, s1, hp, t, row):
    """One step of w (flat, n_in x n_out row-major) whose gradient is x^T dz, with
    x: (n, n_in) and dz: (n, n_out). Each row of the gradient is formed in ``row``
    (n_out elements, so it stays in the L1 cache) in the order of ``matmul_tn``'s
    loop, scaled by ``coef`` (clipping by norm, when below 1), clamped to
    +-clip_value (when finite), then used by the step of that row of w. Returns the
    verdict of the rows' steps (``optimizer_step``)."""
    c = constants(w, hp, t, opt == ADAM)
    status = STATUS_OK
    n, n_in = x.shape
    n_out = dz.shape[1]
    k = w.dtype.type(coef)
    clamp = np.isfinite(clip_value)
    limit = w.dtype.type(clip_value) if clamp else w.dtype.type(0)
    for p in range(n_in):
        a = x[0, p]
        for j in range(n_out):
            row[j] = a * dz[0, j]
        for r in range(1, n):
            a = x[r, p]
            for j in range(n_out):
                row[j] += a * dz[r, j]
        if coef < 1.0:
            for j in range(n_out):
                row[j] *= k
        if clamp:
            for j in range(n_out):
                row[j] = min(max(row[j], -limit), limit)
        lo = p * n_out  # borrowed views of the row: a slice per row cost more than its step
        status = max(status, _loops(opt, flat_view(w, lo, n_out), row, flat_view(s0, lo, n_out),
                                    flat_view(s1, lo, n_out), c))
    return status
