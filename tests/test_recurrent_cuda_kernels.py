"""The cuda recurrent kernels (SimpleRNN, LSTM, GRU forward and BPTT) against the reference.

In the simulator with tiny launch sizes (``cuda_setup.small_launches``: 8 threads per
block, 3 blocks, 8 x 8 product tiles split along K), so the time-loop kernels run ragged
row groups (3 rows, 2 or 4 rows per block) and block-stride over the groups, and the
products run ragged tiles and split-K. Checked: the output (with the other direction's
channels of a shared two-direction row untouched), every part of the cache the
reference writes (xs, hidden, gates, extra and the backward pass's dhidden), the four
parameter gradients (written, not added) and dx (written, added into a non-zero dx, or
not wanted), in float64 (1e-12 relative) and float32 (1e-5, computed in float32).
The reference itself is checked against torch elsewhere.
"""
import numpy as np
import pytest

from nnumba.backends.codes import OP_GRU, OP_LSTM, OP_SIMPLE_RNN, RELU, TANH
from nnumba.backends.reference import recurrent as ref

try:
    from cuda_setup import small_launches  # noqa: F401 (autouse fixture)
    from nnumba.backends.cuda import _config as cfg
    from nnumba.backends.cuda import memory as cuda_memory
    from nnumba.backends.cuda import recurrent as cuda_rec
    HAVE_CUDA = True
except (ImportError, pytest.skip.Exception):
    HAVE_CUDA = False

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not HAVE_CUDA, reason="numba.cuda is not available")]

DTYPES = [np.float32, np.float64]
CELLS = [(OP_SIMPLE_RNN, TANH), (OP_SIMPLE_RNN, RELU), (OP_LSTM, TANH), (OP_GRU, TANH)]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
# (steps, n, features, units, reverse, sequences, out_offset, out_channels / units,
#  accumulate, want_dx)
CASES = [
    (1, 1, 2, 2, 0, False, 0, 1, 0, True),    # one step, one row: no recurrence at all
    (2, 3, 2, 3, 1, True, 3, 2, 1, True),     # reversed second direction of a shared row
    (5, 3, 2, 3, 1, False, 0, 2, 0, False),   # last state only, first direction, no dx
    (5, 3, 2, 2, 0, True, 2, 2, 1, True),     # five steps, four rows per block: one ragged group
]
CASE_IDS = ["T{}-n{}-F{}-U{}-rev{}-seq{:d}-off{}-oc{}-acc{}-dx{:d}".format(*c) for c in CASES]


def problem(cell, dtype, case, seed):
    steps, n, features, units, reverse, sequences, off, oc, acc, want_dx = case
    rng = np.random.default_rng(seed)
    g = ref.GATES[cell] * units
    x = rng.normal(size=(n, steps * features))
    w_ih = rng.normal(size=(features, g)) / np.sqrt(features)
    w_hh = rng.normal(size=(units, g)) / np.sqrt(units)
    b_ih, b_hh = rng.normal(size=g) * 0.5, rng.normal(size=g) * 0.5
    width = oc * units
    dy = rng.normal(size=(n, steps * width if sequences else width))
    dx0 = rng.normal(size=x.shape) if acc else np.full(x.shape, np.nan)
    return [a.astype(dtype) for a in (x, w_ih, w_hh, b_ih, b_hh, dy, dx0)]


def run(kernels, cell, act, case, arrays, up=np.array, down=np.asarray):
    """Forward then backward with ``kernels``; every output starts as NaN (or, for out, 7:
    the other direction's channels), so what is not written shows. Returns host arrays."""
    steps, n, features, units, reverse, sequences, off, oc, acc, want_dx = case
    x, w_ih, w_hh, b_ih, b_hh, dy, dx0 = arrays
    dt = x.dtype
    geometry = (steps, features, units, reverse, sequences, off, oc * units)
    cache = up(np.full(n * ref.cache_width(cell, steps, features, units) + 5, np.nan, dt))
    scratch = up(np.full(n * ref.scratch_width(cell, steps, features, units) + 5, np.nan, dt))
    out = up(np.full(dy.shape, 7.0, dt))
    d_w_ih, d_w_hh = up(w_ih), up(w_hh)
    kernels.recurrent_forward(cell, act, up(x), d_w_ih, d_w_hh, up(b_ih), up(b_hh), cache, out,
                              *geometry)
    grads = [up(np.full(a.shape, np.nan, dt)) for a in (w_ih, w_hh, b_ih, b_hh)]
    dx = up(dx0 if want_dx else np.zeros((0, x.shape[1]), dt))
    kernels.recurrent_backward(cell, act, d_w_ih, d_w_hh, cache, up(dy), *grads, scratch, dx, acc,
                               *geometry)
    cache = down(cache)
    views = ref.cache_views(cell, cache, n, steps, features, units)
    parts = dict(zip(("xs", "hidden", "gates", "extra", "dhidden"), views[:5]))
    result = dict(out=down(out), dw_ih=down(grads[0]), dw_hh=down(grads[1]), db_ih=down(grads[2]),
                  db_hh=down(grads[3]), dx=down(dx), **parts)
    return {k: np.array(v) for k, v in result.items()}


