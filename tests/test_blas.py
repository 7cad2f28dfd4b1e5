"""The jitted products through NumPy's own BLAS (``backends.cpu._blas``), and their
np.dot fallback, against NumPy."""
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from nnumba.backends.cpu import _blas

DTYPES = [np.float32, np.float64]
# (n, k, m): one row, odd sizes, an empty dimension, a product big enough for BLAS's threads
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 3, 11), (17, 130, 9), (0, 4, 3), (3, 0, 2), (256, 300, 70)]


@njit
def _products(a, b, at, bt, nn, tn, nt):
    _blas.gemm_nn(a, b, nn)   # a @ b
    _blas.gemm_tn(at, b, tn)  # at.T @ b
    _blas.gemm_nt(a, bt, nt)  # a @ bt.T


def _check(rng, dtype, n, k, m, strided=False):
    a = rng.standard_normal((n, 2 * k if strided else k)).astype(dtype)
    a = a[:, ::2] if strided else a  # rows not contiguous: the fallback
    b = rng.standard_normal((k, m)).astype(dtype)
    at = rng.standard_normal((k, n)).astype(dtype)  # stored (k, n): at.T is (n, k)
    bt = rng.standard_normal((m, k)).astype(dtype)
    nn, tn, nt = (np.full((n, m), np.nan, dtype) for _ in range(3))
    _products(a, b, at, bt, nn, tn, nt)
    # float32: each element a sum of k products of unit normals
    tol = dict(rtol=1e-5, atol=1e-6 * (k + 1)) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nn, a.astype(np.float64) @ b, **tol)
    np.testing.assert_allclose(tn, at.T.astype(np.float64) @ b, **tol)
    np.testing.assert_allclose(nt, a.astype(np.float64) @ bt.T, **tol)
    return nn, tn, nt


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_products_match_numpy(dtype, shape):
    _check(np.random.default_rng(0), dtype, *shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_that_are_not_contiguous_fall_back(dtype):
    _check(np.random.default_rng(1), dtype, 6, 5, 4, strided=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_np_dot_fallback_when_not_found(dtype):
    """With the slot of the dtype empty (NumPy's BLAS not found), the same compiled
    code takes np.dot, and gives the same products."""
    rng = np.random.default_rng(2)
    direct = _check(rng, dtype, 9, 40, 7)
    slot = 0 if dtype == np.float32 else 1
    saved, _blas._SLOTS[slot] = _blas._SLOTS[slot], 0
    try:
        assert not _blas.available(dtype)
        fallback = _check(np.random.default_rng(2), dtype, 9, 40, 7)
    finally:
        _blas._SLOTS[slot] = saved
    for d, f in zip(direct, fallback):
        np.testing.assert_allclose(d, f, rtol=1e-5 if dtype == np.float32 else 1e-12)


@njit
def _found_in_jitted_code(x):
    return _blas._found(x)


def test_numpy_blas_is_found_in_numpy_wheels():
    """NumPy's pip wheels carry scipy-openblas64: its ILP64 gemm is found there, and the
    jitted code reads the same slots (so the products above took the direct path)."""
    if _blas.numpy_blas_path() is None or "scipy_openblas64" not in _blas.numpy_blas_path():
        pytest.skip("this NumPy is not built with its own scipy-openblas64")
    for dtype in DTYPES:
        assert _blas.available(dtype)
        assert _found_in_jitted_code(np.zeros((2, 2), dtype))


def test_cached_code_finds_the_function_in_a_new_process(tmp_path):
    """The machine code Numba caches holds no address: a second process loads it and
    reads the address this process found."""
    script = tmp_path / "cached_gemm.py"
    script.write_text(
        "import numpy as np\n"
        "from numba import njit\n"
        "from nnumba.backends.cpu import _blas\n"
        "@njit(cache=True)\n"
        "def f(a, b, out):\n"
        "    _blas.gemm_nn(a, b, out)\n"
        "a = np.arange(12.0).reshape(3, 4); b = np.ones((4, 2)); out = np.zeros((3, 2))\n"
        "f(a, b, out)\n"
        "assert np.array_equal(out, a @ b), out\n"
        "print(len(f.stats.cache_hits))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "1"  # loaded from the cache, and it ran right
