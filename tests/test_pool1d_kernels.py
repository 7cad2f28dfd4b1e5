"""The 1-D pooling kernels (max, average, global average; channels-last) of all three backends.

- the NumPy reference against torch.nn.functional (max_pool1d with indices, avg_pool1d,
  mean over the steps), forward and backward by autograd, in torch's (n, C, L) layout;
- the reference against a plain-Python loop of the definition (no torch needed), and the
  backward passes against central finite differences of a scalar loss;
- the cpu kernels against the reference, from Python and from inside an @njit function
  on borrowed views of one workspace, to the same bits;
- the cuda kernels (simulator, launch sizes patched tiny so blocks are ragged and the
  grid-stride loops go round) against the reference, to the same bits;
- ties (repeated values), NaN windows and empty batches.
"""
import numpy as np
import pytest
from numba import njit

from nnumba.backends.cpu import pool1d as cpu
from nnumba.backends.cpu._views import flat_view, rows_view
from nnumba.backends.reference import pool1d as ref

try:   # the cuda half of this module needs numba.cuda (the simulator unless a GPU is there)
    from cuda_setup import SMALL, cfg, small_launches  # noqa: F401 (autouse: tiny launch sizes)
except pytest.skip.Exception:
    cfg = None
if cfg is not None:
    from nnumba.backends.cuda import memory as cuda_memory
    from nnumba.backends.cuda import pool1d as gpu


def needs_cuda(test):
    """Marks a test that runs the cuda kernels; skipped where numba.cuda is unavailable."""
    test = pytest.mark.skipif(cfg is None, reason="numba.cuda is unavailable")(test)
    return pytest.mark.cuda(test)



DTYPES = [np.float32, np.float64]
# (n, L_in, C, k, s)
GEOMETRIES = [
    (3, 8, 4, 2, 2),     # k = s = 2: windows tile the steps
    (2, 9, 3, 3, 1),     # k = 3, s = 1: every step in up to three windows
    (3, 12, 5, 3, 2),    # k = 3, s = 2: overlapping by one; the last step is in no window
    (2, 7, 3, 7, 7),     # k = L_in: one output step
    (4, 10, 1, 3, 3),    # C = 1; the last step is in no window
    (1, 13, 6, 4, 3),    # n = 1, odd sizes, overlap of one
    (2, 10, 2, 2, 3),    # s > k: gaps between the windows
    (3, 5, 7, 1, 1),     # k = 1: the identity
]
IDS = ["n{}-L{}-C{}-k{}-s{}".format(*g) for g in GEOMETRIES]


def out_steps(steps_in, pool, stride):
    return (steps_in - pool) // stride + 1


def make_inputs(geo, dtype, ties, seed=0):
    """x (n, L C); upstream gradients for the pooled and the globally pooled outputs."""
    n, steps, c, k, s = geo
    rng = np.random.default_rng(seed + 17 * steps + c)
    if ties:   # a handful of values: most windows hold their maximum more than once
        x = rng.integers(-2, 3, size=(n, steps * c)).astype(dtype)
    else:
        x = rng.normal(size=(n, steps * c)).astype(dtype)
    dy = rng.normal(size=(n, out_steps(steps, k, s) * c)).astype(dtype)
    dyg = rng.normal(size=(n, c)).astype(dtype)
    return x, dy, dyg


def run(mod, x, dy, dyg, geo, put=np.array, get=np.asarray):
    """Every kernel of ``mod`` once; outputs are prefilled with garbage, so every element
    a kernel leaves unwritten shows."""
    n, steps, c, k, s = geo
    lo, dt = out_steps(steps, k, s), x.dtype
    xd, dyd, dygd = put(x), put(dy), put(dyg)
    out = {}
    y, am = put(np.full((n, lo * c), 7, dt)), put(np.full((n, lo * c), -5, np.int64))
    mod.maxpool1d_forward(xd, y, am, steps, c, k, s)
    dx = put(np.full((n, steps * c), 7, dt))
    mod.maxpool1d_backward(dyd, am, dx, steps, c, k, s)
    out.update(max_y=get(y), argmax=get(am), max_dx=get(dx))
    y, dx = put(np.full((n, lo * c), 7, dt)), put(np.full((n, steps * c), 7, dt))
    mod.avgpool1d_forward(xd, y, steps, c, k, s)
    mod.avgpool1d_backward(dyd, dx, steps, c, k, s)
    out.update(avg_y=get(y), avg_dx=get(dx))
    y, dx = put(np.full((n, c), 7, dt)), put(np.full((n, steps * c), 7, dt))
    mod.global_avgpool1d_forward(xd, y, steps, c)
    mod.global_avgpool1d_backward(dygd, dx, steps, c)
    out.update(gavg_y=get(y), gavg_dx=get(dx))
    return out


