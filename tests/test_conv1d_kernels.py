"""Conv1D kernels (channels-last, im2col weights) in the three backends.

The reference is checked against torch.nn.functional.conv1d (forward and
autograd gradients, float64) and against central finite differences; im2col and
col2im against naive loops written from their formulas; the cpu kernels against
the reference (from Python and from inside @njit code on borrowed views); the
cuda kernels (in the simulator, with tiny launch sizes so ragged last blocks and
grid-stride loops run) against the reference.
"""
import numpy as np
import pytest
from numba import njit

from nnumba.backends.cpu import conv1d as cpu_conv
from nnumba.backends.cpu._views import flat_view, rows_view
from nnumba.backends.reference import conv1d as ref_conv

try:  # the cuda tests need numba.cuda (the simulator); the others run without it
    from cuda_setup import SIMULATOR, cuda, small_launches  # noqa: F401 (autouse fixture)
    from nnumba.backends.cuda import conv1d as cuda_conv
    from nnumba.backends.cuda import memory as cuda_memory
    HAVE_CUDA = True
except (ImportError, pytest.skip.Exception):
    HAVE_CUDA = False

needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="numba.cuda is not available")

DTYPES = [np.float32, np.float64]
# (n, L_in, C_in, C_out, k, stride, pad)
GEOMETRIES = [
    (2, 7, 3, 4, 3, 1, 0),     # plain
    (3, 9, 2, 5, 3, 2, 1),     # stride 2, padding 1
    (1, 5, 1, 2, 7, 1, 1),     # k = L_in + 2p: L_out = 1; C_in = 1; n = 1
    (2, 11, 3, 3, 4, 3, 2),    # odd sizes, stride 3
    (2, 10, 2, 3, 2, 3, 0),    # stride > k: input steps no output reads (dx = 0 there)
    (1, 6, 1, 1, 1, 1, 0),     # k = 1, one channel in and out
    (2, 4, 2, 3, 2, 1, 3),     # padding > k: windows entirely in the padding
    (1, 1, 2, 2, 1, 10, 3),    # stride > L_in + p: the only window lies in the left padding
    (4, 40, 8, 33, 5, 2, 1),   # large enough for the BLAS products of the cpu backend
]
IDS = ["n{}-L{}-ci{}-co{}-k{}-s{}-p{}".format(*g) for g in GEOMETRIES]


def l_out(g):
    n, L, ci, co, k, s, p = g
    return (L + 2 * p - k) // s + 1


def problem(g, dtype, seed=0, bias=True):
    n, L, ci, co, k, s, p = g
    rng = np.random.default_rng(seed)
    lo = l_out(g)
    x = rng.normal(size=(n, L * ci)).astype(dtype)
    w = (rng.normal(size=(k * ci, co)) / np.sqrt(k * ci)).astype(dtype)
    b = rng.normal(size=co).astype(dtype) if bias else np.zeros(0, dtype)
    dy = rng.normal(size=(n, lo * co)).astype(dtype)
    return x, w, b, dy


def run(kernels, g, x, w, b, dy, want_dx=True):
    """(patches, y, dw, db, dpatches, dx) from ``kernels`` on host arrays."""
    n, L, ci, co, k, s, p = g
    lo = l_out(g)
    dt = x.dtype
    patches = np.full((n * lo, k * ci), np.nan, dt)
    y = np.full((n, lo * co), np.nan, dt)
    kernels.conv1d_forward(x, w, b, patches, y, L, ci, k, s, p)
    dw = np.full(w.shape, np.nan, dt)
    db = np.full(b.shape, np.nan, dt)
    dpatches = np.full(patches.shape, np.nan, dt)
    dx = np.full(x.shape, np.nan, dt) if want_dx else np.zeros((0, L * ci), dt)
    kernels.conv1d_backward(patches, w, dy, dw, db, dpatches, dx, L, ci, k, s, p)
    return patches, y, dw, db, dpatches, dx


