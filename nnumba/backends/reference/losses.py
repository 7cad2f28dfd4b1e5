"""Losses fused with the last activation, value and gradient from raw outputs.

All losses are means over the batch (PyTorch's ``reduction="mean"``). Each
kernel writes dL/d(output) into ``dout`` and two numbers into ``result``
(float64, length >= 2): result[0] the mean loss, result[1] the number of
correct predictions (0 for mse, mae and huber, which have no accuracy).

mse (out, target: (n, k)):
    L = 1/(n k) sum (out - target)^2
    dL/dout = 2 (out - target) / (n k)

mae, the mean absolute error (torch's L1Loss; Keras' MeanAbsoluteError, which
averages over the outputs and then over the batch, is the same number):
    L = 1/(n k) sum |out - target|
    dL/dout = sign(out - target) / (n k), with sign(0) = 0 (torch's subgradient)

huber with delta = 1 (torch's HuberLoss(delta=1.0); Keras' Huber likewise), d = out - target:
    L = 1/(n k) sum h(d),  h(d) = d^2 / 2 where |d| <= 1, |d| - 1/2 elsewhere
    dL/dout = h'(d) / (n k),  h'(d) = d where |d| <= 1, sign(d) elsewhere
    (both pieces meet at |d| = 1 with value 1/2 and slope sign(d): h is C^1.)

binary cross-entropy from logits z (Bernoulli likelihood, torch's BCEWithLogitsLoss):
    L = 1/(n k) sum [ max(z, 0) - z t + log(1 + exp(-|z|)) ]
      = -1/(n k) sum [ t log s(z) + (1 - t) log(1 - s(z)) ]   with s the sigmoid,
    written so that it stays finite for |z| up to 1e4 and beyond;
    dL/dz = (s(z) - t) / (n k); a prediction is correct when (z > 0) == (t > 0.5).

softmax cross-entropy from logits z (n, c) and integer labels y (categorical likelihood):
    L = 1/n sum_i [ logsumexp(z_i) - z_i[y_i] ],  logsumexp(z) = m + log sum exp(z - m), m = max z
    dL/dz = (softmax(z) - onehot(y)) / n; a prediction is correct when argmax z_i == y_i
    (the first maximum wins ties).

Row losses are computed in the data's dtype and summed in float64. The
gradient's 1/(n k) (2/(n k) for mse, 1/n for cross-entropy) is one factor
formed in the data's dtype.

Sample weights (``weighted_loss_forward_backward``; Keras' ``sample_weight``):
with w_i the weight of row i and l_i that row's own loss (the mean of its k
elementwise terms for mse, mae, huber and BCE; its -log softmax for
cross-entropy),

    L = 1/n sum_i w_i l_i        dL/dout_i = w_i * (the unweighted dL/dout_i)

so weights of 1 give the unweighted loss, and the mean is over the n rows
whatever the weights sum to (Keras' "sum over batch size", not a weighted
average). The loss sums the float64 products w_i * (elementwise term) and
divides by n k (n for cross-entropy); the gradient scales each row by the one
factor (its 1/(n k) times w_i) formed in the data's dtype. The correct count
stays unweighted. An empty ``weights`` array means unweighted: the result is
then exactly ``loss_forward_backward``'s, bit for bit.
"""
import numpy as np

from ..codes import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, HUBER, MAE, MSE
from .activations import sigmoid


def mse(out, target, dout, result):
    """Mean squared error; see the module docstring."""
    diff = out - target
    result[0] = np.sum(diff * diff, dtype=np.float64) / diff.size
    result[1] = 0.0
    dout[...] = diff * (out.dtype.type(2) / out.dtype.type(diff.size))