def assert_same_bits(got, want):
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# ---- the definition, as plain loops ---------------------------------------------------------

def naive(x, dy, dyg, geo):
    """The formulas of the reference's docstring, one element at a time, in float64 (the
    max pool's argmax: first maximum, first NaN)."""
    n, steps, c, k, s = geo
    lo = out_steps(steps, k, s)
    x3, dy3 = x.astype(np.float64).reshape(n, steps, c), dy.astype(np.float64).reshape(n, lo, c)
    max_y, argmax, avg_y = np.zeros((n, lo, c)), np.zeros((n, lo, c), np.int64), np.zeros((n, lo, c))
    max_dx, avg_dx = np.zeros((n, steps, c)), np.zeros((n, steps, c))
    for r in range(n):
        for t in range(lo):
            for ch in range(c):
                window = [x3[r, t * s + j, ch] for j in range(k)]
                nans = [j for j in range(k) if np.isnan(window[j])]
                j = nans[0] if nans else max(range(k), key=lambda i: (window[i], -i))
                max_y[r, t, ch], argmax[r, t, ch] = window[j], t * s + j
                max_dx[r, t * s + j, ch] += dy3[r, t, ch]
                avg_y[r, t, ch] = sum(window) / k
                for j in range(k):
                    avg_dx[r, t * s + j, ch] += dy3[r, t, ch] / k
    gavg_dx = np.repeat(dyg.astype(np.float64)[:, None, :] / steps, steps, axis=1)
    return dict(max_y=max_y.reshape(n, -1), argmax=argmax.reshape(n, -1),
                max_dx=max_dx.reshape(n, -1), avg_y=avg_y.reshape(n, -1),
                avg_dx=avg_dx.reshape(n, -1), gavg_y=x3.mean(axis=1),
                gavg_dx=gavg_dx.reshape(n, -1))


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("geo", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_matches_the_definition(dtype, geo, ties):
    x, dy, dyg = make_inputs(geo, dtype, ties)
    got, want = run(ref, x, dy, dyg, geo), naive(x, dy, dyg, geo)
    np.testing.assert_array_equal(got["argmax"], want["argmax"])
    np.testing.assert_array_equal(got["max_y"], want["max_y"])
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    for name in ("max_dx", "avg_y", "avg_dx", "gavg_y", "gavg_dx"):
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=rtol, err_msg=name)
    # steps that no window covers get no gradient at all
    n, steps, c, k, s = geo
    covered = np.zeros(steps, bool)
    covered[:(out_steps(steps, k, s) - 1) * s + k] = True
    dead = ~np.repeat(covered, c)
    assert np.all(got["avg_dx"][:, dead] == 0) and np.all(got["max_dx"][:, dead] == 0)
    assert np.all(got["argmax"] >= 0) and np.all(got["argmax"] < steps)


# ---- the reference against torch -------------------------------------------------------------

def to_torch(torch, a, n, steps, c):
    """(n, L C) channels-last -> torch's (n, C, L)."""
    return torch.from_numpy(np.ascontiguousarray(a.reshape(n, steps, c).transpose(0, 2, 1)))


def from_torch(t, n, steps, c):
    """torch's (n, C, L) -> (n, L C) channels-last."""
    return t.detach().numpy().transpose(0, 2, 1).reshape(n, steps * c)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("geo", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_matches_torch(dtype, geo, ties):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, steps, c, k, s = geo
    lo = out_steps(steps, k, s)
    x, dy, dyg = make_inputs(geo, dtype, ties)
    got = run(ref, x, dy, dyg, geo)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)

    xt = to_torch(torch, x, n, steps, c).requires_grad_()
    yt, it = F.max_pool1d(xt, k, s, return_indices=True)
    yt.backward(to_torch(torch, dy, n, lo, c))
    np.testing.assert_array_equal(got["max_y"], from_torch(yt, n, lo, c))        # exact
    np.testing.assert_array_equal(got["argmax"], from_torch(it, n, lo, c))       # exact, ties too
    np.testing.assert_allclose(got["max_dx"], from_torch(xt.grad, n, steps, c), **tol)

    xt = to_torch(torch, x, n, steps, c).requires_grad_()
    yt = F.avg_pool1d(xt, k, s)
    yt.backward(to_torch(torch, dy, n, lo, c))
    np.testing.assert_allclose(got["avg_y"], from_torch(yt, n, lo, c), **tol)
    np.testing.assert_allclose(got["avg_dx"], from_torch(xt.grad, n, steps, c), **tol)

    xt = to_torch(torch, x, n, steps, c).requires_grad_()
    yt = xt.mean(dim=2)
    yt.backward(torch.from_numpy(dyg))
    np.testing.assert_allclose(got["gavg_y"], yt.detach().numpy(), **tol)
    np.testing.assert_allclose(got["gavg_dx"], from_torch(xt.grad, n, steps, c), **tol)


