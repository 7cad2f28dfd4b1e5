"""Inverted dropout as CUDA kernels, with the counter-based mask.

Same names and semantics as ``backends.reference.dropout`` (the hash, its
chaining and the formulas are there):

    h = splitmix(key(seed, t, op, row) ^ element),
    key = splitmix(splitmix(splitmix(splitmix(seed) ^ t) ^ op) ^ row)
    keep  <=>  (h >> 11) * 2**-53 >= rate
    y = x * scale where kept, else 0;  dx = dy * scale where kept, else 0
    scale = 1 / (1 - rate) in float64 (on the host), cast to x's dtype once

``dropout_hash`` and ``dropout_keep`` are device functions; every operand is
cast to uint64 (the constants are uint64 globals), so the arithmetic wraps
modulo 2**64 as in the reference, and the mask is the same bits as on the
other backends. The host wrappers take (n, m) device arrays, pass the
counters as np.uint64 (taken modulo 2**64) and launch one grid-stride kernel
over the n * m elements of the flat arrays; each thread hashes its own
elements, no state is read or kept.
"""
import numpy as np
from numba import cuda, float64

from . import _config as cfg
from .memory import flat

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ULP53 = 2.0 ** -53
_MASK = (1 << 64) - 1


@cuda.jit(**cfg.DEVICE)
def splitmix(z):
    """One SplitMix64 step (increment, then finalizer) of the uint64 z."""
    z = np.uint64(z) + _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@cuda.jit(**cfg.DEVICE)
def dropout_hash(seed, t, op, row, element):
    """h = splitmix(splitmix(splitmix(splitmix(splitmix(seed) ^ t) ^ op) ^ row) ^ element)."""
    z = splitmix(np.uint64(seed)) ^ np.uint64(t)
    z = splitmix(z) ^ np.uint64(op)
    z = splitmix(z) ^ np.uint64(row)
    z = splitmix(z) ^ np.uint64(element)
    return splitmix(z)


@cuda.jit(**cfg.DEVICE)
def dropout_keep(seed, t, op, row, element, rate):
    """(h >> 11) * 2**-53 >= rate for h = dropout_hash(seed, t, op, row, element)."""
    h = dropout_hash(seed, t, op, row, element)
    return float64(h >> _S11) * _ULP53 >= rate


@cuda.jit(**cfg.kernel())
def dropout_kernel(x, y, m, rate, scale, seed, t, op):
    """y[i] = x[i] * scale if element (i // m, i % m) is kept, else 0 (flat arrays)."""
    zero = y.dtype.type(0)
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        r = i // m
        if dropout_keep(seed, t, op, r, i - r * m, rate):
            y[i] = x[i] * scale
        else:
            y[i] = zero


@cuda.jit(**cfg.kernel())
def copy_kernel(x, y):
    """y[i] = x[i]."""
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        y[i] = x[i]


def _u64(v):
    return np.uint64(int(v) & _MASK)


def _apply_mask(x, y, rate, seed, t, op):
    if y.size == 0:
        return
    grid = cfg.grid(y.size)
    if rate == 0:
        copy_kernel[grid, cfg.TPB](flat(x), flat(y))
        return
    scale = x.dtype.type(1.0 / (1.0 - float(rate)))
    dropout_kernel[grid, cfg.TPB](flat(x), flat(y), int(x.shape[1]), float(rate), scale,
                                  _u64(seed), _u64(t), _u64(op))


def dropout_forward(x, y, rate, seed, t, op):
    """y = x * scale where kept, else 0. x, y: (n, m) device arrays; rate in [0, 1)."""
    _apply_mask(x, y, rate, seed, t, op)


def dropout_backward(dy, dx, rate, seed, t, op):
    """dx = dy * scale where kept, else 0 (the mask recomputed); dx may be dy."""
    _apply_mask(dy, dx, rate, seed, t, op)
