"""Losses fused with the last activation, as CUDA kernels.

Same names and semantics as ``backends.reference.losses`` (formulas there):
each writes dL/d(output) into ``dout``, the mean loss into result[0] and the
number of correct predictions into result[1] (``result``: a float64 device
array). Row losses are computed in the data's dtype and summed in float64.

mse, mae, huber and binary cross-entropy are elementwise: one grid-stride
kernel (one per loss, built by ``_pointwise_kernel`` around the device function
``pointwise_loss``) writes the gradient and each block's partial sums (loss,
correct count), then ``gradients.finish_sums`` folds the partials in a fixed
order. Softmax cross-entropy gives each row to one block of CE_TPB threads
(max, argmax with the first maximum winning ties, sum of exponentials: block
reductions), which writes the row's gradient, loss and correctness; the rows
are then folded by the same fixed-order reduction. BCE uses
max(z, 0) - z t + log1p(exp(-|z|)), finite for logits of any size.

Sample weights (``weighted_loss_forward_backward``, ``weighted_loss_into``):
the same kernels built with ``weighted=True`` (a compile-time constant) read
w of each element's row, add float64(w) * term to the loss sums and write
g * (scale * w); an empty ``weights`` array runs the unweighted kernels, so its
bits are ``loss_forward_backward``'s.
"""
import functools
import math

import numpy as np
from numba import cuda, float64

from ..codes import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, HUBER, MAE, MSE
from . import _config as cfg
from .gradients import block_sum, block_sum2, finish_sums, partial_blocks
from .memory import flat, scratch

_POINTWISE = (MSE, MAE, HUBER, BINARY_CROSS_ENTROPY)


@cuda.jit(**cfg.DEVICE)
def pointwise_loss(loss, v, t, one, zero, half):
    """(term, g, hit) of an elementwise loss at output v and target t (one, zero, half:
    1, 0, 0.5 in their dtype): the loss is the mean of the terms, dL/dv = g * c / (n k)
    with c = 2 for mse and 1 otherwise, and hit (BCE only) says the prediction is correct.
    sign(0) = 0; NaN passes through term and g."""
    if loss == BINARY_CROSS_ENTROPY:
        e = math.exp(-abs(v))
        term = (v if v > zero else zero) - v * t + math.log1p(e)
        s = (one if v >= zero else e) / (one + e)
        return term, s - t, (v > zero) == (t > half)
    d = v - t
    if loss == MSE:
        return d * d, d, False
    a = abs(d)
    sign = one if d > zero else (-one if d < zero else (zero if d == zero else d))
    if loss == MAE:
        return a, sign, False
    # HUBER, delta = 1
    if a <= one:
        return half * (d * d), d, False
    return a - half, sign, False


