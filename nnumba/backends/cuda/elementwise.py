"""Elementwise helpers of the op interpreter as grid-stride CUDA kernels (formulas
in the reference twin, ``backends.reference.elementwise``); device arrays."""
from numba import cuda

from . import _config as cfg
from .memory import flat


@cuda.jit(**cfg.kernel())
def add_kernel(a, b, y):
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        y[i] = a[i] + b[i]


@cuda.jit(**cfg.kernel())
def add_into_kernel(dst, src):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] += src[i]


@cuda.jit(**cfg.kernel())
def copy_kernel(src, dst):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


def add(a, b, y):
    """y = a + b."""
    if y.size:
        add_kernel[cfg.grid(y.size), cfg.TPB](flat(a), flat(b), flat(y))


def copy(src, dst):
    """dst = src."""
    if dst.size:
        copy_kernel[cfg.grid(dst.size), cfg.TPB](flat(src), flat(dst))


def add_into(dst, src):
    """dst += src."""
    if dst.size:
        add_into_kernel[cfg.grid(dst.size), cfg.TPB](flat(dst), flat(src))
