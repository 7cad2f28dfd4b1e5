"""A whole network over a compiled plan, as @njit functions: the fused path.

Same names, arguments and semantics as ``backends.reference.network`` (the
plan and workspace layout are described there). ``train_batches`` runs a chunk
of iterations of an epoch in one compiled call: batching, forward, loss,
backward, gradient norms, clipping and the optimizer step, with no Python and
no allocation per iteration. The plan carries activation, loss and optimizer
choices as integer codes (``codes``), since names cannot enter jitted code.
Inside jitted code the views of blocks, weights and biases are borrowed
(``_views``): no reference counting, which at batch size 1 cost a quarter of a
small network's iteration.
"""
import contextlib
import math
import threading

import numba
import numpy as np
from numba import njit

from ..codes import (ACT, B_OFF, COL, CROSS_ENTROPY, HAS_DENSE, HP_LR, HP_WEIGHT_DECAY, N_IN, N_OUT,
                     STAT_LOSS, STAT_NORMS, STAT_STATUS, STATUS_GRADIENT, STATUS_LOSS, STATUS_OK,
                     W_OFF)
from ..reference import network as _ref
from ._config import (BLAS_THREADED_MIN_FLOPS, INLINE, KERNEL, OUTER_PARALLEL_MIN_SIZE,
                      OUTER_PRODUCT_MAX_ROWS, OUTER_PRODUCT_MIN_PARAMS, REDUCTION, TILED_MAX_ROWS,
                      TILED_MIN_ROWS)
from ._matmul import loops_pay, tiles_pay
from ._views import borrow, flat_view, rows_view
from .activations import activation_backward, activation_forward
from .dense import column_sums, dense_backward, dense_backward_input, dense_forward
from .elementwise import copy
from .gradients import apply_weight_decay, clip_by_norm, clip_by_value, sum_of_squares
from .losses import loss_forward_backward
from .optim import outer_product_step, state_rows, step_serial
from .rules import (builtin_loss, builtin_outer_step, builtin_products, builtin_step,
                    call_loss_at, call_outer_step_at, call_reduce_at, call_step_at)


# Python callers (the model) get the reference's NumPy views; the jitted code below uses
# borrowed views of the same elements (``_views``: no reference counting), valid only
# while it runs.
workspace_rows, block_view, weight_slice, weight_view, bias_view = (
    _ref.workspace_rows, _ref.block_view, _ref.weight_slice, _ref.weight_view, _ref.bias_view)


@njit(**INLINE)
def _workspace_rows(blocks, buf):
    width = blocks[-1, COL] + blocks[-1, N_OUT]
    return buf.shape[0] // width


@njit(**INLINE)
def _block_view(blocks, i, buf, rows, n):
    return rows_view(buf, rows * blocks[i, COL], n, blocks[i, N_OUT])


@njit(**INLINE)
def _weight_slice(blocks, i, flat):
    return flat_view(flat, blocks[i, W_OFF], blocks[i, N_IN] * blocks[i, N_OUT])


@njit(**INLINE)
def _weight_view(blocks, i, flat):
    return rows_view(flat, blocks[i, W_OFF], blocks[i, N_IN], blocks[i, N_OUT])


@njit(**INLINE)
def _bias_view(blocks, i, flat):
    off = blocks[i, B_OFF]
    return flat_view(flat, 0, 0) if off < 0 else flat_view(flat, off, blocks[i, N_OUT])


@njit(**KERNEL)
def forward(blocks, alphas, params, x, acts):
    """Run the network on x (n rows); block i's output lands in its view of acts."""
    _forward(blocks, alphas, params, x, acts, 0)


@njit(**KERNEL)
def _forward(blocks, alphas, params, x, acts, products):
    """forward; the large products through the parallel products at address ``products``
    (``dense``), unless it is 0. (One compiled body for the loop and for predict's
    ``forward``: an omitted default argument would compile a second one.)"""
    rows, n = _workspace_rows(blocks, acts), x.shape[0]
    inp = x
    for i in range(blocks.shape[0]):
        out = _block_view(blocks, i, acts, rows, n)
        if blocks[i, HAS_DENSE]:
            dense_forward(inp, _weight_view(blocks, i, params), _bias_view(blocks, i, params),
                          blocks[i, ACT], alphas[i], out, products)
        else:
            activation_forward(blocks[i, ACT], alphas[i], inp, out)
        inp = out  # views cost more than a tiny layer's arithmetic: each is made once


