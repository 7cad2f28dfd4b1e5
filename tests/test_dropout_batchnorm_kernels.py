"""Dropout and BatchNorm kernels in the three backends.

Dropout: the counter hash against an independent pure-Python (int) SplitMix64
chain and the published first SplitMix64 output, bit for bit in every backend
(cpu from Python and from @njit loops, cuda in a kernel), for counters near
2**63 and 2**64 - 1; the keep threshold u >= rate at its exact edge; the kept
fraction within 4 sigma of 1 - rate; a different mask for every counter;
forward and backward on cpu and cuda equal to the reference bit for bit, and
the gradient equal to y / x.

BatchNorm: the reference against torch.nn.BatchNorm1d / F.batch_norm (float64,
dense (n, C) and (n, C, L) data moved to channels-last rows): train-mode output,
running statistics after 3 updates, eval-mode output, autograd gradients of x,
gamma and beta; central finite differences; cpu against the reference (from
Python and from @njit code on borrowed views); cuda (simulator, tiny launches:
ragged channel blocks, ragged row-threads, block- and grid-stride loops)
against the reference.
"""
import numpy as np
import pytest
from numba import njit

from nnumba.backends.cpu import batchnorm as cpu_bn
from nnumba.backends.cpu import dropout as cpu_do
from nnumba.backends.cpu._views import flat_view, rows_view
from nnumba.backends.reference import batchnorm as ref_bn
from nnumba.backends.reference import dropout as ref_do

try:  # the cuda tests need numba.cuda (the simulator); the others run without it
    from cuda_setup import SIMULATOR, cfg, cuda, small_launches  # noqa: F401 (autouse fixture)
    from nnumba.backends.cuda import batchnorm as cuda_bn
    from nnumba.backends.cuda import dropout as cuda_do
    from nnumba.backends.cuda import memory as cuda_memory
    HAVE_CUDA = True
except (ImportError, pytest.skip.Exception):
    HAVE_CUDA = False

needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="numba.cuda is not available")
# the simulator runs the device functions on NumPy uint64 scalars, which warn when they wrap
sim_wraps = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

