"""The op-table interpreter as @njit functions: any model's fused training loop.

The same loop, bundles and semantics as ``backends.reference.interpreter``
(the contract is there), compiled: ``train_batches`` runs a chunk of an
epoch's iterations in one call, with no Python per iteration or per op. The
switch on the op kind runs per op per iteration; each kind's kernels live in
their own module (``conv1d``, ``pool1d``, ``dropout``, ``batchnorm``), cached
on disk, and this module is imported (and compiled) only by models that are
not plain MLPs, which keep the specialised loop of ``network``. A model compiles
the kernels of its own op kinds only (``kinds``), and calls its loss and its
optimizer step through C callbacks (``rules``), so that it compiles those of
its own loss and optimizer only. Views of the workspaces and parameters are borrowed
(``_views``).
"""
import math

import numpy as np
from numba import get_num_threads, njit

from .. import codes as c
from ..reference.interpreter import EVAL, TRAIN, TRAIN_UPDATE
from ._config import KERNEL
from ._views import flat_view, rows_view
from .activations import activation_backward, activation_forward
from .batchnorm import batchnorm_backward, batchnorm_forward_eval, batchnorm_forward_train
from .conv1d import conv1d_backward, conv1d_forward
from .dense import dense_backward, dense_backward_input, dense_forward
from .dropout import dropout_backward, dropout_forward
from .elementwise import add, add_into, copy
from .gradients import apply_weight_decay, clip_by_norm, clip_by_value, sum_of_squares
from .losses import loss_forward_backward
from .network import (_allreduce, _gradient_buffer, _weigh_share, batch_share, blas_thread_count,
                      by_address, call_loss, call_step, consecutive, first_rows, gather_rows)
from .pool1d import (avgpool1d_backward, avgpool1d_forward, global_avgpool1d_backward,
                     global_avgpool1d_forward, maxpool1d_backward, maxpool1d_forward)
from .recurrent import recurrent_backward, recurrent_forward
from .rules import builtin_loss, builtin_step, call_activations_at


@njit(**KERNEL)
def _region(buf, off, rows, n, size):
    return rows_view(buf, rows * off, n, size)


@njit(**KERNEL)
def _input(ops, i, buf, x, rows, n):
    if ops[i, c.OP_IN] < 0:
        return x
    return rows_view(buf, rows * ops[i, c.OP_IN], n, ops[i, c.OP_IN_SIZE])


@njit(**KERNEL)
def _output(ops, i, buf, rows, n):
    return rows_view(buf, rows * ops[i, c.OP_OUT], n, ops[i, c.OP_OUT_SIZE])


@njit(**KERNEL)
def _segment(flat, segs, s):
    if s < 0:
        return flat_view(flat, 0, 0)
    return flat_view(flat, segs[s, c.SEG_OFF], segs[s, c.SEG_LEN])


@njit(**KERNEL)
def _matrix(flat, segs, s, cols):
    return rows_view(flat, segs[s, c.SEG_OFF], segs[s, c.SEG_LEN] // cols, cols)


@njit(**KERNEL)
def _patches(ops, i, cache, rows, n):
    width = ops[i, c.OP_K] * ops[i, c.OP_CH_IN]
    return rows_view(cache, rows * ops[i, c.OP_CACHE], n * ops[i, c.OP_STEPS_OUT], width)


@njit(**KERNEL)
def _bn_xhat(ops, i, cache, rows, n):
    ch = ops[i, c.OP_CH_OUT]
    return rows_view(cache, rows * ops[i, c.OP_CACHE], n * ops[i, c.OP_OUT_SIZE] // ch, ch)


@njit(**KERNEL)
def _bn_inv_std(ops, i, cache, rows):
    return flat_view(cache, rows * (ops[i, c.OP_CACHE] + ops[i, c.OP_OUT_SIZE]), ops[i, c.OP_CH_OUT])


@njit(**KERNEL)
def _recurrent_cache(ops, i, cache, rows):
    start = rows * ops[i, c.OP_CACHE]
    return flat_view(cache, start, cache.shape[0] - start)


@njit(**KERNEL)
def _recurrent_forward(ops, i, params, segs, inp, out, cache, rows):
    s, cols = ops[i, c.OP_W_SEG], segs[ops[i, c.OP_W_SEG] + 2, c.SEG_LEN]
    recurrent_forward(ops[i, c.OP_KIND], ops[i, c.OP_ACT], inp, _matrix(params, segs, s, cols),
                      _matrix(params, segs, s + 1, cols), _segment(params, segs, s + 2),
                      _segment(params, segs, s + 3), _recurrent_cache(ops, i, cache, rows), out,
                      ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN], ops[i, c.OP_UNITS],
                      ops[i, c.OP_REVERSE], ops[i, c.OP_SEQUENCES], ops[i, c.OP_OUT_OFFSET],
                      ops[i, c.OP_CH_OUT])


@njit(**KERNEL)
def _recurrent_backward(ops, i, params, grads, segs, dy, dinp, cache, scratch, rows):
    s, cols = ops[i, c.OP_W_SEG], segs[ops[i, c.OP_W_SEG] + 2, c.SEG_LEN]
    recurrent_backward(ops[i, c.OP_KIND], ops[i, c.OP_ACT], _matrix(params, segs, s, cols),
                       _matrix(params, segs, s + 1, cols), _recurrent_cache(ops, i, cache, rows), dy,
                       _matrix(grads, segs, s, cols), _matrix(grads, segs, s + 1, cols),
                       _segment(grads, segs, s + 2), _segment(grads, segs, s + 3), scratch, dinp,
                       ops[i, c.OP_DX_ADD], ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN],
                       ops[i, c.OP_UNITS], ops[i, c.OP_REVERSE], ops[i, c.OP_SEQUENCES],
                       ops[i, c.OP_OUT_OFFSET], ops[i, c.OP_CH_OUT])


