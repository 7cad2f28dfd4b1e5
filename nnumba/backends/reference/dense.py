"""A Dense layer fused with the activation that follows it, in NumPy.

Forward (x: (batch, n_in), w: (n_in, n_out), b: (n_out,), y: (batch, n_out)):

    z = x @ w + b,    y = f(z)

Backward, given dy = dL/dy:

    dz = dy * f'(z)          (from y, see activations.py; written over dy)
    dw = x^T @ dz            (n_in, n_out)
    db = sum over rows of dz (n_out,)
    dx = dz @ w^T            (batch, n_in), only where a previous layer needs it

A layer without bias gets a zero-length ``b`` / ``db``.
"""
import numpy as np

from .activations import activation_backward, activation_forward


def dense_forward(x, w, b, act, alpha, y):
    """y = f(x @ w + b)."""
    np.matmul(x, w, out=y)
    if b.shape[0]:
        y += b
    activation_forward(act, alpha, y, y)


def dense_backward(x, y, act, alpha, dy, dw, db):
    """dy <- dz = dy * f'(z); dw = x^T dz; db = column sums of dz."""
    activation_backward(act, alpha, y, dy)
    np.matmul(x.T, dy, out=dw)
    if db.shape[0]:
        np.sum(dy, axis=0, out=db)


def dense_backward_input(dz, w, dx):
    """dx = dz @ w^T: the gradient passed on to the previous block."""
    np.matmul(dz, w.T, out=dx)