@njit(**KERNEL)
def backward(blocks, alphas, params, grads, x, acts, deltas):
    """Back-propagate: on entry the last block's view of deltas holds dL/d(output);
    on return grads holds dL/dparams (deltas is used as scratch)."""
    _backward(blocks, alphas, params, grads, x, acts, deltas, True, 0)


@njit(**KERNEL)
def _backward(blocks, alphas, params, grads, x, acts, deltas, weight_grads, products):
    """backward; with weight_grads False the weight gradients x^T dz are not formed
    (each block's view of deltas keeps its dz = dL/d(pre-activation) for the caller);
    the large products through the callback at ``products`` as in ``_forward``."""
    rows, n = _workspace_rows(blocks, acts), x.shape[0]
    last = blocks.shape[0] - 1
    y = _block_view(blocks, last, acts, rows, n)
    dy = _block_view(blocks, last, deltas, rows, n)
    for i in range(last, -1, -1):
        # block i - 1's views, carried over as block i's input and input gradient
        inp = x if i == 0 else _block_view(blocks, i - 1, acts, rows, n)
        dinp = dy if i == 0 else _block_view(blocks, i - 1, deltas, rows, n)
        if blocks[i, HAS_DENSE] and weight_grads:
            dense_backward(inp, y, blocks[i, ACT], alphas[i], dy,
                           _weight_view(blocks, i, grads), _bias_view(blocks, i, grads), products)
        else:
            activation_backward(blocks[i, ACT], alphas[i], y, dy)
            if blocks[i, HAS_DENSE] and blocks[i, B_OFF] >= 0:
                column_sums(dy, _bias_view(blocks, i, grads))
        if i > 0:
            if blocks[i, HAS_DENSE]:
                dense_backward_input(dy, _weight_view(blocks, i, params), dinp, products)
            else:
                copy(dy, dinp)  # a loop: slice assignment compiles numba's shape-error messages (~3 s)
        y, dy = inp, dinp


@njit(**KERNEL)
def loss_and_gradients(blocks, alphas, params, grads, loss, x, target, labels, acts, deltas, result):
    """Forward, loss (result[0] mean loss, result[1] correct count), backward into grads."""
    _loss_and_gradients(blocks, alphas, params, grads, loss, x, target, labels, acts, deltas, result,
                        True)


@njit(**KERNEL)
def _loss_and_gradients(blocks, alphas, params, grads, loss, x, target, labels, acts, deltas, result,
                        weight_grads):
    n, last = x.shape[0], blocks.shape[0] - 1
    rows = _workspace_rows(blocks, acts)
    forward(blocks, alphas, params, x, acts)
    loss_forward_backward(loss, _block_view(blocks, last, acts, rows, n), target, labels,
                          _block_view(blocks, last, deltas, rows, n), result)
    _backward(blocks, alphas, params, grads, x, acts, deltas, weight_grads, 0)


@njit(**KERNEL)
def gradient_norms(blocks, grads, stats_row, scratch):
    """stats_row[k] = ||dW_k|| for the k-th Dense block; returns the global norm of all
    grads, sum_k (||dW_k||^2 + ||db_k||^2), from the same single pass over them."""
    k = 0
    total = 0.0
    for i in range(blocks.shape[0]):
        if blocks[i, HAS_DENSE]:
            sum_of_squares(_weight_slice(blocks, i, grads), scratch)
            stats_row[k] = np.sqrt(scratch[0])
            total += scratch[0]
            sum_of_squares(_bias_view(blocks, i, grads), scratch)
            total += scratch[0]
            k += 1
    return np.sqrt(total)


