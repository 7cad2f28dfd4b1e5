"""Activation functions and their derivatives as @njit kernels.

Same names and semantics as ``backends.reference.activations`` (the formulas
are in its docstring). ``apply`` and ``derivative`` evaluate one element for
any activation code; they are inlined into the loops below, and since the code
does not change inside a loop, LLVM hoists the branch out of it (measured: as
fast as a loop written for one activation). ``one`` is 1 in the data's dtype,
so float32 data is computed in float32.
"""
import numpy as np
from numba import njit

from ..codes import IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH
from ._config import INLINE, KERNEL


@njit(**INLINE)
def apply(act, z, alpha, one):
    """f(z) for the activation with code ``act``."""
    if act == SIGMOID:
        e = np.exp(-abs(z))
        return (one if z >= 0 else e) / (one + e)
    if act == TANH:
        return np.tanh(z)
    if act == RELU:
        return one - one if z <= 0 else z  # NaN stays NaN, as with np.maximum
    if act == LEAKY_RELU:
        return z if z > 0 else alpha * z
    return z


@njit(**INLINE)
def derivative(act, y, alpha, one):
    """f'(z) from the output y = f(z)."""
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    if act == RELU:
        return one if y > 0 else one - one
    if act == LEAKY_RELU:
        return one if y > 0 else alpha
    return one


@njit(**KERNEL)
def activation_forward(act, alpha, z, y):
    """y = f(z) for the activation with code ``act``; y may be z (in place)."""
    one, a = y.dtype.type(1), y.dtype.type(alpha)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            y[i, j] = apply(act, z[i, j], a, one)


@njit(**KERNEL)
def bias_activation_forward(act, alpha, b, y):
    """y <- f(y + b) in one pass; an empty b means no bias."""
    if b.shape[0] == 0:
        activation_forward(act, alpha, y, y)
        return
    one, a = y.dtype.type(1), y.dtype.type(alpha)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = apply(act, y[i, j] + b[j], a, one)


@njit(**KERNEL)
def activation_backward(act, alpha, y, dy):
    """dy <- dy * f'(z), in place, with f'(z) computed from the output y = f(z)."""
    if act == IDENTITY:
        return
    one, a = y.dtype.type(1), y.dtype.type(alpha)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            dy[i, j] *= derivative(act, y[i, j], a, one)
