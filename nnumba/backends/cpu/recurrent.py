"""Recurrent layers (SimpleRNN, LSTM, GRU) and backpropagation through time, as @njit kernels.

Same names, arguments and semantics as ``backends.reference.recurrent`` (the
equations, the layout, and the cache and scratch blocks are in its docstring;
``cache_width`` and ``scratch_width`` are the reference's). The flat cache and
scratch are carved with ``_views`` exactly as the reference's ``cache_views``
and ``scratch_views`` carve them (``cache_offsets``, ``scratch_offsets``: each
(T, n, X) block is (T n, X) rows, step s at rows s n, ..., s n + n - 1), so
the interpreter and the diagnostics find dhidden where the reference puts it.

**Products.** The LSTM's are ``_tiles``' register-tiled kernels, on the threads:
per block of rows (``row_blocks``, a ``prange``), per step, x_s W_ih straight into
the gate rows, then h_{s-1} W_hh added in place (forward); dgates_s W_hh^T, as a
plain product on W_hh^T, which dW_hh's memory holds until the steps are done (the
dot form's sums over the lanes cost 10%), and dgates_s W_ih^T (backward); then, on the
same thread, the block's share of dW_ih, dW_hh and the bias gradients
(``_block_weight_gradients``: all steps in one pass per weight matrix, from data
that thread wrote, which a split by columns would fetch from the other core's
cache: measured, that made the weight gradients 1 ms slower per iteration), the
shares of the blocks (when there are several) in the scratch's room for them, added
in block order. Measured on LSTM(32, 128), 50 steps, batch 32, float32, 64
iterations: forward and backward 273 ms on 2 threads (4.3 ms per iteration;
12.5 ms with BLAS, whose packing and zeroing of every per-step product took a
third of its time), 580-620 ms on one thread (670-720 ms with a per-step weight
gradient and the dot form). SimpleRNN and
GRU go through ``_matmul`` (loops for small products, BLAS for large): the input
projections of all steps as ONE product, xs (T n, F) @ W_ih, into the block the
gates then overwrite; per step h_{s-1} @ W_hh (forward) and dgh_s @ W_hh^T
(backward), which go to BLAS from a few rows on even when small
(``STEP_BLAS_MIN_ROWS``, ``STEP_BLAS_MIN_ROWS_NT``: measured faster than the loops
there); then dW_ih, dW_hh and dx, each ONE product over all steps, and db_ih,
db_hh one column sum each.

**Elementwise work**, per step and row: short passes over the row's U units
(or 2 U, 4 U) with contiguous 0-based indices, each reading and writing few
arrays, so that LLVM vectorises every one (a pass with many streams needs more
run-time overlap checks than LLVM makes, and an index that might be negative
keeps Numba's wraparound test in the loop: either leaves the loop scalar). The
floating-point operations are the reference's, in its order. For a GRU of few
units (``_SMALL_UNITS``) rows are too short to vectorise: its sigmoid and tanh
run over the step's whole gate block instead (``_gru_step_small``; the cache's
tmp, the forward's scratch, then ends with that pass instead of the hidden
product). Nothing is allocated: the cache and the scratch hold every
intermediate.

**Transcendentals.** libm's exp and tanh are calls that LLVM cannot vectorise,
and tanh costs ~10 ns (measured: the LSTM's gate loops took as long as its
BLAS products). The gates use the branch-free sigmoid and tanh of ``_math``
(within 2-3 ulps of NumPy's, 0.6 ns each in float32 in a vectorised loop).

**Compile time.** Numba re-optimises every callee linked into a function, at
every level of calls: the SimpleRNN's and GRU's loops are therefore inlined
(``INLINE``) into the two kernels, which call only the products, the column sums
and the three transcendental passes (compiled once per dtype). The LSTM's two
parallel regions cost more: a first fit of a small LSTM model compiles in 82 s,
against 37-44 s before they were threaded (once per machine; the cache keeps it).

Every sum runs in a fixed order (deterministic, whatever the number of threads);
float32 data is computed in float32. Every array argument is C-contiguous: x, out, dy, dx, w_ih, w_hh 2-D;
b_ih, b_hh, cache, scratch 1-D; borrowed views work, so the kernels can be
called from other @njit code as well as from Python.
"""
import numpy as np
from numba import njit, prange

from ..codes import OP_GRU, OP_LSTM, OP_SIMPLE_RNN, TANH
from ..reference.recurrent import cache_width, scratch_width  # noqa: F401 (the same layout)
from ._config import INLINE, KERNEL, PARALLEL
from ._math import _sigmoid, _tanh
from ._blas import gemm_nn, gemm_nt
from ._matmul import matmul, matmul_nt, matmul_tn
from ._tiles import tiled_matmul, tiled_matmul_nt, tiled_matmul_tn_steps
from ._views import flat_view, rows_view
from .activations import apply, derivative
from .dense import column_sums


# ---- the layout ---------------------------------------------------------------------------------

