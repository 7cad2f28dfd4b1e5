"""Batch normalisation over the channel axis as CUDA kernels.

Same names and semantics as ``backends.reference.batchnorm`` (formulas, shapes
and layout there): x, y, xhat, dy, dx (rows, C) device arrays, row-major, the
per-channel vectors (C,); a channels-last sequence (n, L, C) is passed as its
(n * L, C) rows.

Statistics (``_stats_kernel``, ``_grad_sums_kernel``): a block of (TX, TY)
threads takes TX consecutive channels (a warp reads a contiguous row segment)
and block-strides over the channels; thread (tx, ty) adds rows ty, ty + TY,
... of channel c0 + tx in float64, then the TY partial sums of a channel are
folded by a fixed tree in shared memory (``column_total``), as the dense
column sums do. Training takes two such passes (the mean, then the squared
deviations from it) in one kernel. No atomics: the same input and launch
sizes give the same bits every run; the order differs from the reference's
row-by-row sum, so results agree with it to rounding.

The elementwise parts (xhat and y, the evaluation output, dx) are grid-stride
kernels over the flat rows * C elements, element i in channel i % C. The
training mean, needed by the elementwise kernel in x's dtype, goes through a
scratch buffer.
"""
import functools
import math

import numpy as np
from numba import cuda, float64

from . import _config as cfg
from .memory import flat, scratch


@cuda.jit(**cfg.DEVICE)
def column_total(buf, tx, ty, ty_n):
    """The sum of buf[0:ty_n, tx] (ty_n a power of two), folded by a fixed tree:
    buf[ty, tx] += buf[ty + s, tx] for s = ty_n/2, ..., 1. Every thread of the block
    must call it, and gets its column's total; buf is free again on return."""
    cuda.syncthreads()
    s = ty_n // 2
    while s > 0:
        if ty < s:
            buf[ty, tx] += buf[ty + s, tx]
        cuda.syncthreads()
        s //= 2
    total = buf[0, tx]
    cuda.syncthreads()
    return total