DTYPES = [np.float32, np.float64]
MASK64 = (1 << 64) - 1
EDGES = [0, 1, 2, 12345, 2**32 - 1, 2**32, 2**63 - 2, 2**63 - 1, 2**63, 2**63 + 1,
         2**64 - 2, 2**64 - 1]


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_same_bits(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(bits(a), bits(b))


# ---- dropout: the hash -----------------------------------------------------------------

def py_splitmix(z):
    """SplitMix64, written on Python ints (an oracle independent of NumPy's uint64)."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def py_hash(seed, t, op, row, element):
    z = py_splitmix(seed)
    for c in (t, op, row, element):
        z = py_splitmix(z ^ c)
    return z


def py_keep(h, rate):
    return (h >> 11) * 2.0 ** -53 >= rate


def counter_cases():
    """(seed, t, op, row, element) tuples: every counter at every edge value, the others
    random, and fully random tuples (some with huge values)."""
    rng = np.random.default_rng(7)
    cases = []
    for i in range(5):
        for v in EDGES:
            c = [int(a) for a in rng.integers(0, 2**63, 5, dtype=np.uint64)]
            c[i] = v
            cases.append(tuple(c))
    cases += [tuple(EDGES[j] for j in rng.integers(0, len(EDGES), 5)) for _ in range(40)]
    cases += [tuple(int(a) for a in rng.integers(0, 2**64 - 1, 5, dtype=np.uint64, endpoint=True))
              for _ in range(40)]
    cases += [(2**64 - 1,) * 5, (2**63,) * 5, (0,) * 5]
    return cases


def columns(cases):
    return [np.array([c[i] for c in cases], dtype=np.uint64) for i in range(5)]


@njit
def cpu_hash_loop(seed, t, op, row, element, out):
    for i in range(out.shape[0]):
        out[i] = cpu_do.dropout_hash(seed[i], t[i], op[i], row[i], element[i])


@njit
def cpu_keep_loop(seed, t, op, row, element, rate, out):
    for i in range(out.shape[0]):
        out[i] = cpu_do.dropout_keep(seed[i], t[i], op[i], row[i], element[i], rate[i])


def test_splitmix_is_the_published_generator():
    """SplitMix64 seeded with 0 first outputs 0xE220A8397B1DCDAF (Vigna's reference code)."""
    assert py_splitmix(0) == 0xE220A8397B1DCDAF
    assert int(ref_do.splitmix(np.uint64(0))) == 0xE220A8397B1DCDAF
    assert int(cpu_do.splitmix(np.uint64(0))) == 0xE220A8397B1DCDAF
    # the documented chaining
    s, t, op, r, e = 3, 5, 7, 11, 13
    assert py_hash(s, t, op, r, e) == py_splitmix(
        py_splitmix(py_splitmix(py_splitmix(py_splitmix(s) ^ t) ^ op) ^ r) ^ e)


def test_hash_is_bit_identical_on_the_host_backends():
    cases = counter_cases()
    want = np.array([py_hash(*c) for c in cases], dtype=np.uint64)
    cols = columns(cases)
    # the reference, vectorised over arrays and on scalars (Python ints and np.uint64)
    np.testing.assert_array_equal(ref_do.dropout_hash(*cols), want)
    for c, w in zip(cases[::7], want[::7]):
        assert int(ref_do.dropout_hash(*c)) == int(w)
        assert int(ref_do.dropout_hash(*map(np.uint64, c))) == int(w)
    # cpu: from an @njit loop over uint64 arrays, and from Python (np.uint64 counters)
    out = np.zeros(len(cases), np.uint64)
    cpu_hash_loop(*cols, out)
    np.testing.assert_array_equal(out, want)
    for c, w in zip(cases, want):
        assert int(cpu_do.dropout_hash(*map(np.uint64, c))) == int(w)
    # int64 counters (as a training loop passes them) are the same numbers
    small = [c for c in cases if max(c) < 2**63]
    want_small = np.array([py_hash(*c) for c in small], dtype=np.uint64)
    out = np.zeros(len(small), np.uint64)
    cpu_hash_loop(*[col.astype(np.int64) for col in columns(small)], out)
    np.testing.assert_array_equal(out, want_small)
    np.testing.assert_array_equal(
        ref_do.dropout_hash(*[col.astype(np.int64) for col in columns(small)]), want_small)


def test_keep_threshold_is_u_at_least_rate():
    """keep <=> (h >> 11) 2**-53 >= rate, exactly at the edge: rate = u keeps, the next
    float above u drops."""
    cases = counter_cases()[:60]
    hs = [py_hash(*c) for c in cases]
    us = np.array([(h >> 11) * 2.0 ** -53 for h in hs])
    cols = columns(cases)
    for rates, expect in ((us, True), (np.nextafter(us, 2.0), False), (np.zeros_like(us), True)):
        np.testing.assert_array_equal(ref_do.dropout_keep(*cols, rates), np.full(len(us), expect))
        out = np.zeros(len(us), np.bool_)
        cpu_keep_loop(*cols, rates, out)
        np.testing.assert_array_equal(out, np.full(len(us), expect))
        for c, rate in zip(cases[:5], rates[:5]):
            assert bool(cpu_do.dropout_keep(*map(np.uint64, c), rate)) == expect
    np.testing.assert_array_equal(ref_do.dropout_uniform(np.array(hs, np.uint64)), us)
    assert np.all((us >= 0) & (us < 1))


def hash_kernel_results(cases, rates):
    @cuda.jit
    def kernel(seed, t, op, row, element, rate, out, keep):
        for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            out[i] = cuda_do.dropout_hash(seed[i], t[i], op[i], row[i], element[i])
            keep[i] = cuda_do.dropout_keep(seed[i], t[i], op[i], row[i], element[i], rate[i])

    n = len(cases)
    out, keep = np.zeros(n, np.uint64), np.zeros(n, np.bool_)
    d_out, d_keep = cuda.to_device(out), cuda.to_device(keep)
    kernel[cfg.grid(n), cfg.TPB](*[cuda.to_device(c) for c in columns(cases)],
                                 cuda.to_device(np.asarray(rates, np.float64)), d_out, d_keep)
    return d_out.copy_to_host(), d_keep.copy_to_host()


@needs_cuda
@sim_wraps
def test_hash_is_bit_identical_on_cuda():
    cases = counter_cases()[::2]   # every edge value still appears (simulator threads are slow)
    rng = np.random.default_rng(3)
    rates = rng.uniform(0, 1, len(cases))
    hs = [py_hash(*c) for c in cases]
    rates[:4] = [(h >> 11) * 2.0 ** -53 for h in hs[:4]]  # the edge: kept
    h, keep = hash_kernel_results(cases, rates)
    np.testing.assert_array_equal(h, np.array(hs, np.uint64))
    np.testing.assert_array_equal(keep, [py_keep(x, r) for x, r in zip(hs, rates)])
    assert keep[:4].all()


# ---- dropout: the mask's statistics ------------------------------------------------------

@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_kept_fraction_is_one_minus_rate(rate):
    n, m = 100, 1000   # 10^5 elements
    x = np.ones((n, m))
    y = np.empty_like(x)
    cpu_do.dropout_forward(x, y, rate, 2024, 17, 3)
    kept = (y != 0).mean()
    sigma = np.sqrt(rate * (1 - rate) / (n * m))
    assert abs(kept - (1 - rate)) < 4 * sigma, (kept, 1 - rate, sigma)
    # the kept elements hold exactly the scale, and the reference draws the same mask
    assert np.all(y[y != 0] == 1 / (1 - rate))
    np.testing.assert_array_equal(y != 0, ref_do._mask((n, m), rate, 2024, 17, 3))
    # no structure along rows or columns: each row's and column's fraction is plausible
    assert abs((y != 0).mean(axis=1) - (1 - rate)).max() < 5 * np.sqrt(rate * (1 - rate) / m)
    assert abs((y != 0).mean(axis=0) - (1 - rate)).max() < 5 * np.sqrt(rate * (1 - rate) / n)


def test_mask_changes_with_every_counter():
    rate, shape = 0.5, (40, 50)
    base = ref_do._mask(shape, rate, 5, 10, 2)
    for changed in [(6, 10, 2), (5, 11, 2), (5, 10, 3), (2**64 - 1, 10, 2), (5, 2**63, 2)]:
        other = ref_do._mask(shape, rate, *changed)
        differ = (other != base).mean()
        assert 0.4 < differ < 0.6, (changed, differ)   # independent masks: half differ
    # rows and elements: no two rows, and no two columns, share their mask
    assert len({r.tobytes() for r in base}) == shape[0]
    assert len({c.tobytes() for c in base.T}) == shape[1]
    # the hash itself: any one counter moved by one changes it (each step is a bijection)
    for c in counter_cases()[::5]:
        h = py_hash(*c)
        for i in range(5):
            moved = list(c)
            moved[i] = (moved[i] + 1) & MASK64
            assert int(ref_do.dropout_hash(*moved)) != h
            assert int(ref_do.dropout_hash(*moved)) == py_hash(*moved)


# ---- dropout: forward and backward --------------------------------------------------------

DROP_SHAPES = [(1, 1), (3, 5), (17, 33), (2, 129)]
RATES = [0.0, 0.25, 0.5, 0.9]


def dropout_inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    x.flat[0] = 0.0
    if x.size > 3:
        x.flat[1:4] = [np.inf, -0.0, np.nan]
    return x, rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", DROP_SHAPES)
@pytest.mark.parametrize("rate", RATES)
def test_dropout_reference_follows_the_definition(dtype, shape, rate):
    x, dy = dropout_inputs(shape, dtype)
    counters = (123456789, 42, 7)
    y = np.empty_like(x)
    ref_do.dropout_forward(x, y, rate, *counters)
    scale = dtype(1.0 / (1.0 - rate))
    n, m = shape
    for r in range(n):
        for e in range(m):
            keep = py_keep(py_hash(counters[0], counters[1], counters[2], r, e), rate)
            want = x[r, e] * scale if keep else dtype(0)
            assert bits(np.array([y[r, e]])) == bits(np.array([want], dtype)), (r, e)
    if rate == 0:
        assert_same_bits(y, x)
    dx = np.empty_like(dy)
    ref_do.dropout_backward(dy, dx, rate, *counters)
    assert_same_bits(dx, np.where(ref_do._mask(shape, rate, *counters), dy * scale, dtype(0)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", DROP_SHAPES)
@pytest.mark.parametrize("rate", RATES)
def test_dropout_cpu_equals_reference_bitwise(dtype, shape, rate):
    x, dy = dropout_inputs(shape, dtype, seed=shape[1])
    counters = (2**63 + 5, 9, 1)   # a seed above 2**63: the uint64 casts matter
    out = {}
    for name, k in (("ref", ref_do), ("cpu", cpu_do)):
        y = np.full_like(x, 7.0)
        k.dropout_forward(x, y, rate, np.uint64(counters[0]), counters[1], counters[2])
        dx = np.full_like(dy, 7.0)
        k.dropout_backward(dy, dx, rate, np.uint64(counters[0]), counters[1], counters[2])
        inplace = dy.copy()
        k.dropout_backward(inplace, inplace, rate, np.uint64(counters[0]), counters[1], counters[2])
        out[name] = (y, dx, inplace)
    for a, b in zip(out["cpu"], out["ref"]):
        assert_same_bits(a, b)
    y, dx, inplace = out["cpu"]
    assert_same_bits(inplace, dx)
    assert y.dtype == dtype and dx.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.3, 0.75])
def test_dropout_gradient_is_y_over_x(dtype, rate):
    """dL/dx = dL/dy * dy/dx with dy/dx = y / x (the kept scale or 0), for both host backends."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 2.0, size=(13, 21)).astype(dtype) * rng.choice([-1, 1], size=(13, 21))
    dy = rng.normal(size=x.shape).astype(dtype)
    eps = np.finfo(dtype).eps
    for k in (ref_do, cpu_do):
        y, dx, ones = np.empty_like(x), np.empty_like(x), np.ones_like(x)
        k.dropout_forward(x, y, rate, 99, 3, 4)
        k.dropout_backward(ones, dx, rate, 99, 3, 4)
        np.testing.assert_allclose(dx, y / x, rtol=2 * eps, atol=0)
        assert (dx == 0).any() and (dx != 0).any()
        k.dropout_backward(dy, dx, rate, 99, 3, 4)
        np.testing.assert_allclose(dx, dy * (y / x), rtol=4 * eps, atol=0)


@njit
def dropout_on_views(buf, n, m, rate, seed, t, op):
    """Dropout forward then backward in place, on borrowed views of one flat buffer:
    x = rows 0..n-1, y = the next n rows, dy = the n after."""
    x = rows_view(buf, 0, n, m)
    y = rows_view(buf, n * m, n, m)
    dy = rows_view(buf, 2 * n * m, n, m)
    cpu_do.dropout_forward(x, y, rate, seed, t, op)
    cpu_do.dropout_backward(dy, dy, rate, seed, t, op)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_cpu_from_njit_on_views(dtype):
    n, m = 6, 11
    buf = np.random.default_rng(1).normal(size=3 * n * m).astype(dtype)
    x, dy = buf[:n * m].reshape(n, m).copy(), buf[2 * n * m:].reshape(n, m).copy()
    dropout_on_views(buf, n, m, 0.4, 77, 5, 2)
    y, dx = np.empty_like(x), np.empty_like(x)
    ref_do.dropout_forward(x, y, 0.4, 77, 5, 2)
    ref_do.dropout_backward(dy, dx, 0.4, 77, 5, 2)
    assert_same_bits(buf[n * m:2 * n * m].reshape(n, m), y)
    assert_same_bits(buf[2 * n * m:].reshape(n, m), dx)
    assert_same_bits(buf[:n * m].reshape(n, m), x)   # x untouched


@needs_cuda
@sim_wraps
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,rate", [((1, 1), 0.5), ((5, 5), 0.5), ((3, 7), 0.0), ((4, 9), 0.8)])
def test_dropout_cuda_equals_reference_bitwise(dtype, shape, rate):
    """25 = 3 * 8 + 1 elements with 8-thread blocks and 3-block grids: a ragged block and a
    grid-stride loop; a seed above 2**63."""
    x, dy = dropout_inputs(shape, dtype, seed=3)
    counters = (2**64 - 3, 1000, 4)
    y_ref, dx_ref = np.empty_like(x), np.empty_like(x)
    ref_do.dropout_forward(x, y_ref, rate, *counters)
    ref_do.dropout_backward(dy, dx_ref, rate, *counters)
    y, dx = cuda_memory.to_backend(np.full_like(x, 7)), cuda_memory.to_backend(np.full_like(x, 7))
    d_dy = cuda_memory.to_backend(dy)
    cuda_do.dropout_forward(cuda_memory.to_backend(x), y, rate, *counters)
    cuda_do.dropout_backward(d_dy, dx, rate, *counters)
    assert_same_bits(cuda_memory.to_host(y), y_ref)
    assert_same_bits(cuda_memory.to_host(dx), dx_ref)
    cuda_do.dropout_backward(d_dy, d_dy, rate, *counters)   # in place
    assert_same_bits(cuda_memory.to_host(d_dy), dx_ref)


@needs_cuda
def test_dropout_cuda_empty():
    for shape in [(0, 4), (3, 0)]:
        x = cuda_memory.zeros(shape, np.float64)
        y = cuda_memory.zeros(shape, np.float64)
        cuda_do.dropout_forward(x, y, 0.5, 1, 2, 3)
        cuda_do.dropout_backward(x, y, 0.5, 1, 2, 3)
        assert cuda_memory.to_host(y).shape == shape
    for k in (ref_do, cpu_do):
        x = np.zeros((0, 4))
        k.dropout_forward(x, x.copy(), 0.5, 1, 2, 3)


# ---- batchnorm ----------------------------------------------------------------------------

MOMENTUM, EPS = 0.1, 1e-5


class State:
    """Inputs, outputs and running statistics of one backend's batchnorm calls (host arrays)."""

    def __init__(self, rows, n_ch, dtype, seed=0, offset=1.0):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.offset = offset
        self.gamma = rng.normal(size=n_ch).astype(dtype)
        self.beta = rng.normal(size=n_ch).astype(dtype)
        self.running_mean = rng.normal(size=n_ch).astype(dtype)
        self.running_var = rng.uniform(0.5, 2, size=n_ch).astype(dtype)
        self.shape = (rows, n_ch)
        self.dtype = dtype

    def batch(self):
        rng = self.rng
        scale = rng.uniform(0.5, 3, size=self.shape[1])
        return (rng.normal(size=self.shape) * scale + self.offset).astype(self.dtype)


def run_host(k, x_batches, dy, st, eval_x, dx_empty=False):
    """Three training updates (outputs of the last kept), eval on eval_x, backward with dy."""
    gamma, beta = st.gamma, st.beta
    rm, rv = st.running_mean.copy(), st.running_var.copy()
    for x in x_batches:
        y, xhat = np.full_like(x, np.nan), np.full_like(x, np.nan)
        inv_std = np.full(x.shape[1], np.nan, x.dtype)
        k.batchnorm_forward_train(x, gamma, beta, y, xhat, inv_std, rm, rv, MOMENTUM, EPS)
    y_eval = np.full_like(eval_x, np.nan)
    k.batchnorm_forward_eval(eval_x, gamma, beta, y_eval, rm, rv, EPS)
    dx = np.zeros((0, 0), x.dtype) if dx_empty else np.full_like(x, np.nan)
    dgamma, dbeta = np.full_like(gamma, np.nan), np.full_like(beta, np.nan)
    k.batchnorm_backward(dy, xhat, inv_std, gamma, dx, dgamma, dbeta)
    return dict(y=y, xhat=xhat, inv_std=inv_std, running_mean=rm, running_var=rv, y_eval=y_eval,
                dx=dx, dgamma=dgamma, dbeta=dbeta)


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-300))


