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
from .backends import codes
from .backends.codes import CUSTOM_LOSS, RULE
# the forward modes (the MLP loop has no layer whose forward pass depends on them)
from .backends.reference.interpreter import EVAL, TRAIN, TRAIN_UPDATE  # noqa: F401


class MLPLoop:
    """A model of Dense layers and activations: the block-table loop."""

    def __init__(self, backend, plan):
        self.backend, self.plan = backend, plan
        self.network = backend.network

    def workspace(self, rows, dtype):
        return _MLPWorkspace(self.backend.memory, self.plan, rows, dtype)

    def loss(self, model, out, target, labels, dout, result):
        """The model's loss of outputs ``out`` (evaluate): value into result, dL/dout."""
        self.backend.losses.batch_loss(model.loss.code, out, target, labels, dout,
                                                  result)

    def train_batches(self, model, data, n_rows, batch_size, first, n_iter, ws, stats, clip, mode,
                      comm=None):
        """A chunk of iterations; data-parallel with ``comm`` (a ``Comm``), which on cuda runs
        on the op-table loop (its allreduce staged through the host: the device MLP loop
        has no point where the host could step in)."""
        if comm is not None and self.backend.name == "cuda":
            return self._op_loop().train_batches(model, data, n_rows, batch_size, first, n_iter,
                                                 self._op_workspace(ws, model.dtype), stats, clip,
                                                 mode, comm)
        extra = () if comm is None else (comm,)
        return self.network.train_batches(
            Blocks(self.plan.blocks, self.plan.alphas), model._params, model._grads,
            model.loss.code, Data(*data), n_rows, batch_size, first, n_iter, _step(model, clip, n_iter),
            MLPWorkspace(ws.xb, ws.tb, ws.lb, ws.acts, ws.deltas, ws.wb), stats, *extra)

    def _op_loop(self):
        loop = self.__dict__.get("_ops")
        if loop is None:
            loop = self._ops = OpLoop(self.backend, self.plan)
        return loop

    def _op_workspace(self, ws, dtype):
        """The op-table workspace paired with the MLP workspace ws (made once)."""
        paired = getattr(ws, "op_workspace", None)
        if paired is None:
            paired = ws.op_workspace = self._op_loop().workspace(ws.rows, dtype)
        return paired

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
        self.xb, self.tb, self.lb, self.wb, self.acts, self.deltas, self.result = \
            memory.zeros_many((((rows, plan.n_in), dtype), ((rows, plan.n_out), dtype),
                               (rows, np.int64), (rows, dtype), (rows * plan.mlp_width, dtype),
                               (rows * plan.mlp_width, dtype), (2, np.float64)))


