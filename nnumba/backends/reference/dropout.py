"""Inverted dropout, in NumPy, with a mask that is a pure function of counters.

Layout: x, y, dy, dx are (n, m) row-major, one sample (or, for a sequence,
one (sample, step) row of channels-last data viewed as (n * L, C)) per row;
row r, element e is x[r, e].

The mask. No random state is kept: whether element (r, e) is kept is decided
by a 64-bit hash of five counters, so that every backend draws the same mask,
bit for bit, and the backward pass recomputes it instead of storing it:

    seed     the model's dropout seed
    t        the step counter (a new mask every training step)
    op       which dropout op of the network (a new mask per layer)
    row      r
    element  e

All counters are taken modulo 2**64 (as unsigned 64-bit integers), and all
arithmetic below is uint64 with wraparound. ``splitmix`` is one step of
SplitMix64 (Steele, Lea, Flood 2014), the golden-ratio increment followed by
its finalizer, a bijection of the 64-bit integers:

    splitmix(z):  z = z + 0x9E3779B97F4A7C15
                  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                  z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                  return z ^ (z >> 31)

and the five counters are chained through it, each xor-ed into the state
before the next step:

    key(seed, t, op, row) = splitmix(splitmix(splitmix(splitmix(seed) ^ t) ^ op) ^ row)
    h = dropout_hash(seed, t, op, row, element) = splitmix(key ^ element)

(every step is a bijection, so changing any one counter changes h). Then

    u = (h >> 11) * 2**-53      a float64 in [0, 1), exact (53 bits)
    keep  <=>  u >= rate        (so P(keep) = 1 - rate, up to 2**-53)

Forward and backward (training only; in evaluation dropout is the identity and
no kernel runs), for rate in [0, 1):

    scale = 1 / (1 - rate)   computed in float64, then cast to x's dtype once
    y[r, e]  = x[r, e] * scale   if keep(seed, t, op, r, e) else 0
    dx[r, e] = dy[r, e] * scale  if keep(seed, t, op, r, e) else 0

rate 0 keeps everything and scale is 1: y is a copy of x.
"""
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_MASK = (1 << 64) - 1


def _u64(v):
    """v (an int or an integer array) as uint64, taken modulo 2**64."""
    if isinstance(v, (int, np.integer)):
        return np.uint64(int(v) & _MASK)
    v = np.asarray(v)
    if v.dtype == np.uint64:
        return v
    return v.astype(np.int64).view(np.uint64) if v.dtype.kind == "i" else v.astype(np.uint64)


def splitmix(z):
    """One SplitMix64 step (increment, then finalizer) of the uint64 value(s) z."""
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> _S30)) * _MUL1
        z = (z ^ (z >> _S27)) * _MUL2
        return z ^ (z >> _S31)


def dropout_row_key(seed, t, op, row):
    """key = splitmix(splitmix(splitmix(splitmix(seed) ^ t) ^ op) ^ row): the hash state
    shared by all elements of one row (uint64; arrays broadcast)."""
    z = splitmix(_u64(seed)) ^ _u64(t)
    z = splitmix(z) ^ _u64(op)
    z = splitmix(z) ^ _u64(row)
    return splitmix(z)


def dropout_hash(seed, t, op, row, element):
    """h = splitmix(key(seed, t, op, row) ^ element), uint64; the counters may be ints or
    integer arrays, which broadcast against each other."""
    return splitmix(dropout_row_key(seed, t, op, row) ^ _u64(element))


def dropout_uniform(h):
    """u = (h >> 11) * 2**-53 in [0, 1), float64."""
    return (h >> _S11).astype(np.float64) * 2.0 ** -53


def dropout_keep(seed, t, op, row, element, rate):
    """True where the element is kept: u(dropout_hash(...)) >= rate (arrays broadcast)."""
    return dropout_uniform(np.asarray(dropout_hash(seed, t, op, row, element))) >= rate


def dropout_scale(rate, dtype):
    """scale = 1 / (1 - rate), computed in float64 and cast to ``dtype`` once."""
    return np.dtype(dtype).type(1.0 / (1.0 - float(rate)))


def _mask(shape, rate, seed, t, op):
    n, m = shape
    return dropout_keep(seed, t, op, np.arange(n, dtype=np.uint64)[:, None],
                        np.arange(m, dtype=np.uint64)[None, :], rate)


def dropout_forward(x, y, rate, seed, t, op):
    """y = x * scale where kept, else 0. x, y: (n, m); rate in [0, 1)."""
    if rate == 0:
        y[...] = x
        return
    np.multiply(x, dropout_scale(rate, x.dtype), out=y)
    y[~_mask(x.shape, rate, seed, t, op)] = 0


def dropout_backward(dy, dx, rate, seed, t, op):
    """dx = dy * scale where kept, else 0 (the mask recomputed from the counters).
    dy, dx: (n, m); dx may be dy (in place)."""
    if rate == 0:
        dx[...] = dy
        return
    np.multiply(dy, dropout_scale(rate, dy.dtype), out=dx)
    dx[~_mask(dy.shape, rate, seed, t, op)] = 0