# (layout, n, C, L): dense (n, C) rows, or an (n, C, L) sequence as (n * L, C) channels-last rows
TORCH_CASES = [("dense", 7, 5, 1), ("dense", 2, 3, 1), ("dense", 64, 9, 1),
               ("sequence", 4, 3, 6), ("sequence", 2, 10, 5), ("sequence", 1, 4, 3)]


def to_rows(x_ncl):
    """(n, C, L) -> channels-last (n, L, C) -> (n * L, C)."""
    n, c, length = x_ncl.shape
    return np.ascontiguousarray(x_ncl.transpose(0, 2, 1)).reshape(n * length, c)


@pytest.mark.parametrize("layout,n,n_ch,length", TORCH_CASES)
def test_batchnorm_reference_matches_torch(layout, n, n_ch, length):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n * 100 + n_ch)
    shape = (n, n_ch) if layout == "dense" else (n, n_ch, length)
    rows_of = (lambda a: a) if layout == "dense" else to_rows
    bn = torch.nn.BatchNorm1d(n_ch, eps=EPS, momentum=MOMENTUM, dtype=torch.float64)
    gamma, beta = rng.normal(size=n_ch), rng.normal(size=n_ch)
    rm0, rv0 = rng.normal(size=n_ch), rng.uniform(0.5, 2, size=n_ch)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
        bn.running_mean.copy_(torch.from_numpy(rm0))
        bn.running_var.copy_(torch.from_numpy(rv0))
    rm, rv = rm0.copy(), rv0.copy()
    bn.train()
    for step in range(3):   # three updates of the running statistics
        x = rng.normal(size=shape) * rng.uniform(0.5, 3, size=(n_ch,) + (1,) * (len(shape) - 2)) + 2.0
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = bn(xt)
        rows = rows_of(x)
        y, xhat = np.empty_like(rows), np.empty_like(rows)
        inv_std = np.empty(n_ch)
        ref_bn.batchnorm_forward_train(rows, gamma, beta, y, xhat, inv_std, rm, rv, MOMENTUM, EPS)
        y_t = rows_of(yt.detach().numpy())
        np.testing.assert_allclose(y, y_t, rtol=1e-10, atol=1e-10 * np.abs(y_t).max())
        np.testing.assert_allclose(rm, bn.running_mean.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=1e-10, atol=1e-14)
    # gradients of the last batch by autograd with a random upstream dy
    dy = rng.normal(size=shape)
    yt.backward(torch.from_numpy(dy))
    dx, dgamma, dbeta = np.empty_like(rows), np.empty(n_ch), np.empty(n_ch)
    ref_bn.batchnorm_backward(rows_of(dy), xhat, inv_std, gamma, dx, dgamma, dbeta)
    for ours, theirs in ((dx, rows_of(xt.grad.numpy())), (dgamma, bn.weight.grad.numpy()),
                         (dbeta, bn.bias.grad.numpy())):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10 * np.abs(theirs).max())
    # eval mode, with the running statistics after the three updates
    bn.eval()
    x = rng.normal(size=shape) * 2 + 1
    with torch.no_grad():
        y_t = rows_of(bn(torch.from_numpy(x)).numpy())
        y_f = rows_of(torch.nn.functional.batch_norm(
            torch.from_numpy(x), torch.from_numpy(rm), torch.from_numpy(rv),
            torch.from_numpy(gamma), torch.from_numpy(beta), training=False, eps=EPS).numpy())
    y = np.empty_like(rows_of(x))
    ref_bn.batchnorm_forward_eval(rows_of(x), gamma, beta, y, rm, rv, EPS)
    np.testing.assert_allclose(y, y_t, rtol=1e-10, atol=1e-10 * np.abs(y_t).max())
    np.testing.assert_allclose(y, y_f, rtol=1e-10, atol=1e-10 * np.abs(y_f).max())


