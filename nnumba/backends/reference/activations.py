"""Activation functions and their derivatives, in NumPy.

Each derivative is written in terms of the activation's *output* y = f(z), as
scikit-learn does, so the backward pass needs no copy of z:

=============  ===========================  ==============================
activation     y = f(z)                     f'(z) from y
=============  ===========================  ==============================
identity       z                            1
sigmoid        1 / (1 + exp(-z))            y (1 - y)   (at most 1/4, at z = 0)
tanh           tanh(z)                      1 - y^2
relu           max(z, 0)                    1 if y > 0 else 0
leaky_relu     z if z > 0 else alpha z      1 if y > 0 else alpha   (alpha >= 0)
=============  ===========================  ==============================

The sigmoid is evaluated in its stable form (never exp of a large positive
number): 1 / (1 + exp(-z)) for z >= 0 and exp(z) / (1 + exp(z)) for z < 0.
"""
import numpy as np

from ..codes import IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH


def sigmoid(z):
    """Stable logistic function 1 / (1 + exp(-z)), elementwise, in z's dtype."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def activation_forward(act, alpha, z, y):
    """y = f(z) for the activation with code ``act``; y may be z (in place).

    z, y: (batch, features). alpha: the slope of LeakyReLU for z < 0.
    """
    if act == IDENTITY:
        y[...] = z
    elif act == SIGMOID:
        y[...] = sigmoid(z)
    elif act == TANH:
        np.tanh(z, out=y)
    elif act == RELU:
        np.maximum(z, 0, out=y)
    elif act == LEAKY_RELU:
        y[...] = np.where(z > 0, z, alpha * z)
    else:
        raise ValueError(f"unknown activation code {act}")


def activation_backward(act, alpha, y, dy):
    """dy <- dy * f'(z), in place, with f'(z) computed from the output y = f(z).

    On return dy holds dL/dz, the gradient with respect to the pre-activation.
    """
    if act == IDENTITY:
        return
    if act == SIGMOID:
        dy *= y * (1 - y)
    elif act == TANH:
        dy *= 1 - y * y
    elif act == RELU:
        dy *= y > 0
    elif act == LEAKY_RELU:
        dy *= np.where(y > 0, 1, alpha).astype(dy.dtype)
    else:
        raise ValueError(f"unknown activation code {act}")