def close(a, r, dtype, name=""):
    """a == r within float32 rtol 1e-5 / float64 rtol 1e-12, plus an absolute slack of
    0.1 rtol times the largest |r| (entries near zero come from cancelling sums of larger
    terms, whose rounding is relative to those terms)."""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    np.testing.assert_allclose(a, r, rtol=rtol, atol=0.1 * rtol * max(scale, 1e-3), err_msg=name)


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ---- the reference against its formulas, torch and finite differences --------------------------

def naive_im2col(x, g):
    n, L, ci, co, k, s, p = g
    lo = l_out(g)
    out = np.zeros((n * lo, k * ci), x.dtype)
    for r in range(n):
        for t in range(lo):
            for tap in range(k):
                pos = t * s - p + tap
                if 0 <= pos < L:
                    for c in range(ci):
                        out[r * lo + t, tap * ci + c] = x[r, pos * ci + c]
    return out


def naive_col2im(dpatches, g):
    n, L, ci, co, k, s, p = g
    lo = l_out(g)
    dx = np.zeros((n, L * ci), dpatches.dtype)
    for r in range(n):
        for pos in range(L):
            for c in range(ci):
                acc = dpatches.dtype.type(0)
                for t in range(lo):          # increasing t: the documented order
                    tap = pos + p - t * s
                    if 0 <= tap < k:
                        acc += dpatches[r * lo + t, tap * ci + c]
                dx[r, pos * ci + c] = acc
    return dx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES[:-1], ids=IDS[:-1])
def test_im2col_and_col2im_follow_their_formulas(g, dtype):
    """Both backends' im2col and col2im equal naive loops over the formulas, to the bit, and
    write nothing outside their outputs (each is the front of a buffer with a guard row)."""
    n, L, ci, co, k, s, p = g
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, L * ci)).astype(dtype)
    dpatches = rng.normal(size=(n * l_out(g), k * ci)).astype(dtype)
    want_p, want_dx = naive_im2col(x, g), naive_col2im(dpatches, g)
    for kernels in (ref_conv, cpu_conv):
        buf = np.full((want_p.shape[0] + 1, want_p.shape[1]), 7.0, dtype)
        patches = buf[:-1]
        kernels.im2col(x, patches, L, ci, k, s, p)
        np.testing.assert_array_equal(patches, want_p)
        np.testing.assert_array_equal(buf[-1], 7.0)
        buf = np.full((n + 1, L * ci), 7.0, dtype)
        dx = buf[:-1]
        kernels.col2im(dpatches, dx, L, ci, k, s, p)
        np.testing.assert_array_equal(dx, want_dx)
        np.testing.assert_array_equal(buf[-1], 7.0)


def to_torch_layout(x, g):
    n, L, ci = g[:3]
    return x.reshape(n, L, ci).transpose(0, 2, 1)


def torch_weight(w, g):
    """torch weight[o, c, tap] = w[tap C_in + c, o]."""
    k, ci, co = g[4], g[2], g[3]
    return w.reshape(k, ci, co).transpose(2, 1, 0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_reference_matches_torch(g, bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, L, ci, co, k, s, p = g
    lo = l_out(g)
    x, w, b, dy = problem(g, np.float64, seed=2, bias=bias)
    patches, y, dw, db, dpatches, dx = run(ref_conv, g, x, w, b, dy)

    xt = torch.tensor(np.ascontiguousarray(to_torch_layout(x, g)), requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(torch_weight(w, g)), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    yt = F.conv1d(xt, wt, bt, stride=s, padding=p)
    assert tuple(yt.shape) == (n, co, lo)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.reshape(n, lo, co).transpose(0, 2, 1))))

    y_t = yt.detach().numpy().transpose(0, 2, 1).reshape(n, lo * co)
    dx_t = xt.grad.numpy().transpose(0, 2, 1).reshape(n, L * ci)
    dw_t = wt.grad.numpy().transpose(2, 1, 0).reshape(k * ci, co)
    errors = {"y": max_rel(y, y_t), "dx": max_rel(dx, dx_t), "dw": max_rel(dw, dw_t)}
    if bias:
        errors["db"] = max_rel(db, bt.grad.numpy())
    for name, err in errors.items():
        assert err <= 1e-10, (name, err)