@njit(**INLINE)
def gates_of(cell):
    """G, the number of gate blocks: SimpleRNN 1, LSTM 4, GRU 3."""
    if cell == OP_LSTM:
        return 4
    if cell == OP_GRU:
        return 3
    return 1


@njit(**INLINE)
def cache_offsets(cell, n, steps, features, units):
    """Element offsets of (xs, hidden, gates, extra, dhidden, tmp) in a flat cache of n rows
    (the reference's ``cache_views``): xs (T n, F), hidden (T n, U), gates (T n, Gc U) with
    Gc = 0 for SimpleRNN, else G; extra (T n, U), none for SimpleRNN; dhidden (T n, U);
    tmp (n, G U)."""
    cached = 0 if cell == OP_SIMPLE_RNN else gates_of(cell)
    o_xs = 0
    o_hidden = o_xs + n * steps * features
    o_gates = o_hidden + n * steps * units
    o_extra = o_gates + n * steps * cached * units
    o_dhidden = o_extra + (0 if cell == OP_SIMPLE_RNN else n * steps * units)
    o_tmp = o_dhidden + n * steps * units
    return o_xs, o_hidden, o_gates, o_extra, o_dhidden, o_tmp


@njit(**INLINE)
def scratch_offsets(cell, n, steps, features, units):
    """Element offsets of (dgates, dgh, dc, tmp, dxs) in the flat scratch (the reference's
    ``scratch_views``): dgates (T n, G U); dgh (T n, G U), the GRU's own block, else
    dgates'; dc (n, U), LSTM only; tmp (n, U); dxs (T n, F)."""
    g = gates_of(cell) * units
    o_dgates = 0
    o_dgh = o_dgates
    end = o_dgates + steps * n * g
    if cell == OP_GRU:
        o_dgh = end
        end += steps * n * g
    o_dc = end
    if cell == OP_LSTM:
        end += n * units
    o_tmp = end
    o_dxs = o_tmp + n * units
    return o_dgates, o_dgh, o_dc, o_tmp, o_dxs


@njit(**INLINE)
def _row(buf, off, s, n, r, width):
    """Row r of step s of the time-major (T n, width) block at ``off``, borrowed."""
    return flat_view(buf, off + (s * n + r) * width, width)


@njit(**INLINE)
def _time(s, steps, reverse):
    return steps - 1 - s if reverse else s


# ---- the per-step products ----------------------------------------------------------------------

# The per-step products h_{s-1} W_hh and dgh_s W_hh^T of a small layer are below _matmul's
# loop limit, but with enough rows BLAS is faster than those loops even so. Measured, float32,
# one thread: the MNIST-1D GRU's (100 x 6) @ (6 x 18) 2.1 us in the loops, 0.5 us in BLAS,
# and (100 x 18) @ (6 x 18)^T 1.3 us and 0.8 us; from 4 rows on BLAS won every product
# h W_hh tried (4 to 16 units, 1.5-4x), while for the transposed product the loops won
# below 16 rows (4 rows, 6 units: 0.06 us against 0.14 us). Products this small run on
# one BLAS thread whatever the setting (OpenBLAS threads from 2^18 multiply-adds on).
STEP_BLAS_MIN_ROWS = 4
STEP_BLAS_MIN_ROWS_NT = 16


@njit(**KERNEL)
def _step_product(a, b, out):
    """out = a @ b (h_{s-1} W_hh)."""
    if a.shape[0] >= STEP_BLAS_MIN_ROWS:
        gemm_nn(a, b, out)
    else:
        matmul(a, b, out)


@njit(**KERNEL)
def _step_product_nt(a, b, out):
    """out = a @ b^T (dgh_s W_hh^T)."""
    if a.shape[0] >= STEP_BLAS_MIN_ROWS_NT:
        gemm_nt(a, b, out)
    else:
        matmul_nt(a, b, out)


# ---- rows across threads ------------------------------------------------------------------------

# The sequences of a batch are independent through time: a layer's forward and backward run
# blocks of BLOCK_ROWS rows (prange: the blocks are shared among the threads), each block step
# by step with no synchronisation. Every element's arithmetic depends only on its own row
# (``_tiles``), so the bits are the same however the rows are split and whatever the number
# of threads. A smaller block costs more in waking a thread than it saves.
BLOCK_ROWS = 16