# The groups of op kinds whose kernels a model compiles only when it has such ops.
KIND_GROUPS = (("conv", (c.OP_CONV1D,)),
               ("pool", (c.OP_MAXPOOL1D, c.OP_AVGPOOL1D, c.OP_GLOBAL_AVGPOOL1D)),
               ("dropout", (c.OP_DROPOUT,)),
               ("batchnorm", (c.OP_BATCHNORM,)),
               ("recurrent", c.RECURRENT_KINDS))


def kinds(plan):
    """The jitted functions' arguments ``conv, pool, dropout, batchnorm, recurrent``: True
    when the plan has ops of the group (``KIND_GROUPS``), else None. With None, Numba
    prunes the group's branches before typing (``is not None`` on an argument typed
    None), so a model compiles the kernels of its own kinds only (a Conv1D network does
    not compile BatchNorm's, pooling's or the recurrent cells').

    The recurrent kernels run parallel regions (``recurrent.row_blocks``). Numba starts its
    threading layer when it compiles one, but a loop loaded from the on-disk cache would
    call into a layer not yet started (a null function pointer: measured, a segfault), so
    a plan with recurrent ops starts it here (``numba.get_num_threads`` does)."""
    present = set(int(k) for k in plan.ops[:, c.OP_KIND])
    flags = tuple(True if present.intersection(group) else None for _, group in KIND_GROUPS)
    if flags[-1]:
        get_num_threads()
    return flags


def forward(plan, params, buffers, x, ws, mode, seed, t):
    """See the reference twin: run the ops on the batch x (n rows)."""
    _forward(_tables(plan), params, buffers, x, ws, mode, seed, t, *kinds(plan), _address(plan.custom))


