"""The register-tiled products of ``backends.cpu._tiles`` against NumPy in float64.

Edge rows and columns (shapes that are not multiples of a tile), accumulation into
``out``, an empty sum, and the property the recurrent kernels rely on: an element's
bits depend only on its row and column, not on how the rows (or, for the transposed
product, the columns) are split between calls.
"""
import numpy as np
import pytest

from nnumba.backends.cpu._tiles import NN_VECTORS, tiled_matmul, tiled_matmul_nt, tiled_matmul_tn

SHAPES = [(1, 1, 1), (3, 5, 7), (4, 16, 64), (9, 33, 70), (13, 130, 21), (32, 128, 512)]
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-13}


def operands(n, k, m, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, m)).astype(dtype),
            rng.standard_normal((n, m)).astype(dtype))


def assert_close(ours, exact, dtype, k):
    scale = np.sqrt(max(k, 1)) * max(1.0, float(np.max(np.abs(exact))))
    assert np.max(np.abs(ours - exact)) <= TOLERANCE[dtype] * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k,m", SHAPES)
def test_products_match_numpy(dtype, n, k, m):
    a, b, c = operands(n, k, m, dtype)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    bt = np.ascontiguousarray(b.T)
    for product, right in ((tiled_matmul, b), (tiled_matmul_nt, bt)):
        out = np.full((n, m), np.nan, dtype)
        product(a, right, out, False)
        assert_close(out, exact, dtype, k)
        out = c.copy()
        product(a, right, out, True)
        assert_close(out, exact + c, dtype, k)
    at = np.ascontiguousarray(a.T)  # (k, n): out = at^T @ b
    out = np.full((n, m), np.nan, dtype)
    tiled_matmul_tn(at, b, out, 0, m, False)
    assert_close(out, exact, dtype, k)
    out = c.copy()
    tiled_matmul_tn(at, b, out, 0, m, True)
    assert_close(out, exact + c, dtype, k)
    cut = k // 2  # rows 0..cut-1, then the rest added: the same fma chain, the same bits
    parts = np.full((n, m), np.nan, dtype)
    tiled_matmul_tn(np.ascontiguousarray(at[:cut]), np.ascontiguousarray(b[:cut]), parts, 0, m, False)
    tiled_matmul_tn(np.ascontiguousarray(at[cut:]), np.ascontiguousarray(b[cut:]), parts, 0, m, True)
    whole = np.empty_like(parts)
    tiled_matmul_tn(at, b, whole, 0, m, False)
    assert np.array_equal(parts, whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_element_does_not_depend_on_the_split(dtype):
    n, k, m = 13, 70, 100
    a, b, _ = operands(n, k, m, dtype, seed=1)
    bt = np.ascontiguousarray(b.T)
    for product, right in ((tiled_matmul, b), (tiled_matmul_nt, bt)):
        whole = np.empty((n, m), dtype)
        product(a, right, whole, False)
        for cut in (1, 3, 4, 8):  # rows 0..cut-1 in one call, the rest in another
            parts = np.empty_like(whole)
            product(a[:cut], right, parts[:cut], False)
            product(a[cut:], right, parts[cut:], False)
            assert np.array_equal(parts, whole), (product.__name__, cut)
    at = np.ascontiguousarray(a.T)
    whole = np.empty((n, m), dtype)
    tiled_matmul_tn(at, b, whole, 0, m, False)
    width = NN_VECTORS * 64 // np.dtype(dtype).itemsize  # one register block of columns
    for cut in (3, width, 2 * width):
        parts = np.full((n, m), np.nan, dtype)
        tiled_matmul_tn(at, b, parts, 0, min(cut, m), False)
        tiled_matmul_tn(at, b, parts, min(cut, m), m, False)
        assert np.array_equal(parts, whole), cut


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_empty_sum_writes_zeros(dtype):
    out = np.full((5, 9), np.nan, dtype)
    tiled_matmul_tn(np.zeros((0, 5), dtype), np.zeros((0, 9), dtype), out, 0, 9, False)
    assert np.array_equal(out, np.zeros((5, 9), dtype))
    out = np.full((5, 9), np.nan, dtype)
    tiled_matmul(np.zeros((5, 0), dtype), np.zeros((0, 9), dtype), out, False)
    assert np.array_equal(out, np.zeros((5, 9), dtype))


def test_the_columns_outside_the_range_are_not_touched():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((6, 7)).astype(np.float32), rng.standard_normal((6, 40)).astype(np.float32)
    out = np.full((7, 40), -1.0, np.float32)
    tiled_matmul_tn(a, b, out, 5, 23, False)
    assert np.all(out[:, :5] == -1) and np.all(out[:, 23:] == -1)
    assert_close(out[:, 5:23], (a.T.astype(np.float64) @ b)[:, 5:23], np.float32, 6)
