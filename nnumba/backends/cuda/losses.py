"""Losses fused with the last activation, as CUDA kernels.

Same names and semantics as ``backends.reference.losses`` (formulas there):
each writes dL/d(output) into ``dout``, the mean loss into result[0] and the
number of correct predictions into result[1] (``result``: a float64 device
array). Row losses are computed in the data's dtype and summed in float64.

mse and binary cross-entropy are elementwise: one grid-stride kernel writes
the gradient and each block's partial sums (loss, correct count), then
``gradients.finish_sums`` folds the partials in a fixed order. Softmax
cross-entropy gives each row to one block of CE_TPB threads (max, argmax with
the first maximum winning ties, sum of exponentials: block reductions), which
writes the row's gradient, loss and correctness; the rows are then folded by
the same fixed-order reduction. BCE uses max(z, 0) - z t + log1p(exp(-|z|)),
finite for logits of any size.
"""
import functools
import math

import numpy as np
from numba import cuda, float64

from ..codes import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, MSE
from . import _config as cfg
from .gradients import block_sum, block_sum2, finish_sums, partial_blocks
from .memory import flat, scratch


@functools.lru_cache(maxsize=None)
def _mse_kernel(tpb):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def mse_kernel(out, target, dout, scale, partial):
        """dout = (out - target) * scale; partial[0, block] = this block's sum of squares."""
        buf = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            diff = out[i] - target[i]
            acc += float(diff * diff)
            dout[i] = diff * scale
        buf[tid] = acc
        total = block_sum(buf, tid, tpb)
        if tid == 0:
            partial[0, cuda.blockIdx.x] = total
            partial[1, cuda.blockIdx.x] = 0.0

    return mse_kernel


@functools.lru_cache(maxsize=None)
def _bce_kernel(tpb):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def binary_cross_entropy_kernel(z, target, dz, inv, partial):
        """dz = (sigmoid(z) - t) * inv; partial[:, block] = (loss sum, correct count)."""
        loss_buf = cuda.shared.array(tpb, float64)
        hit_buf = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        one = z.dtype.type(1)
        zero = z.dtype.type(0)
        half = z.dtype.type(0.5)
        acc = 0.0
        hits = 0.0
        for i in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
            v = z[i]
            t = target[i]
            e = math.exp(-abs(v))
            acc += float((v if v > zero else zero) - v * t + math.log1p(e))
            s = (one if v >= zero else e) / (one + e)
            dz[i] = (s - t) * inv
            if (v > zero) == (t > half):
                hits += 1.0
        loss_buf[tid] = acc
        hit_buf[tid] = hits
        total, correct = block_sum2(loss_buf, hit_buf, tid, tpb)
        if tid == 0:
            partial[0, cuda.blockIdx.x] = total
            partial[1, cuda.blockIdx.x] = correct

    return binary_cross_entropy_kernel


