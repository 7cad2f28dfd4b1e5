"""Matrix products for the dense kernels: BLAS for large ones, loops for small.

The large ones call BLAS gemm directly, into ``out`` (no temporary): NumPy's own
BLAS where it exports one (``_blas``), else the one ``np.dot`` uses.
For the tiny products of small networks, the call into BLAS costs more than
the arithmetic, so those products run as plain loops that LLVM vectorises along
the contiguous dimension (``loops_pay``); the transposed product of one row, an
outer product, is one vector store per block of a row (``_tiles.outer_product``).
Either way the result is deterministic.
"""
from numba import njit

from ._config import (BLAS_THREADED_MIN_FLOPS, INLINE, KERNEL, REDUCTION, SMALL_MATMUL_FLOPS,
                      TILED_MIN_ROWS, TILED_MIN_WIDTH, TINY_MATMUL_FLOPS)
from ._blas import gemm_nn, gemm_nt, gemm_tn
from ._tiles import outer_product


def loops_pay(n, k, m):
    """True when a product of n k m multiply-adds over a batch of n rows (the three
    products below take n from their first operand) runs faster as loops than in
    BLAS: one row and up to SMALL_MATMUL_FLOPS multiply-adds, or any product of up
    to TINY_MATMUL_FLOPS. Several rows of more go to BLAS, whose kernels keep a block of
    the result in registers (the loops store and reload it: measured, one thread,
    (32 x 32) @ (32 x 10) in 2.2 us as loops and 0.38 us in BLAS)."""
    flops = n * k * m
    return flops <= TINY_MATMUL_FLOPS or (n == 1 and flops <= SMALL_MATMUL_FLOPS)


_loops_pay = njit(**INLINE)(loops_pay)  # the kernels' copy; Python callers use loops_pay


def tiles_pay(n, k, m):
    """True when the products of a Dense layer (k inputs, m outputs) on n rows go to the
    parallel register-tiled products (``rules.builtin_products``) in a loop that has
    them: at least TILED_MIN_ROWS rows, BLAS_THREADED_MIN_FLOPS multiply-adds (smaller
    ones do not pay for the second thread), and k and m of at least TILED_MIN_WIDTH
    (a narrower result is mostly a tile's masked edge: measured, (100 x 100) @ (100 x
    10) in 19 us as tiles, 3 us in BLAS)."""
    return n >= TILED_MIN_ROWS and k >= TILED_MIN_WIDTH and m >= TILED_MIN_WIDTH and \
        n * k * m >= BLAS_THREADED_MIN_FLOPS


_tiles_pay = njit(**INLINE)(tiles_pay)  # the kernels' copy; Python callers use tiles_pay


@njit(**KERNEL)
def matmul(a, b, out):
    """out = a @ b; a: (n, k), b: (k, m), out: (n, m)."""
    n, k = a.shape
    m = b.shape[1]
    if not _loops_pay(n, k, m):
        gemm_nn(a, b, out)
        return
    # Rows of b are added into out[i] four at a time: each pass over out[i] is a
    # load and a store, and a store-to-load round trip costs more than 4 FMAs.
    k4 = k - k % 4
    for i in range(n):
        for j in range(m):
            out[i, j] = 0
        for p in range(0, k4, 4):
            a0, a1, a2, a3 = a[i, p], a[i, p + 1], a[i, p + 2], a[i, p + 3]
            for j in range(m):
                out[i, j] += a0 * b[p, j] + a1 * b[p + 1, j] + a2 * b[p + 2, j] + a3 * b[p + 3, j]
        for p in range(k4, k):
            aip = a[i, p]
            for j in range(m):
                out[i, j] += aip * b[p, j]


@njit(**KERNEL)
def matmul_tn(a, b, out):
    """out = a^T @ b; a: (n, k), b: (n, m), out: (k, m)."""
    n, k = a.shape
    m = b.shape[1]
    if n == 1:  # an outer product: one multiply per element, no sums
        outer_product(a, b, out)
        return
    if not _loops_pay(n, k, m):
        gemm_tn(a, b, out)
        return
    if n == 0:
        out[:, :] = 0
        return
    # the first row writes out (no zeroing pass), the others add to it
    for p in range(k):
        a0 = a[0, p]
        for j in range(m):
            out[p, j] = a0 * b[0, j]
    for i in range(1, n):
        for p in range(k):
            aip = a[i, p]
            for j in range(m):
                out[p, j] += aip * b[i, j]


@njit(**REDUCTION)
def matmul_nt(a, b, out):
    """out = a @ b^T; a: (n, m), b: (k, m), out: (n, k)."""
    n, m = a.shape
    k = b.shape[0]
    if not _loops_pay(n, k, m):
        gemm_nt(a, b, out)
        return
    for i in range(n):
        for p in range(k):
            acc = out.dtype.type(0)
            for j in range(m):
                acc += a[i, j] * b[p, j]
            out[i, p] = acc
