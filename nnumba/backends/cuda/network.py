"""A whole network over a compiled plan, on the GPU: forward, backward, training.

Same names, arguments and semantics as ``backends.reference.network`` (the
plan and workspace layout are described there); arrays are numba device
arrays, except the plan (``blocks``, ``alphas``) and ``hp``, which stay host
NumPy arrays. The views (``block_view``, ``weight_view`` ...) are device-array
views.

``train_batches`` runs a chunk of iterations entirely on the device, on one of
two paths, and copies back one number at the end (how many completed):

- the per-layer path launches, per iteration, one gather kernel, the dense
  and loss kernels of ``dense`` and ``losses``, two kernels for all gradient
  norms (the second one also checks the loss and global norm for NaN/inf and
  raises a device flag), and one kernel that clips the gradient and makes the
  optimizer step, unless the flag is up. Once up, the flag stays up for the
  rest of the call, so no later iteration changes the parameters or state
  either, without the host ever waiting for the device inside the loop;
- the single-block path (``train_fused_kernel``), for small networks (see
  ``_config``): one block loops over all iterations of the chunk in one
  launch, doing gather, forward, loss, backward, norms, clipping and the
  optimizer step with ``cuda.syncthreads()`` between phases, reading the plan
  from a device copy. Kernel launches, not arithmetic, are what limits small
  networks, and this path has one per chunk.

Both give the reference's results up to rounding (the order of additions
differs), and each is deterministic: every sum has a fixed order, and no
kernel uses atomics.
"""
import functools
import math

import numpy as np
from numba import cuda, float64

from ..codes import (ACT, ADAM, B_OFF, BINARY_CROSS_ENTROPY, COL, CROSS_ENTROPY, HAS_DENSE, HP_BETA1,
                     HP_BETA2, HP_DECOUPLED, HP_EPS, HP_LR, HP_WEIGHT_DECAY,
                     IDENTITY, MSE, N_IN, N_OUT, STAT_CORRECT, STAT_LOSS, STAT_NORMS, STAT_STATUS,
                     STATUS_GRADIENT, STATUS_LOSS, STATUS_OK, STATUS_STATE, STATUS_UPDATE, W_OFF)
from ..reference.optim import adam_bias_corrections
from . import _config as cfg
from . import activations, dense, losses
from .activations import apply, derivative
from .gradients import block_sum, block_sum2, clamp, partial_blocks
from .memory import flat, scratch
from .memory import scratch as memory_scratch
from .optim import element_status, hyperparameters, smallest_normal, update


# ---- views -----------------------------------------------------------------------------------

def workspace_rows(blocks, buf):
    """The number of rows a flat workspace holds for this plan."""
    width = int(blocks[-1, COL] + blocks[-1, N_OUT])
    return buf.shape[0] // width


def block_view(blocks, i, buf, rows, n):
    """Block i's (n, N_OUT) slice of a workspace holding ``rows`` rows."""
    start, width = int(rows * blocks[i, COL]), int(blocks[i, N_OUT])
    return buf[start:start + int(n) * width].reshape(int(n), width)


def weight_slice(blocks, i, flat):
    """Block i's weights as a flat slice of a parameter-shaped buffer."""
    off = int(blocks[i, W_OFF])
    return flat[off:off + int(blocks[i, N_IN] * blocks[i, N_OUT])]


def weight_view(blocks, i, flat):
    """Block i's weights as an (n_in, n_out) view of a parameter-shaped buffer."""
    return weight_slice(blocks, i, flat).reshape(int(blocks[i, N_IN]), int(blocks[i, N_OUT]))


def bias_view(blocks, i, flat):
    """Block i's bias (empty when it has none) in a parameter-shaped buffer."""
    off = int(blocks[i, B_OFF])
    if off < 0:
        return flat[:0]
    return flat[off:off + int(blocks[i, N_OUT])]


def _param_views(blocks, flat_buf):
    return [(weight_view(blocks, i, flat_buf), bias_view(blocks, i, flat_buf))
            if blocks[i, HAS_DENSE] else (None, None) for i in range(blocks.shape[0])]


def _block_views(blocks, buf, rows, n):
    return [block_view(blocks, i, buf, rows, n) for i in range(blocks.shape[0])]


def _nonempty(a, name):
    """a, or a never-read one-element stand-in of the same kind where a is empty
    (keeps null pointers out of kernels)."""
    return a if a.size else scratch(name, (1,) * a.ndim, a.dtype)


_plans = {}


def _on_device(key, make):
    """A device copy of plan data, made once per distinct plan (and dtype)."""
    value = _plans.get(key)
    if value is None:
        if len(_plans) > 32:
            _plans.clear()
        value = _plans[key] = make()
    return value


def _plan_key(blocks, alphas, *extra):
    return (blocks.shape, blocks.tobytes(), np.asarray(alphas).tobytes()) + extra


