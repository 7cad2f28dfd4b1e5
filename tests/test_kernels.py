"""Every cpu kernel against its NumPy reference twin, float32 and float64."""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from nnumba.backends import codes, get_backend

REF = get_backend("numpy")
CPU = get_backend("cpu")
DTYPES = [np.float32, np.float64]
# shapes (rows, n_in, n_out): one-row batches (n_in under, over and a multiple of the
# loops' four rows of W per pass), odd sizes, and products above the small-matmul
# threshold so both the loop and the BLAS paths run
SHAPES = [(1, 1, 1), (1, 7, 3), (1, 19, 5), (1, 64, 32), (5, 3, 11), (17, 9, 13), (64, 40, 33),
          (3, 130, 129)]
ACTS = [codes.IDENTITY, codes.SIGMOID, codes.TANH, codes.RELU, codes.LEAKY_RELU]


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def rand(rng, shape, dtype, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_activations(dtype, act):
    rng = np.random.default_rng(act)
    z = rand(rng, (9, 13), dtype, 3.0)
    z[0, :5] = [0, -0.0, 40, -40, 1e-3]
    for kernels in (REF, CPU):
        y = np.empty_like(z)
        kernels.activations.activation_forward(act, 0.1, z, y)
        dy = rand(np.random.default_rng(1), z.shape, dtype)
        kernels.activations.activation_backward(act, 0.1, y, dy)
        if kernels is REF:
            y_ref, dz_ref = y, dy
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    np.testing.assert_allclose(dy, dz_ref, **tol(dtype))
    assert y.dtype == dtype and dy.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_definitions(dtype):
    """The reference is itself checked against the textbook formulas."""
    z = np.linspace(-6, 6, 25).astype(dtype).reshape(5, 5)
    expected = {codes.IDENTITY: z, codes.SIGMOID: 1 / (1 + np.exp(-z.astype(np.float64))),
                codes.TANH: np.tanh(z), codes.RELU: np.maximum(z, 0),
                codes.LEAKY_RELU: np.where(z > 0, z, 0.1 * z)}
    for act, want in expected.items():
        for kernels in (REF, CPU):
            y = np.empty_like(z)
            kernels.activations.activation_forward(act, 0.1, z, y)
            np.testing.assert_allclose(y, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_sigmoid_is_stable_and_derivative_peaks_at_a_quarter():
    z = np.array([[-1e4, -745.0, 0.0, 745.0, 1e4]])
    for kernels in (REF, CPU):
        y = np.empty_like(z)
        kernels.activations.activation_forward(codes.SIGMOID, 0.0, z, y)
        assert np.all(np.isfinite(y)) and y[0, 2] == 0.5 and y[0, 0] == 0.0 and y[0, -1] == 1.0
        d = np.ones_like(z)
        kernels.activations.activation_backward(codes.SIGMOID, 0.0, y, d)
        assert d.max() == 0.25


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", [codes.IDENTITY, codes.SIGMOID, codes.RELU])
@pytest.mark.parametrize("bias", [True, False])
def test_dense(dtype, shape, act, bias):
    n, n_in, n_out = shape
    rng = np.random.default_rng(n * 1000 + n_in)
    x, w = rand(rng, (n, n_in), dtype), rand(rng, (n_in, n_out), dtype, 0.3)
    b = rand(rng, (n_out,), dtype) if bias else np.zeros(0, dtype)
    dy0 = rand(rng, (n, n_out), dtype)
    out = {}
    for name, kernels in (("ref", REF), ("cpu", CPU)):
        y = np.empty((n, n_out), dtype)
        kernels.dense.dense_forward(x, w, b, act, 0.1, y)
        dy = dy0.copy()
        dw, db = np.empty_like(w), np.empty_like(b)
        kernels.dense.dense_backward(x, y, act, 0.1, dy, dw, db)
        dx = np.empty_like(x)
        kernels.dense.dense_backward_input(dy, w, dx)
        out[name] = (y, dy, dw, db, dx)
    for a, r in zip(out["cpu"], out["ref"]):
        np.testing.assert_allclose(a, r, **tol(dtype))
    # the reference against the formula: y = f(x @ w + b), dw = x^T dz, dx = dz w^T
    y, dz, dw, db, dx = out["ref"]
    np.testing.assert_allclose(dw, x.astype(float).T @ dz, **tol(dtype))
    np.testing.assert_allclose(dx, dz.astype(float) @ w.T, **tol(dtype))
    if bias:
        np.testing.assert_allclose(db, dz.astype(float).sum(0), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", [codes.MSE, codes.BINARY_CROSS_ENTROPY, codes.CROSS_ENTROPY])
@pytest.mark.parametrize("n,k", [(1, 1), (1, 4), (7, 3), (33, 10)])
def test_losses(dtype, loss, n, k):
    if loss == codes.CROSS_ENTROPY and k == 1:
        k = 2
    rng = np.random.default_rng(n + k)
    z = rand(rng, (n, k), dtype, 4.0)
    target = rng.integers(0, 2, size=(n, k)).astype(dtype) if loss != codes.MSE else rand(rng, (n, k), dtype)
    labels = rng.integers(0, k, size=n)
    out = {}
    for name, kernels in (("ref", REF), ("cpu", CPU)):
        dz, result = np.empty_like(z), np.zeros(2)
        kernels.losses.loss_forward_backward(loss, z, target, labels, dz, result)
        out[name] = (dz, result)
    np.testing.assert_allclose(out["cpu"][0], out["ref"][0], **tol(dtype))
    np.testing.assert_allclose(out["cpu"][1], out["ref"][1], rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert out["cpu"][0].dtype == dtype


def test_loss_definitions():
    """The reference losses against their textbook (unfused) forms, float64."""
    rng = np.random.default_rng(3)
    z, t = rng.normal(size=(6, 4)), rng.integers(0, 2, size=(6, 4)).astype(float)
    labels = rng.integers(0, 4, size=6)
    result, dz = np.zeros(2), np.empty_like(z)
    REF.losses.mse(z, t, dz, result)
    assert result[0] == pytest.approx(np.mean((z - t) ** 2), rel=1e-14)
    s = 1 / (1 + np.exp(-z))
    REF.losses.binary_cross_entropy(z, t, dz, result)
    assert result[0] == pytest.approx(-np.mean(t * np.log(s) + (1 - t) * np.log(1 - s)), rel=1e-13)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    REF.losses.cross_entropy(z, labels, dz, result)
    assert result[0] == pytest.approx(-np.mean(np.log(p[np.arange(6), labels])), rel=1e-13)
    assert result[1] == np.sum(p.argmax(1) == labels)
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(dz, (p - onehot) / 6, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kernels", [REF, CPU], ids=["numpy", "cpu"])
def test_losses_stay_finite_for_huge_logits(kernels):
    z = np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32)
    t = np.array([[0, 1], [1, 0]], np.float32)
    result, dz = np.zeros(2), np.empty_like(z)
    kernels.losses.binary_cross_entropy(z, t, dz, result)
    assert result[0] == pytest.approx(1e4) and np.all(np.isfinite(dz))
    kernels.losses.cross_entropy(z, np.array([1, 1]), dz, result)
    assert result[0] == pytest.approx(1e4) and np.all(np.isfinite(dz))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [codes.SGD, codes.MOMENTUM, codes.RMSPROP, codes.ADAM])
@pytest.mark.parametrize("size", [1, 37, 3001])
@pytest.mark.parametrize("inside", [0.0, 1.0])
def test_optimizer_steps(dtype, opt, size, inside):
    rng = np.random.default_rng(size)
    w0, state0 = rand(rng, size, dtype), np.abs(rand(rng, (2, size), dtype))
    hp = np.zeros(codes.N_HP)
    hp[[codes.HP_LR, codes.HP_BETA1, codes.HP_BETA2, codes.HP_EPS, codes.HP_EPS_INSIDE]] = \
        [0.01, 0.9, 0.999, 1e-8, inside]
    out = {}
    for name, kernels in (("ref", REF), ("cpu", CPU)):
        w, state = w0.copy(), state0.copy()
        for t in (1, 2, 3):
            g = rand(np.random.default_rng(t), size, dtype)
            kernels.optim.optimizer_step(opt, w, g, state, hp, t)
        out[name] = (w, state)
    # elementwise updates in the same order of operations: equal to the last bit
    np.testing.assert_array_equal(out["cpu"][0], out["ref"][0])
    np.testing.assert_array_equal(out["cpu"][1], out["ref"][1])
    # and so are the public per-optimizer steps
    name = {codes.SGD: "sgd", codes.MOMENTUM: "momentum", codes.RMSPROP: "rmsprop", codes.ADAM: "adam"}[opt]
    w, state = w0.copy(), state0.copy()
    g = rand(np.random.default_rng(1), size, dtype)
    args = {"sgd": (w, g, 0.01), "momentum": (w, g, state[0], 0.01, 0.9),
            "rmsprop": (w, g, state[0], 0.01, 0.9, 1e-8, inside),
            "adam": (w, g, state[0], state[1], 0.01, 0.9, 0.999, 1e-8, 1)}[name]
    getattr(CPU.optim, f"{name}_step")(*args)
    w_ref, state_ref = w0.copy(), state0.copy()
    REF.optim.optimizer_step(opt, w_ref, g, state_ref, hp, 1)
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(state, state_ref)


def decaying_state(dtype, slots):
    """w, a zero gradient and optimizer state whose entries decay below the smallest normal
    number in one step (1.05 tiny), stay normal (100 tiny), are 0, NaN or inf: the
    moving averages' subnormal flush."""
    tiny = np.finfo(dtype).tiny
    row = np.array([1.05 * tiny, -1.05 * tiny, 100 * tiny, -100 * tiny, 0, np.nan, np.inf, 0.5],
                   dtype)
    w = np.linspace(-1, 1, row.size).astype(dtype)
    return w, np.zeros_like(w), np.stack([row] * slots)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [codes.MOMENTUM, codes.RMSPROP, codes.ADAM])
def test_moving_averages_flush_subnormals(dtype, opt):
    """A moving average that decays below the smallest normal number becomes 0 (subnormal
    arithmetic costs a microcode assist per operation on Intel cores), in the reference,
    in the cpu step and in its parallel loop alike; NaN and inf stay and are reported."""
    from nnumba.backends.cpu import optim

    hp = np.zeros(codes.N_HP)
    hp[:5] = 0.01, 0.9, 0.9, 1e-8, 1.0
    slots = 2 if opt == codes.ADAM else 1
    results = []
    for run in ("ref", "cpu", "parallel"):
        w, g, state = decaying_state(dtype, 2)
        if run == "parallel":
            status = optim._step_parallel(opt, w, g, state[0], state[1], hp, 3)
        else:
            status = (REF if run == "ref" else CPU).optim.optimizer_step(opt, w, g, state[:slots],
                                                                        hp, 3)
            assert status == codes.STATUS_STATE
        tiny = np.finfo(dtype).tiny
        for row in state[:slots]:
            assert not np.any((row != 0) & (np.abs(row) < tiny)), (run, row)
            np.testing.assert_array_equal(row[[0, 1, 4]], 0)
            assert np.all(np.abs(row[2:4]) >= tiny) and np.isnan(row[5]) and np.isinf(row[6])
        results.append((w, state[:slots]))
    for w, state in results[1:]:
        np.testing.assert_array_equal(w, results[0][0])
        np.testing.assert_array_equal(state, results[0][1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [codes.SGD, codes.MOMENTUM, codes.RMSPROP, codes.ADAM])
def test_parallel_optimizer_loop_equals_the_serial_one(dtype, opt):
    """Buffers above PARALLEL_MIN_SIZE take the prange loop: same bits as the serial one."""
    from nnumba.backends.cpu import optim

    rng = np.random.default_rng(opt)
    n = 10007
    w, g, m, v = (rand(rng, n, dtype) for _ in range(4))
    v = np.abs(v)
    hp = np.zeros(codes.N_HP)
    hp[:5] = 0.01, 0.9, 0.999, 1e-8, 1.0
    results = []
    for loop in (optim.step_serial, optim._step_parallel):
        arrays = [a.copy() for a in (w, m, v)]
        loop(opt, arrays[0], g, arrays[1], arrays[2], hp, 3)
        results.append(arrays)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [codes.SGD, codes.MOMENTUM, codes.RMSPROP, codes.ADAM])
@pytest.mark.parametrize("n", [1, 3])
def test_outer_product_step_equals_materialised_gradient(dtype, opt, n):
    """The step that forms x^T dz on the fly equals the step on the materialised gradient."""
    from nnumba.backends.cpu import _matmul, optim

    rng = np.random.default_rng(n)
    x, dz = rand(rng, (n, 7), dtype), rand(rng, (n, 5), dtype)
    w0, state0 = rand(rng, 35, dtype), np.abs(rand(rng, (2, 35), dtype))
    hp = np.zeros(codes.N_HP)
    hp[:5] = 0.01, 0.9, 0.999, 1e-8, 0.0
    for coef, clip in ((1.0, np.inf), (0.5, 0.01)):
        g = np.empty((7, 5), dtype)
        _matmul.matmul_tn(x, dz, g)
        g = g.ravel()
        CPU.gradients.clip_by_norm(g, 1.0, coef * (1.0 + 1e-6))
        CPU.gradients.clip_by_value(g, clip)
        w1, state1 = w0.copy(), state0.copy()
        CPU.optim.optimizer_step(opt, w1, g, state1, hp, 2)
        w2, state2 = w0.copy(), state0.copy()
        s0 = state2[0] if opt != codes.SGD else w2
        s1 = state2[1] if opt == codes.ADAM else w2
        optim.outer_product_step(opt, w2, x, dz, coef, clip, s0, s1, hp, 2, np.empty(5, dtype))
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(state1, state2)


@pytest.mark.parametrize("dtype, opt", [(np.float32, codes.SGD), (np.float32, codes.ADAM),
                                        (np.float64, codes.MOMENTUM), (np.float64, codes.RMSPROP)])
def test_parallel_outer_step_callback_equals_the_serial_step(dtype, opt):
    """The parallel on-the-fly step (rules.builtin_outer_step) writes the serial step's
    bits, with rows split unevenly (7 rows in 3 parts, more parts than cores), clipped
    or not, and only in w and its state rows."""
    from nnumba.backends.cpu import optim, rules

    rng = np.random.default_rng(opt)
    n_in, n_out, n = 7, 5, 2
    x, dz = rand(rng, (n, n_in), dtype), rand(rng, (n, n_out), dtype)
    w0, state0 = rand(rng, n_in * n_out, dtype), np.abs(rand(rng, (2, n_in * n_out), dtype))
    hp = np.zeros(codes.N_HP)
    hp[:5] = 0.01, 0.9, 0.999, 1e-8, 0.0
    callback = rules.builtin_outer_step(opt, dtype, 3)
    for coef, clip in ((1.0, np.inf), (0.5, 0.01)):
        w1, state1 = w0.copy(), state0.copy()
        s0 = state1[0] if opt != codes.SGD else w1
        s1 = state1[1] if opt == codes.ADAM else w1
        expected = optim.outer_product_step(opt, w1, x, dz, coef, clip, s0, s1, hp, 2,
                                            np.empty(n_out, dtype))
        w2, state2 = w0.copy(), state0.copy()
        s0 = state2[0] if opt != codes.SGD else w2
        s1 = state2[1] if opt == codes.ADAM else w2
        scratch = np.full(3 * n_out + 1, 7.0, dtype)  # a row per part, and a sentinel
        status = _call_outer(callback.address, w2, x, dz, s0, s1, hp, scratch, 2, coef, clip)
        assert status == expected
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(state1, state2)
        assert scratch[-1] == 7.0


def _call_outer(address, w, x, dz, s0, s1, hp, scratch, t, coef, clip):
    """The callback at ``address`` called the way the loop calls it (``OUTER_SIGNATURE``)."""
    import ctypes

    types = [ctypes.c_uint64] * 7 + [ctypes.c_int64] * 4 + [ctypes.c_double] * 2
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, *types)(address)
    return fn(*(a.ctypes.data for a in (w, x, dz, s0, s1, hp, scratch)), x.shape[0], x.shape[1],
              dz.shape[1], t, coef, clip)


VECTORISED_CHECK = r"""
import re, sys
import numpy as np
from nnumba.backends import codes
from nnumba.backends.cpu import optim
w, hp = np.zeros(64, np.float32), np.zeros(codes.N_HP)
x, dz, row = np.zeros((1, 8), np.float32), np.zeros((1, 8), np.float32), np.zeros(8, np.float32)
optim.step_serial(codes.ADAM, w, w.copy(), w.copy(), w.copy(), hp, 1)
optim.outer_product_step(codes.ADAM, w, x, dz, 1.0, np.inf, w.copy(), w.copy(), hp, 1, row)
for kernel in (optim.step_serial, optim.outer_product_step):
    asm = kernel.inspect_asm(kernel.signatures[0])
    if not re.search(r"vsqrtps\s+%[xyz]mm", asm):
        sys.exit(kernel.__name__ + ": no packed square root, the Adam loop is not vectorised")
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 instructions")
def test_adam_loops_are_vectorised(tmp_path):
    """The Adam loops run sqrt and division on whole vectors (vsqrtps). Indexing them
    with an offset instead of slicing made LLVM give up (negative-index wraparound),
    a silent 2x slowdown of the batch-1 CIFAR epoch that no result test sees. A
    fresh cache folder makes the kernels compile here, where their code can be read."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", VECTORISED_CHECK], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 5, 1000])