def test_batchnorm_statistics_are_two_pass_in_row_order():
    """Channel 0 sits on a large offset: the two-pass variance is exact (3.5) where
    E[x^2] - E[x]^2 would lose every digit; channel 1 is random: mean and variance are the
    row-by-row float64 sums, bit for bit (reference and cpu)."""
    x = np.array([[1e9 + 1, 0.3], [1e9 + 2, -1.7], [1e9 + 3, 2.9], [1e9 + 6, 0.01]])
    assert np.mean(x[:, 0] ** 2) - np.mean(x[:, 0]) ** 2 != 3.5
    for k in (ref_bn, cpu_bn):
        y, xhat, inv_std = np.empty_like(x), np.empty_like(x), np.empty(2)
        rm, rv = np.zeros(2), np.zeros(2)
        k.batchnorm_forward_train(x, np.ones(2), np.zeros(2), y, xhat, inv_std, rm, rv, 1.0, 0.0)
        assert rm[0] == 1e9 + 3 and rv[0] == 3.5 * 4 / 3 and inv_std[0] == 1 / np.sqrt(3.5)
        c = x[:, 1]
        mean = (((c[0] + c[1]) + c[2]) + c[3]) / 4
        var = ((((c[0] - mean) ** 2 + (c[1] - mean) ** 2) + (c[2] - mean) ** 2)
               + (c[3] - mean) ** 2) / 4
        assert rm[1] == mean and rv[1] == var * 4 / 3 and inv_std[1] == 1 / np.sqrt(var)