# ---- small kernels ---------------------------------------------------------------------------

@cuda.jit(**cfg.kernel())
def copy_kernel(src, dst):
    """dst[i] = src[i]."""
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit(**cfg.kernel())
def gather_rows_kernel(src, index, dst):
    """dst[j, :] = src[index[j], :]."""
    n, k = dst.shape
    for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        j = e // k
        dst[j, e - j * k] = src[index[j], e - j * k]


@cuda.jit(**cfg.kernel())
def gather_kernel(src, index, dst):
    """dst[j] = src[index[j]] (1-D)."""
    for j in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[j] = src[index[j]]


@cuda.jit(**cfg.kernel())
def gather_batch_kernel(X, T, labels, order, start, n, use_labels, xb, tb, lb):
    """Rows order[start:start + n] of X into xb[:n], and of labels (cross-entropy) or T
    into lb[:n] or tb[:n]."""
    k = X.shape[1]
    for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        r = e // k
        xb[r, e - r * k] = X[order[start + r], e - r * k]
    if use_labels:
        for r in range(cuda.grid(1), n, cuda.gridsize(1)):
            lb[r] = labels[order[start + r]]
    else:
        k = T.shape[1]
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            r = e // k
            tb[r, e - r * k] = T[order[start + r], e - r * k]


@functools.lru_cache(maxsize=None)
def _segment_sum_of_squares_kernel(tpb):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def segment_sum_of_squares_kernel(g, seg_start, seg_len, partial):
        """Block (b, s): partial[s, b] = float64 sum of g[seg_start[s] + i]^2 over this
        block's grid-stride share of i < seg_len[s]."""
        buf = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        s = cuda.blockIdx.y
        start = seg_start[s]
        acc = 0.0
        for i in range(cuda.blockIdx.x * tpb + tid, seg_len[s], cuda.gridDim.x * tpb):
            v = float64(g[start + i])
            acc += v * v
        buf[tid] = acc
        total = block_sum(buf, tid, tpb)
        if tid == 0:
            partial[s, cuda.blockIdx.x] = total

    return segment_sum_of_squares_kernel


@functools.lru_cache(maxsize=None)
def _norms_finish_kernel(tpb):
    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def norms_finish_kernel(partial, count, is_weight, out, base, sq, halt, loss_at, j):
        """One block folds partial[s, :count] for each segment s in turn (W_0, b_0, W_1, ...):
        out[base + k] = the square root for the k-th weight segment, and sq[0] = the sum of
        all segments in that order (the reference's global norm squared). With j >= 0,
        halt[0] = j + 1 unless out[loss_at] and sq[0] are finite (or halt is already up),
        and the iteration's STAT_STATUS cell (of the row whose loss is out[loss_at]) says
        which was not."""
        buf = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        k = 0
        total = 0.0
        for s in range(partial.shape[0]):
            acc = 0.0
            for i in range(tid, count, tpb):
                acc += partial[s, i]
            buf[tid] = acc
            seg = block_sum(buf, tid, tpb)
            total += seg
            if is_weight[s]:
                if tid == 0:
                    out[base + k] = math.sqrt(seg)
                k += 1
        if tid == 0:
            sq[0] = total
            if j >= 0 and halt[0] == 0:
                if not math.isfinite(out[loss_at]):
                    out[loss_at + STAT_STATUS - STAT_LOSS] = STATUS_LOSS
                    halt[0] = j + 1
                elif not math.isfinite(total):
                    out[loss_at + STAT_STATUS - STAT_LOSS] = STATUS_GRADIENT
                    halt[0] = j + 1

    return norms_finish_kernel


@cuda.jit(**cfg.kernel())
def guarded_update_kernel(opt, w, g, state, halt, sq, do_clip_norm, clip_norm, do_clip_value,
                          clip_value, lr, beta1, beta2, eps, inside, step_size, eps_hat, big, tiny, bad,
                          j, seg_start, seg_len, seg_decay, decay, decoupled, decay_factor):
    """Unless halt[0] is up: clip g (to the global norm sqrt(sq[0]) <= clip_norm, then
    each component to +-clip_value, as the reference's clip_by_norm and clip_by_value),
    apply weight decay to the segments that take it (g += decay w, or with
    ``decoupled`` w *= decay_factor, as the reference's apply_weight_decay) and make
    one step of optimizer ``opt`` (iteration j of the call). An element the
    step left NaN or infinite raises halt to j + 1 and sets bad[0] (a parameter) or
    bad[1] (optimizer state); every writer writes the same value, so no atomics. Blocks
    that start later then skip their share: the caller rolls the whole step back."""
    if halt[0] != 0:
        return
    one = w.dtype.type(1)
    scale = False
    coef = one
    if do_clip_norm:
        c = clip_norm / (math.sqrt(sq[0]) + 1e-6)
        if c < 1.0:
            scale = True
            coef = w.dtype.type(c)
    for s in range(seg_start.shape[0]):
        decayed = seg_decay[s] != 0 and (decay != 0 or decoupled)
        for e in range(cuda.grid(1), seg_len[s], cuda.gridsize(1)):
            i = seg_start[s] + e
            gi = g[i]
            if scale:
                gi *= coef
            if do_clip_value:
                gi = clamp(gi, -clip_value, clip_value)
            if decayed:
                if decoupled:
                    w[i] *= decay_factor
                else:
                    gi += decay * w[i]
            if scale or do_clip_value or decayed:
                g[i] = gi
            update(opt, i, w, gi, state, lr, beta1, beta2, eps, inside, step_size, eps_hat, one,
                   tiny)
            status = element_status(opt, i, w, state, big)
            if status != STATUS_OK:
                bad[status - STATUS_UPDATE] = 1
                halt[0] = j + 1