@functools.lru_cache(maxsize=None)
def _pointwise_kernel(loss, weighted, tpb):
    counts = loss == BINARY_CROSS_ENTROPY

    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def pointwise_loss_kernel(out, target, weights, k, dout, scale, partial):
        """dout = g * scale (times the row's weight w when weighted); partial[:, block] =
        this block's (sum of terms (times w, in float64), correct count)."""
        loss_buf = cuda.shared.array(tpb, float64)
        hit_buf = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        one = out.dtype.type(1)
        zero = out.dtype.type(0)
        half = out.dtype.type(0.5)
        acc = 0.0
        hits = 0.0
        for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            term, g, hit = pointwise_loss(loss, out[i], target[i], one, zero, half)
            if weighted:
                w = weights[i // k]
                acc += float64(w) * float64(term)
                dout[i] = g * (scale * w)
            else:
                acc += float(term)
                dout[i] = g * scale
            if hit:
                hits += 1.0
        loss_buf[tid] = acc
        if counts:
            hit_buf[tid] = hits
            total, correct = block_sum2(loss_buf, hit_buf, tid, tpb)
        else:
            total = block_sum(loss_buf, tid, tpb)
            correct = 0.0
        if tid == 0:
            partial[0, cuda.blockIdx.x] = total
            partial[1, cuda.blockIdx.x] = correct

    return pointwise_loss_kernel


@functools.lru_cache(maxsize=None)
def _ce_kernel(tpb, weighted=False):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def cross_entropy_kernel(z, labels, weights, dz, inv, rowsum):
        """One block per row (grid-stride over rows): dz = (softmax(z) - onehot) * iw with
        iw = inv (times the row's weight w when weighted); rowsum[0, r] = logsumexp(z_r) -
        z_r[label] (times w, in float64), rowsum[1, r] = (argmax z_r == label)."""
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
            if weighted:
                iw = inv * weights[r]
            else:
                iw = inv
            scale = iw / total
            for j in range(tid, c, tpb):
                g = dz[r, j] * scale
                if j == label:
                    g -= iw
                dz[r, j] = g
            if tid == 0:
                if weighted:
                    rowsum[0, r] = float64(weights[r]) * float64(math.log(total) + m - z[r, label])
                else:
                    rowsum[0, r] = float(math.log(total) + m - z[r, label])
                rowsum[1, r] = 1.0 if arg == label else 0.0
            cuda.syncthreads()  # val, idx and acc are reused by the next row

    return cross_entropy_kernel


def _no_weights(dtype):
    """A stand-in for the weights argument of an unweighted kernel (never read)."""
    return scratch("loss_no_weights", (1,), dtype)


def _pointwise(loss, out, target, weights, dout, result, base=0):
    """An elementwise loss; weights None: unweighted."""
    n, k = out.shape
    size = n * k
    scale = out.dtype.type(2 if loss == MSE else 1) / out.dtype.type(size)
    blocks = partial_blocks(size)
    partial = scratch("loss_partial", (2, blocks), np.float64)
    if size:
        weighted = weights is not None
        kernel = _pointwise_kernel(loss, weighted, cfg.REDUCE_TPB)
        kernel[blocks, cfg.REDUCE_TPB](flat(out), flat(target),
                                       weights if weighted else _no_weights(out.dtype), int(k),
                                       flat(dout), scale, partial)
    finish_sums(partial, blocks if size else 0, result, base, size)


def _cross_entropy(z, labels, weights, dz, result, base=0):
    """Softmax cross-entropy; weights None: unweighted."""
    n = z.shape[0]
    rowsum = scratch("ce_rows", (2, max(n, 1)), np.float64)
    if n:
        inv = z.dtype.type(1) / z.dtype.type(n)
        weighted = weights is not None
        _ce_kernel(cfg.CE_TPB, weighted)[min(n, cfg.MAX_BLOCKS), cfg.CE_TPB](
            z, labels, weights if weighted else _no_weights(z.dtype), dz, inv, rowsum)
    finish_sums(rowsum, n, result, base, n)


def mse(out, target, dout, result):
    """Mean squared error; see the module docstring."""
    _pointwise(MSE, out, target, None, dout, result)


def mae(out, target, dout, result):
    """Mean absolute error; see the module docstring."""
    _pointwise(MAE, out, target, None, dout, result)


def huber(out, target, dout, result):
    """Huber loss with delta = 1; see the module docstring."""
    _pointwise(HUBER, out, target, None, dout, result)


def binary_cross_entropy(z, target, dz, result):
    """Sigmoid + binary cross-entropy from logits; see the module docstring."""
    _pointwise(BINARY_CROSS_ENTROPY, z, target, None, dz, result)


def cross_entropy(z, labels, dz, result):
    """Softmax + negative log-likelihood from logits; see the module docstring."""
    _cross_entropy(z, labels, None, dz, result)


def weighted_loss_into(loss, out, target, labels, weights, dout, result, base):
    """As weighted_loss_forward_backward, writing the mean loss to result[base] and the
    correct count to result[base + 1] (result: a flat float64 device array)."""
    if weights.ndim != 1 or weights.shape[0] not in (0, out.shape[0]):
        raise ValueError(f"weights must be a 1-D array with one entry per row of the batch "
                         f"({out.shape[0]}) or empty, got shape {weights.shape}")
    w = weights if weights.shape[0] else None
    if loss in _POINTWISE:
        _pointwise(loss, out, target, w, dout, result, base)
    elif loss == CROSS_ENTROPY:
        _cross_entropy(out, labels, w, dout, result, base)
    else:
        raise ValueError(f"unknown loss code {loss}")


def loss_into(loss, out, target, labels, dout, result, base):
    """As loss_forward_backward, writing the mean loss to result[base] and the correct
    count to result[base + 1] (result: a flat float64 device array, e.g. the stats table)."""
    if loss in _POINTWISE:
        _pointwise(loss, out, target, None, dout, result, base)
    elif loss == CROSS_ENTROPY:
        _cross_entropy(out, labels, None, dout, result, base)
    else:
        raise ValueError(f"unknown loss code {loss}")


def loss_forward_backward(loss, out, target, labels, dout, result):
    """Dispatch on the loss code: ``target`` serves mse, mae, huber and BCE, ``labels``
    cross-entropy."""
    loss_into(loss, out, target, labels, dout, result, 0)


def weighted_loss_forward_backward(loss, out, target, labels, weights, dout, result):
    """loss_forward_backward with one weight per row of ``out`` (1-D, in out's dtype), or
    exactly loss_forward_backward when ``weights`` is empty."""
    weighted_loss_into(loss, out, target, labels, weights, dout, result, 0)


# What the model calls from Python to evaluate a batch (every backend has it: on cpu it goes
# through the loss's C callback); here, the dispatcher itself.
batch_loss = loss_forward_backward
