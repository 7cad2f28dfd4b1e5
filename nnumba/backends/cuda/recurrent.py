"""Recurrent layers (SimpleRNN, LSTM, GRU) and backpropagation through time, as CUDA kernels.

Same names, arguments and semantics as ``backends.reference.recurrent`` (torch's
equations, the cache and scratch layouts and the processing order are in its
docstring); the cache and the scratch are the same flat 1-D device arrays,
laid out the same way, so the diagnostics read ``dhidden`` from either.

Forward, three launches whatever the number of steps:

1. ``gather_kernel`` (grid-stride, one thread per element): xs[s, r, :] = x[r, t(s) F:(t(s)+1) F];
2. ``dense.gemm``: the input projections of all steps as ONE product of the
   time-major (T n, F) xs with W_ih, into the hidden block (SimpleRNN) or the
   gates block (LSTM, GRU) of the cache;
3. the time loop, inside one kernel (``rnn_forward_kernel``, ``lstm_forward_kernel``,
   ``gru_forward_kernel``): a block takes a group of R = max(1, TPB // U)
   consecutive batch rows (block-strided over the groups when there are more
   than MAX_BLOCKS of them) and its TPB threads take the group's R U (row, unit)
   pairs, thread e the pairs e, e + TPB, ... At each step s a thread computes,
   for its unit j, the G hidden products h_{s-1} W_hh[:, g U + j] (k increasing)
   and the gate math, and writes h_s (and c_s, the gates, q_n) into the cache
   and into ``out``; ``cuda.syncthreads()`` ends the step, after which h_s
   (in global memory) is visible to every thread of the block, which holds all
   the units of its rows. Only c_{s-1} and h_{s-1}[j] of the thread's own pair
   are read besides, so one barrier per step suffices.

Backward:

1. the time loop in one kernel (``rnn_backward_kernel``, ...), the same block
   and thread mapping, s = T-1, ..., 0. Phase A: thread (r, j) reads dh =
   dhidden[s, r, j] (the output gradient, plus what the step after added),
   forms the gate gradients of unit j (dgates, and dgh for the GRU) and the
   carried dL/dc (LSTM), and starts dhidden[s-1, r, j] as dy of step s-1 (plus
   z dh for the GRU). ``cuda.syncthreads()``. Phase B (s > 0): thread (r, k) adds
   sum over m (increasing) of dgh[s, r, m] W_hh[k, m] to dhidden[s-1, r, k].
   Phase B of step s and phase A of step s-1 touch dhidden[s-1, r, k] only in
   the thread that owns (r, k), and phase B reads dgh of step s only, which
   phase A of step s-1 does not write: one barrier per step.
2. ``dense.gemm``: dW_ih = xs^T dgates and dW_hh = hidden[:-1]^T D[1:] (D = dgh for
   the GRU, else dgates), each ONE product over all steps (split along K when
   the output is small, summed in slice order); db_ih and db_hh are
   ``dense.column_sums`` of dgates and D (a fixed-order float64 reduction).
3. dx (unless it has no rows): ``dense.gemm`` dxs = dgates W_ih^T, one product
   over all steps into the scratch, then ``scatter_kernel`` (grid-stride, one
   thread per element of dx) writes or (``accumulate``) adds dxs[s(t), r, :] to
   dx[r, t F:(t+1) F].

No atomics and every sum in a fixed order: the same bits every run. float32
data is computed in float32. The hidden products stay in registers, so the
cache's ``tmp`` block and the scratch's ``tmp`` are left unwritten (the reference
uses them as work space only). An empty batch runs no time loop and no product:
the parameter gradients are zeroed (empty sums).
"""
import math

from numba import cuda

from ..codes import OP_GRU, OP_LSTM, OP_SIMPLE_RNN, SIGMOID
# the layout is the reference's: the same widths, blocks and processing order
from ..reference.recurrent import GATES, cache_width, cached_gates, scratch_width, time_of  # noqa: F401
from . import _config as cfg
from .activations import apply, derivative
from .dense import column_sums, gemm
from .memory import flat