@functools.lru_cache(maxsize=None)
def _stats_kernel(tx_n, ty_n):
    @cuda.jit(**cfg.kernel(launch_bounds=tx_n * ty_n))
    def stats_kernel(x, mean_out, inv_std, running_mean, running_var, momentum, eps):
        """Per channel c: mean and biased var (float64), inv_std[c] = 1 / sqrt(var + eps),
        mean_out[c] = mean (x's dtype), the running statistics updated."""
        buf = cuda.shared.array((ty_n, tx_n), float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        rows, n_ch = x.shape
        for c0 in range(cuda.blockIdx.x * tx_n, n_ch, cuda.gridDim.x * tx_n):
            c = c0 + tx
            acc = 0.0
            if c < n_ch:
                for r in range(ty, rows, ty_n):
                    acc += float64(x[r, c])
            buf[ty, tx] = acc
            mean = column_total(buf, tx, ty, ty_n) / rows
            acc = 0.0
            if c < n_ch:
                for r in range(ty, rows, ty_n):
                    d = float64(x[r, c]) - mean
                    acc += d * d
            buf[ty, tx] = acc
            var = column_total(buf, tx, ty, ty_n) / rows
            if ty == 0 and c < n_ch:
                inv_std[c] = 1.0 / math.sqrt(var + eps)
                mean_out[c] = mean
                running_mean[c] = (1.0 - momentum) * float64(running_mean[c]) + momentum * mean
                running_var[c] = ((1.0 - momentum) * float64(running_var[c])
                                  + momentum * (var * rows / (rows - 1)))

    return stats_kernel


@functools.lru_cache(maxsize=None)
def _grad_sums_kernel(tx_n, ty_n):
    @cuda.jit(**cfg.kernel(launch_bounds=tx_n * ty_n))
    def grad_sums_kernel(dy, xhat, dgamma, dbeta):
        """Per channel c: dbeta[c] = sum_r dy, dgamma[c] = sum_r dy xhat (float64)."""
        buf = cuda.shared.array((ty_n, tx_n), float64)
        buf2 = cuda.shared.array((ty_n, tx_n), float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        rows, n_ch = dy.shape
        for c0 in range(cuda.blockIdx.x * tx_n, n_ch, cuda.gridDim.x * tx_n):
            c = c0 + tx
            acc = 0.0
            acc2 = 0.0
            if c < n_ch:
                for r in range(ty, rows, ty_n):
                    d = float64(dy[r, c])
                    acc += d
                    acc2 += d * float64(xhat[r, c])
            buf[ty, tx] = acc
            buf2[ty, tx] = acc2
            cuda.syncthreads()
            s = ty_n // 2
            while s > 0:
                if ty < s:
                    buf[ty, tx] += buf[ty + s, tx]
                    buf2[ty, tx] += buf2[ty + s, tx]
                cuda.syncthreads()
                s //= 2
            if ty == 0 and c < n_ch:
                dbeta[c] = buf[0, tx]
                dgamma[c] = buf2[0, tx]
            cuda.syncthreads()

    return grad_sums_kernel


@cuda.jit(**cfg.kernel())
def normalize_kernel(x, gamma, beta, mean, inv_std, xhat, y, n_ch):
    """xhat[i] = (x[i] - mean[c]) inv_std[c], y[i] = gamma[c] xhat[i] + beta[c], c = i % C."""
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        c = i % n_ch
        xh = (x[i] - mean[c]) * inv_std[c]
        xhat[i] = xh
        y[i] = gamma[c] * xh + beta[c]


@cuda.jit(**cfg.kernel())
def eval_kernel(x, gamma, beta, y, running_mean, running_var, eps, n_ch):
    """y[i] = gamma[c] ((x[i] - running_mean[c]) s) + beta[c], s = 1 / sqrt(running_var[c] + eps)
    (float64, then cast), c = i % C."""
    dt = y.dtype
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        c = i % n_ch
        s = dt.type(1.0 / math.sqrt(float64(running_var[c]) + eps))
        y[i] = gamma[c] * ((x[i] - running_mean[c]) * s) + beta[c]


@cuda.jit(**cfg.kernel())
def input_grad_kernel(dy, xhat, inv_std, gamma, dgamma, dbeta, dx, n_ch, n):
    """dx[i] = (inv_std[c] / n) ((n g - gamma[c] dbeta[c]) - xhat[i] (gamma[c] dgamma[c])),
    g = dy[i] gamma[c], c = i % C (dx may be dy)."""
    for i in range(cuda.grid(1), dx.shape[0], cuda.gridsize(1)):
        c = i % n_ch
        g = dy[i] * gamma[c]
        dx[i] = (inv_std[c] / n) * ((n * g - gamma[c] * dbeta[c]) - xhat[i] * (gamma[c] * dgamma[c]))


def _stats_grid(n_ch):
    return max(1, min(cfg.MAX_BLOCKS, -(-n_ch // cfg.COLSUM_TX)))


def batchnorm_forward_train(x, gamma, beta, y, xhat, inv_std, running_mean, running_var,
                            momentum, eps):
    """Batch statistics, xhat = (x - mean) inv_std, y = gamma xhat + beta; running
    statistics updated (rows >= 2)."""
    rows, n_ch = x.shape
    if rows == 0 or n_ch == 0:
        return
    mean = scratch("batchnorm_mean", n_ch, x.dtype)
    tx_n, ty_n = cfg.COLSUM_TX, cfg.COLSUM_TY
    _stats_kernel(tx_n, ty_n)[_stats_grid(n_ch), (tx_n, ty_n)](
        x, mean, inv_std, running_mean, running_var, float(momentum), float(eps))
    normalize_kernel[cfg.grid(x.size), cfg.TPB](flat(x), gamma, beta, mean, inv_std, flat(xhat),
                                                 flat(y), n_ch)


def batchnorm_forward_eval(x, gamma, beta, y, running_mean, running_var, eps):
    """y = gamma ((x - running_mean) s) + beta, s = 1 / sqrt(running_var + eps)."""
    if x.size == 0:
        return
    eval_kernel[cfg.grid(x.size), cfg.TPB](flat(x), gamma, beta, flat(y), running_mean, running_var,
                                            float(eps), x.shape[1])


def batchnorm_backward(dy, xhat, inv_std, gamma, dx, dgamma, dbeta):
    """dbeta = sum dy, dgamma = sum dy xhat (float64, fixed order); dx, unless it is empty,
    = (inv_std / n) ((n g - gamma dbeta) - xhat (gamma dgamma)), g = dy gamma. dx may be dy."""
    rows, n_ch = dy.shape
    if n_ch == 0:
        return
    if rows == 0:
        zeros = np.zeros(n_ch, dgamma.dtype)
        dgamma.copy_to_device(zeros)
        dbeta.copy_to_device(zeros)
        return
    tx_n, ty_n = cfg.COLSUM_TX, cfg.COLSUM_TY
    _grad_sums_kernel(tx_n, ty_n)[_stats_grid(n_ch), (tx_n, ty_n)](dy, xhat, dgamma, dbeta)
    if dx.size:
        input_grad_kernel[cfg.grid(dx.size), cfg.TPB](flat(dy), flat(xhat), inv_std, gamma, dgamma,
                                                       dbeta, flat(dx), n_ch, dy.dtype.type(rows))