@pytest.mark.parametrize("shape", [(6, 4), (2, 3), (9, 10)])
def test_batchnorm_gradients_match_finite_differences(shape):
    """Central differences of L = sum(y * R), y the train-mode output, for x, gamma, beta."""
    rng = np.random.default_rng(shape[0])
    rows, n_ch = shape
    x = rng.normal(size=shape) * 2 + 0.5
    gamma, beta = rng.normal(size=n_ch), rng.normal(size=n_ch)
    upstream = rng.normal(size=shape)

    def loss(x, gamma, beta):
        y, xhat, inv_std = np.empty_like(x), np.empty_like(x), np.empty(n_ch)
        ref_bn.batchnorm_forward_train(x, gamma, beta, y, xhat, inv_std, np.zeros(n_ch),
                                       np.ones(n_ch), MOMENTUM, EPS)
        return float(np.sum(y * upstream)), xhat, inv_std

    _, xhat, inv_std = loss(x, gamma, beta)
    dx, dgamma, dbeta = np.empty_like(x), np.empty(n_ch), np.empty(n_ch)
    ref_bn.batchnorm_backward(upstream, xhat, inv_std, gamma, dx, dgamma, dbeta)
    h = 1e-6
    for a, grad in ((x, dx), (gamma, dgamma), (beta, dbeta)):
        numeric = np.empty_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + h
            up = loss(x, gamma, beta)[0]
            a[i] = keep - h
            down = loss(x, gamma, beta)[0]
            a[i] = keep
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)
    # y does not change when a channel's x is shifted: dx sums to 0 over each channel
    np.testing.assert_allclose(dx.sum(axis=0), 0, atol=1e-12)