def _cache_offsets(cell, n, steps, features, units):
    """Start of xs, hidden, gates, extra, dhidden in the flat cache of n rows."""
    o_xs = 0
    o_h = o_xs + steps * n * features
    o_g = o_h + steps * n * units
    o_e = o_g + steps * n * cached_gates(cell) * units
    o_dh = o_e + (steps * n * units if cell != OP_SIMPLE_RNN else 0)
    return o_xs, o_h, o_g, o_e, o_dh


def _scratch_offsets(cell, n, steps, features, units):
    """Start of dgates, dgh, dc, tmp, dxs in the flat scratch of n rows."""
    g = GATES[cell] * units
    o_dg = 0
    o_dgh = o_dg + steps * n * g if cell == OP_GRU else o_dg
    o_dc = (o_dgh if cell == OP_GRU else o_dg) + steps * n * g
    o_tmp = o_dc + (n * units if cell == OP_LSTM else 0)
    o_dxs = o_tmp + n * units
    return o_dg, o_dgh, o_dc, o_tmp, o_dxs


# ---- elementwise kernels: the time-major copy of x and the scatter of dx -------------------------

@cuda.jit(**cfg.kernel())
def gather_kernel(x, xs, n, steps, features, reverse):
    """xs[(s n + r) F + f] = x[r, t(s) F + f]: the input in processing order (xs flat)."""
    size = steps * n * features
    for e in range(cuda.grid(1), size, cuda.gridsize(1)):
        f = e % features
        q = e // features
        r = q % n
        s = q // n
        t = steps - 1 - s if reverse else s
        xs[e] = x[r, t * features + f]


@cuda.jit(**cfg.kernel())
def scatter_kernel(dxs, dx, n, steps, features, reverse, accumulate):
    """dx[r, t F + f] (+)= dxs[(s(t) n + r) F + f] (dxs flat, time-major (T, n, F))."""
    size = n * steps * features
    for e in range(cuda.grid(1), size, cuda.gridsize(1)):
        r = e // (steps * features)
        col = e - r * (steps * features)
        t = col // features
        f = col - t * features
        s = steps - 1 - t if reverse else t
        v = dxs[(s * n + r) * features + f]
        if accumulate:
            dx[r, col] += v
        else:
            dx[r, col] = v


# ---- the forward time loops: one block per group of rows, a thread per (row, unit) ---------------
# In all of them: cache is flat, o_* the starts of the blocks (``_cache_offsets``); a block
# holds rows [r0, r0 + rows_per_block) of group g; items are its (row, unit) pairs.

@cuda.jit(**cfg.kernel())
def rnn_forward_kernel(act, cache, w_hh, b_ih, b_hh, out, n, steps, units, o_h, rows_per_block,
                       reverse, sequences, out_offset, out_channels):
    """h_s = f(pre_s + (b_ih + b_hh) + h_{s-1} W_hh), pre_s (the input projection) already
    in the hidden block; h_s also to out."""
    dt = cache.dtype
    zero = dt.type(0)
    one = dt.type(1)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    u = units
    items = rows_per_block * u
    groups = (n + rows_per_block - 1) // rows_per_block
    for grp in range(cuda.blockIdx.x, groups, cuda.gridDim.x):
        r0 = grp * rows_per_block
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            for e in range(tid, items, nt):
                r = r0 + e // u
                j = e % u
                if r < n:
                    at = o_h + (s * n + r) * u
                    v = cache[at + j] + (b_ih[j] + b_hh[j])
                    if s > 0:
                        prev = at - n * u
                        acc = zero
                        for k in range(u):
                            acc += cache[prev + k] * w_hh[k, j]
                        v += acc
                    h = apply(act, v, zero, one)
                    cache[at + j] = h
                    if sequences:
                        out[r, t * out_channels + out_offset + j] = h
                    elif s == steps - 1:
                        out[r, out_offset + j] = h
            cuda.syncthreads()


