"""1-D pooling over the steps of a channels-last sequence, as @njit kernels.

Same names and semantics as ``backends.reference.pool1d`` (formulas and the
layout there): x (n, L_in C) holds sample r's step p, channel c at column
p C + c; windows of k = ``pool`` steps every s = ``stride`` steps, no padding,
L_out = (L_in - k) // s + 1.

Every loop nest ends in a loop over the C channels of one step, which are
contiguous in memory, with unconditional stores (selects, no branches), so
LLVM can vectorise it. The order of every sum is the reference's, to the same
bits: window sums in increasing j then one division (no fastmath); backward
passes are gathers, each input step adding the windows that contain it in
increasing t (no scatter). Nothing is allocated. The kernels take 2-D
C-contiguous arrays, from Python or from other @njit code (borrowed views of
``_views.rows_view`` included).
"""
from numba import njit

from ._config import KERNEL


@njit(**KERNEL)
def _window_range(p, l_out, pool, stride):
    """(t_lo, t_hi + 1): the windows t that contain input step p."""
    t_lo = (p - pool + stride) // stride if p >= pool - 1 else 0   # ceil((p - k + 1) / s)
    t_hi = min(l_out - 1, p // stride)
    return t_lo, t_hi + 1


@njit(**KERNEL)
def maxpool1d_forward(x, y, argmax, steps_in, c, pool, stride):
    """y = max over each window, argmax = its input step (first on ties; NaN wins, first NaN).

    x: (n, L_in C); y, argmax (int64): (n, L_out C).
    """
    l_out = (steps_in - pool) // stride + 1
    for r in range(x.shape[0]):
        for t in range(l_out):
            p0 = t * stride
            o = t * c
            b = p0 * c
            for ch in range(c):
                y[r, o + ch] = x[r, b + ch]
                argmax[r, o + ch] = p0
            for j in range(1, pool):
                b = (p0 + j) * c
                for ch in range(c):
                    v = x[r, b + ch]
                    best = y[r, o + ch]
                    take = (v > best) | ((v != v) & (best == best))
                    y[r, o + ch] = v if take else best
                    argmax[r, o + ch] = p0 + j if take else argmax[r, o + ch]


@njit(**KERNEL)
def maxpool1d_backward(dy, argmax, dx, steps_in, c, pool, stride):
    """dx[r, p C + c] = sum of dy[r, t C + c] over the windows t (increasing) whose argmax is p.

    dy, argmax: (n, L_out C); dx: (n, L_in C).
    """
    l_out = (steps_in - pool) // stride + 1
    zero = dx.dtype.type(0)
    for r in range(dx.shape[0]):
        for p in range(steps_in):
            o = p * c
            for ch in range(c):
                dx[r, o + ch] = zero
            t_lo, t_end = _window_range(p, l_out, pool, stride)
            for t in range(t_lo, t_end):
                b = t * c
                for ch in range(c):
                    g = dy[r, b + ch]
                    dx[r, o + ch] += g if argmax[r, b + ch] == p else zero


@njit(**KERNEL)
def avgpool1d_forward(x, y, steps_in, c, pool, stride):
    """y[r, t C + c] = (sum_{j < k}, in increasing j, of x[r, (t s + j) C + c]) / k.

    x: (n, L_in C); y: (n, L_out C).
    """
    l_out = (steps_in - pool) // stride + 1
    kf = y.dtype.type(pool)
    for r in range(x.shape[0]):
        for t in range(l_out):
            o = t * c
            b = t * stride * c
            for ch in range(c):
                y[r, o + ch] = x[r, b + ch]
            for j in range(1, pool):
                b = (t * stride + j) * c
                for ch in range(c):
                    y[r, o + ch] += x[r, b + ch]
            for ch in range(c):
                y[r, o + ch] = y[r, o + ch] / kf


@njit(**KERNEL)
def avgpool1d_backward(dy, dx, steps_in, c, pool, stride):
    """dx[r, p C + c] = sum over the windows t containing p (increasing t) of dy[r, t C + c] / k.

    dy: (n, L_out C); dx: (n, L_in C).
    """
    l_out = (steps_in - pool) // stride + 1
    kf = dx.dtype.type(pool)
    zero = dx.dtype.type(0)
    for r in range(dx.shape[0]):
        for p in range(steps_in):
            o = p * c
            for ch in range(c):
                dx[r, o + ch] = zero
            t_lo, t_end = _window_range(p, l_out, pool, stride)
            for t in range(t_lo, t_end):
                b = t * c
                for ch in range(c):
                    dx[r, o + ch] += dy[r, b + ch] / kf


@njit(**KERNEL)
def global_avgpool1d_forward(x, y, steps, c):
    """y[r, c] = (sum over steps p = 0, 1, ..., L - 1 of x[r, p C + c]) / L.

    x: (n, L C); y: (n, C).
    """
    lf = y.dtype.type(steps)
    for r in range(x.shape[0]):
        for ch in range(c):
            y[r, ch] = x[r, ch]
        for p in range(1, steps):
            b = p * c
            for ch in range(c):
                y[r, ch] += x[r, b + ch]
        for ch in range(c):
            y[r, ch] = y[r, ch] / lf


@njit(**KERNEL)
def global_avgpool1d_backward(dy, dx, steps, c):
    """dx[r, p C + c] = dy[r, c] / L for every step p.

    dy: (n, C); dx: (n, L C).
    """
    lf = dx.dtype.type(steps)
    for r in range(dx.shape[0]):
        for ch in range(c):
            dx[r, ch] = dy[r, ch] / lf
        for p in range(1, steps):
            b = p * c
            for ch in range(c):
                dx[r, b + ch] = dx[r, ch]
