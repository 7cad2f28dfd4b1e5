"""Losses fused with the last activation, as @njit kernels.

Same names and semantics as ``backends.reference.losses`` (formulas there):
each writes dL/d(output) into ``dout``, the mean loss into result[0] and the
number of correct predictions into result[1]. Row losses are computed in the
data's dtype and summed in float64. The exponentials of the softmax and of
binary cross-entropy are ``_math._exp_neg`` (within 1.1 ulps of libm's exp, and
vectorisable: measured on 10 classes in float32, cross-entropy took 52 ns per row
instead of 89 at batch 1, and 33 instead of 45 at batch 32).

``weighted_loss_forward_backward`` adds one weight per row (Keras'
sample_weight: L = 1/n sum_i w_i l_i, each row's gradient times w_i, the
correct count unweighted); with an empty ``weights`` array it calls the
unweighted kernels, so its bits are ``loss_forward_backward``'s. The two
dispatchers are kept apart: the fused training loops that call only the
unweighted one then compile none of the weighted kernels, and the extra call
level is not paid (measured in a tight @njit loop over the 64-32-10 MLP's
(n, 10) output: routing loss_forward_backward through the weighted one with an
empty array took mse at batch 1 from 35 to 55-75 ns, cross-entropy from 96 to
117-137 ns; at batch 32 the difference was within noise).
"""
import numpy as np
from numba import njit

from ..codes import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, HUBER, MAE, MSE
from ._config import REDUCTION
from ._math import _exp_neg


@njit(**REDUCTION)
def mse(out, target, dout, result):
    """Mean squared error."""
    n, k = out.shape
    scale = out.dtype.type(2) / out.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            diff = out[i, j] - target[i, j]
            total += diff * diff
            dout[i, j] = diff * scale
    result[0] = total / (n * k)
    result[1] = 0.0


@njit(**REDUCTION)
def mae(out, target, dout, result):
    """Mean absolute error; the gradient's sign(0) is 0."""
    n, k = out.shape
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    scale = one / out.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            diff = out[i, j] - target[i, j]
            total += abs(diff)
            g = one if diff > zero else (-one if diff < zero else (zero if diff == zero else diff))
            dout[i, j] = g * scale
    result[0] = total / (n * k)
    result[1] = 0.0


@njit(**REDUCTION)
def huber(out, target, dout, result):
    """Huber loss with delta = 1."""
    n, k = out.shape
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    half = out.dtype.type(0.5)
    scale = one / out.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            diff = out[i, j] - target[i, j]
            a = abs(diff)
            if a <= one:
                total += half * (diff * diff)
                g = diff
            else:  # |d| > 1, or NaN (passed on by both terms)
                total += a - half
                g = one if diff > zero else (-one if diff < zero else diff)
            dout[i, j] = g * scale
    result[0] = total / (n * k)
    result[1] = 0.0


@njit(**REDUCTION)
def binary_cross_entropy(z, target, dz, result):
    """Sigmoid + binary cross-entropy from logits."""
    n, k = z.shape
    one = z.dtype.type(1)
    zero = z.dtype.type(0)
    inv = one / z.dtype.type(n * k)
    total = 0.0
    correct = 0
    for i in range(n):
        for j in range(k):
            v, t = z[i, j], target[i, j]
            e = _exp_neg(-abs(v))
            total += (v if v > 0 else zero) - v * t + np.log1p(e)
            s = (one if v >= 0 else e) / (one + e)
            dz[i, j] = (s - t) * inv
            correct += (v > 0) == (t > 0.5)
    result[0] = total / (n * k)
    result[1] = correct


@njit(**REDUCTION)
def cross_entropy(z, labels, dz, result):
    """Softmax + negative log-likelihood from logits and integer labels."""
    n, c = z.shape
    inv = z.dtype.type(1) / z.dtype.type(n)
    total = 0.0
    correct = 0
    for i in range(n):
        m = z[i, 0]
        best = 0
        for j in range(1, c):
            if z[i, j] > m:
                m = z[i, j]
                best = j
        s = z.dtype.type(0)
        for j in range(c):
            e = _exp_neg(z[i, j] - m)
            dz[i, j] = e
            s += e
        label = labels[i]
        total += np.log(s) + m - z[i, label]
        correct += best == label
        scale = inv / s
        for j in range(c):
            dz[i, j] *= scale
        dz[i, label] -= inv
    result[0] = total / n
    result[1] = correct


# ---- with sample weights (formulas in the reference's docstring) ------------------------------

@njit(**REDUCTION)
def _weighted_mse(out, target, weights, dout, result):
    n, k = out.shape
    scale = out.dtype.type(2) / out.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        w = weights[i]
        w64 = np.float64(w)
        row_scale = scale * w
        for j in range(k):
            diff = out[i, j] - target[i, j]
            total += w64 * (diff * diff)
            dout[i, j] = diff * row_scale
    result[0] = total / (n * k)
    result[1] = 0.0


@njit(**REDUCTION)
def _weighted_mae(out, target, weights, dout, result):
    n, k = out.shape
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    scale = one / out.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        w = weights[i]
        w64 = np.float64(w)
        row_scale = scale * w
        for j in range(k):
            diff = out[i, j] - target[i, j]
            total += w64 * abs(diff)
            g = one if diff > zero else (-one if diff < zero else (zero if diff == zero else diff))
            dout[i, j] = g * row_scale
    result[0] = total / (n * k)
    result[1] = 0.0