@cuda.jit(**cfg.kernel())
def lstm_forward_kernel(cache, w_hh, b_ih, b_hh, out, n, steps, units, o_h, o_g, o_e,
                        rows_per_block, reverse, sequences, out_offset, out_channels):
    """[a_i, a_f, a_g, a_o] = pre_s + (b_ih + b_hh) + h_{s-1} W_hh (pre_s already in the gates
    block); the gates activated over it, c_s to extra, h_s = o tanh(c_s) to hidden and out."""
    dt = cache.dtype
    zero = dt.type(0)
    one = dt.type(1)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    u = units
    gu = 4 * u
    items = rows_per_block * u
    groups = (n + rows_per_block - 1) // rows_per_block
    for grp in range(cuda.blockIdx.x, groups, cuda.gridDim.x):
        r0 = grp * rows_per_block
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            for e in range(tid, items, nt):
                r = r0 + e // u
                j = e % u
                if r < n:
                    ga = o_g + (s * n + r) * gu
                    a_i = cache[ga + j] + (b_ih[j] + b_hh[j])
                    a_f = cache[ga + u + j] + (b_ih[u + j] + b_hh[u + j])
                    a_g = cache[ga + 2 * u + j] + (b_ih[2 * u + j] + b_hh[2 * u + j])
                    a_o = cache[ga + 3 * u + j] + (b_ih[3 * u + j] + b_hh[3 * u + j])
                    if s > 0:
                        prev = o_h + ((s - 1) * n + r) * u
                        q_i = zero
                        q_f = zero
                        q_g = zero
                        q_o = zero
                        for k in range(u):
                            hk = cache[prev + k]
                            q_i += hk * w_hh[k, j]
                            q_f += hk * w_hh[k, u + j]
                            q_g += hk * w_hh[k, 2 * u + j]
                            q_o += hk * w_hh[k, 3 * u + j]
                        a_i += q_i
                        a_f += q_f
                        a_g += q_g
                        a_o += q_o
                    i = apply(SIGMOID, a_i, zero, one)
                    f = apply(SIGMOID, a_f, zero, one)
                    g = math.tanh(a_g)
                    o = apply(SIGMOID, a_o, zero, one)
                    cache[ga + j] = i
                    cache[ga + u + j] = f
                    cache[ga + 2 * u + j] = g
                    cache[ga + 3 * u + j] = o
                    at = (s * n + r) * u + j
                    c = i * g
                    if s > 0:
                        c = c + f * cache[o_e + at - n * u]
                    cache[o_e + at] = c
                    h = o * math.tanh(c)
                    cache[o_h + at] = h
                    if sequences:
                        out[r, t * out_channels + out_offset + j] = h
                    elif s == steps - 1:
                        out[r, out_offset + j] = h
            cuda.syncthreads()


@cuda.jit(**cfg.kernel())
def gru_forward_kernel(cache, w_hh, b_ih, b_hh, out, n, steps, units, o_h, o_g, o_e,
                       rows_per_block, reverse, sequences, out_offset, out_channels):
    """p = pre_s + b_ih (pre_s already in the gates block), q = h_{s-1} W_hh + b_hh;
    r, z = sigma(p + q), n = tanh(p_n + r q_n), h_s = (1 - z) n + z h_{s-1}; r, z, n to the
    gates block, q_n to extra, h_s to hidden and out."""
    dt = cache.dtype
    zero = dt.type(0)
    one = dt.type(1)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    u = units
    gu = 3 * u
    items = rows_per_block * u
    groups = (n + rows_per_block - 1) // rows_per_block
    for grp in range(cuda.blockIdx.x, groups, cuda.gridDim.x):
        r0 = grp * rows_per_block
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            for e in range(tid, items, nt):
                r = r0 + e // u
                j = e % u
                if r < n:
                    ga = o_g + (s * n + r) * gu
                    p_r = cache[ga + j] + b_ih[j]
                    p_z = cache[ga + u + j] + b_ih[u + j]
                    p_n = cache[ga + 2 * u + j] + b_ih[2 * u + j]
                    q_r = b_hh[j]
                    q_z = b_hh[u + j]
                    q_n = b_hh[2 * u + j]
                    at = (s * n + r) * u + j
                    h_prev = zero
                    if s > 0:
                        prev = o_h + ((s - 1) * n + r) * u
                        acc_r = zero
                        acc_z = zero
                        acc_n = zero
                        for k in range(u):
                            hk = cache[prev + k]
                            acc_r += hk * w_hh[k, j]
                            acc_z += hk * w_hh[k, u + j]
                            acc_n += hk * w_hh[k, 2 * u + j]
                        q_r = acc_r + q_r
                        q_z = acc_z + q_z
                        q_n = acc_n + q_n
                        h_prev = cache[prev + j]
                    rg = apply(SIGMOID, p_r + q_r, zero, one)
                    z = apply(SIGMOID, p_z + q_z, zero, one)
                    new = math.tanh(p_n + rg * q_n)
                    cache[ga + j] = rg
                    cache[ga + u + j] = z
                    cache[ga + 2 * u + j] = new
                    cache[o_e + at] = q_n
                    h = (one - z) * new
                    if s > 0:
                        h = h + z * h_prev
                    cache[o_h + at] = h
                    if sequences:
                        out[r, t * out_channels + out_offset + j] = h
                    elif s == steps - 1:
                        out[r, out_offset + j] = h
            cuda.syncthreads()