def _stop_reason(halt, bad, stats, n_iter):
    """The per-layer path's ending: the number of iterations completed, with the
    STAT_STATUS of a step the update kernel flagged written into stats."""
    stopped = int(halt.copy_to_host()[0])
    if not stopped:
        return n_iter
    flags = bad.copy_to_host()
    if flags.any():
        status = STATUS_STATE if flags[1] else STATUS_UPDATE
        stats[stopped - 1, STAT_STATUS:STAT_STATUS + 1].copy_to_device(np.array([float(status)]))
    return stopped - 1


# ---- the network, layer by layer ---------------------------------------------------------------

def _copy(src, dst):
    if dst.size:
        copy_kernel[cfg.grid(dst.size), cfg.TPB](flat(src), flat(dst))


def _forward(blocks, alphas, x, outs, pviews):
    inp = x
    for i in range(blocks.shape[0]):
        if blocks[i, HAS_DENSE]:
            w, b = pviews[i]
            dense.dense_forward(inp, w, b, blocks[i, ACT], alphas[i], outs[i])
        else:
            activations.activation_forward(blocks[i, ACT], alphas[i], inp, outs[i])
        inp = outs[i]


def _backward(blocks, alphas, x, outs, douts, pviews, gviews):
    for i in range(blocks.shape[0] - 1, -1, -1):
        inp = x if i == 0 else outs[i - 1]
        if blocks[i, HAS_DENSE]:
            dw, db = gviews[i]
            dense.dense_backward(inp, outs[i], blocks[i, ACT], alphas[i], douts[i], dw, db)
            if i > 0:
                dense.dense_backward_input(douts[i], pviews[i][0], douts[i - 1])
        else:
            activations.activation_backward(blocks[i, ACT], alphas[i], outs[i], douts[i])
            if i > 0:
                _copy(douts[i], douts[i - 1])


def forward(blocks, alphas, params, x, acts):
    """Run the network on x (n rows); block i's output lands in its view of acts."""
    rows, n = workspace_rows(blocks, acts), x.shape[0]
    _forward(blocks, alphas, x, _block_views(blocks, acts, rows, n), _param_views(blocks, params))


def backward(blocks, alphas, params, grads, x, acts, deltas):
    """Back-propagate: on entry the last block's view of deltas holds dL/d(output);
    on return grads holds dL/dparams (deltas is used as scratch)."""
    rows, n = workspace_rows(blocks, acts), x.shape[0]
    _backward(blocks, alphas, x, _block_views(blocks, acts, rows, n),
              _block_views(blocks, deltas, rows, n), _param_views(blocks, params),
              _param_views(blocks, grads))


def loss_and_gradients(blocks, alphas, params, grads, loss, x, target, labels, acts, deltas, result):
    """Forward, loss (result[0] mean loss, result[1] correct count), backward into grads."""
    n, last = x.shape[0], blocks.shape[0] - 1
    rows = workspace_rows(blocks, acts)
    forward(blocks, alphas, params, x, acts)
    losses.loss_forward_backward(loss, block_view(blocks, last, acts, rows, n), target, labels,
                                 block_view(blocks, last, deltas, rows, n), result)
    backward(blocks, alphas, params, grads, x, acts, deltas)


def _segments(blocks):
    """Device (start, length, is_weight) of each Dense block's W and b, in buffer order."""
    def make():
        rows = []
        for i in range(blocks.shape[0]):
            if blocks[i, HAS_DENSE]:
                rows.append((int(blocks[i, W_OFF]), int(blocks[i, N_IN] * blocks[i, N_OUT]), 1))
                if blocks[i, B_OFF] >= 0:
                    rows.append((int(blocks[i, B_OFF]), int(blocks[i, N_OUT]), 0))
        start, length, is_weight = (np.array(c, np.int64) for c in zip(*rows))
        return cuda.to_device(start), cuda.to_device(length), cuda.to_device(is_weight)
    return _on_device(("segments", blocks.shape, blocks.tobytes()), make)