@njit(**INLINE)
def dot64(a, b):
    """a . b accumulated in float64."""
    acc = 0.0
    for i in range(a.shape[0]):
        acc += np.float64(a[i]) * np.float64(b[i])
    return acc


@njit(**REDUCTION)
def outer_gradient_norms(blocks, grads, x, acts, deltas, stats_row, scratch):
    """gradient_norms for a batch whose weight gradients dW = x^T dz were not formed:
    ||x^T dz||^2 = sum_{r,s} (x_r . x_s)(dz_r . dz_s) over the n rows, in float64.

    Returns inf also when a weight gradient might overflow the data's dtype (its
    elements are bounded by sum_r ||x_r|| ||dz_r||), as summing its squares would.
    """
    rows, n = _workspace_rows(blocks, acts), x.shape[0]
    big = np.finfo(acts.dtype).max
    k = 0
    total = 0.0
    inp = x
    for i in range(blocks.shape[0]):
        out = _block_view(blocks, i, deltas, rows, n)
        if blocks[i, HAS_DENSE]:
            sq, bound = 0.0, 0.0
            for r in range(n):
                for s in range(r + 1):
                    xx, dd = dot64(inp[r], inp[s]), dot64(out[r], out[s])  # borrowed rows
                    sq += xx * dd if r == s else 2.0 * xx * dd
                    if r == s:
                        bound += np.sqrt(xx * dd)
            stats_row[k] = np.sqrt(sq)
            sum_of_squares(_bias_view(blocks, i, grads), scratch)
            total += sq + scratch[0] + (np.inf if bound >= big else 0.0)
            k += 1
        inp = _block_view(blocks, i, acts, rows, n)
    return np.sqrt(total)


@njit(**KERNEL)
def outer_steps(blocks, params, grads, x, acts, deltas, opt, state, hp, t, norm, clip_norm,
                clip_value, outer_fn):
    """The optimizer step of a batch whose weight gradients were not formed: each W from
    its block's input and dz (``optim.outer_product_step``), each b from grads, both
    clipped as ``clip_by_norm`` and ``clip_by_value`` would. Returns the verdict on
    what the steps wrote (``optim.optimizer_step``). A W of at least
    OUTER_PARALLEL_MIN_SIZE elements is stepped on all cores by the callback at
    ``outer_fn`` (``rules.builtin_outer_step``) unless it is 0."""
    rows, n = _workspace_rows(blocks, acts), x.shape[0]
    coef = clip_norm / (norm + 1e-6) if math.isfinite(clip_norm) else 1.0
    status = STATUS_OK
    inp = x
    for i in range(blocks.shape[0]):
        if blocks[i, HAS_DENSE]:
            w = _weight_slice(blocks, i, params)
            off = blocks[i, W_OFF]
            s0, s1 = state_rows(opt, w, state, off, off + w.shape[0])
            dz = _block_view(blocks, i, deltas, rows, n)
            # this W's gradient buffer, unused here, holds each row of x^T dz (one per thread)
            if outer_fn != 0 and w.shape[0] >= OUTER_PARALLEL_MIN_SIZE:
                status = max(status, call_outer_step_at(outer_fn, (
                    w.ctypes.data, inp.ctypes.data, dz.ctypes.data, s0.ctypes.data,
                    s1.ctypes.data, hp.ctypes.data, _weight_slice(blocks, i, grads).ctypes.data,
                    n, blocks[i, N_IN], blocks[i, N_OUT], t, coef, clip_value)))
            else:
                status = max(status, outer_product_step(
                    opt, w, inp, dz, coef, clip_value, s0, s1, hp, t,
                    flat_view(grads, off, blocks[i, N_OUT])))
            off = blocks[i, B_OFF]
            if off >= 0:
                b, gb = _bias_view(blocks, i, params), _bias_view(blocks, i, grads)
                if math.isfinite(clip_norm):
                    clip_by_norm(gb, norm, clip_norm)
                if math.isfinite(clip_value):
                    clip_by_value(gb, clip_value)
                s0, s1 = state_rows(opt, b, state, off, off + b.shape[0])
                status = max(status, step_serial(opt, b, gb, s0, s1, hp, t))
        inp = _block_view(blocks, i, acts, rows, n)
    return status


