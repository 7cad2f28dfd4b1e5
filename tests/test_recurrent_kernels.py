"""SimpleRNN, LSTM and GRU kernels (forward and BPTT) in the reference and cpu backends.

The reference is checked against torch.nn.RNN (tanh and relu), LSTM and GRU in
float64 (outputs, the four parameter gradients and dx; a reverse layer against
torch on the time-flipped input, two layers sharing one output row against
torch's bidirectional module), and against central finite differences. The cpu
kernels are checked against the reference on the same grid (float64 1e-12,
float32 1e-5, every cache block, dhidden included, and the scratch), on
saturating inputs and NaN, from inside @njit code on borrowed views, and their
vectorisable exp / sigmoid / tanh against NumPy in ulps.
"""
import numpy as np
import pytest
from numba import njit

from nnumba.backends import codes
from nnumba.backends.cpu import _math as cpu_math
from nnumba.backends.cpu import recurrent as cpu_rnn
from nnumba.backends.cpu._views import flat_view, rows_view
from nnumba.backends.reference import recurrent as ref_rnn

DTYPES = [np.float32, np.float64]
# (cell code, SimpleRNN activation code)
CELLS = {"rnn-tanh": (codes.OP_SIMPLE_RNN, codes.TANH),
         "rnn-relu": (codes.OP_SIMPLE_RNN, codes.RELU),
         "lstm": (codes.OP_LSTM, codes.IDENTITY), "gru": (codes.OP_GRU, codes.IDENTITY)}
STEPS = [1, 2, 17]
# one direction on its own row; one reverse direction at channel U of a 2 U row; both
# directions of a Bidirectional layer sharing one row (forward at 0, reverse at U)
LAYOUTS = {"forward": ((0,), 1), "reverse-shared-row": ((1,), 2), "bidirectional": ((0, 1), 2)}
F_IN, UNITS = 3, 4


def gates(cell):
    return ref_rnn.GATES[cell]


def make_params(cell, features, units, dtype, rng, scale=1.0):
    g = gates(cell) * units
    lim = scale / np.sqrt(units)
    return [rng.uniform(-lim, lim, size=s).astype(dtype)
            for s in ((features, g), (units, g), (g,), (g,))]


def problem(cell, n, steps, layout, dtype, seed, features=F_IN, units=UNITS, scale=1.0):
    """(x, [W_ih, W_hh, b_ih, b_hh] per direction, the generator for what follows)."""
    rng = np.random.default_rng(seed)
    dirs = LAYOUTS[layout][0]
    x = rng.normal(size=(n, steps * features)).astype(dtype)
    params = [make_params(cell, features, units, dtype, rng, scale) for _ in dirs]
    return x, params, rng


def run(kernels, cell, act, x, params, steps, units, sequences, layout, dy=None, dx0=None,
        want_dx=True, rng=None):
    """Forward every direction into one output row, then backward (last direction first, as
    the interpreter runs a Bidirectional layer: the first backward writes dx unless ``dx0``
    is given, the others add). Returns (out, dy, [dW_ih, dW_hh, db_ih, db_hh] per direction,
    dx, caches, scratches)."""
    dirs, mult = LAYOUTS[layout]
    n, features = x.shape[0], x.shape[1] // steps
    dt = x.dtype
    oc = mult * units
    out = np.full((n, steps * oc if sequences else oc), np.nan, dt)
    caches = [np.full(n * ref_rnn.cache_width(cell, steps, features, units), np.nan, dt)
              for _ in dirs]
    seq = int(sequences)    # ints, as the interpreter passes them (one compiled signature)
    for d, rev in enumerate(dirs):
        kernels.recurrent_forward(cell, act, x, *params[d], caches[d], out, steps, features,
                                  units, rev, seq, rev * units, oc)
    if dy is None:
        dy = rng.normal(size=out.shape).astype(dt)
    dy_copy = dy.copy()
    if not want_dx:
        dx = np.zeros((0, x.shape[1]), dt)
    elif dx0 is None:
        dx = np.full(x.shape, np.nan, dt)
    else:
        dx = dx0.copy()
    grads = [[np.full(p.shape, np.nan, dt) for p in pp] for pp in params]
    scratches = [np.full(n * ref_rnn.scratch_width(cell, steps, features, units), np.nan, dt)
                 for _ in dirs]
    for d in range(len(dirs) - 1, -1, -1):
        rev = dirs[d]
        accumulate = int(dx0 is not None or d < len(dirs) - 1)
        w_ih, w_hh = params[d][0], params[d][1]
        kernels.recurrent_backward(cell, act, w_ih, w_hh, caches[d], dy, *grads[d], scratches[d],
                                   dx, accumulate, steps, features, units, rev, seq,
                                   rev * units, oc)
    np.testing.assert_array_equal(dy, dy_copy)   # dy is only read
    return out, dy, grads, dx, caches, scratches


