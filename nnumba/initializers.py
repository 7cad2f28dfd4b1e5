"""Weight initialisers: W (fan_in x fan_out) drawn from the model's seeded generator.

=========  ======================================  ===============================
name       distribution                            suits
=========  ======================================  ===============================
xavier     U(-a, a), a = sqrt(6 / (fan_in + fan_out))   sigmoid, tanh, identity
           (Glorot and Bengio 2010; Keras' default, torch xavier_uniform_)
he         N(0, 2 / fan_in)                        ReLU, LeakyReLU
           (He et al. 2015; torch kaiming_normal_)
lecun      N(0, 1 / fan_in)                        (LeCun et al. 1998)
normal     N(0, 0.01^2)                            the classic small init; shows vanishing gradients
zeros      0                                       biases; a network of zeros never breaks symmetry
=========  ======================================  ===============================

Xavier keeps the variance of activations and gradients roughly constant through
sigmoid/tanh layers; He does the same for ReLU, whose output has half the
variance of its input. Biases start at zero.

A custom initialiser is any callable ``init(fan_in, fan_out, rng) -> array`` of
shape (fan_in, fan_out), with ``rng`` a ``numpy.random.Generator``.
"""
import numpy as np


def xavier(fan_in, fan_out, rng):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def he(fan_in, fan_out, rng):
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def lecun(fan_in, fan_out, rng):
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(1.0 / fan_in)


def normal(fan_in, fan_out, rng):
    return rng.standard_normal((fan_in, fan_out)) * 0.01


def zeros(fan_in, fan_out, rng):
    return np.zeros((fan_in, fan_out))


INITIALIZERS = {"xavier": xavier, "he": he, "lecun": lecun, "normal": normal, "zeros": zeros}