@njit(**KERNEL)
def decay_weights(blocks, params, grads, hp):
    """Weight decay of every Dense block's W (see the reference twin)."""
    for i in range(blocks.shape[0]):
        if blocks[i, HAS_DENSE]:
            apply_weight_decay(_weight_slice(blocks, i, params), _weight_slice(blocks, i, grads), hp)


@njit(**KERNEL)
def gather_rows(src, index, dst):
    """dst[j] = src[index[j]]: the rows of one batch, in the shuffled order."""
    if src.ndim == 1:
        for j in range(index.shape[0]):
            dst[j] = src[index[j]]
    else:  # element by element: a row view per row would cost a reference count round trip
        for j in range(index.shape[0]):
            r = index[j]
            for k in range(src.shape[1]):
                dst[j, k] = src[r, k]


@njit(**INLINE)
def first_rows(a, lo, n):
    """Rows lo, ..., lo + n - 1 of the 2-d array a, borrowed."""
    return rows_view(a, lo * a.shape[1], n, a.shape[1])


@njit(**INLINE)
def consecutive(index):
    """True when ``index`` lists consecutive rows, index[0], index[0] + 1, ..."""
    for j in range(1, index.shape[0]):
        if index[j] != index[0] + j:
            return False
    return True


def train_batches(plan, params, grads, loss, data, n_rows, batch_size, first, n_iter, opt, ws,
                  stats, comm=None):
    """Run iterations first, ..., first + n_iter - 1 of an epoch; return how many completed.

    See ``backends.reference.network.train_batches`` for the contract. The
    iterations run in one compiled call, with as many BLAS threads as the size
    of the network's matrix products deserves (``blas_threads``). BLAS's thread
    count is one setting for the whole process, so calls from several threads
    take turns (``_blas_turn``): each runs with the count it chose, and the call
    that set a limit sets the count back. A call's result therefore never
    depends on what other threads do.

    Data-parallel (``comm``, see the reference twin): the allreduce runs inside the
    compiled loop (``comm.reduce``, numba-mpi's allreduce), and the few-rows paths
    are off (their steps never form the whole gradient that the ranks sum).
    """
    blocks = plan.blocks
    last = n_rows % batch_size
    few_rows = comm is None and (batch_size <= OUTER_PRODUCT_MAX_ROWS
                                 or 0 < last <= OUTER_PRODUCT_MAX_ROWS)
    weights = data.weights if data.weights.shape[0] else None  # None: not even compiled
    comm = by_address(comm)
    products = products_address(blocks, params.dtype, batch_size, comm is None)
    # (with the products on Numba's threads, BLAS's small ones run on one thread: its
    # pool, spinning after a product, would take the other core from Numba's)
    threads = 1 if products else blas_threads(blocks, batch_size)
    args = (blocks, plan.alphas, params, grads, loss, data.X, data.T, data.labels, data.order,
            weights, n_rows, batch_size, first, n_iter, opt.code, opt.state, opt.hp, opt.t,
            opt.clip_norm, opt.clip_value, *ws, stats, True if few_rows else None, opt.lrs,
            comm, builtin_loss(loss, weights is not None, params.dtype).address,
            builtin_step(opt.code, params.dtype, numba.get_num_threads() if products else 1).address,
            outer_step_address(blocks, params, few_rows, threads, opt.code), products)
    with blas_thread_count(threads):
        return _train_batches(*args)


def outer_step_address(blocks, params, few_rows, blas_threads, code):
    """The address of the parallel on-the-fly step (``rules.builtin_outer_step``) for a
    loop whose few-row batches step a W of at least OUTER_PARALLEL_MIN_SIZE elements
    on the fly while BLAS runs on one thread, so that the other cores are idle; 0
    (the serial step) otherwise, and on one Numba thread."""
    if not few_rows or blas_threads != 1 or params.shape[0] < OUTER_PRODUCT_MIN_PARAMS:
        return 0
    threads = numba.get_num_threads()
    if threads < 2 or largest_weights(blocks) < OUTER_PARALLEL_MIN_SIZE:
        return 0
    return builtin_outer_step(code, params.dtype, threads).address


