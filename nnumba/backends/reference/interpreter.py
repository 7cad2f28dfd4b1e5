"""The op-table interpreter: any model's forward, backward and training loop, in Python.

This is the definition of how a model compiled into an op table (``nnumba.plan``;
columns in ``codes``) computes; the cpu backend's ``interpreter`` is the same
loop as one @njit function. The loop itself only picks kernels and views: it
is written once for any backend whose kernel modules ``k`` (an object with
attributes ``dense``, ``activations``, ``conv1d``, ``pool1d``, ``dropout``,
``batchnorm``, ``elementwise``, ``recurrent``, ``losses``, ``gradients``, ``optim`` and
``memory``) take that backend's arrays, so the reference backend (NumPy
kernels) and the cuda backend (device kernels, one launch per op) share it.

Bundles (named tuples, the same on every backend):

- ``plan``: ``Program(ops, fops, segs, custom)``, the tables (host NumPy arrays)
  and the custom activations;
- ``ws``: ``Workspace(xb, tb, lb, acts, deltas, cache, icache, scratch,
  buffer_scratch, result)``: the batch, its targets and labels (rows x ...),
  the activation and gradient regions (rows * plan.width), the float and int
  caches (rows * cache_width, rows * icache_width), the conv scratch
  (rows * scratch_width), room for a copy of the running statistics and the
  loss kernel's result pair;
- ``data``: ``Data(X, T, labels, order)``; ``opt``: ``Step(code, state, hp, t,
  clip_norm, clip_value, seed)``: the optimizer, its step count before the
  call, clipping (inf: off) and the dropout seed.

Forward modes: EVAL (running statistics, no dropout), TRAIN (batch statistics
and dropout, running statistics untouched: ``model.gradients``) and
TRAIN_UPDATE (also moves the running statistics: ``fit``). Dropout's mask of
op i at step t is a hash of (seed, t, i, row, element): no state to keep.

Backward: op i reads dL/d(output) from its output region of ``deltas`` and
writes dL/d(input) into its input region (not at all when the input is the
batch; added to it where OP_DX_ADD says so: the first of a Bidirectional
layer's two ops, which read the same input). A residual add copies its gradient to the inner output; the matching
begin op, reached last, adds the add's gradient (still intact) to what the
inner ops wrote for the block's input.
"""
import functools
import importlib
from types import SimpleNamespace

import numpy as np

from .. import codes as c
from ..bundles import Data, Program, Step, Workspace  # noqa: F401 (the loop's bundles)
from .network import allreduce_gradients, batch_share

KERNEL_MODULES = ("dense", "activations", "conv1d", "pool1d", "dropout", "batchnorm", "elementwise",
                  "recurrent", "losses", "gradients", "optim", "memory", "network")


@functools.lru_cache(maxsize=None)
def kernels(package=__package__):
    """The kernel modules of a backend package (default: this one), as the loop's ``k``."""
    return SimpleNamespace(**{m: importlib.import_module(f"{package}.{m}") for m in KERNEL_MODULES})

EVAL, TRAIN, TRAIN_UPDATE = 0, 1, 2



def rows_of(ws):
    """The number of rows the workspace holds."""
    return ws.xb.shape[0]


def region(buf, off, rows, n, size):
    """Region ``off`` of a workspace of ``rows`` rows, for n rows of ``size``: (n, size)."""
    start = rows * int(off)
    return buf[start:start + n * size].reshape(n, size)


def segment(flat, segs, s):
    """Segment s of a parameter-shaped buffer, flat."""
    off, length = int(segs[s, c.SEG_OFF]), int(segs[s, c.SEG_LEN])
    return flat[off:off + length]