@njit(**KERNEL)
def _forward(plan, params, buffers, x, ws, mode, seed, t, conv, pool, dropout, batchnorm, recurrent,
             custom):
    ops, fops, segs = plan.ops, plan.fops, plan.segs
    rows, n = ws.xb.shape[0], x.shape[0]
    for i in range(ops.shape[0]):
        kind, act, alpha = ops[i, c.OP_KIND], ops[i, c.OP_ACT], fops[i, c.FOP_ALPHA]
        if kind == c.OP_RESIDUAL_BEGIN:
            continue
        inp = _input(ops, i, ws.acts, x, rows, n)
        out = _output(ops, i, ws.acts, rows, n)
        if kind == c.OP_DENSE:
            dense_forward(inp, _matrix(params, segs, ops[i, c.OP_W_SEG], ops[i, c.OP_OUT_SIZE]),
                          _segment(params, segs, ops[i, c.OP_B_SEG]), act, alpha, out, 0)
        elif kind == c.OP_ACTIVATION:
            activation_forward(act, alpha, inp, out)
        elif kind == c.OP_CONV1D:
            if conv is None:
                continue
            conv1d_forward(inp, _matrix(params, segs, ops[i, c.OP_W_SEG], ops[i, c.OP_CH_OUT]),
                           _segment(params, segs, ops[i, c.OP_B_SEG]),
                           _patches(ops, i, ws.cache, rows, n), out, ops[i, c.OP_STEPS_IN],
                           ops[i, c.OP_CH_IN], ops[i, c.OP_K], ops[i, c.OP_STRIDE], ops[i, c.OP_PAD])
            if act != c.IDENTITY:
                activation_forward(act, alpha, out, out)
        elif kind == c.OP_MAXPOOL1D:
            if pool is None:
                continue
            argmax = _region(ws.icache, ops[i, c.OP_ICACHE], rows, n, ops[i, c.OP_OUT_SIZE])
            maxpool1d_forward(inp, out, argmax, ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN],
                              ops[i, c.OP_K], ops[i, c.OP_STRIDE])
        elif kind == c.OP_AVGPOOL1D:
            if pool is None:
                continue
            avgpool1d_forward(inp, out, ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN], ops[i, c.OP_K],
                              ops[i, c.OP_STRIDE])
        elif kind == c.OP_GLOBAL_AVGPOOL1D:
            if pool is None:
                continue
            global_avgpool1d_forward(inp, out, ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN])
        elif kind == c.OP_DROPOUT:
            if dropout is None:
                continue
            if mode == EVAL:
                copy(inp, out)
            else:
                dropout_forward(inp, out, fops[i, c.FOP_RATE], seed, t, i)
        elif kind == c.OP_BATCHNORM:
            if batchnorm is None:
                continue
            ch = ops[i, c.OP_CH_OUT]
            m = n * ops[i, c.OP_OUT_SIZE] // ch
            x2, y2 = rows_view(inp, 0, m, ch), rows_view(out, 0, m, ch)
            gamma = _segment(params, segs, ops[i, c.OP_W_SEG])
            beta = _segment(params, segs, ops[i, c.OP_B_SEG])
            stats = buffers
            off = ops[i, c.OP_BUF]
            if mode == TRAIN:  # a scratch copy: the model's running statistics stay untouched
                stats = ws.buffer_scratch
                for e in range(2 * ch):
                    stats[off + e] = buffers[off + e]
            mean, var = flat_view(stats, off, ch), flat_view(stats, off + ch, ch)
            if mode == EVAL:
                batchnorm_forward_eval(x2, gamma, beta, y2, mean, var, fops[i, c.FOP_EPS])
            else:
                batchnorm_forward_train(x2, gamma, beta, y2, _bn_xhat(ops, i, ws.cache, rows, n),
                                        _bn_inv_std(ops, i, ws.cache, rows), mean, var,
                                        fops[i, c.FOP_MOMENTUM], fops[i, c.FOP_EPS])
        elif kind == c.OP_RESIDUAL_ADD:
            skip = x if ops[i, c.OP_SKIP] < 0 else \
                _region(ws.acts, ops[i, c.OP_SKIP], rows, n, ops[i, c.OP_OUT_SIZE])
            add(inp, skip, out)
        elif kind == c.OP_SIMPLE_RNN or kind == c.OP_LSTM or kind == c.OP_GRU:
            if recurrent is None:
                continue
            _recurrent_forward(ops, i, params, segs, inp, out, ws.cache, rows)
        elif kind == c.OP_CUSTOM_ACTIVATION:
            if custom is not None:  # the model's custom activations' C callback (None: pruned)
                call_activations_at(custom, (ops[i, c.OP_K], 0, inp.ctypes.data, out.ctypes.data,
                                             out.ctypes.data, out.shape[0] * out.shape[1]))


