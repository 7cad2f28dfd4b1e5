"""Activation functions and their derivatives as CUDA kernels.

Same names and semantics as ``backends.reference.activations`` (the formulas
are in its docstring): y = f(z) elementwise, and dy <- dy * f'(z) with f'(z)
computed from the output y. ``apply`` and ``derivative`` are device functions
that evaluate one element for any activation code; the dense kernels call them
in their epilogues. ``one`` is 1 in the data's dtype and ``alpha`` arrives
already cast to it, so float32 data is computed in float32.
"""
import math

from numba import cuda

from ..codes import IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH
from . import _config as cfg
from .memory import flat


@cuda.jit(**cfg.DEVICE)
def apply(act, z, alpha, one):
    """f(z) for the activation with code ``act``; the stable sigmoid never takes exp of a large z."""
    if act == SIGMOID:
        e = math.exp(-abs(z))
        if z >= 0:
            return one / (one + e)
        return e / (one + e)
    if act == TANH:
        return math.tanh(z)
    if act == RELU:
        if z <= 0:
            return one - one  # NaN falls through and stays NaN, as with np.maximum
        return z
    if act == LEAKY_RELU:
        if z > 0:
            return z
        return alpha * z
    return z


@cuda.jit(**cfg.DEVICE)
def derivative(act, y, alpha, one):
    """f'(z) from the output y = f(z)."""
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    if act == RELU:
        if y > 0:
            return one
        return one - one
    if act == LEAKY_RELU:
        if y > 0:
            return one
        return alpha
    return one


@cuda.jit(**cfg.kernel())
def activation_forward_kernel(act, alpha, z, y):
    """y[i] = f(z[i]) over flat arrays (z may be y)."""
    one = y.dtype.type(1)
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        y[i] = apply(act, z[i], alpha, one)


@cuda.jit(**cfg.kernel())
def activation_backward_kernel(act, alpha, y, dy):
    """dy[i] *= f'(z[i]) from y[i], over flat arrays."""
    one = y.dtype.type(1)
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        dy[i] *= derivative(act, y[i], alpha, one)


def activation_forward(act, alpha, z, y):
    """y = f(z) for the activation with code ``act``; y may be z (in place).

    z, y: (batch, features) device arrays. alpha: the slope of LeakyReLU for z < 0.
    """
    if y.size == 0:
        return
    activation_forward_kernel[cfg.grid(y.size), cfg.TPB](int(act), y.dtype.type(alpha), flat(z),
                                                           flat(y))


def activation_backward(act, alpha, y, dy):
    """dy <- dy * f'(z), in place, with f'(z) computed from the output y = f(z)."""
    if act == IDENTITY or y.size == 0:
        return
    activation_backward_kernel[cfg.grid(y.size), cfg.TPB](int(act), y.dtype.type(alpha), flat(y),
                                                            flat(dy))