def max_rel(a, b):
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale else float(np.max(np.abs(a), initial=0))


def close(a, r, rtol, name=""):
    """a == r within rtol elementwise plus an absolute slack of 0.1 rtol times the largest |r|
    (entries near zero are cancelling sums of larger terms). NaN must match NaN."""
    scale = float(np.nanmax(np.abs(r))) if np.any(np.isfinite(r)) else 0.0
    np.testing.assert_allclose(a, r, rtol=rtol, atol=0.1 * rtol * max(scale, 1e-3), err_msg=name)


# ---- the reference against torch ---------------------------------------------------------------

def torch_module(torch, cell, act, features, units, params, bidirectional):
    kw = dict(batch_first=True, bidirectional=bidirectional, dtype=torch.float64)
    if cell == codes.OP_SIMPLE_RNN:
        mod = torch.nn.RNN(features, units, nonlinearity="tanh" if act == codes.TANH else "relu",
                           **kw)
    elif cell == codes.OP_LSTM:
        mod = torch.nn.LSTM(features, units, **kw)
    else:
        mod = torch.nn.GRU(features, units, **kw)
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    with torch.no_grad():
        for d, pp in enumerate(params):
            for name, p in zip(names, pp):
                t = getattr(mod, name + ("_reverse" if d else ""))
                t.copy_(torch.from_numpy(np.ascontiguousarray(p.T if p.ndim == 2 else p)))
    return mod, names