def test_gradient_utilities(dtype, size):
    rng = np.random.default_rng(size)
    g0 = rand(rng, size, dtype, 3.0)
    out = {}
    for name, kernels in (("ref", REF), ("cpu", CPU)):
        s = np.zeros(1)
        kernels.gradients.sum_of_squares(g0, s)
        g1 = g0.copy()
        kernels.gradients.clip_by_norm(g1, np.sqrt(s[0]), 0.5)
        g2 = g0.copy()
        kernels.gradients.clip_by_value(g2, 1.0)
        out[name] = (s, g1, g2)
    np.testing.assert_allclose(out["cpu"][0], np.sum(g0.astype(np.float64) ** 2), rtol=1e-12)
    np.testing.assert_allclose(out["cpu"][0], out["ref"][0], rtol=1e-12)
    np.testing.assert_allclose(out["cpu"][1], out["ref"][1], **tol(dtype))
    np.testing.assert_array_equal(out["cpu"][2], out["ref"][2])
    assert np.linalg.norm(out["cpu"][1].astype(np.float64)) == pytest.approx(min(0.5, np.sqrt(out["cpu"][0][0])), rel=1e-5)
    assert np.abs(out["cpu"][2]).max() <= 1.0


def test_borrowed_views_are_the_sliced_views():
    """The fused path's views without reference counting see the same elements, with
    the same shape and strides, as slicing and reshaping; writes go through."""
    from numba import njit

    from nnumba.backends.cpu._views import flat_view, rows_view

    @njit
    def views(buf):
        a = rows_view(buf, 5, 3, 4)
        a[2, 3] = -1.0
        f = flat_view(buf, 7, 6)
        f[0] *= 10
        return a.copy(), a.strides, f.copy(), flat_view(buf, 0, 0).shape[0]

    for dtype in DTYPES:
        buf = np.arange(40, dtype=dtype)
        a, strides, f, empty = views(buf)
        expected = np.arange(40, dtype=dtype)
        expected[16] = -1.0
        expected[7] *= 10
        np.testing.assert_array_equal(buf, expected)
        np.testing.assert_array_equal(a, expected[5:17].reshape(3, 4))
        assert strides == expected[5:17].reshape(3, 4).strides
        np.testing.assert_array_equal(f, expected[7:13])
        assert empty == 0