def test_weight_layout_is_torch_weight_transposed():
    """W[tap C_in + c, o] is torch's weight[o, c, tap]: a single nonzero weight moves the
    output by the input at the right step and channel."""
    g = (1, 6, 3, 2, 3, 1, 0)
    x = np.arange(18.0).reshape(1, 18)
    w = np.zeros((9, 2))
    tap, c, o = 2, 1, 1
    w[tap * 3 + c, o] = 1.0
    y = run(ref_conv, g, x, w, np.zeros(0), np.zeros((1, 8)))[1].reshape(4, 2)
    np.testing.assert_array_equal(y[:, 0], 0)
    np.testing.assert_array_equal(y[:, 1], [x[0, (t + tap) * 3 + c] for t in range(4)])


@pytest.mark.parametrize("g", GEOMETRIES[:-1], ids=IDS[:-1])
def test_reference_gradients_match_finite_differences(g):
    """Central differences of sum(y * R) with respect to every element of x, w and b."""
    n, L, ci, co, k, s, p = g
    lo = l_out(g)
    x, w, b, R = problem(g, np.float64, seed=3)
    *_, dw, db, _, dx = run(ref_conv, g, x, w, b, R)

    def loss(x_, w_, b_):
        y = np.empty((n, lo * co))
        ref_conv.conv1d_forward(x_, w_, b_, np.empty((n * lo, k * ci)), y, L, ci, k, s, p)
        return float(np.sum(y * R))

    eps = 1e-5
    for a, grad in ((x, dx), (w, dw), (b, db)):
        fd = np.empty_like(a)
        flat, fd_flat = a.reshape(-1), fd.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            up = loss(x, w, b)
            flat[i] = keep - eps
            down = loss(x, w, b)
            flat[i] = keep
            fd_flat[i] = (up - down) / (2 * eps)
        # the loss is linear in each argument: the differences are exact up to rounding
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)


def test_empty_dx_and_empty_batch():
    g = GEOMETRIES[1]
    g0 = (0,) + g[1:]
    for kernels in (ref_conv, cpu_conv):
        # no samples: y is empty and the weight gradients are empty sums
        x0, w0, b0, dy0 = problem(g0, np.float64)
        got0 = run(kernels, g0, x0, w0, b0, dy0)
        assert got0[1].shape == (0, l_out(g) * g[3])
        np.testing.assert_array_equal(got0[2], np.zeros_like(w0))
        np.testing.assert_array_equal(got0[3], np.zeros_like(b0))
        x, w, b, dy = problem(g, np.float64)
        patches, y, dw, db, dpatches, dx = run(kernels, g, x, w, b, dy, want_dx=False)
        assert dx.shape == (0, g[1] * g[2])
        assert np.all(np.isnan(dpatches))          # never written
        full = run(kernels, g, x, w, b, dy)
        np.testing.assert_array_equal(dw, full[2])
        np.testing.assert_array_equal(db, full[3])


# ---- cpu against the reference -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_cpu_matches_reference(g, bias, dtype):
    x, w, b, dy = problem(g, dtype, seed=4, bias=bias)
    want = run(ref_conv, g, x, w, b, dy)
    got = run(cpu_conv, g, x, w, b, dy)
    for name, a, r in zip(("patches", "y", "dw", "db", "dpatches", "dx"), got, want):
        assert a.dtype == dtype, name
        close(a, r, dtype, name)
    again = run(cpu_conv, g, x, w, b, dy)
    for a, r in zip(again, got):
        np.testing.assert_array_equal(a, r)   # deterministic: the same bits