@njit(**REDUCTION)
def _weighted_huber(out, target, weights, dout, result):
    n, k = out.shape
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    half = out.dtype.type(0.5)
    scale = one / out.dtype.type(n * k)
    total = 0.0
    for i in range(n):
        w = weights[i]
        w64 = np.float64(w)
        row_scale = scale * w
        for j in range(k):
            diff = out[i, j] - target[i, j]
            a = abs(diff)
            if a <= one:
                total += w64 * (half * (diff * diff))
                g = diff
            else:
                total += w64 * (a - half)
                g = one if diff > zero else (-one if diff < zero else diff)
            dout[i, j] = g * row_scale
    result[0] = total / (n * k)
    result[1] = 0.0


@njit(**REDUCTION)
def _weighted_binary_cross_entropy(z, target, weights, dz, result):
    n, k = z.shape
    one = z.dtype.type(1)
    zero = z.dtype.type(0)
    inv = one / z.dtype.type(n * k)
    total = 0.0
    correct = 0
    for i in range(n):
        w = weights[i]
        w64 = np.float64(w)
        row_scale = inv * w
        for j in range(k):
            v, t = z[i, j], target[i, j]
            e = _exp_neg(-abs(v))
            total += w64 * ((v if v > 0 else zero) - v * t + np.log1p(e))
            s = (one if v >= 0 else e) / (one + e)
            dz[i, j] = (s - t) * row_scale
            correct += (v > 0) == (t > 0.5)
    result[0] = total / (n * k)
    result[1] = correct


@njit(**REDUCTION)
def _weighted_cross_entropy(z, labels, weights, dz, result):
    n, c = z.shape
    inv = z.dtype.type(1) / z.dtype.type(n)
    total = 0.0
    correct = 0
    for i in range(n):
        m = z[i, 0]
        best = 0
        for j in range(1, c):
            if z[i, j] > m:
                m = z[i, j]
                best = j
        s = z.dtype.type(0)
        for j in range(c):
            e = _exp_neg(z[i, j] - m)
            dz[i, j] = e
            s += e
        label = labels[i]
        w = weights[i]
        total += np.float64(w) * (np.log(s) + m - z[i, label])
        correct += best == label
        row_inv = inv * w
        scale = row_inv / s
        for j in range(c):
            dz[i, j] *= scale
        dz[i, label] -= row_inv
    result[0] = total / n
    result[1] = correct


@njit(**REDUCTION)
def loss_forward_backward(loss, out, target, labels, dout, result):
    """Dispatch on the loss code: ``target`` serves mse, mae, huber and BCE, ``labels``
    cross-entropy."""
    if loss == MSE:
        mse(out, target, dout, result)
    elif loss == BINARY_CROSS_ENTROPY:
        binary_cross_entropy(out, target, dout, result)
    elif loss == CROSS_ENTROPY:
        cross_entropy(out, labels, dout, result)
    elif loss == MAE:
        mae(out, target, dout, result)
    elif loss == HUBER:
        huber(out, target, dout, result)


@njit(**REDUCTION)
def weighted_loss_forward_backward(loss, out, target, labels, weights, dout, result):
    """loss_forward_backward with one weight per row of ``out`` (1-D, in out's dtype), or
    exactly loss_forward_backward when ``weights`` is empty."""
    if weights.shape[0] == 0:
        loss_forward_backward(loss, out, target, labels, dout, result)
        return
    if weights.shape[0] != out.shape[0]:
        raise ValueError("weights must have one entry per row of the batch, or none")
    if loss == MSE:
        _weighted_mse(out, target, weights, dout, result)
    elif loss == BINARY_CROSS_ENTROPY:
        _weighted_binary_cross_entropy(out, target, weights, dout, result)
    elif loss == CROSS_ENTROPY:
        _weighted_cross_entropy(out, labels, weights, dout, result)
    elif loss == MAE:
        _weighted_mae(out, target, weights, dout, result)
    elif loss == HUBER:
        _weighted_huber(out, target, weights, dout, result)


def batch_loss(loss, out, target, labels, dout, result):
    """loss_forward_backward called from Python (the model's evaluate): through the loss's
    C callback (``rules.builtin_loss``), the one the training loops call, so that evaluating
    compiles only this loss, not the dispatcher's five."""
    from .rules import builtin_loss as callback

    # the callback reads raw memory: C-ordered arrays of the dtypes it was compiled for
    for name, a, dtype in (("out", out, out.dtype), ("dout", dout, out.dtype),
                           ("result", result, np.float64)):
        if not (a.flags.c_contiguous and a.dtype == dtype):
            raise ValueError(f"batch_loss: {name} must be C-contiguous {np.dtype(dtype).name}, "
                             f"got {a.dtype} {'C' if a.flags.c_contiguous else 'strided'}")
    source = np.ascontiguousarray(labels, np.int64) if loss == CROSS_ENTROPY else \
        np.ascontiguousarray(target, out.dtype)
    shape = out.shape[:1] if loss == CROSS_ENTROPY else out.shape
    if source.shape != shape or dout.shape != out.shape:
        raise ValueError(f"batch_loss: out {out.shape}, dout {dout.shape} and targets "
                         f"{source.shape} do not match")
    callback(loss, False, out.dtype).ctypes(out.ctypes.data, source.ctypes.data, 0,
                                            dout.ctypes.data, result.ctypes.data, out.shape[0],
                                            out.shape[1], 0)
