"""A Dense layer fused with its activation, as @njit kernels.

Same names and semantics as ``backends.reference.dense`` (formulas there). The
forward pass is one matrix product and one pass that adds the bias and applies
the activation; the backward pass scales dy by f'(z) in place, then two
products.
"""
from numba import njit

from ._config import KERNEL, REDUCTION
from ._matmul import matmul, matmul_nt, matmul_tn
from .activations import activation_backward, bias_activation_forward


@njit(**KERNEL)
def dense_forward(x, w, b, act, alpha, y):
    """y = f(x @ w + b)."""
    matmul(x, w, y)
    bias_activation_forward(act, alpha, b, y)


@njit(**KERNEL)
def dense_backward(x, y, act, alpha, dy, dw, db):
    """dy <- dz = dy * f'(z); dw = x^T dz; db = column sums of dz."""
    activation_backward(act, alpha, y, dy)
    matmul_tn(x, dy, dw)
    if db.shape[0]:
        column_sums(dy, db)


@njit(**REDUCTION)
def column_sums(a, out):
    """out[j] = sum_i a[i, j], rows added in order (deterministic)."""
    out[:] = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j] += a[i, j]


@njit(**KERNEL)
def dense_backward_input(dz, w, dx):
    """dx = dz @ w^T: the gradient passed on to the previous block."""
    matmul_nt(dz, w, dx)