@njit
def _cpu_in_njit(xb, wb, b, pb, yb, dyb, dwb, db, dpb, dxb, n, L, ci, co, k, s, p, y_as_rows):
    """The cpu kernels on borrowed views of flat buffers, from @njit code; y and dy are
    passed as (n, L_out C_out) or, with ``y_as_rows``, as (n L_out, C_out)."""
    lo = (L + 2 * p - k) // s + 1
    x = rows_view(xb, 0, n, L * ci)
    w = rows_view(wb, 0, k * ci, co)
    patches = rows_view(pb, 0, n * lo, k * ci)
    dw = rows_view(dwb, 0, k * ci, co)
    dpatches = rows_view(dpb, 0, n * lo, k * ci)
    dx = rows_view(dxb, 0, n, L * ci)
    bias = flat_view(b, 0, b.shape[0])
    grad_b = flat_view(db, 0, db.shape[0])
    if y_as_rows:
        y = rows_view(yb, 0, n * lo, co)
        dy = rows_view(dyb, 0, n * lo, co)
    else:
        y = rows_view(yb, 0, n, lo * co)
        dy = rows_view(dyb, 0, n, lo * co)
    cpu_conv.conv1d_forward(x, w, bias, patches, y, L, ci, k, s, p)
    cpu_conv.conv1d_backward(patches, w, dy, dw, grad_b, dpatches, dx, L, ci, k, s, p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("y_as_rows", [False, True], ids=["y-per-sample", "y-per-step"])
@pytest.mark.parametrize("g", [GEOMETRIES[1], GEOMETRIES[2], GEOMETRIES[-1]],
                         ids=[IDS[1], IDS[2], IDS[-1]])
def test_cpu_callable_from_njit_with_borrowed_views(g, y_as_rows, dtype):
    n, L, ci, co, k, s, p = g
    lo = l_out(g)
    x, w, b, dy = problem(g, dtype, seed=5)
    want = run(ref_conv, g, x, w, b, dy)
    pb = np.full(n * lo * k * ci, np.nan, dtype)
    yb = np.full(n * lo * co, np.nan, dtype)
    dwb, db = np.full(w.size, np.nan, dtype), np.full(co, np.nan, dtype)
    dpb, dxb = np.full(pb.size, np.nan, dtype), np.full(x.size, np.nan, dtype)
    _cpu_in_njit(x.ravel(), w.ravel(), b, pb, yb, dy.ravel(), dwb, db, dpb, dxb,
                 n, L, ci, co, k, s, p, y_as_rows)
    got = (pb.reshape(want[0].shape), yb.reshape(want[1].shape), dwb.reshape(w.shape), db,
           dpb.reshape(want[4].shape), dxb.reshape(x.shape))
    for name, a, r in zip(("patches", "y", "dw", "db", "dpatches", "dx"), got, want):
        close(a, r, dtype, name)


# ---- the MNIST-1D CNN geometry: three stacked convolutions -------------------------------------

MNIST1D = [  # (L_in, C_in, C_out, k, stride, pad) -> L_out
    ((40, 1, 25, 5, 2, 1), 19),
    ((19, 25, 25, 3, 2, 1), 10),
    ((10, 25, 25, 3, 2, 1), 5),
]


def test_mnist1d_output_steps():
    for (L, ci, co, k, s, p), lo in MNIST1D:
        assert ref_conv.output_steps(L, k, s, p) == lo
        assert cpu_conv.output_steps(L, k, s, p) == lo
        if HAVE_CUDA:
            assert cuda_conv.output_steps(L, k, s, p) == lo
        assert l_out((1, L, ci, co, k, s, p)) == lo
    for (prev, lo_prev), ((L, ci, *_), _) in zip(MNIST1D, MNIST1D[1:]):
        assert L == lo_prev and ci == prev[2]   # each layer's output is the next one's input


def stack(kernels, x, params, dy_last, dtype, upload=np.asarray, download=np.asarray):
    """Forward through the three layers, then backward from dy_last; the first layer gets an
    empty dx. Returns the host arrays (y_last, [(dw, db)] per layer, dx of layer 2's input)."""
    n = x.shape[0]
    acts, patches = [upload(x)], []
    for ((L, ci, co, k, s, p), lo), (w, b) in zip(MNIST1D, params):
        pt = upload(np.zeros((n * lo, k * ci), dtype))
        y = upload(np.zeros((n, lo * co), dtype))
        kernels.conv1d_forward(acts[-1], upload(w), upload(b), pt, y, L, ci, k, s, p)
        acts.append(y)
        patches.append(pt)
    dy = upload(dy_last)
    grads = []
    for i in (2, 1, 0):
        (L, ci, co, k, s, p), lo = MNIST1D[i]
        w, b = params[i]
        dw, db = upload(np.zeros_like(w)), upload(np.zeros_like(b))
        dpatches = upload(np.zeros((n * lo, k * ci), dtype))
        dx = upload(np.zeros((n, L * ci) if i else (0, L * ci), dtype))
        kernels.conv1d_backward(patches[i], upload(w), dy, dw, db, dpatches, dx, L, ci, k, s, p)
        grads.insert(0, (download(dw), download(db)))
        if i == 1:
            dx1 = download(dx)
        dy = dx
    return download(acts[-1]), grads, dx1


def mnist1d_problem(dtype, n):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, 40)).astype(dtype)
    params = [((rng.normal(size=(k * ci, co)) / np.sqrt(k * ci)).astype(dtype),
               rng.normal(size=co).astype(dtype)) for (L, ci, co, k, s, p), _ in MNIST1D]
    dy = rng.normal(size=(n, 5 * 25)).astype(dtype)
    return x, params, dy


