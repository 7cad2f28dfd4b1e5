"""Where a backend keeps its arrays: for the reference backend, host memory.

Every backend's ``memory`` module has these functions, so the model
code allocates, uploads and downloads without knowing where arrays live.
"""
import numpy as np


def empty(shape, dtype):
    """A new uninitialised backend array."""
    return np.empty(shape, dtype)


def zeros(shape, dtype):
    """A new zero-filled backend array."""
    return np.zeros(shape, dtype)


def zeros_many(specs):
    """New zero-filled backend arrays of the (shape, dtype) pairs ``specs``."""
    return [zeros(shape, dtype) for shape, dtype in specs]


def to_backend(a):
    """A backend copy of the host array a (C-contiguous)."""
    return np.array(a, order="C", copy=True)


def asarray(a):
    """The host array a as a backend array, without a copy where none is needed."""
    return np.ascontiguousarray(a)


def to_host(a):
    """A host (NumPy) copy of the backend array a."""
    return np.array(a, copy=True)


def copy_from_host(dst, src):
    """dst[...] = src, for a backend array dst and a host array src of the same shape."""
    dst[...] = src


def copy_into(dst, src):
    """dst[...] = src, for two backend arrays of the same shape."""
    dst[...] = src