def torch_run(cell, act, x, params, steps, units, sequences, layout, dy):
    """The same layer in torch: (out, [grads per direction], dx) laid out as nnumba's."""
    torch = pytest.importorskip("torch")
    dirs, mult = LAYOUTS[layout]
    n, features = x.shape[0], x.shape[1] // steps
    xs = x.reshape(n, steps, features)
    if dirs == (1,):        # a reverse layer alone is torch on the time-flipped input
        xs = xs[:, ::-1]
    xt = torch.tensor(xs.copy(), requires_grad=True)
    mod, names = torch_module(torch, cell, act, features, units, params, len(dirs) == 2)
    y, h = mod(xt)
    hn = h[0] if cell == codes.OP_LSTM else h      # (directions, n, U)
    oc = mult * units
    dyt = torch.tensor(dy)
    if sequences:
        g = dyt.reshape(n, steps, oc)
        if dirs == (1,):
            g = g[:, :, units:].flip(1)               # the reverse units, in torch's time order
        y.backward(g)
        out = y.detach().numpy()
        if dirs == (1,):
            out = np.concatenate([np.full_like(out, np.nan), out[:, ::-1]], axis=2)
        out = out.reshape(n, steps * oc)
    else:
        if dirs == (1,):
            g = dyt[:, units:]
            hn[0].backward(g)
            out = np.concatenate([np.full((n, units), np.nan), hn[0].detach().numpy()], axis=1)
        else:
            last = torch.cat([hn[d] for d in range(len(dirs))], dim=1)
            last.backward(dyt)
            out = last.detach().numpy()
    grads = [[getattr(mod, name + ("_reverse" if d else "")).grad.numpy() for name in names]
             for d in range(len(dirs))]
    grads = [[g_.T if g_.ndim == 2 else g_ for g_ in gg] for gg in grads]
    dx = xt.grad.numpy()
    if dirs == (1,):
        dx = dx[:, ::-1]
    return out, grads, dx.copy().reshape(n, steps * features)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_reference_matches_torch(cell_name, steps):
    """Outputs, dW_ih, dW_hh, db_ih, db_hh and dx of the reference equal torch's (float64,
    1e-10 relative) for batch 1 and 5, with and without sequences, forward, reverse (at
    channel U of a two-direction row) and bidirectional (one shared row), dx written and
    added to a non-zero dx."""
    pytest.importorskip("torch")
    cell, act = CELLS[cell_name]
    worst = 0.0
    for n in (1, 5):
        for sequences in (True, False):
            for layout in LAYOUTS:
                for accumulate in (False, True):
                    x, params, rng = problem(cell, n, steps, layout, np.float64, seed=steps + n)
                    dx0 = rng.normal(size=x.shape) if accumulate else None
                    out, dy, grads, dx, *_ = run(ref_rnn, cell, act, x, params, steps, UNITS,
                                                 sequences, layout, dx0=dx0, rng=rng)
                    t_out, t_grads, t_dx = torch_run(cell, act, x, params, steps, UNITS,
                                                     sequences, layout, dy)
                    if accumulate:
                        t_dx = t_dx + dx0
                    pairs = [("out", out, t_out), ("dx", dx, t_dx)]
                    for d, (gg, tg) in enumerate(zip(grads, t_grads)):
                        pairs += [(f"{nm}[{d}]", a, b) for nm, a, b in
                                  zip(("dW_ih", "dW_hh", "db_ih", "db_hh"), gg, tg)]
                    for name, a, b in pairs:
                        if name == "out" and LAYOUTS[layout][0] == (1,):
                            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
                            a, b = a[~np.isnan(b)], b[~np.isnan(b)]   # units 0..U-1: not ours
                        if steps == 1 and name.startswith("dW_hh"):
                            np.testing.assert_array_equal(a, 0)      # no step reads h_{-1} W_hh
                            np.testing.assert_array_equal(b, 0)
                            continue
                        err = max_rel(a, b)
                        worst = max(worst, err)
                        assert err <= 1e-10, (n, sequences, layout, accumulate, name, err)
    assert worst < 1e-10


def test_weight_layout_is_torch_weight_transposed():
    """W_ih[f, k U + j] is torch's weight_ih_l0[k U + j, f]: with a single nonzero input
    weight, on unit 1 of the GRU's candidate block (k = 2), only unit 1's state moves."""
    cell, u = codes.OP_GRU, 3
    x = np.array([[0.5]])
    w_ih, w_hh = np.zeros((1, 3 * u)), np.zeros((u, 3 * u))
    w_ih[0, 2 * u + 1] = 2.0
    b_ih = b_hh = np.zeros(3 * u)
    cache = np.zeros(ref_rnn.cache_width(cell, 1, 1, u))
    out = np.zeros((1, u))
    ref_rnn.recurrent_forward(cell, 0, x, w_ih, w_hh, b_ih, b_hh, cache, out, 1, 1, u, 0, 0, 0, u)
    # r = z = sigma(0) = 1/2; n = tanh(2 * 0.5) for unit 1 only; h = (1 - z) n
    np.testing.assert_allclose(out, [[0.0, 0.5 * np.tanh(1.0), 0.0]], rtol=1e-15)


# ---- the reference against finite differences --------------------------------------------------