@njit(**INLINE)
def row_blocks(n):
    """How many blocks the n rows run in: each of BLOCK_ROWS rows at least."""
    return max(1, n // BLOCK_ROWS)


@njit(**INLINE)
def block_rows(n, blocks, b):
    """(r0, r1) of block b: contiguous, in multiples of 4 rows where n allows."""
    size = -(-n // blocks)
    size += (-size) % 4
    return min(n, b * size), min(n, (b + 1) * size)


# ---- forward ------------------------------------------------------------------------------------

@njit(**INLINE)
def _copy(src, dst):
    for j in range(dst.shape[0]):
        dst[j] = src[j]


# The transcendental passes, each compiled once per dtype and called on row views (the math
# inlined into every loop that uses it made the forward kernel's compile ~50% longer). An
# in-place pass takes one array: a destination that may overlap its source fails LLVM's
# run-time overlap check, and the loop runs scalar.

@njit(**KERNEL)
def _sigmoid_inplace(a):
    for j in range(a.shape[0]):
        a[j] = _sigmoid(a[j])


@njit(**KERNEL)
def _tanh_inplace(a):
    for j in range(a.shape[0]):
        a[j] = _tanh(a[j])


@njit(**KERNEL)
def _tanh_into(src, dst):
    """dst = tanh(src); dst and src do not overlap."""
    for j in range(dst.shape[0]):
        dst[j] = _tanh(src[j])


@njit(**INLINE)
def _simple_rnn_forward(act, b_ih, b_hh, w_hh, cache, out, n, steps, units, reverse, sequences,
                        out_offset, out_channels, o_h, o_tmp):
    u = units
    one, alpha = cache.dtype.type(1), cache.dtype.type(0)
    for s in range(steps):
        col = (_time(s, steps, reverse) * out_channels if sequences else 0) + out_offset
        if s:
            _step_product(rows_view(cache, o_h + (s - 1) * n * u, n, u), w_hh,
                          rows_view(cache, o_tmp, n, u))
        for r in range(n):
            h = _row(cache, o_h, s, n, r, u)           # holds x_s W_ih on entry
            q = flat_view(cache, o_tmp + r * u, u)
            if s:
                for j in range(u):
                    h[j] = (h[j] + (b_ih[j] + b_hh[j])) + q[j]
            else:
                for j in range(u):
                    h[j] = h[j] + (b_ih[j] + b_hh[j])
            if act == TANH:
                _tanh_inplace(h)
            else:
                for j in range(u):
                    h[j] = apply(act, h[j], alpha, one)
            if sequences or s == steps - 1:
                _copy(h, flat_view(out, r * out.shape[1] + col, u))


@njit(**KERNEL)
def _lstm_forward(x, w_ih, b_ih, b_hh, w_hh, cache, out, n, steps, features, units, reverse,
                  sequences, out_offset, out_channels, o_xs, o_h, o_g, o_e, r0, r1):
    """Rows r0, ..., r1 - 1 of the batch over all the steps (rows are independent): per
    step, the block's x_s W_ih straight into its gate rows, + b_ih + b_hh, + h_{s-1} W_hh
    (``_tiles``, accumulated in place), then the cell."""
    u, f_in, m = units, features, r1 - r0
    g4 = 4 * u
    for s in range(steps):
        t = _time(s, steps, reverse)
        col = (t * out_channels if sequences else 0) + out_offset
        for r in range(r0, r1):  # xs[s] = x[:, t(s) F:(t(s) + 1) F], time-major
            _copy(flat_view(x, r * x.shape[1] + t * f_in, f_in), _row(cache, o_xs, s, n, r, f_in))
        gates = rows_view(cache, o_g + (s * n + r0) * g4, m, g4)
        tiled_matmul(rows_view(cache, o_xs + (s * n + r0) * f_in, m, f_in), w_ih, gates, False)
        for r in range(r0, r1):
            a = _row(cache, o_g, s, n, r, g4)
            for j in range(g4):
                a[j] = a[j] + (b_ih[j] + b_hh[j])
        if s:
            tiled_matmul(rows_view(cache, o_h + ((s - 1) * n + r0) * u, m, u), w_hh, gates, True)
        for r in range(r0, r1):
            a = _row(cache, o_g, s, n, r, g4)
            # (every loop index starts at 0: an index that could be negative keeps Numba's
            # wraparound check in the loop, and LLVM from vectorising it)
            gi, gf, gg = flat_view(a, 0, u), flat_view(a, u, u), flat_view(a, 2 * u, u)
            go = flat_view(a, 3 * u, u)
            _sigmoid_inplace(flat_view(a, 0, 2 * u))   # i, f
            _tanh_inplace(gg)
            _sigmoid_inplace(go)
            c = _row(cache, o_e, s, n, r, u)
            if s:
                c_prev = _row(cache, o_e, s - 1, n, r, u)
                for j in range(u):
                    c[j] = gi[j] * gg[j] + gf[j] * c_prev[j]
            else:
                for j in range(u):
                    c[j] = gi[j] * gg[j]
            h = _row(cache, o_h, s, n, r, u)
            _tanh_into(c, h)
            for j in range(u):
                h[j] *= go[j]
            if sequences or s == steps - 1:
                _copy(h, flat_view(out, r * out.shape[1] + col, u))


@njit(**INLINE)
def _gru_step_rows(b_ih, b_hh, cache, out, n, s, u, col, write, o_h, o_g, o_e, o_tmp):
    """One step's gates, state and output, row by row (each loop runs over U units)."""
    g3 = 3 * u
    one = cache.dtype.type(1)
    for r in range(n):
        q = flat_view(cache, o_tmp + r * g3, g3)       # h_{s-1} W_hh + b_hh, as the reference's
        if s:
            for j in range(g3):
                q[j] += b_hh[j]
        else:
            _copy(b_hh, q)
        a = _row(cache, o_g, s, n, r, g3)              # holds x_s W_ih on entry
        for j in range(2 * u):                         # r, z
            a[j] = (a[j] + b_ih[j]) + q[j]
        _sigmoid_inplace(flat_view(a, 0, 2 * u))
        q_n = _row(cache, o_e, s, n, r, u)
        _copy(flat_view(q, 2 * u, u), q_n)
        gr, gz, gn = flat_view(a, 0, u), flat_view(a, u, u), flat_view(a, 2 * u, u)
        b_n = flat_view(b_ih, 2 * u, u)
        for j in range(u):
            gn[j] = (gn[j] + b_n[j]) + gr[j] * q_n[j]
        _tanh_inplace(gn)
        h = _row(cache, o_h, s, n, r, u)
        if s:
            h_prev = _row(cache, o_h, s - 1, n, r, u)
            for j in range(u):
                h[j] = (one - gz[j]) * gn[j] + gz[j] * h_prev[j]
        else:
            for j in range(u):
                h[j] = (one - gz[j]) * gn[j]
        if write:
            _copy(h, flat_view(out, r * out.shape[1] + col, u))


@njit(**INLINE)
def _gru_step_small(b_ih, b_hh, cache, out, n, s, u, col, write, o_h, o_g, o_e, o_tmp):
    """The same for few units: loops over U units are too short to vectorise, so the sigmoid
    and the tanh run as single loops over the step's whole (n, 3 U) gate block (computing
    some values that are not used), and the row loops do only arithmetic, in one loop per
    row each. Same operations in the same order as ``_gru_step_rows``; the cache's tmp then
    holds the tanh pass, not the hidden product (nothing reads it after the step)."""
    g3 = 3 * u
    one = cache.dtype.type(1)
    for r in range(n):
        q = flat_view(cache, o_tmp + r * g3, g3)       # h_{s-1} W_hh (when s > 0)
        a = _row(cache, o_g, s, n, r, g3)              # holds x_s W_ih on entry
        q_n = _row(cache, o_e, s, n, r, u)
        h = _row(cache, o_h, s, n, r, u)               # holds (x_s W_ih + b_ih)_n until the tanh
        for j in range(u):
            if s:
                qr, qz, qn = q[j] + b_hh[j], q[u + j] + b_hh[u + j], q[2 * u + j] + b_hh[2 * u + j]
            else:
                qr, qz, qn = b_hh[j], b_hh[u + j], b_hh[2 * u + j]
            a[j] = (a[j] + b_ih[j]) + qr
            a[u + j] = (a[u + j] + b_ih[u + j]) + qz
            h[j] = a[2 * u + j] + b_ih[2 * u + j]
            q_n[j] = qn
    block = flat_view(cache, o_g + s * n * g3, n * g3)
    _sigmoid_inplace(block)                            # r, z (and the n slots, unused)
    for r in range(n):
        a = _row(cache, o_g, s, n, r, g3)
        q_n = _row(cache, o_e, s, n, r, u)
        h = _row(cache, o_h, s, n, r, u)
        for j in range(u):
            a[2 * u + j] = h[j] + a[j] * q_n[j]        # the candidate's pre-activation
    _tanh_into(block, flat_view(cache, o_tmp, n * g3))  # n (and the r, z slots, unused)
    for r in range(n):
        a = _row(cache, o_g, s, n, r, g3)
        t = flat_view(cache, o_tmp + r * g3, g3)
        h = _row(cache, o_h, s, n, r, u)
        h_prev = _row(cache, o_h, max(s - 1, 0), n, r, u)
        for j in range(u):
            gz, gn = a[u + j], t[2 * u + j]
            a[2 * u + j] = gn
            hv = (one - gz) * gn
            if s:
                hv += gz * h_prev[j]
            h[j] = hv
        if write:
            _copy(h, flat_view(out, r * out.shape[1] + col, u))


# below this many units the GRU's forward runs its sigmoid and tanh over whole gate blocks
# (``_gru_step_small``); measured, float32, forward of one direction: the MNIST-1D GRU (6
# units, batch 100, 40 steps) 0.22 ms instead of 0.34 ms row by row; at 16 units (batch 32,
# 50 steps) the rows are faster, 0.18 ms against 0.21 ms
_SMALL_UNITS = 16


@njit(**INLINE)
def _gru_forward(b_ih, b_hh, w_hh, cache, out, n, steps, units, reverse, sequences, out_offset,
                 out_channels, o_h, o_g, o_e, o_tmp):
    u = units
    for s in range(steps):
        col = (_time(s, steps, reverse) * out_channels if sequences else 0) + out_offset
        write = sequences or s == steps - 1
        if s:
            _step_product(rows_view(cache, o_h + (s - 1) * n * u, n, u), w_hh,
                          rows_view(cache, o_tmp, n, 3 * u))
        if u < _SMALL_UNITS:
            _gru_step_small(b_ih, b_hh, cache, out, n, s, u, col, write, o_h, o_g, o_e, o_tmp)
        else:
            _gru_step_rows(b_ih, b_hh, cache, out, n, s, u, col, write, o_h, o_g, o_e, o_tmp)


@njit(**KERNEL)
def recurrent_forward(cell, act, x, w_ih, w_hh, b_ih, b_hh, cache, out, steps, features, units,
                      reverse, sequences, out_offset, out_channels):
    """Run the layer over the n sequences of x (n, T F); h of each step goes to out and the
    cache. W_ih (F, G U), W_hh (U, G U), b_ih, b_hh (G U); out (n, T out_channels) with
    ``sequences``, else (n, out_channels); the units start at channel ``out_offset``."""
    n, f_in = x.shape[0], features
    gu = gates_of(cell) * units
    o_xs, o_h, o_g, o_e, _, o_tmp = cache_offsets(cell, n, steps, features, units)
    if cell == OP_LSTM:
        if n and steps:
            _lstm_forward_blocks(x, w_ih, b_ih, b_hh, w_hh, cache, out, n, steps, features, units,
                                 reverse, sequences, out_offset, out_channels)
        return
    for s in range(steps):  # xs[s] = x[:, t(s) F:(t(s) + 1) F], time-major
        t = _time(s, steps, reverse)
        for r in range(n):
            src = flat_view(x, r * x.shape[1] + t * f_in, f_in)
            dst = _row(cache, o_xs, s, n, r, f_in)
            for k in range(f_in):
                dst[k] = src[k]
    if n == 0 or steps == 0:
        return
    # the input projections of all steps: one product, into the block the gates overwrite
    matmul(rows_view(cache, o_xs, steps * n, f_in), w_ih,
           rows_view(cache, o_h if cell == OP_SIMPLE_RNN else o_g, steps * n, gu))
    if cell == OP_GRU:
        _gru_forward(b_ih, b_hh, w_hh, cache, out, n, steps, units, reverse, sequences,
                     out_offset, out_channels, o_h, o_g, o_e, o_tmp)
    else:
        _simple_rnn_forward(act, b_ih, b_hh, w_hh, cache, out, n, steps, units, reverse,
                            sequences, out_offset, out_channels, o_h, o_tmp)


# ---- backward -----------------------------------------------------------------------------------

@njit(**INLINE)
def _gather_dh(dy, rec, dh, read, later, zero):
    """dh = dy's part (when ``read``) + the recurrent product (when ``later``)."""
    if read and later:
        for j in range(dh.shape[0]):
            dh[j] = dy[j] + rec[j]
    elif later:
        for j in range(dh.shape[0]):
            dh[j] = zero + rec[j]
    else:
        _copy(dy, dh)


@njit(**INLINE)
def _dx_rows(scratch, o_dxs, dx, accumulate, s, t, n, r0, r1, f_in):
    """Rows r0, ..., r1 - 1 of step s's dL/dx_s (the scratch's time-major dxs) into dx at
    time t: written, or added with ``accumulate``."""
    for r in range(r0, r1):
        src = _row(scratch, o_dxs, s, n, r, f_in)
        dst = flat_view(dx, r * dx.shape[1] + t * f_in, f_in)
        if accumulate:
            for k in range(f_in):
                dst[k] += src[k]
        else:
            _copy(src, dst)


@njit(**INLINE)
def _simple_rnn_backward(act, w_hh, cache, dy, scratch, n, steps, units, reverse, sequences,
                         out_offset, out_channels, o_h, o_dh, o_dg, o_tmp):
    u = units
    one, alpha, zero = cache.dtype.type(1), cache.dtype.type(0), cache.dtype.type(0)
    for s in range(steps - 1, -1, -1):
        col = (_time(s, steps, reverse) * out_channels if sequences else 0) + out_offset
        for r in range(n):
            dh = _row(cache, o_dh, s, n, r, u)
            _gather_dh(flat_view(dy, r * dy.shape[1] + col, u),
                       flat_view(scratch, o_tmp + r * u, u), dh, sequences or s == steps - 1,
                       s < steps - 1, zero)
            h = _row(cache, o_h, s, n, r, u)
            d = _row(scratch, o_dg, s, n, r, u)
            for j in range(u):
                d[j] = dh[j] * derivative(act, h[j], alpha, one)
        if s:
            _step_product_nt(rows_view(scratch, o_dg + s * n * u, n, u), w_hh,
                             rows_view(scratch, o_tmp, n, u))


@njit(**KERNEL)
def _lstm_backward(w_ih, w_hh_t, cache, dy, scratch, dx, accumulate, dw_ih, dw_hh, db_ih, db_hh,
                   n, steps, features, units, reverse, sequences, out_offset, out_channels, o_xs,
                   o_h, o_g, o_e, o_dh, o_dg, o_dc, o_tmp, o_dxs, r0, r1, block, blocks):
    """Rows r0, ..., r1 - 1 of the batch over all the steps (rows are independent): the
    cell's backward, then the block's dgates_s W_hh^T (for step s - 1; w_hh_t is W_hh^T,
    (G U, U)) and dgates_s W_ih^T (into dx, unless it has no rows), by ``_tiles``."""
    u, f_in, m = units, features, r1 - r0
    g4 = 4 * u
    one, zero = cache.dtype.type(1), cache.dtype.type(0)
    for s in range(steps - 1, -1, -1):
        t = _time(s, steps, reverse)
        col = (t * out_channels if sequences else 0) + out_offset
        later = s < steps - 1
        for r in range(r0, r1):
            dh = _row(cache, o_dh, s, n, r, u)
            _gather_dh(flat_view(dy, r * dy.shape[1] + col, u),
                       flat_view(scratch, o_tmp + r * u, u), dh, sequences or s == steps - 1,
                       later, zero)
            a = _row(cache, o_g, s, n, r, g4)
            gi, gf, gg = flat_view(a, 0, u), flat_view(a, u, u), flat_view(a, 2 * u, u)
            go = flat_view(a, 3 * u, u)
            c = _row(cache, o_e, s, n, r, u)
            d = _row(scratch, o_dg, s, n, r, g4)
            di, df, dg, do = flat_view(d, 0, u), flat_view(d, u, u), flat_view(d, 2 * u, u), \
                flat_view(d, 3 * u, u)
            dc = flat_view(scratch, o_dc + r * u, u)  # in: dL/dc_{s+1} f_{s+1}; out: dL/dc_s f_s
            _tanh_into(c, do)                         # tanh(c_s), until d_o is formed
            if later:
                for j in range(u):
                    dc[j] = dh[j] * go[j] * (one - do[j] * do[j]) + dc[j]
            else:
                for j in range(u):
                    dc[j] = dh[j] * go[j] * (one - do[j] * do[j])
            for j in range(u):
                do[j] = dh[j] * do[j] * go[j] * (one - go[j])
            for j in range(u):
                di[j] = dc[j] * gg[j] * gi[j] * (one - gi[j])
            if s:
                c_prev = _row(cache, o_e, s - 1, n, r, u)
                for j in range(u):
                    df[j] = dc[j] * c_prev[j] * gf[j] * (one - gf[j])
            else:
                for j in range(u):
                    df[j] = dc[j] * zero * gf[j] * (one - gf[j])
            for j in range(u):
                dg[j] = dc[j] * gi[j] * (one - gg[j] * gg[j])
            for j in range(u):
                dc[j] *= gf[j]
        d_s = rows_view(scratch, o_dg + (s * n + r0) * g4, m, g4)
        if s:  # the recurrent part of dL/dh_{s-1}
            tiled_matmul(d_s, w_hh_t, rows_view(scratch, o_tmp + r0 * u, m, u), False)
        if dx.shape[0]:
            tiled_matmul_nt(d_s, w_ih, rows_view(scratch, o_dxs + (s * n + r0) * f_in, m, f_in),
                            False)
            _dx_rows(scratch, o_dxs, dx, accumulate, s, t, n, r0, r1, f_in)
    # the weight gradients over this block's rows, from data this thread wrote: straight
    # into the gradients when it is the only block, else into its slot of the scratch's room
    # (dW_hh holds W_hh^T until every block's steps are done)
    if blocks == 1:
        wi, wh, bi, bh = dw_ih, dw_hh, db_ih, db_hh
    else:
        wi, wh, bi, bh = _partials(scratch, o_dxs + n * steps * f_in, block, f_in, u)
    _block_weight_gradients(cache, scratch, wi, wh, bi, bh, n, steps, f_in, u, o_xs, o_h, o_dg,
                            r0, r1)


@njit(**INLINE)
def _transpose_into(w, wt):
    """wt = w^T, in 16 x 16 blocks (each read and written in cache)."""
    rows, cols = w.shape
    for i0 in range(0, rows, 16):
        for j0 in range(0, cols, 16):
            for i in range(i0, min(i0 + 16, rows)):
                for j in range(j0, min(j0 + 16, cols)):
                    wt[j, i] = w[i, j]


@njit(**INLINE)
def _partials(scratch, o_part, block, features, units):
    """The (dW_ih, dW_hh, db_ih, db_hh) share of a block in its slot of the scratch's room
    (the reference's ``partial_width``: (F + U + 2) G U values per 16 rows, so that the
    n // 16 blocks of n >= 32 rows all fit)."""
    g = 4 * units
    base = o_part + block * (features + units + 2) * g
    return (rows_view(scratch, base, features, g), rows_view(scratch, base + features * g, units, g),
            flat_view(scratch, base + (features + units) * g, g),
            flat_view(scratch, base + (features + units + 1) * g, g))


@njit(**KERNEL)
def _block_weight_gradients(cache, scratch, dw_ih, dw_hh, db_ih, db_hh, n, steps, features, units,
                            o_xs, o_h, o_dg, r0, r1):
    """Rows r0, ..., r1 - 1's share of dW_ih = sum over s of xs_s^T dgates_s, dW_hh = sum over
    s >= 1 of h_{s-1}^T dgates_s and the bias gradients (the column sums of dgates; the
    LSTM's dgh is dgates), written into the four arrays; steps in order, then rows
    (``_tiles.tiled_matmul_tn_steps``: one fma chain per element, all steps in registers)."""
    g, m = 4 * units, r1 - r0
    span = (steps - 1) * n + m  # rows from the block's first at step 0 to its last at the end
    tiled_matmul_tn_steps(rows_view(cache, o_xs + r0 * features, span, features),
                          rows_view(scratch, o_dg + r0 * g, span, g), dw_ih, m, n, steps, False)
    tiled_matmul_tn_steps(rows_view(cache, o_h + r0 * units, max(span - n, 0), units),
                          rows_view(scratch, o_dg + (n + r0) * g, max(span - n, 0), g), dw_hh, m,
                          n, steps - 1, False)  # (steps = 1: an empty sum, zeros)
    for j in range(g):  # (a block may have no rows)
        db_ih[j] = 0
    for s in range(steps):
        d_s = rows_view(scratch, o_dg + (s * n + r0) * g, m, g)
        for r in range(m):
            row = flat_view(d_s, r * g, g)
            for j in range(g):
                db_ih[j] += row[j]
    _copy(db_ih, db_hh)


# The parallel regions (each a ``prange`` over blocks). Each costs seconds of compile: Numba's
# parfor pipeline, then LLVM again over the block function at each level of calls above it
# (measured, empty cache: a first fit of a small LSTM model compiles in 82 s, against 37-44 s
# for the code before the threads); merged into one function with a task argument they cost
# more (89 s).

@njit(**PARALLEL)
def _lstm_forward_blocks(x, w_ih, b_ih, b_hh, w_hh, cache, out, n, steps, features, units,
                         reverse, sequences, out_offset, out_channels):
    """``_lstm_forward`` over the batch, its blocks of rows shared among the threads."""
    o_xs, o_h, o_g, o_e, _, _ = cache_offsets(OP_LSTM, n, steps, features, units)
    blocks = row_blocks(n)
    for b in prange(blocks):
        r0, r1 = block_rows(n, blocks, b)
        _lstm_forward(x, w_ih, b_ih, b_hh, w_hh, cache, out, n, steps, features, units, reverse,
                      sequences, out_offset, out_channels, o_xs, o_h, o_g, o_e, r0, r1)


@njit(**PARALLEL)
def _lstm_backward_blocks(w_ih, w_hh, cache, dy, scratch, dx, accumulate, dw_ih, dw_hh, db_ih,
                          db_hh, n, steps, features, units, reverse, sequences, out_offset,
                          out_channels):
    """``_lstm_backward`` over the batch, its blocks of rows shared among the threads; with
    more than one block, their shares of the weight gradients then summed in block order
    (one summation order for a given n, whatever the threads). Meanwhile dW_hh's memory
    holds W_hh^T, (G U, U), so that dgates_s W_hh^T is a plain product (``tiled_matmul``:
    115 GFLOP/s on one core at (16 x 512) @ (512 x 128), against 102 for the dot form's
    ``tiled_matmul_nt``, which sums over the lanes), with no allocation."""
    o_xs, o_h, o_g, o_e, o_dh, _ = cache_offsets(OP_LSTM, n, steps, features, units)
    o_dg, _, o_dc, o_tmp, o_dxs = scratch_offsets(OP_LSTM, n, steps, features, units)
    w_hh_t = rows_view(dw_hh, 0, 4 * units, units)
    _transpose_into(w_hh, w_hh_t)
    blocks = row_blocks(n)
    for b in prange(blocks):
        r0, r1 = block_rows(n, blocks, b)
        _lstm_backward(w_ih, w_hh_t, cache, dy, scratch, dx, accumulate, dw_ih, dw_hh, db_ih, db_hh,
                       n, steps, features, units, reverse, sequences, out_offset, out_channels,
                       o_xs, o_h, o_g, o_e, o_dh, o_dg, o_dc, o_tmp, o_dxs, r0, r1, b, blocks)
    if blocks == 1:
        return
    o_part = o_dxs + n * steps * features
    for b in range(blocks):
        wi, wh, bi, bh = _partials(scratch, o_part, b, features, units)
        for total, part in ((dw_ih, wi), (dw_hh, wh)):
            for i in range(total.shape[0]):
                for j in range(total.shape[1]):
                    total[i, j] = part[i, j] if b == 0 else total[i, j] + part[i, j]
        for j in range(bi.shape[0]):
            db_ih[j] = bi[j] if b == 0 else db_ih[j] + bi[j]
            db_hh[j] = bh[j] if b == 0 else db_hh[j] + bh[j]


@njit(**INLINE)
def _gru_backward(w_hh, cache, dy, scratch, n, steps, units, reverse, sequences, out_offset,
                  out_channels, o_h, o_g, o_e, o_dh, o_dg, o_dgh, o_tmp):
    u = units
    g3 = 3 * u
    one, zero = cache.dtype.type(1), cache.dtype.type(0)
    for s in range(steps - 1, -1, -1):
        col = (_time(s, steps, reverse) * out_channels if sequences else 0) + out_offset
        read = sequences or s == steps - 1
        later = s < steps - 1
        for r in range(n):
            dh = _row(cache, o_dh, s, n, r, u)
            g = flat_view(dy, r * dy.shape[1] + col, u)
            if later:                                  # dy + z_{s+1} dh_{s+1} + the product
                dh_next = _row(cache, o_dh, s + 1, n, r, u)
                z_next = flat_view(cache, o_g + ((s + 1) * n + r) * g3 + u, u)
                rec = flat_view(scratch, o_tmp + r * u, u)
                if read:
                    for j in range(u):
                        dh[j] = (g[j] + dh_next[j] * z_next[j]) + rec[j]
                else:
                    for j in range(u):
                        dh[j] = (zero + dh_next[j] * z_next[j]) + rec[j]
            else:
                _copy(g, dh)
            a = _row(cache, o_g, s, n, r, g3)
            gr, gz, gn = flat_view(a, 0, u), flat_view(a, u, u), flat_view(a, 2 * u, u)
            d = _row(scratch, o_dg, s, n, r, g3)
            dr, dz, dn = flat_view(d, 0, u), flat_view(d, u, u), flat_view(d, 2 * u, u)
            for j in range(u):
                dn[j] = dh[j] * (one - gz[j]) * (one - gn[j] * gn[j])
            q_n = _row(cache, o_e, s, n, r, u)
            for j in range(u):
                dr[j] = dn[j] * q_n[j] * gr[j] * (one - gr[j])
            if s:
                h_prev = _row(cache, o_h, s - 1, n, r, u)
                for j in range(u):
                    dz[j] = dh[j] * (h_prev[j] - gn[j]) * gz[j] * (one - gz[j])
            else:
                for j in range(u):
                    dz[j] = dh[j] * (zero - gn[j]) * gz[j] * (one - gz[j])
            dgh = _row(scratch, o_dgh, s, n, r, g3)
            _copy(flat_view(d, 0, 2 * u), flat_view(dgh, 0, 2 * u))
            dgh_n = flat_view(dgh, 2 * u, u)
            for j in range(u):
                dgh_n[j] = dn[j] * gr[j]
        if s:
            _step_product_nt(rows_view(scratch, o_dgh + s * n * g3, n, g3), w_hh,
                             rows_view(scratch, o_tmp, n, u))


@njit(**KERNEL)
def recurrent_backward(cell, act, w_ih, w_hh, cache, dy, dw_ih, dw_hh, db_ih, db_hh, scratch, dx,
                       accumulate, steps, features, units, reverse, sequences, out_offset,
                       out_channels):
    """BPTT from dy (only read): dW_ih, dW_hh, db_ih, db_hh written (not added); dx (n, T F)
    written, or added with ``accumulate``, unless it has no rows; dhidden of the cache holds
    dL/dh_s on return. Shapes as for ``recurrent_forward``."""
    n, u, f_in = dy.shape[0], units, features
    gu = gates_of(cell) * u
    o_xs, o_h, o_g, o_e, o_dh, _ = cache_offsets(cell, n, steps, features, units)
    o_dg, o_dgh, o_dc, o_tmp, o_dxs = scratch_offsets(cell, n, steps, features, units)
    if cell == OP_LSTM:
        if n and steps:
            _lstm_backward_blocks(w_ih, w_hh, cache, dy, scratch, dx, accumulate, dw_ih, dw_hh,
                                  db_ih, db_hh, n, steps, features, units, reverse, sequences,
                                  out_offset, out_channels)
        else:  # no rows or no steps: every gradient is an empty sum
            for g_ in (dw_ih, dw_hh):
                g_[:, :] = 0
            db_ih[:] = 0
            db_hh[:] = 0
        return
    if cell == OP_GRU:
        _gru_backward(w_hh, cache, dy, scratch, n, steps, units, reverse, sequences, out_offset,
                      out_channels, o_h, o_g, o_e, o_dh, o_dg, o_dgh, o_tmp)
    else:
        _simple_rnn_backward(act, w_hh, cache, dy, scratch, n, steps, units, reverse, sequences,
                             out_offset, out_channels, o_h, o_dh, o_dg, o_tmp)
    # the parameter gradients: one product (or column sum) each, over all steps
    flat_d = rows_view(scratch, o_dg, steps * n, gu)
    flat_dgh = rows_view(scratch, o_dgh, steps * n, gu)
    matmul_tn(rows_view(cache, o_xs, steps * n, f_in), flat_d, dw_ih)
    column_sums(flat_d, db_ih)
    # dW_hh = sum over s >= 1 of h_{s-1}^T D_s (zero when T = 1: matmul_tn of no rows)
    matmul_tn(rows_view(cache, o_h, max(steps - 1, 0) * n, u),
              rows_view(scratch, o_dgh + n * gu, max(steps - 1, 0) * n, gu), dw_hh)
    column_sums(flat_dgh, db_hh)
    if dx.shape[0] == 0:
        return
    matmul_nt(flat_d, w_ih, rows_view(scratch, o_dxs, steps * n, f_in))
    for s in range(steps):  # back to time order
        _dx_rows(scratch, o_dxs, dx, accumulate, s, _time(s, steps, reverse), n, 0, n, f_in)
