"""Losses fused with the last activation, as @njit kernels.

Same names and semantics as ``backends.reference.losses`` (formulas there):
each writes dL/d(output) into ``dout``, the mean loss into result[0] and the
number of correct predictions into result[1]. Row losses are computed in the
data's dtype and summed in float64.
"""
import numpy as np
from numba import njit

from ..codes import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, MSE
from ._config import REDUCTION


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
            e = np.exp(-abs(v))
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
            e = np.exp(z[i, j] - m)
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


@njit(**REDUCTION)
def loss_forward_backward(loss, out, target, labels, dout, result):
    """Dispatch on the loss code: ``target`` serves mse and BCE, ``labels`` cross-entropy."""
    if loss == MSE:
        mse(out, target, dout, result)
    elif loss == BINARY_CROSS_ENTROPY:
        binary_cross_entropy(out, target, dout, result)
    elif loss == CROSS_ENTROPY:
        cross_entropy(out, labels, dout, result)