@pytest.mark.parametrize("cell_name", list(CELLS))
def test_reference_gradients_match_finite_differences(cell_name):
    """Central differences of sum(out * R) with respect to every element of W_ih, W_hh, b_ih,
    b_hh and x, for a forward layer with sequences and a reverse one without."""
    cell, act = CELLS[cell_name]
    steps, n, f, u = 3, 2, 2, 3
    for sequences, layout in ((True, "forward"), (False, "reverse-shared-row")):
        x, params, rng = problem(cell, n, steps, layout, np.float64, seed=7, features=f, units=u)
        rev = LAYOUTS[layout][0][0]
        oc = LAYOUTS[layout][1] * u
        out, R, grads, dx, *_ = run(ref_rnn, cell, act, x, params, steps, u, sequences, layout,
                                    rng=rng)
        R = np.nan_to_num(R * ~np.isnan(out))     # only this layer's channels count

        def loss():
            y = np.zeros(out.shape)
            cache = np.empty(n * ref_rnn.cache_width(cell, steps, f, u))
            ref_rnn.recurrent_forward(cell, act, x, *params[0], cache, y, steps, f, u, rev,
                                      int(sequences), rev * u, oc)
            return float(np.sum(y * R))

        # R masked: recompute the analytic gradients for exactly this loss
        _, _, grads, dx, *_ = run(ref_rnn, cell, act, x, params, steps, u, sequences, layout, dy=R)
        eps = 1e-6
        for name, a, grad in zip(("W_ih", "W_hh", "b_ih", "b_hh", "x"),
                                 params[0] + [x], grads[0] + [dx]):
            fd = np.empty_like(a)
            flat, fd_flat = a.reshape(-1), fd.reshape(-1)
            for i in range(flat.size):
                keep = flat[i]
                flat[i] = keep + eps
                up = loss()
                flat[i] = keep - eps
                down = loss()
                flat[i] = keep
                fd_flat[i] = (up - down) / (2 * eps)
            scale = max(float(np.max(np.abs(fd))), 1e-3)
            assert float(np.max(np.abs(grad - fd))) <= 1e-8 * scale, (sequences, name)


# ---- cpu against the reference -----------------------------------------------------------------

CACHE_BLOCKS = ("xs", "hidden", "gates", "extra", "dhidden")   # all but tmp (scratch)


def compare_runs(got, want, dtype, context, cell, steps, units):
    """Every output, gradient, cache block (the forward's tmp aside: the cpu GRU of few units
    leaves its tanh pass there) and the scratch, within the dtype's tolerance."""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    out, _, grads, dx, caches, scratches = got
    r_out, _, r_grads, r_dx, r_caches, r_scratches = want
    n = out.shape[0]
    pairs = [("out", out, r_out), ("dx", dx, r_dx)]
    for d in range(len(grads)):
        features = grads[d][0].shape[0]
        pairs += [(f"grad{k}[{d}]", a, b) for k, (a, b) in enumerate(zip(grads[d], r_grads[d]))]
        views = zip(CACHE_BLOCKS, ref_rnn.cache_views(cell, caches[d], n, steps, features, units),
                    ref_rnn.cache_views(cell, r_caches[d], n, steps, features, units))
        pairs += [(f"{name}[{d}]", a, b) for name, a, b in views]
        # (not the LSTM's room for the cpu's per-block partial weight gradients at its end)
        used = n * (ref_rnn.scratch_width(cell, steps, features, units)
                    - ref_rnn.partial_width(cell, features, units))
        pairs += [(f"scratch[{d}]", scratches[d][:used], r_scratches[d][:used])]
    worst = 0.0
    for name, a, r in pairs:
        assert a.dtype == dtype, name
        close(a, r, rtol, f"{context} {name}")
        finite = np.isfinite(r)
        if finite.any():
            worst = max(worst, max_rel(a[finite], r[finite]))
    return worst


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_cpu_matches_reference(cell_name, steps, dtype):
    """Every output of the cpu kernels (out, the four gradients, dx, and the whole cache,
    dhidden included, and scratch) equals the reference's, on the torch test's grid, with
    and without an input gradient; a second run gives the same bits."""
    cell, act = CELLS[cell_name]
    for n in (1, 5):
        for sequences in (True, False):
            for layout in LAYOUTS:
                for mode in ("write", "accumulate", "no-dx"):
                    x, params, rng = problem(cell, n, steps, layout, dtype, seed=steps * n)
                    dx0 = rng.normal(size=x.shape).astype(dtype) if mode == "accumulate" else None
                    kw = dict(dx0=dx0, want_dx=mode != "no-dx")
                    want = run(ref_rnn, cell, act, x, params, steps, UNITS, sequences, layout,
                               rng=np.random.default_rng(1), **kw)
                    got = run(cpu_rnn, cell, act, x, params, steps, UNITS, sequences, layout,
                              rng=np.random.default_rng(1), **kw)
                    compare_runs(got, want, dtype, (n, sequences, layout, mode), cell, steps, UNITS)
                    if mode == "no-dx":
                        assert got[3].shape == (0, x.shape[1])
                    again = run(cpu_rnn, cell, act, x, params, steps, UNITS, sequences, layout,
                                rng=np.random.default_rng(1), **kw)
                    for a, b in zip(again[2][0] + [again[0], again[3]],
                                    got[2][0] + [got[0], got[3]]):
                        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell_name", ["rnn-tanh", "lstm", "gru"])
