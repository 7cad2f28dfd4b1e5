"""Matrix products for the dense kernels: BLAS for large ones, loops for small.

``np.dot(a, b, out)`` inside @njit calls BLAS gemm directly (no temporary).
For the tiny products of small networks and batches of a few rows, the call
into BLAS costs more than the arithmetic, so products below
``SMALL_MATMUL_FLOPS`` multiply-adds run as plain loops that LLVM vectorises
along the contiguous dimension. Either way the result is deterministic.
"""
import numpy as np
from numba import njit

from ._config import KERNEL, REDUCTION, SMALL_MATMUL_FLOPS


@njit(**KERNEL)
def matmul(a, b, out):
    """out = a @ b; a: (n, k), b: (k, m), out: (n, m)."""
    n, k = a.shape
    m = b.shape[1]
    if n * k * m > SMALL_MATMUL_FLOPS:
        np.dot(a, b, out)
        return
    out[:, :] = 0
    for i in range(n):
        for p in range(k):
            aip = a[i, p]
            for j in range(m):
                out[i, j] += aip * b[p, j]


@njit(**KERNEL)
def matmul_tn(a, b, out):
    """out = a^T @ b; a: (n, k), b: (n, m), out: (k, m)."""
    n, k = a.shape
    m = b.shape[1]
    if n * k * m > SMALL_MATMUL_FLOPS:
        np.dot(a.T, b, out)
        return
    out[:, :] = 0
    for i in range(n):
        for p in range(k):
            aip = a[i, p]
            for j in range(m):
                out[p, j] += aip * b[i, j]


@njit(**REDUCTION)
def matmul_nt(a, b, out):
    """out = a @ b^T; a: (n, m), b: (k, m), out: (n, k)."""
    n, m = a.shape
    k = b.shape[0]
    if n * k * m > SMALL_MATMUL_FLOPS:
        np.dot(a, b.T, out)
        return
    for i in range(n):
        for p in range(k):
            acc = out.dtype.type(0)
            for j in range(m):
                acc += a[i, j] * b[p, j]
            out[i, p] = acc