def cuda_run(cell, act, case, arrays):
    return run(cuda_rec, cell, act, case, arrays, up=cuda_memory.to_backend,
               down=cuda_memory.to_host)


def close(a, r, dtype, name):
    """a == r within rtol (float32 1e-5, float64 1e-12) plus an absolute slack of 0.1 rtol
    times the largest |r| (entries near zero come from cancelling sums of larger terms)."""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert a.dtype == dtype, name
    assert a.shape == r.shape, name
    scale = float(np.nanmax(np.abs(r))) if r.size else 0.0
    np.testing.assert_allclose(a, r, rtol=rtol, atol=0.1 * rtol * max(scale, 1e-3), err_msg=name)


def check(got, want, dtype, case):
    steps, n, features, units, reverse, sequences, off, oc, acc, want_dx = case
    for name, r in want.items():
        assert not np.any(np.isnan(r)), name   # the reference writes every part compared
        close(got[name], r, dtype, name)
    # the other direction's channels of a shared output row are left alone
    out = got["out"].reshape(n, -1, oc * units)
    mine = np.zeros(oc * units, bool)
    mine[off:off + units] = True
    np.testing.assert_array_equal(out[:, :, ~mine], 7.0)
    if not want_dx:
        assert got["dx"].shape == (0, steps * features)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("cell_act", CELLS, ids=CELL_IDS)
def test_cuda_matches_reference(cell_act, case, dtype):
    cell, act = cell_act
    arrays = problem(cell, dtype, case, seed=10 * CASES.index(case) + cell)
    want = run(ref, cell, act, case, arrays)
    got = cuda_run(cell, act, case, arrays)
    check(got, want, dtype, case)


@pytest.mark.parametrize("cell_act", CELLS[1:], ids=CELL_IDS[1:])
def test_cuda_more_units_than_threads_and_one_block(cell_act, monkeypatch):
    """2 threads per block for 3 units (a thread takes two (row, unit) pairs, one of the
    next row's) and a single block striding over the three row groups; bit-identical
    on a second run."""
    monkeypatch.setattr(cfg, "TPB", 2)
    monkeypatch.setattr(cfg, "MAX_BLOCKS", 1)
    cell, act = cell_act
    case = (3, 3, 2, 3, 1, True, 0, 1, 1, True)
    arrays = problem(cell, np.float64, case, seed=11)
    want = run(ref, cell, act, case, arrays)
    got = cuda_run(cell, act, case, arrays)
    check(got, want, np.float64, case)
    again = cuda_run(cell, act, case, arrays)
    for name, a in got.items():
        np.testing.assert_array_equal(again[name], a, err_msg=name)


@pytest.mark.parametrize("cell", [OP_SIMPLE_RNN, OP_LSTM, OP_GRU], ids=["rnn", "lstm", "gru"])
def test_cuda_empty_batch(cell):
    """No rows: nothing to run, and the parameter gradients are empty sums (zero)."""
    case = (3, 0, 2, 2, 0, True, 0, 1, 0, True)
    x, w_ih, w_hh, b_ih, b_hh, dy, dx0 = problem(cell, np.float64, case, seed=12)
    up = cuda_memory.to_backend
    steps, n, features, units = case[:4]
    geometry = (steps, features, units, 0, True, 0, units)
    cache = up(np.zeros(4))
    scratch = up(np.zeros(4))
    out = up(np.zeros(dy.shape))
    cuda_rec.recurrent_forward(cell, TANH, up(x), up(w_ih), up(w_hh), up(b_ih), up(b_hh), cache, out,
                               *geometry)
    grads = [up(np.full(a.shape, np.nan)) for a in (w_ih, w_hh, b_ih, b_hh)]
    cuda_rec.recurrent_backward(cell, TANH, up(w_ih), up(w_hh), cache, up(dy), *grads, scratch,
                                up(dx0), 0, *geometry)
    for g in grads:
        np.testing.assert_array_equal(cuda_memory.to_host(g), 0.0)


def test_cuda_layout_helpers_agree_with_reference():
    for cell in (OP_SIMPLE_RNN, OP_LSTM, OP_GRU):
        for geometry in ((1, 2, 3), (5, 4, 2)):
            assert cuda_rec.cache_width(cell, *geometry) == ref.cache_width(cell, *geometry)
            assert cuda_rec.scratch_width(cell, *geometry) == ref.scratch_width(cell, *geometry)
            steps, features, units = geometry
            n = 3
            cache = np.arange(n * ref.cache_width(cell, *geometry), dtype=float)
            starts = [int(v.reshape(-1)[0]) if v.size else None
                      for v in ref.cache_views(cell, cache, n, *geometry)[:5]]
            offsets = cuda_rec._cache_offsets(cell, n, *geometry)
            for start, off in zip(starts, offsets):
                assert start is None or start == off
            scratch = np.arange(n * ref.scratch_width(cell, *geometry), dtype=float)
            starts = [int(v.reshape(-1)[0]) if v.size else None
                      for v in ref.scratch_views(cell, scratch, n, *geometry)]
            for start, off in zip(starts, cuda_rec._scratch_offsets(cell, n, *geometry)):
                assert start is None or start == off
