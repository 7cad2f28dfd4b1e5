"""Losses fused with the last activation, value and gradient from raw outputs.

All losses are means over the batch (PyTorch's ``reduction="mean"``). Each
kernel writes dL/d(output) into ``dout`` and two numbers into ``result``
(float64, length >= 2): result[0] the mean loss, result[1] the number of
correct predictions (0 for mse, which has no accuracy).

mse (out, target: (n, k)):
    L = 1/(n k) sum (out - target)^2
    dL/dout = 2 (out - target) / (n k)

binary cross-entropy from logits z (Bernoulli likelihood, torch's BCEWithLogitsLoss):
    L = 1/(n k) sum [ max(z, 0) - z t + log(1 + exp(-|z|)) ]
      = -1/(n k) sum [ t log s(z) + (1 - t) log(1 - s(z)) ]   with s the sigmoid,
    written so that it stays finite for |z| up to 1e4 and beyond;
    dL/dz = (s(z) - t) / (n k); a prediction is correct when (z > 0) == (t > 0.5).

softmax cross-entropy from logits z (n, c) and integer labels y (categorical likelihood):
    L = 1/n sum_i [ logsumexp(z_i) - z_i[y_i] ],  logsumexp(z) = m + log sum exp(z - m), m = max z
    dL/dz = (softmax(z) - onehot(y)) / n; a prediction is correct when argmax z_i == y_i
    (the first maximum wins ties).

Row losses are computed in the data's dtype and summed in float64.
"""
import numpy as np

from ..codes import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, MSE
from .activations import sigmoid


def mse(out, target, dout, result):
    """Mean squared error; see the module docstring."""
    diff = out - target
    result[0] = np.sum(diff * diff, dtype=np.float64) / diff.size
    result[1] = 0.0
    dout[...] = diff * (out.dtype.type(2) / out.dtype.type(diff.size))


def binary_cross_entropy(z, target, dz, result):
    """Sigmoid + binary cross-entropy from logits; see the module docstring."""
    elementwise = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
    result[0] = np.sum(elementwise, dtype=np.float64) / z.size
    result[1] = np.count_nonzero((z > 0) == (target > 0.5))
    dz[...] = (sigmoid(z) - target) / z.dtype.type(z.size)


def cross_entropy(z, labels, dz, result):
    """Softmax + negative log-likelihood from logits; see the module docstring."""
    n = z.shape[0]
    rows = np.arange(n)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    row_loss = np.log(s[:, 0]) + m[:, 0] - z[rows, labels]
    result[0] = np.sum(row_loss, dtype=np.float64) / n
    result[1] = np.count_nonzero(np.argmax(z, axis=1) == labels)
    dz[...] = e / s
    dz[rows, labels] -= 1
    dz /= z.dtype.type(n)


def loss_forward_backward(loss, out, target, labels, dout, result):
    """Dispatch on the loss code: ``target`` serves mse and BCE, ``labels`` cross-entropy."""
    if loss == MSE:
        mse(out, target, dout, result)
    elif loss == BINARY_CROSS_ENTROPY:
        binary_cross_entropy(out, target, dout, result)
    elif loss == CROSS_ENTROPY:
        cross_entropy(out, labels, dout, result)
    else:
        raise ValueError(f"unknown loss code {loss}")
