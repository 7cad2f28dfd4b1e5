"""Gradient norms and clipping as CUDA kernels, and the deterministic reductions they use.

Same names and semantics as ``backends.reference.gradients`` (formulas there):

    sum_of_squares:  out[0] = sum g_i^2, accumulated in float64
    clip_by_norm:    g <- g * min(1, max_norm / (norm + 1e-6))
    clip_by_value:   g <- min(max(g, -limit), limit)

Every sum here is a two-level reduction in a fixed order, never atomics: the
first kernel has a grid fixed by the input size; each thread adds its
grid-stride elements in index order, then each block folds its threads'
partial sums in a fixed tree (``block_sum``) into partial[block]; a second
kernel (``sum_finish_kernel``, one block) folds the partials the same way.
Same input, same launch sizes: same bits, run after run. The losses reuse
these kernels for their means.
"""
import functools
import math

import numpy as np
from numba import cuda, float64

from ..codes import HP_DECOUPLED, HP_LR, HP_WEIGHT_DECAY
from . import _config as cfg
from .memory import scratch


@cuda.jit(**cfg.DEVICE)
def block_sum(buf, tid, nt):
    """The sum of buf[0:nt] (nt a power of two, one value per thread), folded by a
    fixed tree: buf[t] += buf[t + s] for s = nt/2, nt/4, ..., 1. Every thread of the
    block must call it, and gets the total; buf is free again on return."""
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@cuda.jit(**cfg.DEVICE)
def block_sum2(buf, buf2, tid, nt):
    """block_sum of two buffers by one tree (half the barriers); returns both totals."""
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
            buf2[tid] += buf2[tid + s]
        cuda.syncthreads()
        s //= 2
    total = buf[0]
    total2 = buf2[0]
    cuda.syncthreads()
    return total, total2


@functools.lru_cache(maxsize=None)
def _sum_of_squares_kernel(tpb):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def sum_of_squares_kernel(g, partial):
        """partial[block] = sum of g[i]^2 (float64) over this block's grid-stride elements."""
        buf = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
            v = float64(g[i])
            acc += v * v
        buf[tid] = acc
        total = block_sum(buf, tid, tpb)
        if tid == 0:
            partial[cuda.blockIdx.x] = total

    return sum_of_squares_kernel


@functools.lru_cache(maxsize=None)
def _sum_finish_kernel(tpb):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def sum_finish_kernel(partial, count, out, base, divisor, root):
        """Block q: s = sum of partial[q, :count]; out[base + q] = s / divisor for q = 0,
        s for q > 0; with ``root``, the square root of that."""
        buf = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        q = cuda.blockIdx.x
        acc = 0.0
        for i in range(tid, count, tpb):
            acc += partial[q, i]
        buf[tid] = acc
        total = block_sum(buf, tid, tpb)
        if tid == 0:
            if q == 0:
                total = total / divisor
            if root:
                total = math.sqrt(total)
            out[base + q] = total

    return sum_finish_kernel


def partial_blocks(n):
    """The grid of a first-level reduction over n elements (fixed for a given n)."""
    return max(1, min(cfg.REDUCE_BLOCKS, -(-n // cfg.REDUCE_TPB)))


def finish_sums(partial, count, out, base=0, divisor=1.0, root=False):
    """out[base + q] = (sum of partial[q, :count]) / divisor (q = 0) or the plain sum (q > 0).

    partial: (n_quantities, >= count) float64 device array.
    """
    _sum_finish_kernel(cfg.REDUCE_TPB)[partial.shape[0], cfg.REDUCE_TPB](
        partial, int(count), out, int(base), float(divisor), bool(root))


@cuda.jit(**cfg.kernel())
def scale_kernel(g, c):
    """g[i] *= c."""
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        g[i] *= c


@cuda.jit(**cfg.DEVICE)
def clamp(v, lo, hi):
    """min(max(v, lo), hi), with NaN passed through as np.clip does."""
    if v > hi:
        return hi
    if v < lo:
        return lo
    return v


@cuda.jit(**cfg.kernel())
def clip_by_value_kernel(g, limit):
    """g[i] = clamp(g[i], -limit, limit)."""
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        g[i] = clamp(g[i], -limit, limit)


def sum_of_squares(g, out):
    """out[0] = sum of g^2 in float64 (g: 1-D device array; out: float64 device array)."""
    n = g.shape[0]
    blocks = partial_blocks(n)
    partial = scratch("sum_of_squares", (1, blocks), np.float64)
    if n:
        _sum_of_squares_kernel(cfg.REDUCE_TPB)[blocks, cfg.REDUCE_TPB](g, partial[0])
    finish_sums(partial, blocks if n else 0, out)


def clip_by_norm(g, norm, max_norm):
    """Scale g so that a global norm ``norm`` (a host float) becomes at most ``max_norm``."""
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0 and g.shape[0]:
        scale_kernel[cfg.grid(g.shape[0]), cfg.TPB](g, g.dtype.type(coef))


def clip_by_value(g, limit):
    """Clamp every component of g into [-limit, limit]."""
    if g.shape[0]:
        clip_by_value_kernel[cfg.grid(g.shape[0]), cfg.TPB](g, g.dtype.type(limit))


@cuda.jit(**cfg.kernel())
def decay_coupled_kernel(w, g, lam):
    """g[i] += lam w[i]."""
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        g[i] += lam * w[i]


def apply_weight_decay(w, g, hp):
    """Weight decay of one decayed segment (see the reference twin); hp on the host."""
    if not w.shape[0]:
        return
    if hp[HP_DECOUPLED] != 0:
        scale_kernel[cfg.grid(w.shape[0]), cfg.TPB](w, w.dtype.type(1.0 - hp[HP_LR] * hp[HP_WEIGHT_DECAY]))
    else:
        decay_coupled_kernel[cfg.grid(w.shape[0]), cfg.TPB](w, g, w.dtype.type(hp[HP_WEIGHT_DECAY]))