def test_mnist1d_stack_reference_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n = 3
    x, params, dy = mnist1d_problem(np.float64, n)
    y, grads, dx1 = stack(ref_conv, x, params, dy, np.float64)
    h = torch.tensor(x.reshape(n, 1, 40))
    ws = []
    for ((L, ci, co, k, s, p), lo), (w, b) in zip(MNIST1D, params):
        wt = torch.tensor(np.ascontiguousarray(torch_weight(w, (n, L, ci, co, k, s, p))),
                          requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        if ws:
            h.retain_grad()
        ws.append((wt, bt, h))
        h = F.conv1d(h, wt, bt, stride=s, padding=p)
        assert h.shape[-1] == lo
    h.backward(torch.tensor(np.ascontiguousarray(dy.reshape(n, 5, 25).transpose(0, 2, 1))))
    assert max_rel(y, h.detach().numpy().transpose(0, 2, 1).reshape(n, -1)) <= 1e-10
    for ((L, ci, co, k, s, p), _), (wt, bt, _), (dw, db) in zip(MNIST1D, ws, grads):
        assert max_rel(dw, wt.grad.numpy().transpose(2, 1, 0).reshape(k * ci, co)) <= 1e-10
        assert max_rel(db, bt.grad.numpy()) <= 1e-10
    dx1_t = ws[1][2].grad.numpy().transpose(0, 2, 1).reshape(n, 19 * 25)
    assert max_rel(dx1, dx1_t) <= 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
def test_mnist1d_stack_cpu_matches_reference(dtype):
    x, params, dy = mnist1d_problem(dtype, 5)
    want = stack(ref_conv, x, params, dy, dtype)
    got = stack(cpu_conv, x, params, dy, dtype)
    close(got[0], want[0], dtype)
    for (dw, db), (dw_r, db_r) in zip(got[1], want[1]):
        close(dw, dw_r, dtype)
        close(db, db_r, dtype)
    close(got[2], want[2], dtype)


# ---- cuda (simulator) against the reference ----------------------------------------------------

CUDA_GEOMETRIES = [
    (2, 7, 3, 4, 3, 1, 0),   # 28 patch columns' worth of elements > 3 blocks x 8 threads
    (3, 9, 2, 5, 3, 2, 1),   # stride 2, padding 1
    (1, 5, 1, 2, 7, 1, 1),   # L_out = 1, C_in = 1, n = 1
    (2, 10, 2, 3, 2, 3, 0),  # stride > k
    (1, 4, 2, 3, 2, 1, 3),   # padding > k
    (1, 1, 2, 2, 1, 10, 3),  # the only window lies in the left padding
]
CUDA_IDS = ["n{}-L{}-ci{}-co{}-k{}-s{}-p{}".format(*g) for g in CUDA_GEOMETRIES]


def cuda_run(g, x, w, b, dy, want_dx=True):
    up = cuda_memory.to_backend
    n, L, ci, co, k, s, p = g
    lo = l_out(g)
    dt = x.dtype
    patches = up(np.full((n * lo, k * ci), np.nan, dt))
    y = up(np.full((n, lo * co), np.nan, dt))
    d_w = up(w)
    cuda_conv.conv1d_forward(up(x), d_w, up(b), patches, y, L, ci, k, s, p)
    dw = up(np.full(w.shape, np.nan, dt))
    db = up(np.full(b.shape, np.nan, dt))
    dpatches = up(np.full((n * lo, k * ci), np.nan, dt))
    dx = up(np.full(x.shape, np.nan, dt) if want_dx else np.zeros((0, L * ci), dt))
    cuda_conv.conv1d_backward(patches, d_w, up(dy), dw, db, dpatches, dx, L, ci, k, s, p)
    return tuple(cuda_memory.to_host(a) for a in (patches, y, dw, db, dpatches, dx))


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", CUDA_GEOMETRIES, ids=CUDA_IDS)
def test_cuda_matches_reference(g, dtype):
    bias = g != CUDA_GEOMETRIES[3]
    x, w, b, dy = problem(g, dtype, seed=7, bias=bias)
    want = run(ref_conv, g, x, w, b, dy)
    got = cuda_run(g, x, w, b, dy)
    for name, a, r in zip(("patches", "y", "dw", "db", "dpatches", "dx"), got, want):
        assert a.dtype == dtype, name
        close(a, r, dtype, name)
    # the copies move numbers and the gather adds them in the documented order: the same
    # bits as the naive loops (and as the cpu backend)
    np.testing.assert_array_equal(got[0], naive_im2col(x, g))
    np.testing.assert_array_equal(got[5], naive_col2im(got[4], g))


@needs_cuda
@pytest.mark.cuda
def test_cuda_empty_dx_and_empty_batch():
    g = CUDA_GEOMETRIES[1]
    x, w, b, dy = problem(g, np.float64, seed=8)
    want = run(ref_conv, g, x, w, b, dy)
    got = cuda_run(g, x, w, b, dy, want_dx=False)
    close(got[2], want[2], np.float64)
    close(got[3], want[3], np.float64)
    assert np.all(np.isnan(got[4])) and got[5].shape == (0, g[1] * g[2])
    # no samples at all: the weight gradients are empty sums
    g0 = (0,) + g[1:]
    x0, w0, b0, dy0 = problem(g0, np.float64, seed=8)
    got0 = cuda_run(g0, x0, w0, b0, dy0)
    np.testing.assert_array_equal(got0[2], np.zeros_like(w0))
    np.testing.assert_array_equal(got0[3], np.zeros_like(b0))
    want0 = run(ref_conv, g0, x0, w0, b0, dy0)
    np.testing.assert_array_equal(want0[2], got0[2])


@needs_cuda
@pytest.mark.cuda
def test_cuda_mnist1d_stack_matches_reference():
    dtype = np.float32
    x, params, dy = mnist1d_problem(dtype, 1)
    want = stack(ref_conv, x, params, dy, dtype)
    got = stack(cuda_conv, x, params, dy, dtype, upload=cuda_memory.to_backend,
                download=cuda_memory.to_host)
    close(got[0], want[0], dtype)
    for (dw, db), (dw_r, db_r) in zip(got[1], want[1]):
        close(dw, dw_r, dtype)
        close(db, db_r, dtype)
    close(got[2], want[2], dtype)
