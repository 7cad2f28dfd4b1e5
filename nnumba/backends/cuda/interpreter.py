"""The op-table interpreter on the GPU: the reference's loop (``backends.reference.
interpreter``, where the contract is) over this backend's kernels, one launch per op.

The loop runs in Python, one iteration at a time, and reads each batch's loss
and gradient norms back to decide whether to step (a synchronisation per
iteration). The specialised MLP paths of ``network`` keep the whole loop on the
device; models with other layer kinds take this one.
"""
from ..reference import interpreter as _loop
from ..reference.interpreter import EVAL, TRAIN, TRAIN_UPDATE  # noqa: F401


def _k():
    return _loop.kernels(__package__)


def forward(plan, params, buffers, x, ws, mode, seed, t):
    _loop.forward(plan, params, buffers, x, ws, mode, seed, t, _k())


def loss_and_gradients(plan, params, grads, buffers, loss, x, target, labels, ws, mode, seed, t):
    _loop.loss_and_gradients(plan, params, grads, buffers, loss, x, target, labels, ws, mode, seed, t,
                             _k())


def train_batches(plan, params, grads, buffers, loss, data, n_rows, batch_size, first, n_iter, opt,
                  ws, stats, comm=None):
    """The reference's loop; data-parallel (``comm``), its allreduce is staged through
    the host: the gradient comes to the host, is summed over the ranks and goes back."""
    return _loop.train_batches(plan, params, grads, buffers, loss, data, n_rows, batch_size, first,
                               n_iter, opt, ws, stats, comm, _k())


output_view = _loop.output_view