def _norms(blocks, grads, out, base, sq, halt=None, loss_at=0, j=-1):
    """out[base + k] = ||dW_k|| for each Dense block k, sq[0] = sum_k ||dW_k||^2 + ||db_k||^2;
    with j >= 0, raise halt (to j + 1) unless out[loss_at] and sq[0] are finite."""
    seg_start, seg_len, is_weight = _segments(blocks)
    n_seg = seg_start.shape[0]
    count = partial_blocks(int(max(blocks[:, N_IN] * blocks[:, N_OUT])))
    partial = scratch("norm_partial", (n_seg, count), np.float64)
    tpb = cfg.REDUCE_TPB
    _segment_sum_of_squares_kernel(tpb)[(count, n_seg), tpb](grads, seg_start, seg_len, partial)
    if halt is None:
        halt = scratch("no_halt", 1, np.int64)
    _norms_finish_kernel(tpb)[1, tpb](partial, count, is_weight, out, int(base), sq, halt,
                                      int(loss_at), int(j))


def gradient_norms(blocks, grads, stats_row, scratch):  # noqa: F811 (shadows memory.scratch)
    """stats_row[k] = ||dW_k|| for the k-th Dense block; returns the global norm of all
    grads, sqrt(sum_k ||dW_k||^2 + ||db_k||^2), from the same sums.

    stats_row: float64 device array; scratch: a float64 array (device or host) of
    length >= 1 that receives the global sum of squares.
    """
    sq = memory_scratch("gradient_norms", 1, np.float64)
    _norms(blocks, grads, stats_row, 0, sq)
    total = sq.copy_to_host()
    if hasattr(scratch, "copy_to_host"):
        scratch[:1].copy_to_device(total)
    else:
        scratch[0] = total[0]
    return float(np.sqrt(total[0]))


def gather_rows(src, index, dst):
    """dst[j] = src[index[j]]: the rows of one batch, in the shuffled order."""
    if dst.size == 0:
        return
    if dst.ndim == 1:
        gather_kernel[cfg.grid(dst.shape[0]), cfg.TPB](src, index, dst)
    else:
        gather_rows_kernel[cfg.grid(dst.size), cfg.TPB](src, index, dst)


# ---- training ------------------------------------------------------------------------------------

def _corrections(opt, hp, t, n_iter, dtype, lrs):
    """(n_iter, 4), per iteration j (step t + j + 1): Adam's (lr_t, eps_t) (zeros for
    other optimizers), the learning rate (a schedule's lrs[j], else hp's) and the
    decoupled decay factor 1 - lr lambda, in float64 by the reference's formulas,
    then cast to dtype."""
    table = np.zeros((max(n_iter, 1), 4))
    for j in range(n_iter):
        lr = lrs[j] if lrs.shape[0] else hp[HP_LR]
        if opt == ADAM:
            table[j, :2] = adam_bias_corrections(lr, hp[HP_BETA1], hp[HP_BETA2], hp[HP_EPS],
                                                 t + j + 1)
        table[j, 2] = lr
        table[j, 3] = 1.0 - lr * hp[HP_WEIGHT_DECAY]
    return table.astype(dtype)


def _decay_args(hp, dtype):
    """(coupled lambda in dtype, decoupled): lambda 0 and not decoupled is no decay; the
    decoupled factor 1 - lr lambda is the corrections table's (per iteration)."""
    lam = float(hp[HP_WEIGHT_DECAY])
    decoupled = bool(hp[HP_DECOUPLED] != 0) and lam != 0
    return dtype.type(0 if decoupled else lam), decoupled


def _clip_args(clip_norm, clip_value, dtype):
    do_norm, do_value = bool(np.isfinite(clip_norm)), bool(np.isfinite(clip_value))
    return (do_norm, float(clip_norm) if do_norm else 0.0, do_value,
            dtype.type(clip_value) if do_value else dtype.type(0))


