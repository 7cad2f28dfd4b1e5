"""Inverted dropout as @njit kernels, with the counter-based mask.

Same names and semantics as ``backends.reference.dropout`` (the hash, its
chaining and the formulas are there):

    h = splitmix(key(seed, t, op, row) ^ element),
    key = splitmix(splitmix(splitmix(splitmix(seed) ^ t) ^ op) ^ row)
    keep  <=>  (h >> 11) * 2**-53 >= rate
    y = x * scale where kept, else 0;  dx = dy * scale where kept, else 0
    scale = 1 / (1 - rate) in float64, cast to x's dtype once

x, y, dy, dx: (n, m) C-contiguous (borrowed views from ``_views`` work too).
Numba types a mix of uint64 and int64 as int64 or float64, so every operand of
the hash is cast to np.uint64 (the constants are uint64 globals); uint64
arithmetic then wraps modulo 2**64, exactly as in the reference. The row's key
is computed once per row and only the last step per element (1M float32
elements: 0.4 ms, the hash loop vectorised).

Counters arrive as int64 or uint64 (a negative int64 counts as its two's
complement). From Python, pass a counter >= 2**63 as np.uint64: Numba would
otherwise reuse an int64 compilation for the Python int and fail to convert it.
"""
import numpy as np
from numba import njit

from ._config import INLINE, KERNEL

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ULP53 = 2.0 ** -53


@njit(**INLINE)
def splitmix(z):
    """One SplitMix64 step (increment, then finalizer) of the uint64 z."""
    z = np.uint64(z) + _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@njit(**INLINE)
def dropout_row_key(seed, t, op, row):
    """splitmix(splitmix(splitmix(splitmix(seed) ^ t) ^ op) ^ row), uint64."""
    z = splitmix(np.uint64(seed)) ^ np.uint64(t)
    z = splitmix(z) ^ np.uint64(op)
    z = splitmix(z) ^ np.uint64(row)
    return splitmix(z)


@njit(**INLINE)
def dropout_hash(seed, t, op, row, element):
    """h = splitmix(key(seed, t, op, row) ^ element), uint64 (counters modulo 2**64)."""
    return splitmix(dropout_row_key(seed, t, op, row) ^ np.uint64(element))


@njit(**INLINE)
def keep_hash(h, rate):
    """(h >> 11) * 2**-53 >= rate."""
    return np.float64(h >> _S11) * _ULP53 >= rate


@njit(**INLINE)
def dropout_keep(seed, t, op, row, element, rate):
    """True where element (row, element) is kept at this rate."""
    return keep_hash(dropout_hash(seed, t, op, row, element), rate)


@njit(**KERNEL)
def _apply_mask(x, y, rate, seed, t, op):
    n, m = x.shape
    if rate == 0:
        for r in range(n):
            for e in range(m):
                y[r, e] = x[r, e]
        return
    scale = x.dtype.type(1.0 / (1.0 - rate))
    zero = x.dtype.type(0)
    for r in range(n):
        key = dropout_row_key(seed, t, op, r)
        for e in range(m):
            if keep_hash(splitmix(key ^ np.uint64(e)), rate):
                y[r, e] = x[r, e] * scale
            else:
                y[r, e] = zero


@njit(**KERNEL)
def dropout_forward(x, y, rate, seed, t, op):
    """y = x * scale where kept, else 0. x, y: (n, m); rate in [0, 1)."""
    _apply_mask(x, y, rate, seed, t, op)


@njit(**KERNEL)
def dropout_backward(dy, dx, rate, seed, t, op):
    """dx = dy * scale where kept, else 0 (the mask recomputed); dx may be dy."""
    _apply_mask(dy, dx, rate, seed, t, op)