def test_cpu_matches_reference_blas_sizes(cell_name, dtype):
    """Sizes whose products go to BLAS in the cpu backend (above _matmul's loop limit)."""
    cell, act = CELLS[cell_name]
    steps, n, f, u = 6, 9, 16, 48
    x, params, rng = problem(cell, n, steps, "bidirectional", dtype, seed=11, features=f, units=u)
    for sequences in (True, False):
        want = run(ref_rnn, cell, act, x, params, steps, u, sequences, "bidirectional",
                   rng=np.random.default_rng(2))
        got = run(cpu_rnn, cell, act, x, params, steps, u, sequences, "bidirectional",
                  rng=np.random.default_rng(2))
        compare_runs(got, want, dtype, sequences, cell, steps, u)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell_name", ["rnn-relu", "lstm", "gru"])
def test_cpu_matches_reference_many_rows(cell_name, dtype):
    """The MNIST-1D GRU's shape (one feature, 6 units, 40 steps, batch 100, both directions):
    enough rows for the per-step products to go to BLAS although they are small."""
    cell, act = CELLS[cell_name]
    steps, n, f, u = 40, 100, 1, 6
    x, params, rng = problem(cell, n, steps, "bidirectional", dtype, seed=12, features=f, units=u)
    for sequences in (True, False):
        want = run(ref_rnn, cell, act, x, params, steps, u, sequences, "bidirectional",
                   rng=np.random.default_rng(6))
        got = run(cpu_rnn, cell, act, x, params, steps, u, sequences, "bidirectional",
                  rng=np.random.default_rng(6))
        compare_runs(got, want, dtype, sequences, cell, steps, u)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_rows_do_not_depend_on_the_batch_or_the_threads(dtype):
    """The LSTM runs blocks of rows on Numba's threads with register-tiled products
    (``cpu.recurrent.row_blocks``, ``cpu._tiles``). A row's output and dx are the same bits
    in a batch of 37 (two blocks; the row in a whole tile) as alone in a batch of 3 (edge
    rows only); and every output, dx, cache and gradient is the same on 1 thread as on all."""
    import numba

    cell, act = CELLS["lstm"]
    steps, n, f, u = 5, 37, 7, 20
    x, params, rng = problem(cell, n, steps, "forward", dtype, seed=21, features=f, units=u)
    dy = rng.normal(size=(n, u)).astype(dtype)
    whole = run(cpu_rnn, cell, act, x, params, steps, u, False, "forward", dy=dy)
    alone = run(cpu_rnn, cell, act, x[:3], params, steps, u, False, "forward", dy=dy[:3])
    np.testing.assert_array_equal(alone[0], whole[0][:3])
    np.testing.assert_array_equal(alone[3], whole[3][:3])
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = run(cpu_rnn, cell, act, x, params, steps, u, False, "forward", dy=dy)
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(one[2][0] + [one[0], one[3], one[4][0], one[5][0]],
                    whole[2][0] + [whole[0], whole[3], whole[4][0], whole[5][0]]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    """No samples (cpu; the reference's cache_views cannot reshape an empty block): nothing
    to output, and every gradient is an empty sum (zeros)."""
    for cell_name in ("rnn-tanh", "lstm", "gru"):
        cell, act = CELLS[cell_name]
        x, params, rng = problem(cell, 0, 3, "bidirectional", dtype, seed=1)
        for sequences in (True, False):
            out, _, grads, dx, *_ = run(cpu_rnn, cell, act, x, params, 3, UNITS, sequences,
                                        "bidirectional", rng=rng)
            assert out.shape[0] == 0 and dx.shape[0] == 0
            for gg in grads:
                for g_ in gg:
                    np.testing.assert_array_equal(g_, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_cpu_saturated_gates_and_nan(cell_name, dtype):
    """Large pre-activations (|a| up to ~1e3: sigmoid and tanh saturate, exp underflows to 0),
    made of integers (x, W_ih, b) so that the input projections are exact in both dtypes and
    the comparison tests the gates rather than the conditioning of large sums: the forward
    values match the reference to the dtype's tolerance; the gradients too, but for an
    absolute slack of eps times the size of their terms: f'(a) = 1 - y^2 or y (1 - y), taken
    from a saturated output y, is only known to ~eps absolute. A NaN in one sample's
    input gives NaN in that sample's outputs and dx only, and NaN weight gradients (in both
    backends)."""
    cell, act = CELLS[cell_name]
    steps, n = 5, 4
    rng = np.random.default_rng(5)
    g = gates(cell) * UNITS
    x = rng.integers(-3, 4, size=(n, steps * F_IN)).astype(dtype)
    params = []
    for _ in range(2):
        w_hh = rng.uniform(-0.5, 0.5, size=(UNITS, g)).astype(dtype)
        if act == codes.RELU:
            w_hh *= dtype(0.01)            # keep relu's states moderate over the steps
        params.append([rng.integers(-100, 101, size=(F_IN, g)).astype(dtype), w_hh,
                       rng.integers(-20, 21, size=g).astype(dtype),
                       rng.integers(-20, 21, size=g).astype(dtype)])
    want = run(ref_rnn, cell, act, x, params, steps, UNITS, True, "bidirectional",
               rng=np.random.default_rng(3))
    got = run(cpu_rnn, cell, act, x, params, steps, UNITS, True, "bidirectional",
              rng=np.random.default_rng(3))
    if cell != codes.OP_SIMPLE_RNN:         # saturated gates, exp underflowing to 0
        gates_block = ref_rnn.cache_views(cell, want[4][0], n, steps, F_IN, UNITS)[2]
        assert np.mean((gates_block == 0) | (np.abs(gates_block) == 1)) > 0.5
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    close(got[0], want[0], rtol, "out")
    for d in range(2):
        for block, a, r in zip(("xs", "hidden", "gates", "extra"),
                               ref_rnn.cache_views(cell, got[4][d], n, steps, F_IN, UNITS),
                               ref_rnn.cache_views(cell, want[4][d], n, steps, F_IN, UNITS)):
            close(a, r, rtol, block)
    # a derivative taken from a saturated y is off by ~eps absolute (1 - y rounds to ulps),
    # so each gradient is off by ~eps times the sum of its terms' sizes (|dy| |x| or |dy| |W|)
    eps = float(np.finfo(dtype).eps)
    gtol = eps * n * steps * float(np.max(np.abs(want[1]))) * 100.0
    np.testing.assert_allclose(got[3], want[3], rtol=rtol, atol=gtol)
    for gg, rr in zip(got[2], want[2]):
        for a, r in zip(gg, rr):
            np.testing.assert_allclose(a, r, rtol=rtol, atol=gtol)

    x, params, rng = problem(cell, n, steps, "bidirectional", dtype, seed=6)
    x[2, 1] = np.nan                       # sample 2, step 0
    runs = [run(kernels, cell, act, x, params, steps, UNITS, True, "bidirectional",
                rng=np.random.default_rng(4)) for kernels in (ref_rnn, cpu_rnn)]
    for out, _, grads, dx, *_ in runs:
        per_step = out.reshape(n, steps, 2 * UNITS)
        assert np.all(np.isnan(per_step[2, :, :UNITS]))      # the forward states from step 0 on
        assert np.all(np.isnan(per_step[2, 0, UNITS:]))      # the reverse state at step 0
        assert np.all(np.isfinite(per_step[2, 1:, UNITS:]))  # (which it reaches last)
        assert np.all(np.isfinite(np.delete(out, 2, axis=0)))
        assert np.all(np.isfinite(np.delete(dx, 2, axis=0)))
        if act != codes.RELU:                                # relu'(NaN) is 0, as in NumPy
            assert np.all(np.isnan(dx[2]))
            for gg in grads:
                assert np.all(np.isnan(gg[0])) and np.all(np.isnan(gg[2]))
    (out, _, grads, dx, *_), (c_out, _, c_grads, c_dx, *_) = runs
    for a, b in zip([out, dx] + grads[0] + grads[1], [c_out, c_dx] + c_grads[0] + c_grads[1]):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))