def _train_layers(blocks, alphas, params, grads, loss, X, T, labels, order, weights, n_rows,
                  batch_size, first, n_iter, opt, state, hp, t, clip_norm, clip_value, xb, tb, lb,
                  acts, deltas, wb, stats, lrs):
    """The per-layer path of train_batches (see the module docstring); the only one that
    takes sample weights."""
    dtype = params.dtype
    lr, beta1, beta2, eps, inside = hyperparameters(opt, hp, dtype)
    do_norm, clip_norm, do_value, clip_value = _clip_args(clip_norm, clip_value, dtype)
    table = _corrections(opt, hp, t, n_iter, dtype, lrs)
    halt = scratch("halt", 1, np.int64)
    halt.copy_to_device(np.zeros(1, np.int64))
    bad = scratch("bad_step", 2, np.int64)
    bad.copy_to_device(np.zeros(2, np.int64))
    big, tiny = dtype.type(np.finfo(dtype).max), smallest_normal(dtype)
    seg_start, seg_len, is_weight = _segments(blocks)
    decay, decoupled = _decay_args(hp, dtype)
    sq = scratch("sum_of_squares_total", 1, np.float64)
    stats_flat, n_cols = flat(stats), stats.shape[1]
    rows, last = workspace_rows(blocks, acts), blocks.shape[0] - 1
    use_labels = loss == CROSS_ENTROPY
    T, labels = _nonempty(T, "no_T"), _nonempty(labels, "no_labels")
    state = _nonempty(state, "no_state")
    pviews, gviews = _param_views(blocks, params), _param_views(blocks, grads)
    views = {}
    for j in range(n_iter):
        start = (first + j) * batch_size
        n = min(batch_size, n_rows - start)
        if n not in views:
            views[n] = (xb[:n], tb[:n], lb[:n], _block_views(blocks, acts, rows, n),
                        _block_views(blocks, deltas, rows, n))
        x, tgt, lab, outs, douts = views[n]
        gather_batch_kernel[cfg.grid(n * max(X.shape[1], tb.shape[1])), cfg.TPB](
            X, T, labels, order, int(start), int(n), use_labels, xb, tb, lb)
        _forward(blocks, alphas, x, outs, pviews)
        if weights.shape[0]:
            gather_rows(weights, order[start:start + n], wb[:n])
            losses.weighted_loss_into(loss, outs[last], tgt, lab, wb[:n], douts[last], stats_flat,
                                      j * n_cols + STAT_LOSS)
        else:
            losses.loss_into(loss, outs[last], tgt, lab, douts[last], stats_flat,
                             j * n_cols + STAT_LOSS)
        _backward(blocks, alphas, x, outs, douts, pviews, gviews)
        _norms(blocks, grads, stats_flat, j * n_cols + STAT_NORMS, sq, halt,
               j * n_cols + STAT_LOSS, j)
        guarded_update_kernel[cfg.grid(params.shape[0]), cfg.TPB](
            int(opt), params, grads, state, halt, sq, do_norm, clip_norm, do_value, clip_value,
            table[j, 2], beta1, beta2, eps, inside, table[j, 0], table[j, 1], big, tiny, bad, j,
            seg_start, seg_len, is_weight, decay, decoupled, table[j, 3])
    return _stop_reason(halt, bad, stats, n_iter)


