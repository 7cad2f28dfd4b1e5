"""The two compiled loops a model runs on, behind one interface.

- ``MLPLoop``: the specialised multi-layer-perceptron loop (each backend's
  ``network``: the block table, Dense fused with its activation, the fastest
  path, tuned for tiny batches and large BLAS products alike);
- ``OpLoop``: the op-table interpreter (each backend's ``interpreter``), for
  every other model: Conv1D, pools, Dropout, BatchNorm, Residual ...

The model asks its loop for workspaces, a training chunk, a forward pass,
loss and gradients; it never looks at which loop it has. Both fill the same
per-iteration statistics rows (``codes.STAT_*``).
"""
import numpy as np

from .backends.bundles import Blocks, Data, MLPWorkspace, Program, Step, Workspace
# the forward modes (the MLP loop has no layer whose forward pass depends on them)
from .backends.reference.interpreter import EVAL, TRAIN, TRAIN_UPDATE  # noqa: F401


class MLPLoop:
    """A model of Dense layers and activations: the block-table loop."""

    def __init__(self, backend, plan):
        self.backend, self.plan = backend, plan
        self.network = backend.network

    def workspace(self, rows, dtype):
        return _MLPWorkspace(self.backend.memory, self.plan, rows, dtype)

    def train_batches(self, model, data, n_rows, batch_size, first, n_iter, ws, stats, clip, mode):
        return self.network.train_batches(
            Blocks(self.plan.blocks, self.plan.alphas), model._params, model._grads,
            model.loss.code, Data(*data), n_rows, batch_size, first, n_iter, _step(model, clip, n_iter),
            MLPWorkspace(ws.xb, ws.tb, ws.lb, ws.acts, ws.deltas, ws.wb), stats)

    def forward(self, model, x, ws, mode):
        """Outputs of the batch x as an (n, n_out) view of ws."""
        plan = self.plan
        self.network.forward(plan.blocks, plan.alphas, model._params, x, ws.acts)
        return self.network.block_view(plan.blocks, plan.blocks.shape[0] - 1, ws.acts, ws.rows,
                                       x.shape[0])

    def output_gradient(self, x, ws):
        plan = self.plan
        return self.network.block_view(plan.blocks, plan.blocks.shape[0] - 1, ws.deltas, ws.rows,
                                       x.shape[0])

    def loss_and_gradients(self, model, grads, x, target, labels, ws, mode):
        plan = self.plan
        self.network.loss_and_gradients(plan.blocks, plan.alphas, model._params, grads,
                                        model.loss.code, x, target, labels, ws.acts, ws.deltas,
                                        ws.result)


class _MLPWorkspace:
    """The MLP loop's buffers for ``rows`` rows: batch, targets, labels, the blocks'
    activations and gradients, and the loss kernel's result pair."""

    def __init__(self, memory, plan, rows, dtype):
        self.rows = rows
        self.xb = memory.zeros((rows, plan.n_in), dtype)
        self.tb = memory.zeros((rows, plan.n_out), dtype)
        self.lb = memory.zeros(rows, np.int64)
        self.wb = memory.zeros(rows, dtype)
        self.acts = memory.zeros(rows * plan.mlp_width, dtype)
        self.deltas = memory.zeros(rows * plan.mlp_width, dtype)
        self.result = memory.zeros(2, np.float64)


class OpLoop:
    """Any model: the op-table interpreter of the backend."""

    def __init__(self, backend, plan):
        self.backend, self.plan = backend, plan
        self.interpreter = backend.interpreter
        memory = backend.memory
        # the tables, as the backend's interpreter reads them (host arrays on every backend:
        # the cuda interpreter's loop runs on the host)
        self.program = Program(plan.ops, plan.fops, plan.segs)
        self.memory = memory

    def workspace(self, rows, dtype):
        plan, memory = self.plan, self.memory
        ws = Workspace(
            memory.zeros((rows, plan.n_in), dtype), memory.zeros((rows, plan.n_out), dtype),
            memory.zeros(rows, np.int64), memory.zeros(rows * plan.width, dtype),
            memory.zeros(rows * plan.width, dtype), memory.zeros(rows * plan.cache_width, dtype),
            memory.zeros(max(rows * plan.icache_width, 1), np.int64),
            memory.zeros(max(rows * plan.scratch_width, 1), dtype),
            memory.zeros(max(plan.n_buffers, 1), dtype), memory.zeros(2, np.float64),
            memory.zeros(rows, dtype))
        return _OpWorkspace(rows, ws)

    def train_batches(self, model, data, n_rows, batch_size, first, n_iter, ws, stats, clip, mode):
        return self.interpreter.train_batches(
            self.program, model._params, model._grads, model._buffers, model.loss.code,
            Data(*data), n_rows, batch_size, first, n_iter, _step(model, clip, n_iter),
            ws.bundle, stats)

    def forward(self, model, x, ws, mode):
        self.interpreter.forward(self.program, model._params, model._buffers, x, ws.bundle, mode,
                                 model._dropout_seed, model.optimizer.t + 1 if model.optimizer else 1)
        return self.interpreter.output_view(self.program, ws.bundle.acts, ws.rows, x.shape[0])

    def output_gradient(self, x, ws):
        return self.interpreter.output_view(self.program, ws.bundle.deltas, ws.rows, x.shape[0])

    def loss_and_gradients(self, model, grads, x, target, labels, ws, mode):
        self.interpreter.loss_and_gradients(
            self.program, model._params, grads, model._buffers, model.loss.code, x, target, labels,
            ws.bundle, mode, model._dropout_seed, model.optimizer.t + 1)


class _OpWorkspace:
    """The interpreter's Workspace bundle, with the attributes the model reads."""

    def __init__(self, rows, bundle):
        self.rows, self.bundle = rows, bundle
        self.xb, self.tb, self.lb, self.result = bundle.xb, bundle.tb, bundle.lb, bundle.result
        self.deltas = bundle.deltas


_announced = set()


def announce_compile(loop, dtype, verbose):
    """Say once per process and kind of loop that its first call compiles (or loads from
    Numba's cache), instead of a silent stall: for verbose >= 1 on the compiled backends."""
    key = (loop.backend.name, type(loop).__name__, np.dtype(dtype).name)
    if verbose and loop.backend.name != "numpy" and key not in _announced:
        what = "the MLP loop" if isinstance(loop, MLPLoop) else "the op-table loop"
        print(f"nnumba: compiling {what} for {key[2]} on {key[0]} (first run only: about 10-25 s; "
              f"later runs load it from Numba's cache)", flush=True)
    _announced.add(key)


def _step(model, clip, n_iter):
    """The optimizer's bundle for one call of a loop (hyperparameters read now, a
    schedule's learning rates for the call's n_iter steps)."""
    opt = model.optimizer
    return Step(opt.code, opt.state, opt.hp_vector(), opt.t, clip[0], clip[1], model._dropout_seed,
                opt.learning_rates(opt.t + 1, n_iter))


def loop_for(backend, plan):
    """The loop that runs ``plan``: the MLP loop for Dense layers and activations only."""
    return MLPLoop(backend, plan) if plan.is_mlp else OpLoop(backend, plan)