def products_address(blocks, dtype, batch_size, alone):
    """The address of the parallel products (``rules.builtin_products``) for a loop of
    batches of ``batch_size`` rows when they take a layer's products (``tiles_pay``): at
    most TILED_MAX_ROWS rows (beyond, BLAS's packed kernels run near the machine's peak),
    on at least two Numba threads, not data-parallel (``alone``; its ranks' threads
    share the machine); 0 otherwise."""
    if not alone or not TILED_MIN_ROWS <= batch_size <= TILED_MAX_ROWS:
        return 0
    if not any(tiles_pay(batch_size, int(k), int(m)) for has_dense, k, m in
               zip(blocks[:, HAS_DENSE], blocks[:, N_IN], blocks[:, N_OUT]) if has_dense):
        return 0
    threads = numba.get_num_threads()
    return 0 if threads < 2 else builtin_products(dtype, threads).address


def by_address(comm):
    """``comm`` with its reduce as an address, the way the jitted loops call it (``rules.
    address_caller``); None stays None."""
    return None if comm is None else comm._replace(reduce=comm.reduce.address)


_blas_turn = threading.Lock()


@contextlib.contextmanager
def blas_thread_count(threads):
    """Take this call's turn on BLAS (``_blas_turn``) and run it with ``threads`` BLAS
    threads (None: BLAS's default), restoring the count after."""
    with _blas_turn:
        if threads is None:
            yield
            return
        libraries = [lib for lib in _blas_controller().lib_controllers if lib.user_api == "blas"]
        saved = [lib.num_threads for lib in libraries]
        for lib in libraries:
            lib.set_num_threads(threads)
        try:
            yield
        finally:
            for lib, n in zip(libraries, saved):
                lib.set_num_threads(n)


def largest_weights(blocks):
    """The element count of the largest Dense block's W (plain Python over the block
    table's rows: NumPy's masking costs more than a tiny fit's epoch can spare)."""
    return max(int(n_in) * int(n_out) for has_dense, n_in, n_out in
               zip(blocks[:, HAS_DENSE], blocks[:, N_IN], blocks[:, N_OUT]) if has_dense)


def blas_threads(blocks, rows):
    """1 when the largest product of an iteration on ``rows`` rows is too small to
    share between threads (BLAS_THREADED_MIN_FLOPS), None (BLAS's default) otherwise
    or when every product runs as loops (``_matmul.loops_pay``), never reaching BLAS."""
    weights = largest_weights(blocks)
    if loops_pay(rows, weights, 1):
        return None
    return 1 if rows * weights < BLAS_THREADED_MIN_FLOPS else None


_controller = []


