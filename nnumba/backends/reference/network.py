"""A whole network over a compiled plan, in NumPy: forward, backward, training.

A *plan* is the int64 table ``blocks`` (one row per block, columns named in
``codes``) and the float64 vector ``alphas`` (LeakyReLU slopes). Parameters
live in one flat buffer ``params`` (W row-major, then b, block after block)
and their gradients in ``grads``, laid out the same way. The workspaces
``acts`` and ``deltas`` are flat buffers of ``rows * width`` elements, with
width the sum of the output widths of all blocks: block i's output for a batch
of n rows is the contiguous (n, N_OUT) view starting at ``rows * COL[i]``.

``train_batches`` runs iterations of mini-batch gradient descent: for each
batch, forward, loss, backward, gradient norms, optional clipping, one
optimizer step. It is the definition that the cpu backend's fused @njit
version and the cuda backend's on-device loop are tested against.
"""
import numpy as np

from ..codes import (ACT, B_OFF, COL, CROSS_ENTROPY, HAS_DENSE, HP_LR, HP_WEIGHT_DECAY, N_IN, N_OUT,
                     STAT_LOSS, STAT_NORMS, STAT_STATUS, STATUS_GRADIENT, STATUS_LOSS, STATUS_OK,
                     W_OFF)
from . import memory as _host_memory
from .activations import activation_backward, activation_forward
from .dense import dense_backward, dense_backward_input, dense_forward
from .gradients import apply_weight_decay, clip_by_norm, clip_by_value, sum_of_squares
from .losses import loss_forward_backward, weighted_loss_forward_backward
from .optim import optimizer_step


def workspace_rows(blocks, buf):
    """The number of rows a flat workspace holds for this plan."""
    width = blocks[-1, COL] + blocks[-1, N_OUT]
    return buf.shape[0] // width


def block_view(blocks, i, buf, rows, n):
    """Block i's (n, N_OUT) slice of a workspace holding ``rows`` rows."""
    start = rows * blocks[i, COL]
    return buf[start:start + n * blocks[i, N_OUT]].reshape(n, blocks[i, N_OUT])


def weight_slice(blocks, i, flat):
    """Block i's weights as a flat slice of a parameter-shaped buffer."""
    off = blocks[i, W_OFF]
    return flat[off:off + blocks[i, N_IN] * blocks[i, N_OUT]]


def weight_view(blocks, i, flat):
    """Block i's weights as an (n_in, n_out) view of a parameter-shaped buffer."""
    return weight_slice(blocks, i, flat).reshape(blocks[i, N_IN], blocks[i, N_OUT])


def bias_view(blocks, i, flat):
    """Block i's bias (empty when it has none) in a parameter-shaped buffer."""
    off = blocks[i, B_OFF]
    if off < 0:
        return flat[:0]
    return flat[off:off + blocks[i, N_OUT]]


def forward(blocks, alphas, params, x, acts):
    """Run the network on x (n rows); block i's output lands in its view of acts."""
    rows, n = workspace_rows(blocks, acts), x.shape[0]
    inp = x
    for i in range(blocks.shape[0]):
        out = block_view(blocks, i, acts, rows, n)
        if blocks[i, HAS_DENSE]:
            dense_forward(inp, weight_view(blocks, i, params), bias_view(blocks, i, params),
                          blocks[i, ACT], alphas[i], out)
        else:
            activation_forward(blocks[i, ACT], alphas[i], inp, out)
        inp = out


def backward(blocks, alphas, params, grads, x, acts, deltas):
    """Back-propagate: on entry the last block's view of deltas holds dL/d(output);
    on return grads holds dL/dparams (deltas is used as scratch)."""
    rows, n = workspace_rows(blocks, acts), x.shape[0]
    for i in range(blocks.shape[0] - 1, -1, -1):
        y = block_view(blocks, i, acts, rows, n)
        dy = block_view(blocks, i, deltas, rows, n)
        inp = x if i == 0 else block_view(blocks, i - 1, acts, rows, n)
        if blocks[i, HAS_DENSE]:
            dense_backward(inp, y, blocks[i, ACT], alphas[i], dy,
                           weight_view(blocks, i, grads), bias_view(blocks, i, grads))
            if i > 0:
                dense_backward_input(dy, weight_view(blocks, i, params),
                                     block_view(blocks, i - 1, deltas, rows, n))
        else:
            activation_backward(blocks[i, ACT], alphas[i], y, dy)
            if i > 0:
                block_view(blocks, i - 1, deltas, rows, n)[...] = dy