@functools.lru_cache(maxsize=None)
def _ce_kernel(tpb):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def cross_entropy_kernel(z, labels, dz, inv, rowsum):
        """One block per row (grid-stride over rows): dz = softmax(z) * inv - onehot * inv;
        rowsum[0, r] = logsumexp(z_r) - z_r[label], rowsum[1, r] = (argmax z_r == label)."""
        val = cuda.shared.array(tpb, z.dtype)
        idx = cuda.shared.array(tpb, np.int64)
        acc = cuda.shared.array(tpb, z.dtype)
        tid = cuda.threadIdx.x
        n, c = z.shape
        zero = z.dtype.type(0)
        lowest = z.dtype.type(-math.inf)
        for r in range(cuda.blockIdx.x, n, cuda.gridDim.x):
            # max and first argmax: each thread scans its columns, then a fixed tree
            best = lowest
            best_j = c
            for j in range(tid, c, tpb):
                if z[r, j] > best:
                    best = z[r, j]
                    best_j = j
            val[tid] = best
            idx[tid] = best_j
            cuda.syncthreads()
            s = tpb // 2
            while s > 0:
                if tid < s:
                    v2 = val[tid + s]
                    j2 = idx[tid + s]
                    if v2 > val[tid] or (v2 == val[tid] and j2 < idx[tid]):
                        val[tid] = v2
                        idx[tid] = j2
                cuda.syncthreads()
                s //= 2
            m = val[0]
            arg = idx[0]
            # sum of exp(z - m), written into dz on the way
            part = zero
            for j in range(tid, c, tpb):
                e = math.exp(z[r, j] - m)
                dz[r, j] = e
                part += e
            acc[tid] = part
            cuda.syncthreads()
            s = tpb // 2
            while s > 0:
                if tid < s:
                    acc[tid] += acc[tid + s]
                cuda.syncthreads()
                s //= 2
            total = acc[0]
            label = labels[r]
            scale = inv / total
            for j in range(tid, c, tpb):
                g = dz[r, j] * scale
                if j == label:
                    g -= inv
                dz[r, j] = g
            if tid == 0:
                rowsum[0, r] = float(math.log(total) + m - z[r, label])
                rowsum[1, r] = 1.0 if arg == label else 0.0
            cuda.syncthreads()  # val, idx and acc are reused by the next row

    return cross_entropy_kernel


def _elementwise(kernel, out, target, dout, scalar, result, base, divisor):
    size = out.size
    blocks = partial_blocks(size)
    partial = scratch("loss_partial", (2, blocks), np.float64)
    if size:
        kernel(cfg.REDUCE_TPB)[blocks, cfg.REDUCE_TPB](flat(out), flat(target), flat(dout),
                                                       scalar, partial)
    finish_sums(partial, blocks if size else 0, result, base, divisor)


def _mse(out, target, dout, result, base=0):
    n, k = out.shape
    scale = out.dtype.type(2) / out.dtype.type(n * k)
    _elementwise(_mse_kernel, out, target, dout, scale, result, base, n * k)


def _binary_cross_entropy(z, target, dz, result, base=0):
    n, k = z.shape
    inv = z.dtype.type(1) / z.dtype.type(n * k)
    _elementwise(_bce_kernel, z, target, dz, inv, result, base, n * k)


def _cross_entropy(z, labels, dz, result, base=0):
    n = z.shape[0]
    rowsum = scratch("ce_rows", (2, max(n, 1)), np.float64)
    if n:
        inv = z.dtype.type(1) / z.dtype.type(n)
        _ce_kernel(cfg.CE_TPB)[min(n, cfg.MAX_BLOCKS), cfg.CE_TPB](z, labels, dz, inv, rowsum)
    finish_sums(rowsum, n, result, base, n)


def mse(out, target, dout, result):
    """Mean squared error; see the module docstring."""
    _mse(out, target, dout, result)


def binary_cross_entropy(z, target, dz, result):
    """Sigmoid + binary cross-entropy from logits; see the module docstring."""
    _binary_cross_entropy(z, target, dz, result)


def cross_entropy(z, labels, dz, result):
    """Softmax + negative log-likelihood from logits; see the module docstring."""
    _cross_entropy(z, labels, dz, result)


def loss_into(loss, out, target, labels, dout, result, base):
    """As loss_forward_backward, writing the mean loss to result[base] and the correct
    count to result[base + 1] (result: a flat float64 device array, e.g. the stats table)."""
    if loss == MSE:
        _mse(out, target, dout, result, base)
    elif loss == BINARY_CROSS_ENTROPY:
        _binary_cross_entropy(out, target, dout, result, base)
    elif loss == CROSS_ENTROPY:
        _cross_entropy(out, labels, dout, result, base)
    else:
        raise ValueError(f"unknown loss code {loss}")


def loss_forward_backward(loss, out, target, labels, dout, result):
    """Dispatch on the loss code: ``target`` serves mse and BCE, ``labels`` cross-entropy."""
    loss_into(loss, out, target, labels, dout, result, 0)