@functools.lru_cache(maxsize=None)
def _fused_kernel(tpb, rows_per_thread):
    """The single-block training loop for tpb threads, each thread of a matrix product
    computing rows_per_thread rows (or weight rows) of one output column. Array
    indices in the inner loops are made unsigned, so numba emits no negative-index
    wrap-around code there."""
    R = rows_per_thread

    @cuda.jit(**cfg.DEVICE)
    def dense_forward_block(src, sb, k, params, wo, bo, dst, ob, n, m, act, alpha, tid):
        """dst[ob + r m + c] = f(sum_p src[sb + r k + p] params[wo + p m + c] + b[c])."""
        one = dst.dtype.type(1)
        zero = dst.dtype.type(0)
        acc = cuda.local.array(R, dst.dtype)
        groups = (n + R - 1) // R
        for e in range(tid, groups * m, tpb):
            g = e // m
            c = e - g * m
            r0 = g * R
            for q in range(R):
                acc[q] = zero
            for p in range(k):
                wv = params[np.uint64(wo + p * m + c)]
                for q in range(R):
                    r = min(r0 + q, n - 1)  # rows past n repeat the last one; never stored
                    acc[q] += src[np.uint64(sb + r * k + p)] * wv
            for q in range(R):
                r = r0 + q
                if r < n:
                    z = acc[q]
                    if bo >= 0:
                        z += params[bo + c]
                    dst[ob + r * m + c] = apply(act, z, alpha, one)

    @cuda.jit(**cfg.DEVICE)
    def weight_gradient_block(src, sb, k, dz, zb, n, m, grads, wo, bo, tid):
        """grads[wo + p m + c] = sum_r src[r, p] dz[r, c];  grads[bo + c] = sum_r dz[r, c]."""
        zero = dz.dtype.type(0)
        acc = cuda.local.array(R, dz.dtype)
        groups = (k + R - 1) // R
        for e in range(tid, groups * m, tpb):
            g = e // m
            c = e - g * m
            p0 = g * R
            for q in range(R):
                acc[q] = zero
            for r in range(n):
                d = dz[np.uint64(zb + r * m + c)]
                for q in range(R):
                    p = min(p0 + q, k - 1)
                    acc[q] += src[np.uint64(sb + r * k + p)] * d
            for q in range(R):
                p = p0 + q
                if p < k:
                    grads[wo + p * m + c] = acc[q]
        if bo >= 0:
            for c in range(tid, m, tpb):
                total = 0.0
                for r in range(n):
                    total += float(dz[zb + r * m + c])
                grads[bo + c] = total

    @cuda.jit(**cfg.DEVICE)
    def input_gradient_block(dz, zb, n, m, params, wo, k, dx, xo, tid):
        """dx[xo + r k + p] = sum_c dz[zb + r m + c] params[wo + p m + c]."""
        zero = dz.dtype.type(0)
        acc = cuda.local.array(R, dz.dtype)
        groups = (n + R - 1) // R
        for e in range(tid, groups * k, tpb):
            g = e // k
            p = e - g * k
            r0 = g * R
            for q in range(R):
                acc[q] = zero
            for c in range(m):
                wv = params[np.uint64(wo + p * m + c)]
                for q in range(R):
                    r = min(r0 + q, n - 1)
                    acc[q] += dz[np.uint64(zb + r * m + c)] * wv
            for q in range(R):
                r = r0 + q
                if r < n:
                    dx[xo + r * k + p] = acc[q]

    @cuda.jit(**cfg.kernel(launch_bounds=tpb))
    def train_fused_kernel(blocks, alphas, params, grads, loss, X, T, labels, order, n_rows,
                           batch_size, first, n_iter, opt, state, lr, beta1, beta2, eps, inside,
                           corrections, do_clip_norm, clip_norm, do_clip_value, clip_value, xb, tb,
                           lb, acts, deltas, stats, done, big, tiny, decay, decoupled):
        """train_batches in one block: see the module docstring. xb, tb: flat workspaces;
        alphas in the data's dtype; corrections: per iteration, Adam's (step size, eps_t),
        the learning rate and 1 - lr lambda (``_corrections``); done[0] receives the number of iterations completed; big: the dtype's
        largest number (a step that leaves anything larger, or NaN, stops the loop); tiny: its
        smallest normal number (``optim.smallest_normal``)."""
        buf = cuda.shared.array(tpb, float64)
        buf2 = cuda.shared.array(tpb, float64)
        tid = cuda.threadIdx.x
        dt = params.dtype
        one = dt.type(1)
        zero = dt.type(0)
        half = dt.type(0.5)
        nb = blocks.shape[0]
        last = nb - 1
        n_in = blocks[0, N_IN]
        k_out = blocks[last, N_OUT]
        rows = acts.shape[0] // (blocks[last, COL] + k_out)
        lo = rows * blocks[last, COL]
        n_params = params.shape[0]
        completed = n_iter
        for j in range(n_iter):
            start = (first + j) * batch_size
            n = min(batch_size, n_rows - start)

            # the batch
            for e in range(tid, n * n_in, tpb):
                r = e // n_in
                xb[e] = X[order[start + r], e - r * n_in]
            if loss == CROSS_ENTROPY:
                for r in range(tid, n, tpb):
                    lb[r] = labels[order[start + r]]
            else:
                for e in range(tid, n * k_out, tpb):
                    r = e // k_out
                    tb[e] = T[order[start + r], e - r * k_out]
            cuda.syncthreads()

            # forward
            for i in range(nb):
                nin = blocks[i, N_IN]
                nout = blocks[i, N_OUT]
                ob = rows * blocks[i, COL]
                sb = 0 if i == 0 else rows * blocks[i - 1, COL]
                src = xb if i == 0 else acts
                if blocks[i, HAS_DENSE] != 0:
                    dense_forward_block(src, sb, nin, params, blocks[i, W_OFF], blocks[i, B_OFF],
                                        acts, ob, n, nout, blocks[i, ACT], alphas[i], tid)
                else:
                    for e in range(tid, n * nout, tpb):
                        acts[ob + e] = apply(blocks[i, ACT], src[sb + e], alphas[i], one)
                cuda.syncthreads()

            # loss: each thread's rows or elements, then two fixed trees
            part = 0.0
            hits = 0.0
            divisor = float(n * k_out)
            if loss == CROSS_ENTROPY:
                divisor = float(n)
                inv = one / dt.type(n)
                for r in range(tid, n, tpb):
                    base = lo + r * k_out
                    mx = acts[base]
                    best = 0
                    for c in range(1, k_out):
                        if acts[base + c] > mx:
                            mx = acts[base + c]
                            best = c
                    s = zero
                    for c in range(k_out):
                        ev = math.exp(acts[base + c] - mx)
                        deltas[base + c] = ev
                        s += ev
                    label = lb[r]
                    part += float(math.log(s) + mx - acts[base + label])
                    if best == label:
                        hits += 1.0
                    scale = inv / s
                    for c in range(k_out):
                        deltas[base + c] *= scale
                    deltas[base + label] -= inv
            elif loss == MSE:
                scale = dt.type(2) / dt.type(n * k_out)
                for e in range(tid, n * k_out, tpb):
                    diff = acts[lo + e] - tb[e]
                    part += float(diff * diff)
                    deltas[lo + e] = diff * scale
            else:
                inv = one / dt.type(n * k_out)
                for e in range(tid, n * k_out, tpb):
                    v = acts[lo + e]
                    tv = tb[e]
                    ev = math.exp(-abs(v))
                    part += float((v if v > zero else zero) - v * tv + math.log1p(ev))
                    sg = (one if v >= zero else ev) / (one + ev)
                    deltas[lo + e] = (sg - tv) * inv
                    if (v > zero) == (tv > half):
                        hits += 1.0
            buf[tid] = part
            buf2[tid] = hits
            total, correct = block_sum2(buf, buf2, tid, tpb)
            loss_value = total / divisor
            if tid == 0:
                stats[j, STAT_LOSS] = loss_value
                stats[j, STAT_CORRECT] = correct

            # backward
            for ii in range(nb):
                i = last - ii
                nin = blocks[i, N_IN]
                nout = blocks[i, N_OUT]
                act = blocks[i, ACT]
                alpha = alphas[i]
                yb = rows * blocks[i, COL]
                sb = 0 if i == 0 else rows * blocks[i - 1, COL]
                src = xb if i == 0 else acts
                if blocks[i, HAS_DENSE] != 0:
                    if act != IDENTITY:
                        for e in range(tid, n * nout, tpb):
                            deltas[yb + e] *= derivative(act, acts[yb + e], alpha, one)
                        cuda.syncthreads()
                    wo = blocks[i, W_OFF]
                    weight_gradient_block(src, sb, nin, deltas, yb, n, nout, grads, wo,
                                          blocks[i, B_OFF], tid)
                    if i > 0:
                        input_gradient_block(deltas, yb, n, nout, params, wo, nin, deltas, sb, tid)
                else:
                    for e in range(tid, n * nout, tpb):
                        v = deltas[yb + e]
                        if act != IDENTITY:
                            v *= derivative(act, acts[yb + e], alpha, one)
                            deltas[yb + e] = v
                        if i > 0:
                            deltas[sb + e] = v
                cuda.syncthreads()

            # gradient norms: each Dense weight and bias; the global norm from the same sums
            kd = 0
            sq = 0.0
            for i in range(nb):
                if blocks[i, HAS_DENSE] != 0:
                    wo = blocks[i, W_OFF]
                    bo = blocks[i, B_OFF]
                    acc = 0.0
                    for e in range(tid, blocks[i, N_IN] * blocks[i, N_OUT], tpb):
                        v64 = float64(grads[wo + e])
                        acc += v64 * v64
                    acc_b = 0.0
                    if bo >= 0:
                        for e in range(tid, blocks[i, N_OUT], tpb):
                            v64 = float64(grads[bo + e])
                            acc_b += v64 * v64
                    buf[tid] = acc
                    buf2[tid] = acc_b
                    norm_sq, bias_sq = block_sum2(buf, buf2, tid, tpb)
                    if tid == 0:
                        stats[j, STAT_NORMS + kd] = math.sqrt(norm_sq)
                    sq += norm_sq
                    sq += bias_sq
                    kd += 1
            if not (math.isfinite(loss_value) and math.isfinite(sq)):
                completed = j  # every thread sees the same sums, so all leave together
                if tid == 0:
                    stats[j, STAT_STATUS] = STATUS_LOSS if not math.isfinite(loss_value) \
                        else STATUS_GRADIENT
                break

            # clipping and the optimizer step, element by element
            scale_g = False
            coef = one
            if do_clip_norm:
                cf = clip_norm / (math.sqrt(sq) + 1e-6)
                if cf < 1.0:
                    scale_g = True
                    coef = dt.type(cf)
            step_size = corrections[j, 0]
            eps_hat = corrections[j, 1]
            bad_w = 0.0
            bad_s = 0.0
            for e in range(tid, n_params, tpb):
                gi = grads[e]
                if scale_g:
                    gi *= coef
                if do_clip_value:
                    gi = clamp(gi, -clip_value, clip_value)
                decayed = False
                if decay != zero or decoupled:
                    for i in range(nb):  # is e in a Dense block's W? (biases are not decayed)
                        if blocks[i, HAS_DENSE] != 0 and blocks[i, W_OFF] <= e < \
                                blocks[i, W_OFF] + blocks[i, N_IN] * blocks[i, N_OUT]:
                            decayed = True
                    if decayed:
                        if decoupled:
                            params[e] *= corrections[j, 3]
                        else:
                            gi += decay * params[e]
                if scale_g or do_clip_value or decayed:
                    grads[e] = gi
                update(opt, e, params, gi, state, corrections[j, 2], beta1, beta2, eps, inside,
                       step_size, eps_hat, one, tiny)
                status = element_status(opt, e, params, state, big)
                if status == STATUS_UPDATE:
                    bad_w += 1.0
                elif status == STATUS_STATE:
                    bad_s += 1.0
            buf[tid] = bad_w
            buf2[tid] = bad_s
            n_bad_w, n_bad_s = block_sum2(buf, buf2, tid, tpb)  # the same totals in every thread
            if n_bad_w + n_bad_s > 0.0:
                completed = j
                if tid == 0:
                    stats[j, STAT_STATUS] = STATUS_STATE if n_bad_s > 0.0 else STATUS_UPDATE
                break
        if tid == 0:
            done[0] = completed

    return train_fused_kernel