@njit(**KERNEL)
def _backward(plan, params, grads, x, ws, seed, t, conv, pool, dropout, batchnorm, recurrent, custom):
    """See the reference twin: back-propagate from the last op's region of deltas."""
    ops, fops, segs = plan.ops, plan.fops, plan.segs
    rows, n = ws.xb.shape[0], x.shape[0]
    for i in range(ops.shape[0] - 1, -1, -1):
        kind, act, alpha = ops[i, c.OP_KIND], ops[i, c.OP_ACT], fops[i, c.FOP_ALPHA]
        has_dx = ops[i, c.OP_IN] >= 0
        dinp = _input(ops, i, ws.deltas, x, rows, n) if has_dx else rows_view(ws.deltas, 0, 0, 1)
        if kind == c.OP_RESIDUAL_BEGIN:
            if has_dx:
                add_into(dinp, _region(ws.deltas, ops[i, c.OP_SKIP], rows, n, ops[i, c.OP_OUT_SIZE]))
            continue
        inp = _input(ops, i, ws.acts, x, rows, n)
        y = _output(ops, i, ws.acts, rows, n)
        dy = _output(ops, i, ws.deltas, rows, n)
        if kind == c.OP_DENSE:
            m = ops[i, c.OP_OUT_SIZE]
            dense_backward(inp, y, act, alpha, dy, _matrix(grads, segs, ops[i, c.OP_W_SEG], m),
                           _segment(grads, segs, ops[i, c.OP_B_SEG]), 0)
            if has_dx:
                dense_backward_input(dy, _matrix(params, segs, ops[i, c.OP_W_SEG], m), dinp, 0)
        elif kind == c.OP_ACTIVATION:
            activation_backward(act, alpha, y, dy)
            if has_dx:
                copy(dy, dinp)
        elif kind == c.OP_CONV1D:
            if conv is None:
                continue
            if act != c.IDENTITY:
                activation_backward(act, alpha, y, dy)
            patches = _patches(ops, i, ws.cache, rows, n)
            dpatches = rows_view(ws.scratch, 0, patches.shape[0], patches.shape[1])
            ch_out = ops[i, c.OP_CH_OUT]
            conv1d_backward(patches, _matrix(params, segs, ops[i, c.OP_W_SEG], ch_out), dy,
                            _matrix(grads, segs, ops[i, c.OP_W_SEG], ch_out),
                            _segment(grads, segs, ops[i, c.OP_B_SEG]), dpatches, dinp,
                            ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN], ops[i, c.OP_K],
                            ops[i, c.OP_STRIDE], ops[i, c.OP_PAD])
        elif kind == c.OP_MAXPOOL1D:
            if pool is None:
                continue
            if has_dx:
                argmax = _region(ws.icache, ops[i, c.OP_ICACHE], rows, n, ops[i, c.OP_OUT_SIZE])
                maxpool1d_backward(dy, argmax, dinp, ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN],
                                   ops[i, c.OP_K], ops[i, c.OP_STRIDE])
        elif kind == c.OP_AVGPOOL1D:
            if pool is None:
                continue
            if has_dx:
                avgpool1d_backward(dy, dinp, ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN],
                                   ops[i, c.OP_K], ops[i, c.OP_STRIDE])
        elif kind == c.OP_GLOBAL_AVGPOOL1D:
            if pool is None:
                continue
            if has_dx:
                global_avgpool1d_backward(dy, dinp, ops[i, c.OP_STEPS_IN], ops[i, c.OP_CH_IN])
        elif kind == c.OP_DROPOUT:
            if dropout is None:
                continue
            if has_dx:
                dropout_backward(dy, dinp, fops[i, c.FOP_RATE], seed, t, i)
        elif kind == c.OP_BATCHNORM:
            if batchnorm is None:
                continue
            ch = ops[i, c.OP_CH_OUT]
            m = n * ops[i, c.OP_OUT_SIZE] // ch
            dx2 = rows_view(dinp, 0, m, ch) if has_dx else rows_view(ws.deltas, 0, 0, ch)
            batchnorm_backward(rows_view(dy, 0, m, ch), _bn_xhat(ops, i, ws.cache, rows, n),
                               _bn_inv_std(ops, i, ws.cache, rows),
                               _segment(params, segs, ops[i, c.OP_W_SEG]), dx2,
                               _segment(grads, segs, ops[i, c.OP_W_SEG]),
                               _segment(grads, segs, ops[i, c.OP_B_SEG]))
        elif kind == c.OP_RESIDUAL_ADD:
            copy(dy, dinp)
        elif kind == c.OP_SIMPLE_RNN or kind == c.OP_LSTM or kind == c.OP_GRU:
            if recurrent is None:
                continue
            _recurrent_backward(ops, i, params, grads, segs, dy, dinp, ws.cache, ws.scratch, rows)
        elif kind == c.OP_CUSTOM_ACTIVATION:
            if custom is not None:
                call_activations_at(custom, (ops[i, c.OP_K], 1, inp.ctypes.data, y.ctypes.data,
                                             dy.ctypes.data, dy.shape[0] * dy.shape[1]))
                if has_dx:
                    copy(dy, dinp)


@njit(**KERNEL)
def output_rows(plan, buf, rows, n):
    """The last op's (n, n_out) region of a workspace, borrowed (jitted callers only)."""
    return _output(plan.ops, plan.ops.shape[0] - 1, buf, rows, n)