def matrix(flat, segs, s, cols):
    """Segment s as a (length / cols, cols) matrix (W of Dense and Conv1D)."""
    w = segment(flat, segs, s)
    return w.reshape(w.shape[0] // cols, cols)


def optional_segment(flat, segs, s):
    return flat[:0] if s < 0 else segment(flat, segs, s)


def _io(row, buf, x, rows, n):
    """The op's input and output views of ``buf`` (the batch x where its input is -1)."""
    inp = x if row[c.OP_IN] < 0 else region(buf, row[c.OP_IN], rows, n, int(row[c.OP_IN_SIZE]))
    out = region(buf, row[c.OP_OUT], rows, n, int(row[c.OP_OUT_SIZE]))
    return inp, out


def _patches(ws, row, rows, n):
    """Conv1D's im2col patches in the float cache: (n * steps_out, k * C_in)."""
    steps_out, width = int(row[c.OP_STEPS_OUT]), int(row[c.OP_K] * row[c.OP_CH_IN])
    return region(ws.cache, row[c.OP_CACHE], rows, n, steps_out * width).reshape(n * steps_out, width)


def _bn_cache(ws, row, rows, n):
    """BatchNorm's xhat (n * steps, C) and, after all rows' share, 1 / std (C)."""
    ch, size = int(row[c.OP_CH_OUT]), int(row[c.OP_OUT_SIZE])
    start = rows * int(row[c.OP_CACHE])
    xhat = ws.cache[start:start + n * size].reshape(n * size // ch, ch)
    return xhat, ws.cache[start + rows * size:start + rows * size + ch]


def _recurrent_params(flat, segs, row):
    """A recurrent op's W_ih, W_hh, b_ih, b_hh (four consecutive segments)."""
    s, cols = int(row[c.OP_W_SEG]), int(segs[int(row[c.OP_W_SEG]) + 2, c.SEG_LEN])
    return matrix(flat, segs, s, cols), matrix(flat, segs, s + 1, cols), segment(flat, segs, s + 2), \
        segment(flat, segs, s + 3)


def recurrent_cache(ws, row, rows):
    """A recurrent op's float cache: from its region's start on (the kernels lay out
    their n rows' steps there, ``reference.recurrent``)."""
    return ws.cache[rows * int(row[c.OP_CACHE]):]


def _recurrent_geometry(row):
    """steps, features, units, reverse, sequences, out_offset, out_channels."""
    return tuple(int(row[col]) for col in (c.OP_STEPS_IN, c.OP_CH_IN, c.OP_UNITS, c.OP_REVERSE,
                                           c.OP_SEQUENCES, c.OP_OUT_OFFSET, c.OP_CH_OUT))


def _bn_statistics(k, row, ws, buffers, mode):
    """BatchNorm's running mean and variance (C each); in mode TRAIN a scratch copy of
    them, so that the model's stay untouched."""
    ch, off = int(row[c.OP_CH_OUT]), int(row[c.OP_BUF])
    stats = buffers
    if mode == TRAIN:
        stats = ws.buffer_scratch
        k.elementwise.copy(buffers[off:off + 2 * ch].reshape(1, -1),
                           stats[off:off + 2 * ch].reshape(1, -1))
    return stats[off:off + ch], stats[off + ch:off + 2 * ch]


def forward(plan, params, buffers, x, ws, mode, seed, t, k=None):
    """Run the ops on the batch x (n rows): op i's output lands in its region of acts."""
    k = k or kernels()
    ops, fops, segs, custom = plan.ops, plan.fops, plan.segs, plan.custom
    rows, n = rows_of(ws), x.shape[0]
    for i in range(ops.shape[0]):
        row = ops[i]
        kind, act, alpha = row[c.OP_KIND], int(row[c.OP_ACT]), fops[i, c.FOP_ALPHA]
        if kind == c.OP_RESIDUAL_BEGIN:
            continue  # no data: its output region is its input's (possibly the batch)
        inp, out = _io(row, ws.acts, x, rows, n)
        if kind == c.OP_DENSE:
            k.dense.dense_forward(inp, matrix(params, segs, row[c.OP_W_SEG], out.shape[1]),
                                  optional_segment(params, segs, row[c.OP_B_SEG]), act, alpha, out)
        elif kind == c.OP_ACTIVATION:
            k.activations.activation_forward(act, alpha, inp, out)
        elif kind == c.OP_CONV1D:
            k.conv1d.conv1d_forward(inp, matrix(params, segs, row[c.OP_W_SEG], int(row[c.OP_CH_OUT])),
                                    optional_segment(params, segs, row[c.OP_B_SEG]),
                                    _patches(ws, row, rows, n), out,
                                    int(row[c.OP_STEPS_IN]), int(row[c.OP_CH_IN]), int(row[c.OP_K]),
                                    int(row[c.OP_STRIDE]), int(row[c.OP_PAD]))
            if act != c.IDENTITY:
                k.activations.activation_forward(act, alpha, out, out)
        elif kind == c.OP_MAXPOOL1D:
            argmax = region(ws.icache, row[c.OP_ICACHE], rows, n, int(row[c.OP_OUT_SIZE]))
            k.pool1d.maxpool1d_forward(inp, out, argmax, int(row[c.OP_STEPS_IN]), int(row[c.OP_CH_IN]),
                                       int(row[c.OP_K]), int(row[c.OP_STRIDE]))
        elif kind == c.OP_AVGPOOL1D:
            k.pool1d.avgpool1d_forward(inp, out, int(row[c.OP_STEPS_IN]), int(row[c.OP_CH_IN]),
                                       int(row[c.OP_K]), int(row[c.OP_STRIDE]))
        elif kind == c.OP_GLOBAL_AVGPOOL1D:
            k.pool1d.global_avgpool1d_forward(inp, out, int(row[c.OP_STEPS_IN]), int(row[c.OP_CH_IN]))
        elif kind == c.OP_DROPOUT:
            if mode == EVAL:
                k.elementwise.copy(inp, out)
            else:
                k.dropout.dropout_forward(inp, out, fops[i, c.FOP_RATE], seed, t, i)
        elif kind == c.OP_BATCHNORM:
            ch = int(row[c.OP_CH_OUT])
            gamma, beta = segment(params, segs, row[c.OP_W_SEG]), segment(params, segs, row[c.OP_B_SEG])
            x2, y2 = inp.reshape(-1, ch), out.reshape(-1, ch)
            xhat, inv_std = _bn_cache(ws, row, rows, n)
            mean, var = _bn_statistics(k, row, ws, buffers, mode)
            if mode == EVAL:
                k.batchnorm.batchnorm_forward_eval(x2, gamma, beta, y2, mean, var, fops[i, c.FOP_EPS])
            else:
                k.batchnorm.batchnorm_forward_train(x2, gamma, beta, y2, xhat, inv_std, mean, var,
                                                    fops[i, c.FOP_MOMENTUM], fops[i, c.FOP_EPS])
        elif kind == c.OP_RESIDUAL_ADD:
            skip = x if row[c.OP_SKIP] < 0 else region(ws.acts, row[c.OP_SKIP], rows, n,
                                                       int(row[c.OP_OUT_SIZE]))
            k.elementwise.add(inp, skip, out)
        elif kind == c.OP_CUSTOM_ACTIVATION:
            custom.forward(int(row[c.OP_K]), inp, out)
        elif kind in c.RECURRENT_KINDS:
            k.recurrent.recurrent_forward(kind, act, inp, *_recurrent_params(params, segs, row),
                                          recurrent_cache(ws, row, rows), out, *_recurrent_geometry(row))
        # OP_RESIDUAL_BEGIN: no data (its output region is its input's)


def backward(plan, params, grads, x, ws, seed, t, k=None):
    """Back-propagate: on entry the last op's region of deltas holds dL/d(output); on
    return grads holds dL/dparams (deltas and the scratch are overwritten)."""
    k = k or kernels()
    ops, fops, segs, custom = plan.ops, plan.fops, plan.segs, plan.custom
    rows, n = rows_of(ws), x.shape[0]
    for i in range(ops.shape[0] - 1, -1, -1):
        row = ops[i]
        kind, act, alpha = row[c.OP_KIND], int(row[c.OP_ACT]), fops[i, c.FOP_ALPHA]
        has_dx = row[c.OP_IN] >= 0  # no gradient is needed for the batch itself
        if kind == c.OP_RESIDUAL_BEGIN:
            if has_dx:
                k.elementwise.add_into(region(ws.deltas, row[c.OP_IN], rows, n, int(row[c.OP_IN_SIZE])),
                                       region(ws.deltas, row[c.OP_SKIP], rows, n,
                                              int(row[c.OP_OUT_SIZE])))
            continue
        inp, y = _io(row, ws.acts, x, rows, n)
        dinp, dy = _io(row, ws.deltas, x, rows, n)
        if kind == c.OP_DENSE:
            w = matrix(params, segs, row[c.OP_W_SEG], dy.shape[1])
            k.dense.dense_backward(inp, y, act, alpha, dy, matrix(grads, segs, row[c.OP_W_SEG],
                                                                  dy.shape[1]),
                                   optional_segment(grads, segs, row[c.OP_B_SEG]))
            if has_dx:
                k.dense.dense_backward_input(dy, w, dinp)
        elif kind == c.OP_ACTIVATION:
            k.activations.activation_backward(act, alpha, y, dy)
            if has_dx:
                k.elementwise.copy(dy, dinp)
        elif kind == c.OP_CONV1D:
            ch_out = int(row[c.OP_CH_OUT])
            patches = _patches(ws, row, rows, n)
            dpatches = ws.scratch[:patches.size].reshape(patches.shape)
            if act != c.IDENTITY:
                k.activations.activation_backward(act, alpha, y, dy)
            k.conv1d.conv1d_backward(patches, matrix(params, segs, row[c.OP_W_SEG], ch_out), dy,
                                     matrix(grads, segs, row[c.OP_W_SEG], ch_out),
                                     optional_segment(grads, segs, row[c.OP_B_SEG]), dpatches,
                                     dinp if has_dx else dinp[:0], int(row[c.OP_STEPS_IN]),
                                     int(row[c.OP_CH_IN]), int(row[c.OP_K]), int(row[c.OP_STRIDE]),
                                     int(row[c.OP_PAD]))
        elif kind == c.OP_MAXPOOL1D:
            if has_dx:
                argmax = region(ws.icache, row[c.OP_ICACHE], rows, n, int(row[c.OP_OUT_SIZE]))
                k.pool1d.maxpool1d_backward(dy, argmax, dinp, int(row[c.OP_STEPS_IN]),
                                            int(row[c.OP_CH_IN]), int(row[c.OP_K]),
                                            int(row[c.OP_STRIDE]))
        elif kind == c.OP_AVGPOOL1D:
            if has_dx:
                k.pool1d.avgpool1d_backward(dy, dinp, int(row[c.OP_STEPS_IN]), int(row[c.OP_CH_IN]),
                                            int(row[c.OP_K]), int(row[c.OP_STRIDE]))
        elif kind == c.OP_GLOBAL_AVGPOOL1D:
            if has_dx:
                k.pool1d.global_avgpool1d_backward(dy, dinp, int(row[c.OP_STEPS_IN]),
                                                   int(row[c.OP_CH_IN]))
        elif kind == c.OP_DROPOUT:
            if has_dx:
                k.dropout.dropout_backward(dy, dinp, fops[i, c.FOP_RATE], seed, t, i)
        elif kind == c.OP_BATCHNORM:
            ch = int(row[c.OP_CH_OUT])
            xhat, inv_std = _bn_cache(ws, row, rows, n)
            dx2 = dinp.reshape(-1, ch) if has_dx else dinp[:0].reshape(0, ch)
            k.batchnorm.batchnorm_backward(dy.reshape(-1, ch), xhat, inv_std,
                                           segment(params, segs, row[c.OP_W_SEG]), dx2,
                                           segment(grads, segs, row[c.OP_W_SEG]),
                                           segment(grads, segs, row[c.OP_B_SEG]))
        elif kind == c.OP_RESIDUAL_ADD:
            k.elementwise.copy(dy, dinp)  # to the inner output; the skip's share: at the begin op
        elif kind == c.OP_CUSTOM_ACTIVATION:
            custom.backward(int(row[c.OP_K]), inp, y, dy)
            if has_dx:
                k.elementwise.copy(dy, dinp)
        elif kind in c.RECURRENT_KINDS:
            w_ih, w_hh, _, _ = _recurrent_params(params, segs, row)
            k.recurrent.recurrent_backward(kind, act, w_ih, w_hh, recurrent_cache(ws, row, rows), dy,
                                           *_recurrent_params(grads, segs, row), ws.scratch,
                                           dinp if has_dx else dinp[:0], int(row[c.OP_DX_ADD]),
                                           *_recurrent_geometry(row))


def output_view(plan, buf, rows, n):
    """The last op's (n, n_out) region of a workspace."""
    row = plan.ops[-1]
    return region(buf, row[c.OP_OUT], rows, n, int(row[c.OP_OUT_SIZE]))


def loss_and_gradients(plan, params, grads, buffers, loss, x, target, labels, ws, mode, seed, t,
                       k=None):
    """Forward (``mode``), loss (ws.result: mean loss, correct count), backward into grads."""
    k = k or kernels()
    rows, n = rows_of(ws), x.shape[0]
    forward(plan, params, buffers, x, ws, mode, seed, t, k)
    if plan.loss is not None:  # a user-defined loss, compiled for this backend
        plan.loss(output_view(plan, ws.acts, rows, n), target, target[:0, 0],
                  output_view(plan, ws.deltas, rows, n), ws.result)
    else:
        k.losses.loss_forward_backward(loss, output_view(plan, ws.acts, rows, n), target, labels,
                                       output_view(plan, ws.deltas, rows, n), ws.result)
    backward(plan, params, grads, x, ws, seed, t, k)


def gradient_norms(plan, grads, stats_row, scratch, k=None):
    """stats_row[j] = ||dW|| of the j-th parameterised layer (its first segment); returns
    the global norm over all segments, summed in segment order."""
    k = k or kernels()
    segs = plan.segs
    total = 0.0
    for s in range(segs.shape[0]):
        k.gradients.sum_of_squares(segment(grads, segs, s), scratch)
        sq = float(k.memory.to_host(scratch)[0])
        if segs[s, c.SEG_NORM] >= 0:
            stats_row[segs[s, c.SEG_NORM]] = np.sqrt(sq)
        total += sq
    return np.sqrt(total)


def train_batches(plan, params, grads, buffers, loss, data, n_rows, batch_size, first, n_iter, opt,
                  ws, stats, comm=None, k=None):
    """Run iterations first, ..., first + n_iter - 1 of an epoch; return how many completed.

    The contract of ``backends.reference.network.train_batches`` (rows of
    ``stats``: loss, correct count, status, one gradient norm per parameterised
    layer), for any op table, data-parallel too (``comm``; the allreduce staged
    through the host on every backend whose kernels ``k`` are given). Forward in
    TRAIN_UPDATE mode: dropout masks of step t + j + 1, batch statistics, running
    statistics moved.
    """
    k = k or kernels()
    scratch = k.memory.zeros(1, np.float64)
    host_stats = np.zeros(stats.shape[1])
    done = n_iter
    for j in range(n_iter):
        start = (first + j) * batch_size
        n = min(batch_size, n_rows - start)
        if comm is not None:
            start, n, weight = batch_share(comm.rank, comm.size, start, n)
        index = data.order[start:start + n]
        x = ws.xb[:n]
        k.network.gather_rows(data.X, index, x)
        if loss == c.CROSS_ENTROPY:
            k.network.gather_rows(data.labels, index, ws.lb[:n])
        else:
            k.network.gather_rows(data.T, index, ws.tb[:n])
        step = opt.t + j + 1
        w = data.weights  # empty: unweighted
        if data.weights.shape[0]:
            w = ws.wb[:n]
            k.network.gather_rows(data.weights, index, w)
        forward(plan, params, buffers, x, ws, TRAIN_UPDATE, opt.seed, step, k)
        if plan.loss is not None:
            plan.loss(output_view(plan, ws.acts, rows_of(ws), n), ws.tb[:n], w,
                      output_view(plan, ws.deltas, rows_of(ws), n), ws.result)
        else:
            k.losses.weighted_loss_forward_backward(
                loss, output_view(plan, ws.acts, rows_of(ws), n), ws.tb[:n], ws.lb[:n], w,
                output_view(plan, ws.deltas, rows_of(ws), n), ws.result)
        backward(plan, params, grads, x, ws, opt.seed, step, k)
        host_stats[:] = 0.0
        host_stats[c.STAT_LOSS:c.STAT_CORRECT + 1] = k.memory.to_host(ws.result)
        if comm is not None:
            allreduce_gradients(comm, grads, host_stats[c.STAT_LOSS:], weight, k.memory)
        norm = gradient_norms(plan, grads, host_stats[c.STAT_NORMS:], scratch, k)
        if not np.isfinite(host_stats[c.STAT_LOSS]):
            host_stats[c.STAT_STATUS] = c.STATUS_LOSS
        elif not np.isfinite(norm):
            host_stats[c.STAT_STATUS] = c.STATUS_GRADIENT
        else:
            if opt.lrs.shape[0]:
                opt.hp[c.HP_LR] = opt.lrs[j]  # a schedule's learning rate of this step
            if np.isfinite(opt.clip_norm):
                k.gradients.clip_by_norm(grads, norm, opt.clip_norm)
            if np.isfinite(opt.clip_value):
                k.gradients.clip_by_value(grads, opt.clip_value)
            if opt.hp[c.HP_WEIGHT_DECAY] != 0:
                for s in range(plan.segs.shape[0]):
                    if plan.segs[s, c.SEG_DECAY]:
                        k.gradients.apply_weight_decay(segment(params, plan.segs, s),
                                                       segment(grads, plan.segs, s), opt.hp)
            if opt.rule is not None:  # a user-defined rule, compiled for this backend
                host_stats[c.STAT_STATUS] = opt.rule(params, grads, opt.state, opt.hp, step)
            else:
                host_stats[c.STAT_STATUS] = k.optim.optimizer_step(opt.code, params, grads,
                                                                   opt.state, opt.hp, step)
            if host_stats[c.STAT_STATUS] == c.STATUS_OK and buffers.size and \
                    not np.isfinite(k.memory.to_host(buffers)).all():
                host_stats[c.STAT_STATUS] = c.STATUS_BUFFERS
        k.memory.copy_from_host(stats[j], host_stats)
        if host_stats[c.STAT_STATUS] != c.STATUS_OK:
            done = j
            break
    return done