def test_a_borrowed_array_is_the_array_without_a_reference():
    """``borrow``: the same elements, shape and strides, writes go through, and no
    reference is counted (a null meminfo: the array keeps its reference count)."""
    import sys

    from numba import njit

    from nnumba.backends.cpu._views import borrow

    @njit
    def borrowed(a):
        b = borrow(a)
        b[1, 2] = -1.0
        return b.copy(), b.shape, b.strides

    for dtype in DTYPES:
        a = np.arange(12, dtype=dtype).reshape(3, 4)
        before = sys.getrefcount(a)
        copy, shape, strides = borrowed(a)
        assert a[1, 2] == -1.0 and np.array_equal(copy, a)
        assert shape == a.shape and strides == a.strides
        assert sys.getrefcount(a) == before


@pytest.mark.parametrize("backend", [REF, CPU])
def test_zeros_many_makes_separate_zeroed_arrays(backend):
    """A workspace's arrays from one allocation: the shapes and dtypes asked for, all
    zero, each on a 64-byte boundary (cpu), and writing one touches no other."""
    specs = [((3, 5), np.float32), (7, np.int64), ((0,), np.float64), ((2, 1), np.float64),
             (13, np.float32)]
    arrays = backend.memory.zeros_many(specs)
    assert [(a.shape, a.dtype) for a in arrays] == [
        ((3, 5), np.float32), ((7,), np.int64), ((0,), np.float64), ((2, 1), np.float64),
        ((13,), np.float32)]
    for a in arrays:
        assert a.flags.c_contiguous and not a.any()
        if backend is CPU and a.size:
            assert a.ctypes.data % 64 == 0
    for k, a in enumerate(arrays):
        a[...] = k + 1
    for k, a in enumerate(arrays):
        assert (a == k + 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(13, 70, 37), (8, 33, 64), (3, 5, 17), (64, 40, 129),
                                   (9, 260, 200)])