def test_nan_windows_propagate_and_point_at_their_first_nan():
    """A window holding a NaN pools to NaN (as torch), its argmax is its first NaN (torch 2.x
    on the CPU points at the last one; NumPy's argmax, and this spec, at the first), and the
    gradient of that window goes to that step."""
    n, steps, c, k, s = geo = (2, 10, 3, 4, 2)
    lo = out_steps(steps, k, s)
    x, dy, dyg = make_inputs(geo, np.float64, False, seed=5)
    x3 = x.reshape(n, steps, c)
    x3[0, 1, 0] = x3[0, 3, 0] = np.nan        # windows 0 and 1 of (0, channel 0): first NaN step 1 / 3
    x3[0, 4, 2] = 100.0                       # windows 1, 2 of channel 2: the largest value,
    x3[0, 5, 2] = np.nan                      # and after it a NaN, which still wins
    x3[1, 0, 1] = np.nan                      # the first element of window 0
    x3[1, 6:10, 0] = -np.inf                  # a window of -inf only: argmax at its first step
    want = naive(x, dy, dyg, geo)
    assert want["argmax"].reshape(n, lo, c)[0, 0, 0] == 1 and want["argmax"].reshape(n, lo, c)[0, 1, 0] == 3
    assert want["argmax"].reshape(n, lo, c)[0, 1, 2] == 5 and want["argmax"].reshape(n, lo, c)[0, 2, 2] == 5
    assert want["argmax"].reshape(n, lo, c)[1, 0, 1] == 0 and want["argmax"].reshape(n, lo, c)[1, 3, 0] == 6
    y_nan = np.isnan(want["max_y"])
    assert y_nan.sum() == 5
    torch = None
    try:
        import torch
    except ImportError:
        pass
    if torch is not None:
        yt = torch.nn.functional.max_pool1d(to_torch(torch, x, n, steps, c), k, s)
        np.testing.assert_array_equal(np.isnan(from_torch(yt, n, lo, c)), y_nan)
    backends = [("numpy", ref, np.array, np.asarray), ("cpu", cpu, np.array, np.asarray)]
    if cfg is not None:
        backends.append(("cuda", gpu, cuda_memory.to_backend, cuda_memory.to_host))
    for name, mod, put, get in backends:
        got = run(mod, x, dy, dyg, geo, put, get)
        np.testing.assert_array_equal(got["argmax"], want["argmax"], err_msg=name)
        np.testing.assert_array_equal(got["max_y"], want["max_y"], err_msg=name)  # NaN == NaN here
        np.testing.assert_allclose(got["max_dx"], want["max_dx"], rtol=1e-14, err_msg=name)
        assert np.isnan(got["avg_y"]).sum() == 5 and np.isnan(got["gavg_y"][0, [0, 2]]).all()
        assert not np.isnan(got["gavg_y"][0, 1])


# ---- gradients by central finite differences ------------------------------------------------