def _terms(loss, out, target):
    """(e, g, c) for an elementwise loss: its terms e (the loss is their mean), the
    gradient's unscaled part g (dL/dout = g * c / (n k)) and the constant c; e, g in
    the data's dtype."""
    dt = out.dtype.type
    if loss == BINARY_CROSS_ENTROPY:
        e = np.maximum(out, 0) - out * target + np.log1p(np.exp(-np.abs(out)))
        return e, sigmoid(out) - target, 1
    d = out - target
    if loss == MSE:
        return d * d, d, 2
    if loss == MAE:
        return np.abs(d), np.sign(d), 1
    # HUBER, delta = 1
    a = np.abs(d)
    inside = a <= dt(1)
    return np.where(inside, dt(0.5) * (d * d), a - dt(0.5)), np.where(inside, d, np.sign(d)), 1


def _unweighted_terms(loss, out, target, dout, result):
    e, g, c = _terms(loss, out, target)
    result[0] = np.sum(e, dtype=np.float64) / e.size
    result[1] = 0.0
    dout[...] = g * (out.dtype.type(c) / out.dtype.type(e.size))


def mae(out, target, dout, result):
    """Mean absolute error; see the module docstring."""
    _unweighted_terms(MAE, out, target, dout, result)


def huber(out, target, dout, result):
    """Huber loss with delta = 1; see the module docstring."""
    _unweighted_terms(HUBER, out, target, dout, result)


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


def _weighted_terms(loss, out, target, weights, dout, result):
    """An elementwise loss with row weights; see the module docstring."""
    e, g, c = _terms(loss, out, target)
    w64 = weights.astype(np.float64)[:, None]
    result[0] = np.sum(w64 * e, dtype=np.float64) / e.size
    result[1] = np.count_nonzero((out > 0) == (target > 0.5)) if loss == BINARY_CROSS_ENTROPY else 0.0
    row_scale = (out.dtype.type(c) / out.dtype.type(e.size)) * weights
    dout[...] = g * row_scale[:, None]


def _weighted_cross_entropy(z, labels, weights, dz, result):
    """Softmax cross-entropy with row weights; see the module docstring."""
    n = z.shape[0]
    rows = np.arange(n)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    row_loss = np.log(s[:, 0]) + m[:, 0] - z[rows, labels]
    result[0] = np.sum(weights.astype(np.float64) * row_loss, dtype=np.float64) / n
    result[1] = np.count_nonzero(np.argmax(z, axis=1) == labels)
    dz[...] = e / s
    dz[rows, labels] -= 1
    dz *= ((z.dtype.type(1) / z.dtype.type(n)) * weights)[:, None]


def loss_forward_backward(loss, out, target, labels, dout, result):
    """Dispatch on the loss code: ``target`` serves mse, mae, huber and BCE, ``labels``
    cross-entropy."""
    if loss == MSE:
        mse(out, target, dout, result)
    elif loss == MAE:
        mae(out, target, dout, result)
    elif loss == HUBER:
        huber(out, target, dout, result)
    elif loss == BINARY_CROSS_ENTROPY:
        binary_cross_entropy(out, target, dout, result)
    elif loss == CROSS_ENTROPY:
        cross_entropy(out, labels, dout, result)
    else:
        raise ValueError(f"unknown loss code {loss}")


def weighted_loss_forward_backward(loss, out, target, labels, weights, dout, result):
    """loss_forward_backward with one weight per row of ``out`` (1-D, in out's dtype),
    or unweighted, bit for bit, when ``weights`` is empty; see the module docstring."""
    if weights.ndim != 1 or weights.shape[0] not in (0, out.shape[0]):
        raise ValueError(f"weights must be a 1-D array with one entry per row of the batch "
                         f"({out.shape[0]}) or empty, got shape {weights.shape}")
    if weights.shape[0] == 0:
        loss_forward_backward(loss, out, target, labels, dout, result)
    elif loss in (MSE, MAE, HUBER, BINARY_CROSS_ENTROPY):
        _weighted_terms(loss, out, target, weights, dout, result)
    elif loss == CROSS_ENTROPY:
        _weighted_cross_entropy(out, labels, weights, dout, result)
    else:
        raise ValueError(f"unknown loss code {loss}")


# What the model calls from Python to evaluate a batch (every backend has it: on cpu it goes
# through the loss's C callback); here, the dispatcher itself.
batch_loss = loss_forward_backward