def test_parallel_products_callback_equals_the_serial_tiled_products(dtype, shape):
    """rules.builtin_products: a @ b with out's column blocks split across threads, a^T @ b
    and a @ b^T with its rows split (ragged last tiles and blocks, a part count that does
    not divide them, K over more than one cached panel of b) give the serial
    register-tiled products' bits, and the products within rounding."""
    from nnumba.backends.cpu import _tiles, rules

    n, k, m = shape
    rng = np.random.default_rng(n + k + m)
    a, b = rand(rng, (n, k), dtype), rand(rng, (k, m), dtype)
    at, bt = rand(rng, (k, n), dtype), rand(rng, (m, k), dtype)
    serial = {kind: np.zeros((n, m), dtype) for kind in "nn tn nt".split()}
    _tiles.tiled_matmul(a, b, serial["nn"], False)
    _tiles.tiled_matmul_tn_steps(at, b, serial["tn"], k, 0, 1, False)
    _tiles.tiled_matmul_nt(a, bt, serial["nt"], False)
    exact = {"nn": a.astype(np.float64) @ b, "tn": at.T.astype(np.float64) @ b,
             "nt": a.astype(np.float64) @ bt.T}
    operands = {"nn": (a, b, rules.PRODUCT_NN), "tn": (at, b, rules.PRODUCT_TN),
                "nt": (a, bt, rules.PRODUCT_NT)}
    # (2 threads, as the training loop on this project's machines; and 3, a part count
    # that does not divide the tiles, once: each callback compiles for seconds)
    for threads in (2, 3) if dtype == np.float32 else (2,):
        callback = rules.builtin_products(dtype, threads)
        for kind, (x, w, code) in operands.items():
            out = np.full((n + 1, m), 7.0, dtype)  # a sentinel row after out
            assert callback.ctypes(x.ctypes.data, w.ctypes.data, out.ctypes.data, code, n, k, m) == 0
            np.testing.assert_array_equal(out[:n], serial[kind])
            assert (out[n] == 7.0).all()
            # (rounding grows with the k terms of a sum: atol in units of sqrt(k))
            np.testing.assert_allclose(out[:n], exact[kind], rtol=tol(dtype)["rtol"],
                                       atol=tol(dtype)["atol"] * np.sqrt(k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [codes.SGD, codes.MOMENTUM, codes.RMSPROP, codes.ADAM])
def test_parallel_step_callback_equals_the_serial_one(dtype, opt):
    """rules.builtin_step with threads > 1 (parts of PARALLEL_STEP_MIN_PART elements or
    more): the serial callback's bits and verdict, also when one part overflows."""
    from nnumba.backends.cpu import rules
    from nnumba.backends.cpu._config import PARALLEL_STEP_MIN_PART

    n = 2 * PARALLEL_STEP_MIN_PART + 5
    rng = np.random.default_rng(opt)
    hp = np.zeros(codes.N_HP)
    hp[[codes.HP_LR, codes.HP_BETA1, codes.HP_BETA2, codes.HP_EPS]] = 0.01, 0.9, 0.999, 1e-7
    for blow_up in (False, True):
        w, g = rand(rng, n, dtype), rand(rng, n, dtype)
        state = np.abs(rand(rng, (2, n), dtype))
        if blow_up:
            w[n - 3], g[n - 3] = np.finfo(dtype).max, -np.finfo(dtype).max  # the last part's
            # update overflows
        runs = []
        for threads in (1, 2):
            w2, s2 = w.copy(), state.copy()
            status = rules.builtin_step(opt, dtype, threads).ctypes(
                w2.ctypes.data, g.ctypes.data, s2.ctypes.data, hp.ctypes.data, n, 5)
            runs.append((status, w2, s2))
        assert runs[0][0] == runs[1][0] == (codes.STATUS_OK if not blow_up else runs[0][0])
        assert not blow_up or runs[0][0] != codes.STATUS_OK
        np.testing.assert_array_equal(runs[0][1], runs[1][1])
        np.testing.assert_array_equal(runs[0][2], runs[1][2])