def loss_and_gradients(blocks, alphas, params, grads, loss, x, target, labels, acts, deltas, result):
    """Forward, loss (result[0] mean loss, result[1] correct count), backward into grads."""
    n, last = x.shape[0], blocks.shape[0] - 1
    rows = workspace_rows(blocks, acts)
    forward(blocks, alphas, params, x, acts)
    loss_forward_backward(loss, block_view(blocks, last, acts, rows, n), target, labels,
                          block_view(blocks, last, deltas, rows, n), result)
    backward(blocks, alphas, params, grads, x, acts, deltas)


def gradient_norms(blocks, grads, stats_row, scratch):
    """stats_row[k] = ||dW_k|| for the k-th Dense block; returns the global norm of all
    grads, sum_k (||dW_k||^2 + ||db_k||^2), from the same single pass over them."""
    k = 0
    total = 0.0
    for i in range(blocks.shape[0]):
        if blocks[i, HAS_DENSE]:
            sum_of_squares(weight_slice(blocks, i, grads), scratch)
            stats_row[k] = np.sqrt(scratch[0])
            total += scratch[0]
            sum_of_squares(bias_view(blocks, i, grads), scratch)
            total += scratch[0]
            k += 1
    return np.sqrt(total)


def decay_weights(blocks, params, grads, hp):
    """Weight decay (``gradients.apply_weight_decay``) of every Dense block's W; biases
    are not decayed."""
    for i in range(blocks.shape[0]):
        if blocks[i, HAS_DENSE]:
            apply_weight_decay(weight_slice(blocks, i, params), weight_slice(blocks, i, grads), hp)


def gather_rows(src, index, dst):
    """dst[j] = src[index[j]]: the rows of one batch, in the shuffled order."""
    np.take(src, index, axis=0, out=dst)


def batch_share(rank, size, start, n):
    """This rank's share of the global batch order[start : start + n], as
    (first position in order, rows, weight): rank r of p takes the rows
    a = floor(n r / p) to b = floor(n (r + 1) / p) - 1 of the batch, with weight
    (b - a) / n. Each rank's mean loss and gradient over its b - a rows times its
    weight, summed over the ranks, is the batch's mean (the loss kernels divide by
    the rows they see; with sample weights too). A rank with no rows (n < p)
    computes the batch's row min(a, n - 1) with weight 0, and so adds zeros: every
    rank takes part in every iteration's allreduce."""
    a, b = n * rank // size, n * (rank + 1) // size
    if b > a:
        return start + a, b - a, (b - a) / n
    return start + min(a, n - 1), 1, 0.0


def allreduce_gradients(comm, grads, result, weight, memory):
    """Sum grads * weight, the loss result[0] * weight and the correct count result[1]
    (0 when weight is 0) over the ranks, in place: one allreduce of ``comm.send``
    (n_params + 2 elements of the model's dtype) into ``comm.recv``, staged through
    the host (``memory``: to_host / copy_from_host of the backend's arrays)."""
    n_params = grads.shape[0]
    send = comm.send
    send[:n_params] = memory.to_host(grads)
    send[:n_params] *= send.dtype.type(weight)
    send[n_params] = result[0] * weight
    send[n_params + 1] = result[1] if weight > 0 else 0.0
    comm.reduce.ctypes(send.ctypes.data, comm.recv.ctypes.data, n_params + 2,
                       comm.scratch.ctypes.data)
    memory.copy_from_host(grads, comm.recv[:n_params])
    result[0], result[1] = comm.recv[n_params], comm.recv[n_params + 1]


def train_batches(plan, params, grads, loss, data, n_rows, batch_size, first, n_iter, opt, ws,
                  stats, comm=None):
    """Run iterations first, ..., first + n_iter - 1 of an epoch; return how many completed.

    The bundles (``backends.bundles``): plan ``Blocks``, data ``Data``, opt
    ``Step``, ws ``MLPWorkspace``, comm ``Comm`` or None; the loop itself is
    ``run_batches``.
    """
    return run_batches(plan.blocks, plan.alphas, params, grads, loss, *data, n_rows, batch_size,
                       first, n_iter, opt.code, opt.state, opt.hp, opt.t, opt.clip_norm,
                       opt.clip_value, *ws, stats, opt.lrs, comm)