# ---- the backward time loops -------------------------------------------------------------------

@cuda.jit(**cfg.DEVICE)
def dy_of(dy, r, s, j, steps, reverse, sequences, out_offset, out_channels, zero):
    """The output gradient of step s, unit j, row r: dy at its column with ``sequences``,
    else only the last step's."""
    if sequences:
        t = steps - 1 - s if reverse else s
        return dy[r, t * out_channels + out_offset + j]
    if s == steps - 1:
        return dy[r, out_offset + j]
    return zero


@cuda.jit(**cfg.DEVICE)
def recurrent_product(cache, scratch, w_hh, o_dh, o_dgh, n, s, r, k, units, gu):
    """dhidden[s - 1, r, k] += sum over m (increasing) of dgh[s, r, m] W_hh[k, m]."""
    base = o_dgh + (s * n + r) * gu
    acc = cache.dtype.type(0)
    for m in range(gu):
        acc += scratch[base + m] * w_hh[k, m]
    at = o_dh + ((s - 1) * n + r) * units + k
    cache[at] = cache[at] + acc


@cuda.jit(**cfg.kernel())
def rnn_backward_kernel(act, cache, dy, w_hh, scratch, n, steps, units, o_h, o_dh, o_dg,
                        rows_per_block, reverse, sequences, out_offset, out_channels):
    """dgates_s = dh_s f'(h_s); dhidden[s - 1] = dy_{s-1} + dgates_s W_hh^T."""
    dt = cache.dtype
    zero = dt.type(0)
    one = dt.type(1)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    u = units
    items = rows_per_block * u
    groups = (n + rows_per_block - 1) // rows_per_block
    for grp in range(cuda.blockIdx.x, groups, cuda.gridDim.x):
        r0 = grp * rows_per_block
        for e in range(tid, items, nt):
            r = r0 + e // u
            j = e % u
            if r < n:
                cache[o_dh + ((steps - 1) * n + r) * u + j] = dy_of(
                    dy, r, steps - 1, j, steps, reverse, sequences, out_offset, out_channels, zero)
        for s in range(steps - 1, -1, -1):
            for e in range(tid, items, nt):
                r = r0 + e // u
                j = e % u
                if r < n:
                    at = (s * n + r) * u + j
                    dh = cache[o_dh + at]
                    scratch[o_dg + at] = dh * derivative(act, cache[o_h + at], zero, one)
                    if s > 0:
                        cache[o_dh + at - n * u] = dy_of(dy, r, s - 1, j, steps, reverse, sequences,
                                                         out_offset, out_channels, zero)
            cuda.syncthreads()
            if s > 0:
                for e in range(tid, items, nt):
                    r = r0 + e // u
                    if r < n:
                        recurrent_product(cache, scratch, w_hh, o_dh, o_dg, n, s, r, e % u, u, u)