def output_view(plan, buf, rows, n):
    """The last op's (n, n_out) region of a workspace (a NumPy view, for Python)."""
    row = plan.ops[-1]
    start, size = rows * int(row[c.OP_OUT]), int(row[c.OP_OUT_SIZE])
    return buf[start:start + n * size].reshape(n, size)


def loss_and_gradients(plan, params, grads, buffers, loss, x, target, labels, ws, mode, seed, t):
    """Forward (``mode``), loss (ws.result: mean loss, correct count), backward into grads."""
    _loss_and_gradients(_tables(plan), params, grads, buffers, loss, x, target, labels, ws, mode,
                        seed, t, *kinds(plan), _address(plan.custom), _address(plan.loss))


def _tables(plan):
    """The Program the jitted functions take: its callbacks (custom activations, custom
    loss) go separately, as arguments that are None when absent (Numba then prunes
    their branches)."""
    return plan._replace(custom=None, loss=None)


def _address(callback):
    """A cfunc's address, the way the jitted functions take a callback (None: none)."""
    return None if callback is None else callback.address


@njit(**KERNEL)
def _loss_and_gradients(plan, params, grads, buffers, loss, x, target, labels, ws, mode, seed, t,
                        conv, pool, dropout, batchnorm, recurrent, custom, loss_fn):
    rows, n = ws.xb.shape[0], x.shape[0]
    _forward(plan, params, buffers, x, ws, mode, seed, t, conv, pool, dropout, batchnorm, recurrent,
             custom)
    if loss_fn is not None:  # a user-defined loss's C callback (None: pruned)
        call_loss(loss_fn, output_rows(plan, ws.acts, rows, n), target, flat_view(ws.wb, 0, 0),
                  output_rows(plan, ws.deltas, rows, n), ws.result)
    else:
        loss_forward_backward(loss, output_rows(plan, ws.acts, rows, n), target, labels,
                              output_rows(plan, ws.deltas, rows, n), ws.result)
    _backward(plan, params, grads, x, ws, seed, t, conv, pool, dropout, batchnorm, recurrent, custom)


@njit(**KERNEL)
def gradient_norms(plan, grads, stats_row, scratch):
    """See the reference twin: per-layer norms into stats_row, the global norm returned."""
    segs = plan.segs
    total = 0.0
    for s in range(segs.shape[0]):
        sum_of_squares(_segment(grads, segs, s), scratch)
        if segs[s, c.SEG_NORM] >= 0:
            stats_row[segs[s, c.SEG_NORM]] = np.sqrt(scratch[0])
        total += scratch[0]
    return np.sqrt(total)


def train_batches(plan, params, grads, buffers, loss, data, n_rows, batch_size, first, n_iter, opt,
                  ws, stats, comm=None):
    """See the reference twin: iterations first, ..., first + n_iter - 1, in one compiled
    call, taking its turn on BLAS with the MLP loop's calls (``network._blas_turn``:
    BLAS's thread count is one setting for the process). Data-parallel (``comm``),
    the allreduce runs inside the compiled loop, as in ``network``."""
    # a recurrent model's whole call runs on one BLAS thread: the SimpleRNN's and GRU's
    # per-step products (h W_hh, as small as 32 x 128 x 512) lose more to BLAS's thread
    # hand-offs than they gain, and collapse when another process holds a core (measured:
    # 60 us against 16 ms); the LSTM's run on Numba's threads (``recurrent.row_blocks``),
    # which spinning BLAS threads would slow down (measured: its forward 8 ms against 2 ms)
    weighted = data.weights.shape[0] > 0
    loss_fn = plan.loss if plan.loss is not None else builtin_loss(loss, weighted, params.dtype)
    step_fn = opt.rule if opt.rule is not None else builtin_step(opt.code, params.dtype)
    loss_fn, step_fn, custom = loss_fn.address, step_fn.address, _address(plan.custom)
    flags, comm = kinds(plan), by_address(comm)
    with blas_thread_count(1 if flags[-1] else None):
        return _train_batches(_tables(plan), params, grads, buffers, loss, data, n_rows, batch_size,
                              first, n_iter, opt._replace(rule=None), ws, stats, *flags, comm,
                              step_fn, custom, loss_fn)