# (rows, C): 8-channel tiles and remainders of the cpu statistics; rows = 2 (the minimum)
BN_SHAPES = [(2, 1), (5, 3), (3, 8), (7, 23), (64, 17), (33, 16)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_cpu_matches_reference(dtype, shape):
    st = State(*shape, dtype, seed=sum(shape))
    batches = [st.batch() for _ in range(3)]
    eval_x = st.batch()
    dy = st.rng.normal(size=shape).astype(dtype)
    ref = run_host(ref_bn, batches, dy, st, eval_x)
    out = run_host(cpu_bn, batches, dy, st, eval_x)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], **tol(dtype), err_msg=name)
        assert out[name].dtype == dtype
        # the same additions in the same order: the same bits (see cpu/batchnorm.py)
        assert_same_bits(out[name], ref[name])
    skipped = run_host(cpu_bn, batches, dy, st, eval_x, dx_empty=True)
    for name in ("dgamma", "dbeta", "y", "running_var"):
        assert_same_bits(skipped[name], ref[name])
    assert skipped["dx"].size == 0
    # dx may be dy (in place)
    for k in (ref_bn, cpu_bn):
        inplace = dy.copy()
        dgamma, dbeta = np.empty_like(st.gamma), np.empty_like(st.beta)
        k.batchnorm_backward(inplace, ref["xhat"], ref["inv_std"], st.gamma, inplace, dgamma, dbeta)
        assert_same_bits(inplace, ref["dx"])