def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (the products call NumPy's,
    ``_blas``, or where it is not found SciPy's, which numba's np.dot calls), made once:
    it costs about 2 ms, a limit() on it 20 us."""
    if not _controller:
        # threadpoolctl sees only the libraries loaded when it is made: load SciPy's BLAS,
        # the fallback, even when no product has been compiled yet
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _controller.append(ThreadpoolController())
    return _controller[0]


@njit(**INLINE)
def batch_share(rank, size, start, n):
    """See the reference twin: (first position in order, rows, weight) of this rank."""
    a, b = n * rank // size, n * (rank + 1) // size
    if b > a:
        return start + a, b - a, (b - a) / n
    return start + min(a, n - 1), 1, 0.0


@njit(**INLINE)
def _weigh_share(dout, result, weight):
    """dL/d(out) and the loss result[0] times this rank's weight (``batch_share``), the
    correct count result[1] dropped when the rank has no rows of its own."""
    w = dout.dtype.type(weight)
    for i in range(dout.shape[0]):
        for k in range(dout.shape[1]):
            dout[i, k] *= w
    result[0] *= weight
    if weight == 0:
        result[1] = 0.0


@njit(**INLINE)
def _gradient_buffer(comm, j, n_params):
    """The gradient buffer iteration j's backward writes: comm.send and comm.recv take
    turns as the allreduce's send and receive buffers, so nothing is copied (they are
    one array when the allreduce runs in place)."""
    return flat_view(comm.send if j % 2 == 0 else comm.recv, 0, n_params)


@njit(**INLINE)
def _allreduce(comm, j, n_params, result):
    """Sum iteration j's gradient (in ``_gradient_buffer(comm, j, ...)``), its loss
    result[0] and correct count result[1] over the ranks in one allreduce; returns
    the summed gradient (a view of the other buffer) and writes the sums to result."""
    src, dst = (comm.send, comm.recv) if j % 2 == 0 else (comm.recv, comm.send)
    src[n_params] = result[0]
    src[n_params + 1] = result[1]
    # MPI's errors abort the job (MPI_ERRORS_ARE_FATAL, the default): no status to read
    call_reduce_at(comm.reduce, (src.ctypes.data, dst.ctypes.data, n_params + 2,
                                 comm.scratch.ctypes.data))
    result[0] = dst[n_params]
    result[1] = dst[n_params + 1]
    return flat_view(dst, 0, n_params)


@njit(**INLINE)
def call_loss(loss_fn, out, target, weights, dout, result):
    """The loss callback at address ``loss_fn`` (``rules``) on a batch's
    output, its targets (cross-entropy: labels) and weights (empty: unweighted)."""
    call_loss_at(loss_fn, (out.ctypes.data, target.ctypes.data, weights.ctypes.data,
                           dout.ctypes.data, result.ctypes.data, out.shape[0], out.shape[1],
                           weights.shape[0] > 0))


@njit(**INLINE)
def call_step(step_fn, params, grads, state, hp, t):
    """The optimizer callback at address ``step_fn`` (``rules``): step t of
    all the parameters; returns its verdict (``codes.STATUS_*``)."""
    return call_step_at(step_fn, (params.ctypes.data, grads.ctypes.data, state.ctypes.data,
                                  hp.ctypes.data, params.shape[0], t))


@njit(**KERNEL)
def _train_batches(blocks, alphas, params, grads, loss, X, T, labels, order, weights, n_rows,
                   batch_size, first, n_iter, opt, state, hp, t, clip_norm, clip_value, xb, tb, lb,
                   acts, deltas, wb, stats, few_rows_paths, lrs, comm, loss_fn, step_fn, outer_fn,
                   products):
    """The loop; ``few_rows_paths`` is None when no batch has OUTER_PRODUCT_MAX_ROWS rows
    or fewer: Numba then prunes the branches of such batches (``is None`` on an
    argument is decided at compile time), so their kernels are not even compiled
    (about 3 s of a cold start). Likewise ``weights`` (one per sample) is None when
    training is unweighted, and ``comm`` (a ``Comm``) when it is not data-parallel.
    The loss and the optimizer step are C callbacks (``rules``): the loop is the
    same compiled code for all of them. ``outer_fn`` is the address of the parallel
    on-the-fly step of large weight matrices, 0 for the serial one
    (``outer_step_address``); ``products`` that of the parallel products, 0 for BLAS
    and loops (``products_address``)."""
    scratch = np.zeros(1)
    # borrowed (``_views.borrow``): the calls below count no references to them
    blocks, alphas, params, grads, state, hp = (borrow(blocks), borrow(alphas), borrow(params),
                                                borrow(grads), borrow(state), borrow(hp))
    X, T, labels, order, stats = borrow(X), borrow(T), borrow(labels), borrow(order), borrow(stats)
    xb, tb, lb, acts, deltas, wb = (borrow(xb), borrow(tb), borrow(lb), borrow(acts),
                                    borrow(deltas), borrow(wb))
    # (weight decay needs each weight gradient whole: no on-the-fly step then; nor does
    # the allreduce)
    outer = params.shape[0] >= OUTER_PRODUCT_MIN_PARAMS and hp[HP_WEIGHT_DECAY] == 0
    if comm is not None:
        outer = False
    n_params = params.shape[0]
    weight = 1.0
    for j in range(n_iter):
        start = (first + j) * batch_size
        n = min(batch_size, n_rows - start)
        if comm is not None:  # this rank's share of the batch
            start, n, weight = batch_share(comm.rank, comm.size, start, n)
        index = flat_view(order, start, n)
        lo = index[0]
        x, t_n, l_n = first_rows(xb, 0, n), first_rows(tb, 0, n), flat_view(lb, 0, n)
        if consecutive(index):  # no shuffling: the batch is a slice of the data, no copy
            x = first_rows(X, lo, n)
            if loss == CROSS_ENTROPY:
                l_n = flat_view(labels, lo, n)
            else:
                t_n = first_rows(T, lo, n)
        else:
            gather_rows(X, index, x)
            if loss == CROSS_ENTROPY:
                gather_rows(labels, index, l_n)
            else:
                gather_rows(T, index, t_n)
        row = flat_view(stats, j * stats.shape[1], stats.shape[1])
        # A batch of a few rows: the weight-gradient norms come from the Gram identity
        # (O(n_in + n_out) per pair of rows instead of a pass over n_in x n_out), and in a
        # large network the weight gradients x^T dz are not even written: the step forms
        # them row by row as it goes (see OUTER_PRODUCT_MIN_PARAMS).
        few_rows = n <= OUTER_PRODUCT_MAX_ROWS
        on_the_fly = outer and few_rows
        # _loss_and_gradients, written out: each level of jitted calls re-optimises all
        # the code below it when Numba links it (about 1 s of a cold start here)
        _forward(blocks, alphas, params, x, acts, products)
        rows = _workspace_rows(blocks, acts)
        last = blocks.shape[0] - 1
        w_n = flat_view(wb, 0, 0)
        if weights is not None:
            w_n = flat_view(weights, lo, n)
            if not consecutive(index):
                w_n = flat_view(wb, 0, n)
                gather_rows(weights, index, w_n)
        out, dout = _block_view(blocks, last, acts, rows, n), _block_view(blocks, last, deltas, rows, n)
        if loss == CROSS_ENTROPY:
            call_loss(loss_fn, out, l_n, w_n, dout, row[STAT_LOSS:])
        else:
            call_loss(loss_fn, out, t_n, w_n, dout, row[STAT_LOSS:])
        if comm is not None:
            _weigh_share(_block_view(blocks, last, deltas, rows, n), row[STAT_LOSS:], weight)
            grads = _gradient_buffer(comm, j, n_params)
        _backward(blocks, alphas, params, grads, x, acts, deltas, not on_the_fly, products)
        if comm is not None:
            grads = _allreduce(comm, j, n_params, row[STAT_LOSS:])
        if few_rows_paths is None:
            norm = gradient_norms(blocks, grads, row[STAT_NORMS:], scratch)
        elif few_rows:
            norm = outer_gradient_norms(blocks, grads, x, acts, deltas, row[STAT_NORMS:], scratch)
        else:
            norm = gradient_norms(blocks, grads, row[STAT_NORMS:], scratch)
        if not math.isfinite(row[STAT_LOSS]):
            row[STAT_STATUS] = STATUS_LOSS
            return j
        if not math.isfinite(norm):
            row[STAT_STATUS] = STATUS_GRADIENT
            return j
        if lrs.shape[0]:
            hp[HP_LR] = lrs[j]  # a schedule's learning rate of this step
        if few_rows_paths is not None and on_the_fly:
            status = outer_steps(blocks, params, grads, x, acts, deltas, opt, state, hp, t + j + 1,
                                 norm, clip_norm, clip_value, outer_fn)
        else:
            if math.isfinite(clip_norm):
                clip_by_norm(grads, norm, clip_norm)
            if math.isfinite(clip_value):
                clip_by_value(grads, clip_value)
            if hp[HP_WEIGHT_DECAY] != 0:
                decay_weights(blocks, params, grads, hp)
            status = call_step(step_fn, params, grads, state, hp, t + j + 1)
        row[STAT_STATUS] = status
        if status != STATUS_OK:
            return j
    return n_iter