class OpLoop:
    """Any model: the op-table interpreter of the backend."""

    def __init__(self, backend, plan):
        self.backend, self.plan = backend, plan
        self.interpreter = backend.interpreter
        memory = backend.memory
        # the tables, as the backend's interpreter reads them (host arrays on every backend:
        # the cuda interpreter's loop runs on the host)
        self.tables = Program(plan.ops, plan.fops, plan.segs, None, None)
        self._programs = {}
        self.memory = memory

    def program(self, model):
        """The tables with the model's custom activations and custom loss compiled for its
        dtype (once per dtype and loss)."""
        loss = model.loss if model.loss is not None and model.loss.code == CUSTOM_LOSS else None
        key = (model.dtype.name, type(loss))
        if key not in self._programs:
            rules, dtype = self.backend.rules, model.dtype
            activations = tuple(self.plan.custom_activations)
            self._programs[key] = self.tables._replace(
                custom=_compiled(("activations", self.backend.name, dtype.name, activations),
                                 lambda: rules.compile_activations(self.plan.custom_specs(), dtype))
                if activations else None,
                loss=None if loss is None else _compiled(
                    ("loss", self.backend.name, dtype.name, type(loss)),
                    lambda: rules.compile_loss(loss.value_function, loss.gradient_function, dtype)))
        return self._programs[key]

    def loss(self, model, out, target, labels, dout, result):
        """The model's loss of outputs ``out`` (evaluate): value into result, dL/dout."""
        program = self.program(model)
        if program.loss is None:
            self.backend.losses.batch_loss(model.loss.code, out, target, labels, dout,
                                                      result)
        else:
            self.backend.rules.apply_loss(program.loss, out, target, out[:0, 0], dout, result)

    def workspace(self, rows, dtype):
        plan, memory = self.plan, self.memory
        ws = Workspace(*memory.zeros_many((
            ((rows, plan.n_in), dtype), ((rows, plan.n_out), dtype), (rows, np.int64),
            (rows * plan.width, dtype), (rows * plan.width, dtype),
            (rows * plan.cache_width, dtype), (max(rows * plan.icache_width, 1), np.int64),
            (max(rows * plan.scratch_width, 1), dtype), (max(plan.n_buffers, 1), dtype),
            (2, np.float64), (rows, dtype))))
        return _OpWorkspace(rows, ws)

    def train_batches(self, model, data, n_rows, batch_size, first, n_iter, ws, stats, clip, mode,
                      comm=None):
        extra = () if comm is None else (comm,)
        return self.interpreter.train_batches(
            self.program(model), model._params, model._grads, model._buffers, model.loss.code,
            Data(*data), n_rows, batch_size, first, n_iter, _step(model, clip, n_iter),
            ws.bundle, stats, *extra)

    def forward(self, model, x, ws, mode):
        self.interpreter.forward(self.program(model), model._params, model._buffers, x, ws.bundle,
                                 mode, model._dropout_seed,
                                 model.optimizer.t + 1 if model.optimizer else 1)
        return self.interpreter.output_view(self.tables, ws.bundle.acts, ws.rows, x.shape[0])

    def output_gradient(self, x, ws):
        return self.interpreter.output_view(self.tables, ws.bundle.deltas, ws.rows, x.shape[0])

    def loss_and_gradients(self, model, grads, x, target, labels, ws, mode):
        self.interpreter.loss_and_gradients(
            self.program(model), model._params, grads, model._buffers, model.loss.code, x, target,
            labels,
            ws.bundle, mode, model._dropout_seed, model.optimizer.t + 1)


_COMPILED = {}  # the user components compiled in this process, by (what, backend, dtype, classes)


def _compiled(key, compile_them):
    """What ``compile_them()`` makes for ``key``, made once per process."""
    if key not in _COMPILED:
        _COMPILED[key] = compile_them()
    return _COMPILED[key]


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
    keys = loop.__dict__.setdefault("_announce_keys", {})  # per dtype, made once per loop
    key = keys.get(dtype)  # (a fit's checks cost more than a tiny epoch)
    if key is None:
        plan = getattr(loop, "plan", None)
        lstm = plan is not None and bool(codes.OP_LSTM in plan.ops[:, codes.OP_KIND])
        key = keys[dtype] = (loop.backend.name, type(loop).__name__, np.dtype(dtype).char, lstm)
    if verbose and loop.backend.name != "numpy" and key not in _announced:
        what = "the MLP loop" if isinstance(loop, MLPLoop) else "the op-table loop"
        # (measured, empty cache: an MLP 9-10 s, a CNN 14 s, a small LSTM model 82 s: its
        # parallel regions, backends/cpu/recurrent.py)
        wait = "about 1-1.5 min" if key[3] and loop.backend.name == "cpu" else "about 10-15 s"
        print(f"nnumba: compiling {what} for {np.dtype(dtype).name} on {key[0]} (first run "
              f"only: {wait}; later runs load it from Numba's cache)", flush=True)
    _announced.add(key)


def _step(model, clip, n_iter):
    """The optimizer's bundle for one call of a loop (hyperparameters read now, a
    schedule's learning rates for the call's n_iter steps)."""
    opt = model.optimizer
    rule = opt.compiled_step(model._backend, model.dtype) if opt.code == RULE else None
    return Step(opt.code, opt.state, opt.hp_vector(), opt.t, clip[0], clip[1], model._dropout_seed,
                opt.learning_rates(opt.t + 1, n_iter), rule)


def loop_for(backend, plan, optimizer=None, loss=None):
    """The loop that runs ``plan``: the MLP loop for Dense layers and activations only,
    unless the optimizer or the loss is user-defined (which the op-table loop takes)."""
    if plan.is_mlp and (optimizer is None or optimizer.code != RULE) and \
            (loss is None or loss.code != CUSTOM_LOSS):
        return MLPLoop(backend, plan)
    return OpLoop(backend, plan)

