"""The register-tiled products of ``backends.cpu._tiles`` against NumPy in float64.

Edge rows and columns (shapes that are not multiples of a tile), accumulation into
``out``, an empty sum, and the property the recurrent kernels rely on: an element's
bits depend only on its row and column, not on how the rows are split between calls
or the transposed product's sum between steps; and no write outside ``out``.
"""
import numpy as np
import pytest

from nnumba.backends.cpu._tiles import (outer_product, tiled_matmul, tiled_matmul_nt,
                                        tiled_matmul_tn_steps)

SHAPES = [(1, 1, 1), (3, 5, 7), (4, 16, 64), (9, 33, 70), (13, 130, 21), (15, 100, 400),
          (32, 128, 512), (9, 600, 70)]
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-13}


def tiled_matmul_tn(a, b, out, accumulate):
    """out (+)= a^T @ b: the stepped product over one step of all of a's rows."""
    tiled_matmul_tn_steps(a, b, out, a.shape[0], 0, 1, accumulate)


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
    at = np.ascontiguousarray(a.T)  # (k, n): out = at^T @ b
    for product, left, right in ((tiled_matmul, a, b), (tiled_matmul_nt, a, bt),
                                 (tiled_matmul_tn, at, b)):
        out = np.full((n, m), np.nan, dtype)
        product(left, right, out, False)
        assert_close(out, exact, dtype, k)
        out = c.copy()
        product(left, right, out, True)
        assert_close(out, exact + c, dtype, k)
    cut = k // 2  # rows 0..cut-1, then the rest added: the same fma chain, the same bits
    parts = np.full((n, m), np.nan, dtype)
    tiled_matmul_tn(np.ascontiguousarray(at[:cut]), np.ascontiguousarray(b[:cut]), parts, False)
    tiled_matmul_tn(np.ascontiguousarray(at[cut:]), np.ascontiguousarray(b[cut:]), parts, True)
    whole = np.empty_like(parts)
    tiled_matmul_tn(at, b, whole, False)
    assert np.array_equal(parts, whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [255, 256, 257, 700])
def test_panels_of_b_keep_one_fma_chain(dtype, k):
    """tiled_matmul runs K in panels that stay in cache (NN_PANEL_BYTES), its sums parked
    in out between them; the transposed product runs all of K in registers: the same
    chain of fmas, k in order, so the same bits, full tiles, edge rows and masked
    columns alike."""
    n, m = 9, 70
    a, b, c = operands(n, k, m, dtype, seed=2)
    at = np.ascontiguousarray(a.T)
    for accumulate in (False, True):
        panels, chain = c.copy(), c.copy()
        tiled_matmul(a, b, panels, accumulate)
        tiled_matmul_tn(at, b, chain, accumulate)
        assert np.array_equal(panels, chain)


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,stride,steps", [(16, 32, 5), (5, 9, 4), (3, 3, 1), (4, 7, 0)])
def test_the_stepped_transposed_product_is_the_per_step_sum(dtype, rows, stride, steps):
    """Blocks of ``rows`` rows every ``stride`` rows (a batch block in a time-major cache):
    the same bits as one accumulating call per step."""
    n, m = 37, 70
    rng = np.random.default_rng(3)
    total = max(steps - 1, 0) * stride + rows
    a, b = rng.standard_normal((total, n)).astype(dtype), rng.standard_normal((total, m)).astype(dtype)
    out = np.full((n, m), np.nan, dtype)
    tiled_matmul_tn_steps(a, b, out, rows, stride, steps, False)
    per_step = np.zeros((n, m), dtype)
    for s in range(steps):
        tiled_matmul_tn(a[s * stride:s * stride + rows], b[s * stride:s * stride + rows], per_step,
                        s > 0)
    assert np.array_equal(out, per_step)
    exact = sum((a[s * stride:s * stride + rows].T.astype(np.float64)
                 @ b[s * stride:s * stride + rows] for s in range(steps)), np.zeros((n, m)))
    assert_close(out, exact, dtype, rows * steps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_empty_sum_writes_zeros(dtype):
    out = np.full((5, 9), np.nan, dtype)
    tiled_matmul_tn(np.zeros((0, 5), dtype), np.zeros((0, 9), dtype), out, False)
    assert np.array_equal(out, np.zeros((5, 9), dtype))
    out = np.full((5, 9), np.nan, dtype)
    tiled_matmul(np.zeros((5, 0), dtype), np.zeros((0, 9), dtype), out, False)
    assert np.array_equal(out, np.zeros((5, 9), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nothing_around_out_is_written(dtype):
    """The last, partial register of each row is a masked store: an out inside a larger
    buffer keeps the values before and after it."""
    rng = np.random.default_rng(2)
    n, k, m = 7, 6, 40
    a, b = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, m)).astype(dtype)
    exact = a.astype(np.float64) @ b
    buf = np.full(n * m + 64, -7.0, dtype)
    out = buf[16:16 + n * m].reshape(n, m)
    for product, left, right in ((tiled_matmul, a, b), (tiled_matmul_tn, np.ascontiguousarray(a.T), b),
                                 (tiled_matmul_nt, a, np.ascontiguousarray(b.T))):
        buf[:] = -7.0
        product(left, right, out, False)
        assert np.all(buf[:16] == -7) and np.all(buf[16 + n * m:] == -7), product.__name__
        assert_close(out, exact, dtype, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,m", [(1, 1), (3, 15), (64, 32), (5, 16), (7, 17), (2, 100)])
def test_outer_product_is_exact_and_writes_only_out(dtype, k, m):
    """a^T b of two rows: every element is one rounded product, the bits NumPy gives, and
    nothing around ``out`` is written (the last block of a row is a masked store)."""
    rng = np.random.default_rng(k * m)
    a, b = rng.standard_normal((1, k)).astype(dtype), rng.standard_normal((1, m)).astype(dtype)
    room = np.full(k * m + 40, 7.0, dtype)
    out = room[20:20 + k * m].reshape(k, m)
    outer_product(a, b, out)
    assert np.array_equal(out, a.T * b)
    assert (room[:20] == 7.0).all() and (room[20 + k * m:] == 7.0).all()