def _fd_check(forward, backward, x, y_shape, eps, rtol, atol, seed=1):
    """backward(w) against central differences of the loss sum(w * forward(x)), every input."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=y_shape)
    dx = np.full_like(x, np.nan)
    backward(w, dx)
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd[idx] = (np.sum(w * forward(xp)) - np.sum(w * forward(xm))) / (2 * eps)
    np.testing.assert_allclose(dx, fd, rtol=rtol, atol=atol)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("mod", [ref, cpu], ids=["numpy", "cpu"])
def test_average_pool_gradients_by_finite_differences(mod, geo):
    n, steps, c, k, s = geo
    lo = out_steps(steps, k, s)
    x = np.random.default_rng(2).normal(size=(n, steps * c))

    def pooled(xv):
        y = np.empty((n, lo * c))
        mod.avgpool1d_forward(xv, y, steps, c, k, s)
        return y

    def pooled_globally(xv):
        y = np.empty((n, c))
        mod.global_avgpool1d_forward(xv, y, steps, c)
        return y

    _fd_check(pooled, lambda w, dx: mod.avgpool1d_backward(w, dx, steps, c, k, s),
              x, (n, lo * c), 1e-6, 1e-7, 1e-9)
    _fd_check(pooled_globally, lambda w, dx: mod.global_avgpool1d_backward(w, dx, steps, c),
              x, (n, c), 1e-6, 1e-7, 1e-9)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("mod", [ref, cpu], ids=["numpy", "cpu"])
def test_max_pool_gradients_by_finite_differences(mod, geo):
    """Distinct inputs at least 1e-3 apart, steps of 1e-6: no maximum changes place."""
    n, steps, c, k, s = geo
    lo = out_steps(steps, k, s)
    rng = np.random.default_rng(3)
    x = (rng.permutation(n * steps * c).reshape(n, steps * c) * 1e-3 - 0.2).astype(np.float64)
    argmax = np.empty((n, lo * c), np.int64)

    def pooled(xv):
        y = np.empty((n, lo * c))
        mod.maxpool1d_forward(xv, y, argmax, steps, c, k, s)
        return y

    pooled(x)
    _fd_check(pooled, lambda w, dx: mod.maxpool1d_backward(w, argmax, dx, steps, c, k, s),
              x, (n, lo * c), 1e-6, 1e-8, 1e-10)


@pytest.mark.parametrize("mod", [ref, cpu], ids=["numpy", "cpu"])
def test_max_pool_gradient_goes_to_the_argmax_first_on_ties(mod):
    n, steps, c, k, s = 1, 7, 2, 3, 2
    lo = out_steps(steps, k, s)   # 3 windows: steps 0-2, 2-4, 4-6
    x = np.zeros((n, steps, c))
    x[0, :, 0] = [1, 5, 5, 2, 5, 5, 0]      # ties: windows pick steps 1, 2, 4
    x[0, :, 1] = [0, 1, 9, 1, 0, 3, 3]      # step 2 is the maximum of two windows; ties at 5, 6
    x = x.reshape(n, steps * c)
    y, argmax = np.empty((n, lo * c)), np.empty((n, lo * c), np.int64)
    mod.maxpool1d_forward(x, y, argmax, steps, c, k, s)
    np.testing.assert_array_equal(argmax.reshape(lo, c), [[1, 2], [2, 2], [4, 5]])
    np.testing.assert_array_equal(y.reshape(lo, c), [[5, 9], [5, 9], [5, 3]])
    for t in range(lo):
        for ch in range(c):
            dy = np.zeros((n, lo * c))
            dy[0, t * c + ch] = 1.0
            dx = np.full((n, steps * c), np.nan)
            mod.maxpool1d_backward(dy, argmax, dx, steps, c, k, s)
            want = np.zeros((steps, c))
            want[argmax[0, t * c + ch], ch] = 1.0
            np.testing.assert_array_equal(dx.reshape(steps, c), want)
    dx = np.empty((n, steps * c))
    mod.maxpool1d_backward(np.full((n, lo * c), 0.5), argmax, dx, steps, c, k, s)
    np.testing.assert_array_equal(dx.reshape(steps, c)[:, 1], [0, 0, 1.0, 0, 0, 0.5, 0])  # two windows add


# ---- cpu against the reference ---------------------------------------------------------------

@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("geo", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_matches_reference(dtype, geo, ties):
    """Same order of every sum and the same divisions: the same bits, float32 in float32."""
    x, dy, dyg = make_inputs(geo, dtype, ties)
    assert_same_bits(run(cpu, x, dy, dyg, geo), run(ref, x, dy, dyg, geo))


@njit
def _pool_through_views(ws, idx, n, steps, c, k, s, offsets):
    """Every cpu kernel on rows_view views of one flat workspace (as the fused path calls
    them): x, dy, dyg, then the outputs, at the element offsets given."""
    lo = (steps - k) // s + 1
    x = rows_view(ws, offsets[0], n, steps * c)
    dy = rows_view(ws, offsets[1], n, lo * c)
    dyg = rows_view(ws, offsets[2], n, c)
    y = rows_view(ws, offsets[3], n, lo * c)
    dx = rows_view(ws, offsets[4], n, steps * c)
    ya = rows_view(ws, offsets[5], n, lo * c)
    dxa = rows_view(ws, offsets[6], n, steps * c)
    yg = rows_view(ws, offsets[7], n, c)
    dxg = rows_view(ws, offsets[8], n, steps * c)
    am = rows_view(flat_view(idx, 3, n * lo * c), 0, n, lo * c)
    cpu.maxpool1d_forward(x, y, am, steps, c, k, s)
    cpu.maxpool1d_backward(dy, am, dx, steps, c, k, s)
    cpu.avgpool1d_forward(x, ya, steps, c, k, s)
    cpu.avgpool1d_backward(dy, dxa, steps, c, k, s)
    cpu.global_avgpool1d_forward(x, yg, steps, c)
    cpu.global_avgpool1d_backward(dyg, dxg, steps, c)


@pytest.mark.parametrize("geo", [GEOMETRIES[1], GEOMETRIES[2], GEOMETRIES[4]], ids=[IDS[1], IDS[2], IDS[4]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_kernels_called_from_njit_on_borrowed_views(dtype, geo):
    n, steps, c, k, s = geo
    lo = out_steps(steps, k, s)
    x, dy, dyg = make_inputs(geo, dtype, True)
    sizes = [x.size, dy.size, dyg.size, dy.size, x.size, dy.size, x.size, dyg.size, x.size]
    offsets = np.cumsum([5] + sizes[:-1]).astype(np.int64)   # 5 elements of padding in front
    ws = np.full(5 + sum(sizes) + 3, 7, dtype)
    for off, a in zip(offsets[:3], (x, dy, dyg)):
        ws[off:off + a.size] = a.ravel()
    idx = np.full(n * lo * c + 6, -5, np.int64)
    _pool_through_views(ws, idx, n, steps, c, k, s, offsets)
    part = {name: ws[o:o + size].reshape(n, -1) for name, o, size in zip(
        ["x", "dy", "dyg", "max_y", "max_dx", "avg_y", "avg_dx", "gavg_y", "gavg_dx"], offsets, sizes)}
    part["argmax"] = idx[3:3 + n * lo * c].reshape(n, -1)
    want = run(ref, x, dy, dyg, geo)
    assert_same_bits({name: part[name] for name in want}, want)
    assert np.all(ws[:5] == 7) and np.all(ws[-3:] == 7)                # nothing written outside
    assert np.all(idx[:3] == -5) and np.all(idx[-3:] == -5)


@pytest.mark.parametrize("mod", [ref, cpu], ids=["numpy", "cpu"])
def test_empty_batch(mod):
    steps, c, k, s = 6, 3, 2, 2
    x, y = np.zeros((0, steps * c)), np.zeros((0, 3 * c))
    am = np.zeros((0, 3 * c), np.int64)
    mod.maxpool1d_forward(x, y, am, steps, c, k, s)
    mod.maxpool1d_backward(y, am, x, steps, c, k, s)
    mod.avgpool1d_forward(x, y, steps, c, k, s)
    mod.avgpool1d_backward(y, x, steps, c, k, s)
    mod.global_avgpool1d_forward(x, np.zeros((0, c)), steps, c)
    mod.global_avgpool1d_backward(np.zeros((0, c)), x, steps, c)


# ---- cuda against the reference ---------------------------------------------------------------

CUDA_GEOMETRIES = [(2, 9, 3, 3, 1), (3, 10, 1, 3, 3), (1, 7, 5, 7, 7), (2, 10, 2, 2, 3)]


@needs_cuda
@pytest.mark.parametrize("geo", CUDA_GEOMETRIES, ids=["n{}-L{}-C{}-k{}-s{}".format(*g) for g in CUDA_GEOMETRIES])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_cuda_matches_reference(dtype, geo, ties):
    n, steps, c, k, s = geo
    if geo == CUDA_GEOMETRIES[0]:   # ragged last blocks and grid-stride loops that go round
        tpb, grid = cfg.TPB, cfg.grid(n * steps * c)
        assert tpb == SMALL["TPB"] and (n * steps * c) % tpb and n * steps * c > tpb * grid
        assert (n * out_steps(steps, k, s) * c) % tpb and n * out_steps(steps, k, s) * c > tpb * grid
    x, dy, dyg = make_inputs(geo, dtype, ties)
    got = run(gpu, x, dy, dyg, geo, cuda_memory.to_backend, cuda_memory.to_host)
    assert_same_bits(got, run(ref, x, dy, dyg, geo))


@needs_cuda
def test_cuda_empty_batch():
    steps, c, k, s = 6, 3, 2, 2
    put = cuda_memory.to_backend
    x, y = put(np.zeros((0, steps * c))), put(np.zeros((0, 3 * c)))
    am = put(np.zeros((0, 3 * c), np.int64))
    yg = put(np.zeros((0, c)))
    gpu.maxpool1d_forward(x, y, am, steps, c, k, s)
    gpu.maxpool1d_backward(y, am, x, steps, c, k, s)
    gpu.avgpool1d_forward(x, y, steps, c, k, s)
    gpu.avgpool1d_backward(y, x, steps, c, k, s)
    gpu.global_avgpool1d_forward(x, yg, steps, c)
    gpu.global_avgpool1d_backward(yg, x, steps, c)