@njit(**KERNEL)
def _train_batches(plan, params, grads, buffers, loss, data, n_rows, batch_size, first, n_iter, opt,
                   ws, stats, conv, pool, dropout, batchnorm, recurrent, comm, step_fn, custom,
                   loss_fn):
    scratch = np.zeros(1)
    n_params = params.shape[0]
    weight = 1.0
    for j in range(n_iter):
        start = (first + j) * batch_size
        n = min(batch_size, n_rows - start)
        if comm is not None:  # this rank's share of the batch (``comm`` None: pruned)
            start, n, weight = batch_share(comm.rank, comm.size, start, n)
        index = flat_view(data.order, start, n)
        lo = index[0]
        x, t_n, l_n = first_rows(ws.xb, 0, n), first_rows(ws.tb, 0, n), flat_view(ws.lb, 0, n)
        if consecutive(index):  # no shuffling: the batch is a slice of the data, no copy
            x = first_rows(data.X, lo, n)
            if loss == c.CROSS_ENTROPY:
                l_n = flat_view(data.labels, lo, n)
            else:
                t_n = first_rows(data.T, lo, n)
        else:
            gather_rows(data.X, index, x)
            if loss == c.CROSS_ENTROPY:
                gather_rows(data.labels, index, l_n)
            else:
                gather_rows(data.T, index, t_n)
        row = flat_view(stats, j * stats.shape[1], stats.shape[1])
        step = opt.t + j + 1
        # loss_and_gradients, written out: each level of jitted calls re-optimises all the
        # code below it when Numba links it (measured: this level cost 3.3 s of a cold start)
        _forward(plan, params, buffers, x, ws, TRAIN_UPDATE, opt.seed, step, conv, pool, dropout,
                 batchnorm, recurrent, custom)
        w_n = data.weights  # empty: unweighted
        if data.weights.shape[0]:
            w_n = flat_view(data.weights, lo, n)
            if not consecutive(index):
                w_n = flat_view(ws.wb, 0, n)
                gather_rows(data.weights, index, w_n)
        out = output_rows(plan, ws.acts, ws.xb.shape[0], n)
        dout = output_rows(plan, ws.deltas, ws.xb.shape[0], n)
        if loss == c.CROSS_ENTROPY:  # the loss is a C callback, built-in or user-defined
            call_loss(loss_fn, out, l_n, w_n, dout, ws.result)
        else:
            call_loss(loss_fn, out, t_n, w_n, dout, ws.result)
        if comm is not None:
            _weigh_share(output_rows(plan, ws.deltas, ws.xb.shape[0], n), ws.result, weight)
            grads = _gradient_buffer(comm, j, n_params)
        _backward(plan, params, grads, x, ws, opt.seed, step, conv, pool, dropout, batchnorm,
                  recurrent, custom)
        if comm is not None:
            grads = _allreduce(comm, j, n_params, ws.result)
        row[c.STAT_LOSS] = ws.result[0]
        row[c.STAT_CORRECT] = ws.result[1]
        norm = gradient_norms(plan, grads, row[c.STAT_NORMS:], scratch)
        if not math.isfinite(row[c.STAT_LOSS]):
            row[c.STAT_STATUS] = c.STATUS_LOSS
            return j
        if not math.isfinite(norm):
            row[c.STAT_STATUS] = c.STATUS_GRADIENT
            return j
        if opt.lrs.shape[0]:
            opt.hp[c.HP_LR] = opt.lrs[j]  # a schedule's learning rate of this step
        if math.isfinite(opt.clip_norm):
            clip_by_norm(grads, norm, opt.clip_norm)
        if math.isfinite(opt.clip_value):
            clip_by_value(grads, opt.clip_value)
        if opt.hp[c.HP_WEIGHT_DECAY] != 0:
            segs = plan.segs
            for s in range(segs.shape[0]):
                if segs[s, c.SEG_DECAY]:
                    apply_weight_decay(_segment(params, segs, s), _segment(grads, segs, s), opt.hp)
        # the step is a C callback, built-in (``rules.builtin_step``) or a user-defined rule
        status = call_step(step_fn, params, grads, opt.state, opt.hp, step)
        if status == c.STATUS_OK:
            big = np.finfo(buffers.dtype).max
            for e in range(buffers.shape[0]):  # BatchNorm's running statistics (a few numbers)
                if not abs(buffers[e]) <= big:
                    status = c.STATUS_BUFFERS
        row[c.STAT_STATUS] = status
        if status != c.STATUS_OK:
            return j
    return n_iter