@njit(cache=True)
def _exp_neg_all(a, out):
    for i in range(a.shape[0]):
        out[i] = cpu_math._exp_neg(a[i])


@njit(cache=True)
def _sigmoid_all(a, out):
    for i in range(a.shape[0]):
        out[i] = cpu_math._sigmoid(a[i])


@njit(cache=True)
def _tanh_all(a, out):
    for i in range(a.shape[0]):
        out[i] = cpu_math._tanh(a[i])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_exp_sigmoid_tanh_within_a_few_ulp(dtype):
    """The gates' exp (x <= 0), sigmoid and tanh against NumPy in float64, in ulps of dtype,
    over normal arguments of all sizes; NaN, +-inf, +-0 and the underflow to 0."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal(size=4000) * 6, rng.normal(size=500) * 1e-4,
                        np.geomspace(1e-30, 80, 500), -np.geomspace(1e-30, 80, 500)]).astype(dtype)
    a64 = a.astype(np.float64)
    tiny = np.finfo(dtype).tiny

    def ulps(got, want):
        ok = np.abs(want) >= tiny
        return float(np.max(np.abs(got[ok] - want[ok]) /
                            np.spacing(np.abs(want[ok]).astype(dtype)).astype(np.float64)))

    def sigmoid64(v):
        e = np.exp(-np.abs(v))
        return np.where(v >= 0, 1 / (1 + e), e / (1 + e))

    out = np.empty_like(a)
    _exp_neg_all(-np.abs(a), out)
    assert ulps(out, np.exp(-np.abs(a64))) <= 1.5
    _sigmoid_all(a, out)
    assert ulps(out, sigmoid64(a64)) <= 3
    _tanh_all(a, out)
    assert ulps(out, np.tanh(a64)) <= 4
    tiny_arg = 1e-300 if dtype == np.float64 else 1e-40     # subnormal in float32
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny_arg, -2000.0, 2000.0], dtype)
    got = np.empty_like(special)
    _exp_neg_all(np.array([0.0, -0.0, -np.inf, np.nan, -2000.0], dtype), got[:5])
    np.testing.assert_array_equal(got[:5], [1.0, 1.0, 0.0, np.nan, 0.0])
    _sigmoid_all(special, got)
    np.testing.assert_array_equal(got, [0.5, 0.5, 1.0, 0.0, np.nan, 0.5, 0.0, 1.0])
    _tanh_all(special, got)
    np.testing.assert_array_equal(got, [0.0, -0.0, 1.0, -1.0, np.nan, special[5], -1.0, 1.0])
    assert np.signbit(got[1]) and not np.signbit(got[0])


# ---- cpu from @njit code on borrowed views ------------------------------------------------------

@njit(cache=True)
def _bidirectional_from_flat(cell, act, xb, pb, cacheb, outb, dyb, gb, scratchb, dxb, n, steps,
                             features, units, sequences):
    """Both directions of a Bidirectional layer on borrowed views of flat buffers, laid out as
    the interpreter lays them out: parameters [W_ih, W_hh, b_ih, b_hh] per direction in one
    vector (gradients likewise), two caches in one workspace, one shared scratch, one output
    row of 2 U channels per step; the reverse direction's backward runs first and writes dx,
    the forward one adds."""
    g = cpu_rnn.gates_of(cell) * units
    oc = 2 * units
    width = steps * oc if sequences else oc
    x = rows_view(xb, 0, n, steps * features)
    out = rows_view(outb, 0, n, width)
    dy = rows_view(dyb, 0, n, width)
    dx = rows_view(dxb, 0, n, steps * features)
    per_dir = features * g + units * g + 2 * g
    cw = cacheb.shape[0] // 2
    for d in range(2):
        o = d * per_dir
        cpu_rnn.recurrent_forward(cell, act, x, rows_view(pb, o, features, g),
                                  rows_view(pb, o + features * g, units, g),
                                  flat_view(pb, o + (features + units) * g, g),
                                  flat_view(pb, o + (features + units + 1) * g, g),
                                  flat_view(cacheb, d * cw, cw), out, steps, features, units, d,
                                  sequences, d * units, oc)
    for d in range(1, -1, -1):
        o = d * per_dir
        cpu_rnn.recurrent_backward(cell, act, rows_view(pb, o, features, g),
                                   rows_view(pb, o + features * g, units, g),
                                   flat_view(cacheb, d * cw, cw), dy,
                                   rows_view(gb, o, features, g),
                                   rows_view(gb, o + features * g, units, g),
                                   flat_view(gb, o + (features + units) * g, g),
                                   flat_view(gb, o + (features + units + 1) * g, g),
                                   scratchb, dx, 1 - d, steps, features, units, d, sequences,
                                   d * units, oc)


@pytest.mark.parametrize("dtype", [np.float32])
def test_cpu_callable_from_njit_with_borrowed_views(dtype):
    """The cpu kernels on borrowed views, from @njit code, as the interpreter calls them:
    every output equals the reference's, and dhidden is where cache_views puts it. (float32
    only: linking the kernels into a caller re-optimises them, ~9 s per dtype, and the
    numerics of both dtypes are covered above.)"""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for cell_name in ("rnn-tanh", "lstm", "gru"):
        cell, act = CELLS[cell_name]
        steps, n, f, u = 4, 3, F_IN, UNITS
        for sequences in (True, False):
            x, params, rng = problem(cell, n, steps, "bidirectional", dtype, seed=9)
            want = run(ref_rnn, cell, act, x, params, steps, u, sequences, "bidirectional",
                       rng=np.random.default_rng(5))
            flat_p = np.concatenate([p.ravel() for pp in params for p in pp])
            cw = n * ref_rnn.cache_width(cell, steps, f, u)
            cacheb = np.full(2 * cw, np.nan, dtype)
            outb = np.full(want[0].size, np.nan, dtype)
            gb = np.full(flat_p.size, np.nan, dtype)
            scratchb = np.full(n * ref_rnn.scratch_width(cell, steps, f, u), np.nan, dtype)
            dxb = np.full(x.size, np.nan, dtype)
            _bidirectional_from_flat(cell, act, x.ravel(), flat_p, cacheb, outb, want[1].ravel(),
                                     gb, scratchb, dxb, n, steps, f, u, int(sequences))
            close(outb, want[0].ravel(), rtol, "out")
            close(dxb, want[3].ravel(), rtol, "dx")
            close(gb, np.concatenate([g.ravel() for gg in want[2] for g in gg]), rtol, "grads")
            for d in range(2):   # dhidden (and the rest) where the reference's cache_views puts it
                blocks = ref_rnn.cache_views(cell, cacheb[d * cw:(d + 1) * cw], n, steps, f, u)
                want_blocks = ref_rnn.cache_views(cell, want[4][d], n, steps, f, u)
                for name, a, r in zip(CACHE_BLOCKS, blocks, want_blocks):
                    assert np.all(np.isfinite(a)), name
                    close(a, r, rtol, name)