def use_single_block(blocks, n_params, batch_size):
    """Whether train_batches takes the single-block path (thresholds in ``_config``)."""
    if cfg.FUSED_PATH in ("always", "never"):
        return cfg.FUSED_PATH == "always"
    widest = int(max(blocks[:, N_OUT].max(), blocks[0, N_IN]))
    return (batch_size * widest <= cfg.FUSED_MAX_ROWS_X_WIDTH
            and n_params <= cfg.FUSED_MAX_PARAMS
            and batch_size * n_params <= cfg.FUSED_MAX_WORK)


def _train_fused(blocks, alphas, params, grads, loss, X, T, labels, order, weights, n_rows,
                 batch_size, first, n_iter, opt, state, hp, t, clip_norm, clip_value, xb, tb, lb,
                 acts, deltas, wb, stats, lrs):
    """The single-block path of train_batches (see the module docstring)."""
    dtype = params.dtype
    dev_blocks, dev_alphas = _on_device(
        _plan_key(blocks, alphas, dtype.name),
        lambda: (cuda.to_device(np.ascontiguousarray(blocks, np.int64)),
                 cuda.to_device(np.asarray(alphas, np.float64).astype(dtype))))
    lr, beta1, beta2, eps, inside = hyperparameters(opt, hp, dtype)
    do_norm, clip_norm, do_value, clip_value = _clip_args(clip_norm, clip_value, dtype)
    table = _corrections(opt, hp, t, n_iter, dtype, lrs)
    corrections = scratch("corrections", table.shape, dtype)
    corrections.copy_to_device(table)
    done = scratch("done", 1, np.int64)
    kernel = _fused_kernel(cfg.FUSED_TPB, cfg.FUSED_ROWS)
    kernel[1, cfg.FUSED_TPB](
        dev_blocks, dev_alphas, params, grads, int(loss), X, _nonempty(T, "no_T"),
        _nonempty(labels, "no_labels"), order, int(n_rows), int(batch_size), int(first),
        int(n_iter), int(opt), _nonempty(state, "no_state"), lr, beta1, beta2, eps, inside,
        corrections, do_norm, clip_norm, do_value, clip_value, flat(xb), flat(tb), lb, acts,
        deltas, stats, done, dtype.type(np.finfo(dtype).max), smallest_normal(dtype),
        *_decay_args(hp, dtype))
    return int(done.copy_to_host()[0])


