"""Elementwise helpers of the op interpreter as @njit kernels (formulas in the
reference twin, ``backends.reference.elementwise``); 2-D C-contiguous arrays."""
from numba import njit

from ._config import KERNEL


@njit(**KERNEL)
def add(a, b, y):
    """y = a + b."""
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = a[i, j] + b[i, j]


@njit(**KERNEL)
def copy(src, dst):
    """dst = src."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[i, j]


@njit(**KERNEL)
def add_into(dst, src):
    """dst += src."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] += src[i, j]