@cuda.jit(**cfg.kernel())
def lstm_backward_kernel(cache, dy, w_hh, scratch, n, steps, units, o_h, o_g, o_e, o_dh, o_dg,
                         o_dc, rows_per_block, reverse, sequences, out_offset, out_channels):
    """dc_s = dh o (1 - tanh(c)^2) + dc_{s+1} f_{s+1}; the four gate gradients to dgates;
    dhidden[s - 1] = dy_{s-1} + dgates_s W_hh^T; the carried dL/dc in the scratch's dc."""
    dt = cache.dtype
    zero = dt.type(0)
    one = dt.type(1)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    u = units
    gu = 4 * u
    items = rows_per_block * u
    groups = (n + rows_per_block - 1) // rows_per_block
    for grp in range(cuda.blockIdx.x, groups, cuda.gridDim.x):
        r0 = grp * rows_per_block
        for e in range(tid, items, nt):
            r = r0 + e // u
            j = e % u
            if r < n:
                cache[o_dh + ((steps - 1) * n + r) * u + j] = dy_of(
                    dy, r, steps - 1, j, steps, reverse, sequences, out_offset, out_channels, zero)
        for s in range(steps - 1, -1, -1):
            for e in range(tid, items, nt):
                r = r0 + e // u
                j = e % u
                if r < n:
                    at = (s * n + r) * u + j
                    ga = o_g + (s * n + r) * gu
                    i = cache[ga + j]
                    f = cache[ga + u + j]
                    g = cache[ga + 2 * u + j]
                    o = cache[ga + 3 * u + j]
                    dh = cache[o_dh + at]
                    tc = math.tanh(cache[o_e + at])
                    dcs = dh * o * (one - tc * tc)
                    if s < steps - 1:
                        dcs = dcs + scratch[o_dc + r * u + j]
                    c_prev = zero
                    if s > 0:
                        c_prev = cache[o_e + at - n * u]
                    da = o_dg + (s * n + r) * gu
                    scratch[da + j] = dcs * g * i * (one - i)
                    scratch[da + u + j] = dcs * c_prev * f * (one - f)
                    scratch[da + 2 * u + j] = dcs * i * (one - g * g)
                    scratch[da + 3 * u + j] = dh * tc * o * (one - o)
                    scratch[o_dc + r * u + j] = dcs * f
                    if s > 0:
                        cache[o_dh + at - n * u] = dy_of(dy, r, s - 1, j, steps, reverse, sequences,
                                                         out_offset, out_channels, zero)
            cuda.syncthreads()
            if s > 0:
                for e in range(tid, items, nt):
                    r = r0 + e // u
                    if r < n:
                        recurrent_product(cache, scratch, w_hh, o_dh, o_dg, n, s, r, e % u, u, gu)


@cuda.jit(**cfg.kernel())
def gru_backward_kernel(cache, dy, w_hh, scratch, n, steps, units, o_h, o_g, o_e, o_dh, o_dg,
                        o_dgh, rows_per_block, reverse, sequences, out_offset, out_channels):
    """da_n = dh (1 - z)(1 - n^2), da_r = da_n q_n r (1 - r), da_z = dh (h_{s-1} - n) z (1 - z)
    to dgates; dgh = (da_r, da_z, da_n r); dhidden[s - 1] = dy_{s-1} + z dh + dgh_s W_hh^T."""
    dt = cache.dtype
    zero = dt.type(0)
    one = dt.type(1)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    u = units
    gu = 3 * u
    items = rows_per_block * u
    groups = (n + rows_per_block - 1) // rows_per_block
    for grp in range(cuda.blockIdx.x, groups, cuda.gridDim.x):
        r0 = grp * rows_per_block
        for e in range(tid, items, nt):
            r = r0 + e // u
            j = e % u
            if r < n:
                cache[o_dh + ((steps - 1) * n + r) * u + j] = dy_of(
                    dy, r, steps - 1, j, steps, reverse, sequences, out_offset, out_channels, zero)
        for s in range(steps - 1, -1, -1):
            for e in range(tid, items, nt):
                r = r0 + e // u
                j = e % u
                if r < n:
                    at = (s * n + r) * u + j
                    ga = o_g + (s * n + r) * gu
                    rg = cache[ga + j]
                    z = cache[ga + u + j]
                    new = cache[ga + 2 * u + j]
                    dh = cache[o_dh + at]
                    h_prev = zero
                    if s > 0:
                        h_prev = cache[o_h + at - n * u]
                    da_n = dh * (one - z) * (one - new * new)
                    da_r = da_n * cache[o_e + at] * rg * (one - rg)
                    da_z = dh * (h_prev - new) * z * (one - z)
                    da = o_dg + (s * n + r) * gu
                    scratch[da + j] = da_r
                    scratch[da + u + j] = da_z
                    scratch[da + 2 * u + j] = da_n
                    dq = o_dgh + (s * n + r) * gu
                    scratch[dq + j] = da_r
                    scratch[dq + u + j] = da_z
                    scratch[dq + 2 * u + j] = da_n * rg
                    if s > 0:
                        cache[o_dh + at - n * u] = dy_of(dy, r, s - 1, j, steps, reverse, sequences,
                                                         out_offset, out_channels, zero) + dh * z
            cuda.syncthreads()
            if s > 0:
                for e in range(tid, items, nt):
                    r = r0 + e // u
                    if r < n:
                        recurrent_product(cache, scratch, w_hh, o_dh, o_dgh, n, s, r, e % u, u, gu)