@njit
def batchnorm_on_views(buf, vec, rows, n_ch, momentum, eps):
    """Train forward, eval forward and backward on borrowed views: buf holds x, y, xhat, dy,
    dx, y_eval as consecutive (rows, C) blocks; vec holds gamma, beta, inv_std,
    running_mean, running_var, dgamma, dbeta as consecutive (C,) blocks."""
    size = rows * n_ch
    x = rows_view(buf, 0, rows, n_ch)
    y = rows_view(buf, size, rows, n_ch)
    xhat = rows_view(buf, 2 * size, rows, n_ch)
    dy = rows_view(buf, 3 * size, rows, n_ch)
    dx = rows_view(buf, 4 * size, rows, n_ch)
    y_eval = rows_view(buf, 5 * size, rows, n_ch)
    gamma, beta = flat_view(vec, 0, n_ch), flat_view(vec, n_ch, n_ch)
    inv_std = flat_view(vec, 2 * n_ch, n_ch)
    rm, rv = flat_view(vec, 3 * n_ch, n_ch), flat_view(vec, 4 * n_ch, n_ch)
    dgamma, dbeta = flat_view(vec, 5 * n_ch, n_ch), flat_view(vec, 6 * n_ch, n_ch)
    cpu_bn.batchnorm_forward_train(x, gamma, beta, y, xhat, inv_std, rm, rv, momentum, eps)
    cpu_bn.batchnorm_forward_eval(x, gamma, beta, y_eval, rm, rv, eps)
    cpu_bn.batchnorm_backward(dy, xhat, inv_std, gamma, dx, dgamma, dbeta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3), (6, 19)])
def test_batchnorm_cpu_from_njit_on_views(dtype, shape):
    rows, n_ch = shape
    st = State(rows, n_ch, dtype, seed=rows)
    x, dy = st.batch(), st.rng.normal(size=shape).astype(dtype)
    buf = np.full(6 * rows * n_ch, np.nan, dtype)
    buf[:x.size] = x.ravel()
    buf[3 * x.size:4 * x.size] = dy.ravel()
    vec = np.full(7 * n_ch, np.nan, dtype)
    vec[:n_ch], vec[n_ch:2 * n_ch] = st.gamma, st.beta
    vec[3 * n_ch:4 * n_ch], vec[4 * n_ch:5 * n_ch] = st.running_mean, st.running_var
    batchnorm_on_views(buf, vec, rows, n_ch, MOMENTUM, EPS)
    ref = run_host(ref_bn, [x], dy, st, x)
    blocks = buf.reshape(6, rows, n_ch)
    vecs = vec.reshape(7, n_ch)
    for got, name in ((blocks[1], "y"), (blocks[2], "xhat"), (blocks[4], "dx"), (blocks[5], "y_eval"),
                      (vecs[2], "inv_std"), (vecs[3], "running_mean"), (vecs[4], "running_var"),
                      (vecs[5], "dgamma"), (vecs[6], "dbeta")):
        np.testing.assert_allclose(got, ref[name], **tol(dtype), err_msg=name)
    assert_same_bits(blocks[0], x)