def train_batches(plan, params, grads, loss, data, n_rows, batch_size, first, n_iter, opt, ws,
                  stats, comm=None):
    """Run iterations first, ..., first + n_iter - 1 of an epoch; return how many completed.

    See ``backends.reference.network.train_batches`` for the contract. An
    iteration whose loss or global gradient norm is not finite makes no update,
    and neither does any later iteration of the call; the return value is then
    its index within the call. Only that count is copied back to the host.

    Not data-parallel: both paths keep the whole chunk on the device, with no
    point where the host could sum the ranks' gradients. A data-parallel MLP on
    cuda runs on the op-table loop (``interpreter.train_batches``, host-staged
    allreduce); ``nnumba.loops.MLPLoop`` sends it there.
    """
    if comm is not None:
        raise ValueError("cuda's MLP loop is not data-parallel: train with "
                         "interpreter.train_batches (nnumba.loops does)")
    if n_iter <= 0:
        return 0
    blocks = plan.blocks
    # the single-block kernel computes mse, BCE and cross-entropy itself, unweighted
    fused = (use_single_block(blocks, params.shape[0], batch_size) and not data.weights.shape[0]
             and loss in (MSE, BINARY_CROSS_ENTROPY, CROSS_ENTROPY))
    path = _train_fused if fused else _train_layers
    return path(blocks, plan.alphas, params, grads, loss, *data, n_rows, batch_size, first, n_iter,
                opt.code, opt.state, opt.hp, opt.t, opt.clip_norm, opt.clip_value, *ws, stats,
                opt.lrs)