@cuda.jit(**cfg.kernel())
def zero_kernel(a):
    """a[i] = 0 over a flat array."""
    zero = a.dtype.type(0)
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = zero


# ---- host wrappers -----------------------------------------------------------------------------

def _zero(a):
    """a[...] = 0 on the device (nothing for an empty array)."""
    if a.size:
        a = flat(a)
        zero_kernel[cfg.grid(a.size), cfg.TPB](a)


def _loop_launch(n, units):
    """(blocks, threads, rows per block) of a time-loop kernel: TPB threads over the (row,
    unit) pairs of R = max(1, TPB // U) rows, at most MAX_BLOCKS blocks (block-strided)."""
    rows_per_block = max(1, cfg.TPB // max(1, units))
    blocks = max(1, min(cfg.MAX_BLOCKS, -(-n // rows_per_block)))
    return blocks, cfg.TPB, rows_per_block


def recurrent_forward(cell, act, x, w_ih, w_hh, b_ih, b_hh, cache, out, steps, features, units,
                      reverse, sequences, out_offset, out_channels):
    """Run the layer over the n sequences of x; h of each step goes to out (and the cache).

    x: (n, T F); w_ih: (F, G U); w_hh: (U, G U); b_ih, b_hh: (G U,); cache: flat, at least
    n ``cache_width`` long; out: (n, T out_channels) with ``sequences``, else (n, out_channels),
    the layer's U channels (per step) starting at ``out_offset``. All device arrays.
    """
    cell, act = int(cell), int(act)
    if cell not in GATES:
        raise ValueError(f"unknown recurrent cell {cell}")
    n = x.shape[0]
    steps, features, units = int(steps), int(features), int(units)
    reverse, sequences = int(bool(reverse)), int(bool(sequences))
    out_offset, out_channels = int(out_offset), int(out_channels)
    if n == 0 or steps == 0 or units == 0:
        return
    cache = flat(cache)
    o_xs, o_h, o_g, o_e, _ = _cache_offsets(cell, n, steps, features, units)
    g = GATES[cell] * units
    rows = steps * n
    start = o_h if cell == OP_SIMPLE_RNN else o_g
    pre = cache[start:start + rows * g].reshape(rows, g)   # the input projections, time-major
    if features:
        xs = cache[o_xs:o_xs + rows * features]
        gather_kernel[cfg.grid(xs.size), cfg.TPB](x, xs, n, steps, features, reverse)
        gemm(xs.reshape(rows, features), w_ih, pre)
    else:
        _zero(pre)
    blocks, threads, rpb = _loop_launch(n, units)
    if cell == OP_SIMPLE_RNN:
        rnn_forward_kernel[blocks, threads](act, cache, w_hh, b_ih, b_hh, out, n, steps, units, o_h,
                                            rpb, reverse, sequences, out_offset, out_channels)
    elif cell == OP_LSTM:
        lstm_forward_kernel[blocks, threads](cache, w_hh, b_ih, b_hh, out, n, steps, units, o_h,
                                             o_g, o_e, rpb, reverse, sequences, out_offset,
                                             out_channels)
    else:
        gru_forward_kernel[blocks, threads](cache, w_hh, b_ih, b_hh, out, n, steps, units, o_h,
                                            o_g, o_e, rpb, reverse, sequences, out_offset,
                                            out_channels)


def recurrent_backward(cell, act, w_ih, w_hh, cache, dy, dw_ih, dw_hh, db_ih, db_hh, scratch, dx,
                       accumulate, steps, features, units, reverse, sequences, out_offset,
                       out_channels):
    """BPTT: parameter gradients written (not added), dx written or (``accumulate``) added;
    dhidden of the cache holds dL/dh_s on return.

    dy: like the forward's out (only read); dw_ih, dw_hh, db_ih, db_hh: like the parameters;
    scratch: flat, at least n ``scratch_width`` long; dx: (n, T F), or no rows when no input
    gradient is wanted. All device arrays.
    """
    cell, act = int(cell), int(act)
    if cell not in GATES:
        raise ValueError(f"unknown recurrent cell {cell}")
    n = dy.shape[0]
    steps, features, units = int(steps), int(features), int(units)
    reverse, sequences = int(bool(reverse)), int(bool(sequences))
    out_offset, out_channels = int(out_offset), int(out_channels)
    want_dx = dx.shape[0] != 0 and dx.size != 0
    if n == 0 or steps == 0 or units == 0:
        for a in (dw_ih, dw_hh, db_ih, db_hh):   # empty sums
            _zero(a)
        if want_dx and not accumulate:
            _zero(dx)
        return
    cache, scratch = flat(cache), flat(scratch)
    o_xs, o_h, o_g, o_e, o_dh = _cache_offsets(cell, n, steps, features, units)
    o_dg, o_dgh, o_dc, _, o_dxs = _scratch_offsets(cell, n, steps, features, units)
    blocks, threads, rpb = _loop_launch(n, units)
    if cell == OP_SIMPLE_RNN:
        rnn_backward_kernel[blocks, threads](act, cache, dy, w_hh, scratch, n, steps, units, o_h,
                                             o_dh, o_dg, rpb, reverse, sequences, out_offset,
                                             out_channels)
    elif cell == OP_LSTM:
        lstm_backward_kernel[blocks, threads](cache, dy, w_hh, scratch, n, steps, units, o_h, o_g,
                                              o_e, o_dh, o_dg, o_dc, rpb, reverse, sequences,
                                              out_offset, out_channels)
    else:
        gru_backward_kernel[blocks, threads](cache, dy, w_hh, scratch, n, steps, units, o_h, o_g,
                                             o_e, o_dh, o_dg, o_dgh, rpb, reverse, sequences,
                                             out_offset, out_channels)
    g = GATES[cell] * units
    rows = steps * n
    dgates = scratch[o_dg:o_dg + rows * g].reshape(rows, g)
    dgh = scratch[o_dgh:o_dgh + rows * g].reshape(rows, g)   # dgates but for the GRU
    xs = cache[o_xs:o_xs + rows * features].reshape(rows, features)
    if features:
        gemm(xs, dgates, dw_ih, a_trans=True)
    column_sums(dgates, db_ih)
    if steps > 1:
        h_prev = cache[o_h:o_h + (rows - n) * units].reshape(rows - n, units)
        gemm(h_prev, dgh[n:], dw_hh, a_trans=True)
    else:
        _zero(dw_hh)
    column_sums(dgh, db_hh)
    if not want_dx:
        return
    dxs = scratch[o_dxs:o_dxs + rows * features]
    gemm(dgates, w_ih, dxs.reshape(rows, features), b_trans=True)
    scatter_kernel[cfg.grid(dx.size), cfg.TPB](dxs, dx, n, steps, features, reverse,
                                               int(bool(accumulate)))