def _weighted_loss_and_gradients(blocks, alphas, params, grads, loss, x, target, labels, weights,
                                acts, deltas, result):
    """loss_and_gradients with one weight per row (``losses.weighted_loss_forward_backward``;
    empty weights: unweighted)."""
    n, last = x.shape[0], blocks.shape[0] - 1
    rows = workspace_rows(blocks, acts)
    forward(blocks, alphas, params, x, acts)
    weighted_loss_forward_backward(loss, block_view(blocks, last, acts, rows, n), target, labels,
                                   weights, block_view(blocks, last, deltas, rows, n), result)
    backward(blocks, alphas, params, grads, x, acts, deltas)


@np.errstate(over="ignore", invalid="ignore")  # divergence is reported by the return value
def run_batches(blocks, alphas, params, grads, loss, X, T, labels, order, weights, n_rows,
                batch_size, first, n_iter, opt, state, hp, t, clip_norm, clip_value, xb, tb, lb,
                acts, deltas, wb, stats, lrs, comm=None):
    """``train_batches`` with its bundles unpacked: the definition of the MLP loop.

    Iteration j trains on the rows order[j B : min((j + 1) B, n_rows)] of X and of
    T (mse, BCE) or labels (cross-entropy), with B = batch_size; n_rows is
    len(X), or the largest multiple of B below it when the last batch is
    dropped. Row j - first of ``stats`` receives the batch's loss and correct
    count (before the update) and the weight-gradient norm of each Dense block.
    ``t`` is the optimizer's step count before the first iteration.

    An iteration whose loss or global gradient norm is not finite makes no
    update; one whose update leaves a parameter or an optimizer state element
    NaN or infinite has made it. Either way the function stops there and
    returns the iteration's index within this call, with the reason in its
    stats row's STAT_STATUS column (``codes.STATUS_*``; STATUS_OK in the rows of
    completed iterations). After STATUS_UPDATE or STATUS_STATE the caller must
    restore the parameters and state (the model rolls back and replays).
    Clipping, when on (clip_norm / clip_value finite), scales the gradient to a
    global norm of at most clip_norm, then clamps each component to +-clip_value;
    weight decay (hp[HP_WEIGHT_DECAY] > 0) follows, on the weights only.

    Data-parallel (``comm`` a ``Comm``): every rank runs the same iterations on
    the same data and order; iteration j computes this rank's share of its batch
    (``batch_share``), then one allreduce sums the weighted gradients, losses and
    correct counts (``allreduce_gradients``), so that the norms, the checks and the
    step see the batch's gradient, the same on every rank.
    """
    scratch = np.zeros(1)
    for j in range(n_iter):
        start = (first + j) * batch_size
        n = min(batch_size, n_rows - start)
        if comm is not None:
            start, n, weight = batch_share(comm.rank, comm.size, start, n)
        index = order[start:start + n]
        x = xb[:n]
        gather_rows(X, index, x)
        if loss == CROSS_ENTROPY:
            gather_rows(labels, index, lb[:n])
        else:
            gather_rows(T, index, tb[:n])
        w = weights
        if weights.shape[0]:
            w = wb[:n]
            gather_rows(weights, index, w)
        row = stats[j]
        _weighted_loss_and_gradients(blocks, alphas, params, grads, loss, x, tb[:n], lb[:n], w, acts,
                                    deltas, row[STAT_LOSS:])
        if comm is not None:
            allreduce_gradients(comm, grads, row[STAT_LOSS:], weight, _host_memory)
        norm = gradient_norms(blocks, grads, row[STAT_NORMS:], scratch)
        if not np.isfinite(row[STAT_LOSS]):
            row[STAT_STATUS] = STATUS_LOSS
            return j
        if not np.isfinite(norm):
            row[STAT_STATUS] = STATUS_GRADIENT
            return j
        if np.isfinite(clip_norm):
            clip_by_norm(grads, norm, clip_norm)
        if np.isfinite(clip_value):
            clip_by_value(grads, clip_value)
        if lrs.shape[0]:
            hp[HP_LR] = lrs[j]  # a schedule's learning rate of this step
        if hp[HP_WEIGHT_DECAY] != 0:
            decay_weights(blocks, params, grads, hp)
        row[STAT_STATUS] = optimizer_step(opt, params, grads, state, hp, t + j + 1)
        if row[STAT_STATUS] != STATUS_OK:
            return j
    return n_iter