def run_cuda(x_batches, dy, st, eval_x, dx_empty=False, dx_is_dy=False):
    d = cuda_memory.to_backend
    gamma, beta = d(st.gamma), d(st.beta)
    rm, rv = d(st.running_mean), d(st.running_var)
    for x in x_batches:
        y, xhat = d(np.full_like(x, np.nan)), d(np.full_like(x, np.nan))
        inv_std = d(np.full(x.shape[1], np.nan, x.dtype))
        cuda_bn.batchnorm_forward_train(d(x), gamma, beta, y, xhat, inv_std, rm, rv, MOMENTUM, EPS)
    y_eval = d(np.full_like(eval_x, np.nan))
    cuda_bn.batchnorm_forward_eval(d(eval_x), gamma, beta, y_eval, rm, rv, EPS)
    d_dy = d(dy)
    dx = d(np.zeros((0, 0), x.dtype)) if dx_empty else d_dy if dx_is_dy else d(np.full_like(x, np.nan))
    dgamma, dbeta = d(np.full_like(st.gamma, np.nan)), d(np.full_like(st.beta, np.nan))
    cuda_bn.batchnorm_backward(d_dy, xhat, inv_std, gamma, dx, dgamma, dbeta)
    h = cuda_memory.to_host
    return dict(y=h(y), xhat=h(xhat), inv_std=h(inv_std), running_mean=h(rm), running_var=h(rv),
                y_eval=h(y_eval), dx=h(dx), dgamma=h(dgamma), dbeta=h(dbeta))


# with 4 x 4 statistics blocks, 3-block grids and 8-thread elementwise blocks: 7 channels
# (a ragged channel block), 13 (a block-stride loop over 4 channel blocks), 9 rows (ragged
# row-threads), 5 x 13 = 65 elements (a grid-stride loop)
CUDA_BN_SHAPES = [(2, 1), (9, 7), (5, 13)]


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CUDA_BN_SHAPES)
def test_batchnorm_cuda_matches_reference(dtype, shape):
    st = State(*shape, dtype, seed=sum(shape) + 1)
    batches = [st.batch() for _ in range(3)]
    eval_x = st.batch()
    dy = st.rng.normal(size=shape).astype(dtype)
    ref = run_host(ref_bn, batches, dy, st, eval_x)
    out = run_cuda(batches, dy, st, eval_x)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], **tol(dtype), err_msg=name)
        assert out[name].dtype == dtype
    again = run_cuda(batches, dy, st, eval_x)   # deterministic: the same bits every run
    for name in ref:
        assert_same_bits(again[name], out[name])
    skipped = run_cuda(batches, dy, st, eval_x, dx_empty=True)
    assert skipped["dx"].size == 0
    assert_same_bits(skipped["dgamma"], out["dgamma"])
    inplace = run_cuda(batches, dy, st, eval_x, dx_is_dy=True)
    assert_same_bits(inplace["dx"], out["dx"])


@needs_cuda
def test_batchnorm_empty_batch():
    """No rows: dgamma = dbeta = 0 and nothing else is touched, on every backend."""
    g = np.ones(3)
    for k, d, h in ((ref_bn, np.asarray, np.asarray), (cpu_bn, np.asarray, np.asarray),
                    (cuda_bn, cuda_memory.to_backend, cuda_memory.to_host)):
        empty = d(np.zeros((0, 3)))
        dgamma, dbeta = d(np.full(3, np.nan)), d(np.full(3, np.nan))
        k.batchnorm_backward(empty, empty, d(g), d(g), d(np.zeros((0, 3))), dgamma, dbeta)
        np.testing.assert_array_equal(h(dgamma), 0)
        np.testing.assert_array_equal(h(dbeta), 0)
        k.batchnorm_forward_eval(empty, d(g), d(g), d(np.zeros((0, 3))), d(g), d(g), EPS)
