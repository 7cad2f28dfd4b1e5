"""Sequential: a feed-forward network and its training loop.

The model owns the flat parameter buffer (and one of the same layout for the
gradients) on its backend, plus workspaces for the activations. Everything
numeric happens in the backend's kernels; this module checks arguments,
allocates, batches the epochs and keeps the records.
"""
import contextlib
import inspect
import math
import signal
import threading
import time
import warnings

import numpy as np

from . import _checks, _spares
from .backends import codes, get_backend
from .data import batch_sizes, iterations_per_epoch
from .errors import NonFiniteError
from . import metrics as metrics_
from .history import History
from .layers import RECURRENT, Sigmoid, Tanh
from .loops import EVAL, TRAIN, announce_compile, loop_for
from .losses import get_loss
from .optim import get_optimizer
from .plan import Plan

DTYPES = ("float32", "float64")
# rows per call of evaluate and predict when no batch_size is given
EVAL_BATCH = 1024
# progress-bar refreshes per epoch (each one returns from the compiled loop once)
PROGRESS_STEPS = 20


def _check_custom_activations(plan):
    """Each custom activation's derivative against central differences of its function
    (``nn.testing.gradcheck`` on a small input, in float64 on the numpy reference), once
    per activation and process, unless it was made with check=False: a wrong one is
    refused with the error found."""
    from .testing import gradcheck

    for cls in plan.custom_activations:
        if cls.check and cls.derivative is not None and not cls.__dict__.get("_checked"):
            z = np.concatenate([np.linspace(-3.0, 3.0, 13), [0.1, -0.7, 1.9]]).reshape(1, -1)
            result = gradcheck(cls(), z, backend="numpy", raise_exception=False)
            if not result.passed:
                raise ValueError(f"the derivative of the custom activation {cls.__name__} does not "
                                 f"match central differences of its function (make it with "
                                 f"check=False to skip this):\n{result}")
            cls._checked = True


def _check_custom_loss(loss):
    """A custom loss's gradient against central differences of its value (on a small input,
    float64, the numpy reference), once per loss and process unless made with check=False."""
    from .testing import gradcheck

    cls = type(loss)
    if getattr(cls, "check", False) and loss.code == codes.CUSTOM_LOSS and \
            not cls.__dict__.get("_checked"):
        rng = np.random.default_rng(0)
        result = gradcheck(loss, rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), backend="numpy",
                           raise_exception=False)
        if not result.passed:
            raise ValueError(f"the gradient of the custom loss {cls.__name__} does not match "
                             f"central differences of its value (make it with check=False to "
                             f"skip this):\n{result}")
        cls._checked = True


def _dtype(dtype):
    try:
        name = None if dtype is None else np.dtype(dtype).name  # np.dtype(None) is float64
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    return np.dtype(name)


class _Snapshot:
    """A copy of what one epoch changes (parameters, optimizer state and step count,
    the shuffling generator, the epoch count), taken before it starts, in buffers
    allocated once per model and optimizer, or handed over from a model that is gone
    (``_spares``). Restoring it undoes the epoch exactly. It holds no reference to its
    model (which holds it), so a dropped model is freed at once, not at the next
    garbage collection, and its buffers are ready for the next model."""

    def __init__(self, model):
        memory = model._backend.memory
        shapes = (model._params.shape, model._buffers.shape, model.optimizer.state.shape)
        key = (model._backend.name, np.dtype(model.dtype).str, shapes)
        arrays = _spares.reuse(key) or tuple(memory.empty(shape, model.dtype) for shape in shapes)
        self.params, self.buffers, self.state = arrays
        _spares.keep_when_gone(self, key, arrays)

    def take(self, model):
        memory = model._backend.memory
        memory.copy_into(self.params, model._params)
        memory.copy_into(self.buffers, model._buffers)
        memory.copy_into(self.state, model.optimizer.state)
        self.t = model.optimizer.t
        self.rng = model._shuffle_rng.bit_generator.state
        self.epochs_trained = model.epochs_trained

    def restore(self, model, rng=True):
        """Back to the snapshot; ``rng=False`` keeps the generator where it is."""
        memory = model._backend.memory
        with _interrupts_deferred():
            memory.copy_into(model._params, self.params)
            memory.copy_into(model._buffers, self.buffers)
            memory.copy_into(model.optimizer.state, self.state)
            model.optimizer.t = self.t
            if rng:
                model._shuffle_rng.bit_generator.state = self.rng
            model.epochs_trained = self.epochs_trained


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold back Ctrl-C (SIGINT) while a rollback copies, so that a second Ctrl-C
    cannot leave it half done; the signal is delivered right after."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Sequential:
    """A stack of layers trained by mini-batch gradient descent.

    Parameters
    ----------
    layers : list of layers
        e.g. ``[nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10)]``; the last layer
        gives raw scores (the losses apply softmax / sigmoid themselves).
    backend : {"cpu", "numpy", "cuda"}
        "numpy" is the pure-NumPy reference, "cpu" Numba @njit kernels,
        "cuda" numba.cuda kernels on an NVIDIA GPU.
    dtype : {"float32", "float64"}
    seed : int >= 0 or None
        Seeds the initial weights, the shuffling and the dropout masks (from
        independent streams): same seed and backend, bit-identical run. None
        draws fresh entropy; ``model.seed`` then tells which.
    input_shape : (features,), (steps, channels) or None
        The shape of one sample. None reads it off the first Dense layer; a
        model that starts with Conv1D, a pool, Flatten or Residual needs it.
        X is then (batch, steps, channels), channels-last as in Keras.
    """

    def __init__(self, layers, backend="cpu", dtype="float32", seed=None, input_shape=None):
        plan = Plan(layers, input_shape)
        _check_custom_activations(plan)
        self.dtype = _dtype(dtype)
        self._backend = get_backend(backend)
        if seed is not None:
            seed = _checks.integer(seed, "seed", minimum=0)
        sequence = np.random.SeedSequence(seed)
        self.seed = sequence.entropy
        init_sequence, shuffle_sequence, dropout_sequence = sequence.spawn(3)
        self.layers = list(layers)
        self.plan = plan
        self.input_shape = None if input_shape is None else plan.input_shape
        self._shuffle_rng = np.random.default_rng(shuffle_sequence)
        self._dropout_seed = int(dropout_sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))
        self._loop = loop_for(self._backend, plan)

        init_rng = np.random.default_rng(init_sequence)
        host = np.zeros(plan.n_params, np.float64)
        for (layer, spec, default_init), view in zip(plan.param_specs, plan.split(host)):
            if spec.init == "weights":
                w = layer.initial_weights(default_init, init_rng, spec)
                view[...] = _checks.finite_as(w, f"the weights drawn by init of {layer!r}",
                                              self.dtype).reshape(view.shape)
            elif spec.init == "uniform":
                limit = layer.uniform_limit()
                view[...] = init_rng.uniform(-limit, limit, size=view.shape)
            elif spec.init == "ones":
                view[...] = 1.0
        buffers = np.zeros(plan.n_buffers)
        for off, channels in plan.batchnorm_buffers():
            buffers[off + channels:off + 2 * channels] = 1.0  # running variance starts at 1
        memory = self._backend.memory
        self._params = memory.to_backend(host.astype(self.dtype))
        self._buffers = memory.to_backend(buffers.astype(self.dtype))
        self._grads = memory.zeros(plan.n_params, self.dtype)
        self._workspaces = {}                 # rows -> free workspaces (see _workspace)
        self._workspaces_lock = threading.Lock()
        self._training = threading.Lock()     # held while fit or train_step runs
        self.loss = None
        self.optimizer = None
        self.metrics = {}
        self.epochs_trained = 0
        self.stop_training = False

    # ---- description -----------------------------------------------------------------------
    @property
    def backend(self):
        return self._backend.name

    def count_params(self):
        return self.plan.n_params

    def __repr__(self):
        layers = ", ".join(map(repr, self.layers))
        return f"Sequential([{layers}], backend={self.backend!r}, dtype={self.dtype.name!r})"

    def summary(self):
        """A table of the layers, their output shapes and parameter counts, as a string."""
        lines = [f"{'layer':<40}{'output':>12}{'params':>10}"]
        shape = self.plan.input_shape
        for layer in self.layers:
            n, inner = 0, shape
            for sub in getattr(layer, "layers", [layer]):  # a Residual: its inner layers'
                n += sum(int(np.prod(p.shape)) for p in sub.parameters(inner))
                inner = sub.output_shape(inner)
            shape = layer.output_shape(shape)
            name = repr(layer)
            name = name if len(name) <= 38 else name[:35] + "..."
            out = str(shape[0]) if len(shape) == 1 else f"{shape[0]}x{shape[1]}"
            lines.append(f"{name:<40}{out:>12}{n:>10}")
        lines.append(f"total parameters: {self.plan.n_params} ({self.dtype.name}, backend {self.backend!r})")
        return "\n".join(lines)

    # ---- weights -----------------------------------------------------------------------------
    def get_weights(self):
        """Host copies of the parameters: [W0, b0, W1, b1, ...] (no b for bias=False)."""
        host = self._backend.memory.to_host(self._params)
        return [w.copy() for w in self.plan.split(host)]

    def set_weights(self, weights):
        """Replace the parameters by ``weights``, a list as ``get_weights`` returns."""
        expected = [shape for _, _, shape in self.plan.params]
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list of arrays, got {type(weights).__name__}")
        if len(weights) != len(expected):
            raise ValueError(f"weights has {len(weights)} arrays but the model has {len(expected)} "
                             f"parameters ({', '.join(name for name, _, _ in self.plan.params)})")
        host = np.zeros(self.plan.n_params, self.dtype)
        for (name, _, shape), view, w in zip(self.plan.params, self.plan.split(host), weights):
            w = np.asarray(w)
            if w.shape != shape:
                raise ValueError(f"weights for {name} have shape {w.shape}, expected {shape}")
            if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
                raise TypeError(f"weights for {name} must be numbers, got dtype {w.dtype}")
            view[...] = _checks.finite_as(w, f"weights for {name}", self.dtype)
        self._backend.memory.copy_from_host(self._params, host)

    # ---- compile -----------------------------------------------------------------------------
    def compile(self, loss, optimizer="rmsprop", metrics=None):
        """Choose the loss ("mse", "mae", "huber", "binary_cross_entropy",
        "cross_entropy" or an nn.losses object), the optimizer (an nn.optim object
        or its name; default "rmsprop", as Keras) and the metrics that
        ``evaluate`` reports and ``fit`` logs for the validation data (names in
        ``nnumba.metrics``: "accuracy", "mae", "mse", "r2", "auc",
        "top_5_accuracy", ...). Refused while ``fit`` runs (from a callback, or in
        another thread): the compiled loop holds the loss and optimizer.

        The classification losses take logits: a Sigmoid as the last layer would
        squash the outputs twice, and is warned about."""
        if self._training.locked():
            raise RuntimeError("compile was called while fit or train_step runs on this model; "
                               "compile before fit, or stop training first (model.stop_training = True)")
        from .losses import check_supported as check_loss
        from .optim import check_supported as check_optimizer

        loss = get_loss(loss)
        optimizer = get_optimizer(optimizer)
        # a subclass with its own value/gradient or step() would silently train as the
        # built-in: refused here, before anything is bound
        check_loss(loss)
        check_optimizer(optimizer)
        _check_in_dtype(optimizer, self.dtype)
        resolved = metrics_.resolve(metrics, loss.code, self.plan.n_out)
        last = self.layers[-1]
        if loss.code in metrics_.CLASSIFICATION and isinstance(last, (Sigmoid, Tanh)):
            warnings.warn(f"the last layer is {last!r}, but {loss.name} applies the "
                          f"{'sigmoid' if loss.code == codes.BINARY_CROSS_ENTROPY else 'softmax'} "
                          f"itself, from logits: the outputs would be squashed twice. Remove the "
                          f"last {type(last).__name__}() (predict returns probabilities anyway)",
                          UserWarning, stacklevel=2)
        if loss.code == codes.CROSS_ENTROPY and self.plan.n_out < 2:
            raise ValueError("cross_entropy needs at least 2 outputs, but the model has 1; "
                             "use binary_cross_entropy for a single output")
        owner = getattr(optimizer, "_model", None)
        if owner is not None and owner is not self:
            raise ValueError("this optimizer already trains another model; give each model its own")
        optimizer.bind(self.plan.n_params, self.dtype, self._backend)
        optimizer._model = self
        _check_custom_loss(loss)
        loop = loop_for(self._backend, self.plan, optimizer, loss)
        if type(loop) is not type(self._loop):  # a user-defined rule runs on the op-table loop
            with self._workspaces_lock:
                self._loop, self._workspaces = loop, {}
        self.loss, self.optimizer = loss, optimizer
        self.metrics = resolved

    def _require_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"{what} needs a loss and an optimizer: call model.compile(loss=..., "
                               f"optimizer=...) first")

    # ---- argument preparation ------------------------------------------------------------------
    def _inputs(self, X, name):
        """X checked against the model's input shape, as a (samples, features) array
        of the model's dtype (a (samples, steps, channels) array is flattened per
        sample, which moves no data)."""
        shape = self.plan.input_shape
        if len(shape) == 1:
            return _checks.array_2d(X, name, self.plan.n_in, "the first Dense layer", self.dtype)
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        if getattr(X, "ndim", 0) != 3:
            raise ValueError(f"{name} must be a 3-D array (samples, steps, channels) for this model, "
                             f"whose input is (steps={shape[0]}, channels={shape[1]}); got shape "
                             f"{np.shape(X)}")
        if X.shape[1] == 0:
            raise ValueError(f"{name} holds sequences of length 0: the model needs {shape[0]} steps "
                             f"(input_shape={shape})")
        if tuple(X.shape[1:]) != shape:
            first = self.layers[0]
            first = getattr(first, "layer", first)  # a Bidirectional layer: the one it wraps
            if X.shape[2] != shape[1] and isinstance(first, RECURRENT):
                raise ValueError(f"{type(first).__name__}({first.in_features}, {first.units}) "
                                 f"expects {shape[1]} features per step but {name} has "
                                 f"{X.shape[2]}")
            what = f"{self.layers[0]!r} expects {shape[1]} channels" if X.shape[2] != shape[1] \
                else f"the model expects {shape[0]} steps"
            raise ValueError(f"{name} has {X.shape[1]} steps of {X.shape[2]} channels, but {what} "
                             f"(input_shape={shape})")
        flat = np.asarray(X).reshape(X.shape[0], -1)
        return _checks.array_2d(flat, name, self.plan.n_in, "the model", self.dtype)

    def _prepare(self, X, y, x_name="X", y_name="y"):
        """Checked host arrays (X, T, labels) for the model's dtype and loss."""
        X = self._inputs(X, x_name)
        if y is None:
            raise ValueError(f"{y_name} is missing: training and evaluation need targets")
        if not hasattr(y, "shape"):
            y = np.asarray(y)
        if y.ndim >= 1 and y.shape[0] != X.shape[0]:
            raise ValueError(f"{x_name} has {X.shape[0]} samples but {y_name} has {y.shape[0]}")
        T, labels = self.loss.prepare_targets(y, X.shape[0], self.plan.n_out, self.dtype, y_name)
        return X, T, labels

    def _snapshot(self):
        """The rollback buffers, allocated once per model and optimizer and reused: a fresh
        20 MB allocation per fit (a CIFAR-sized network) cost its page faults in every
        call (measured: 5-15% of a one-epoch fit)."""
        snap = self.__dict__.get("_snapshot_buffers")
        if snap is None or snap.state.shape != self.optimizer.state.shape:
            snap = self._snapshot_buffers = _Snapshot(self)
        return snap

    def _sample_weights(self, sample_weight, class_weight, n, labels, T):
        """One weight per sample, sample_weight times class_weight[class] (Keras's
        semantics), in the model's dtype; an empty array when neither is given."""
        if sample_weight is None and class_weight is None:
            return np.zeros(0, self.dtype)
        weights = np.ones(n)
        if sample_weight is not None:
            w = np.asarray(sample_weight)
            _checks.real_numbers(w, "sample_weight")
            if w.shape != (n,):
                raise ValueError(f"sample_weight must have one weight per sample, shape ({n},), got "
                                 f"shape {w.shape}")
            w = _checks.finite_as(w.astype(np.float64), "sample_weight", self.dtype)
            if w.size and w.min() < 0:
                raise ValueError(f"sample_weight must be >= 0, found {w.min():g}")
            weights *= w
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"class_weight must be a dict {{class: weight}}, got "
                                f"{type(class_weight).__name__}")
            classes = labels if labels.shape[0] else (T[:, 0] > 0.5).astype(np.int64) \
                if T.shape[1] == 1 else None
            if classes is None:
                raise ValueError("class_weight needs class labels (cross_entropy, or "
                                 "binary_cross_entropy with one output)")
            table = np.ones(int(classes.max()) + 1 if classes.size else 1)
            for c, w in class_weight.items():
                c = _checks.integer(c, "a class_weight key", minimum=0)
                w = _checks.real(w, f"class_weight[{c}]", low=0.0)
                if c < table.size:
                    table[c] = w
            weights *= table[classes]
        return weights.astype(self.dtype)

    @contextlib.contextmanager
    def _workspace(self, rows):
        """A workspace for ``rows`` rows, this caller's alone while the block runs:
        concurrent predict / evaluate calls on one model each get their own."""
        with self._workspaces_lock:
            free = self._workspaces.get(rows)
            ws = free.pop() if free else None
        if ws is None:
            ws = self._loop.workspace(rows, self.dtype)
        try:
            yield ws
        finally:
            with self._workspaces_lock:
                if rows not in self._workspaces and len(self._workspaces) >= 2:
                    self._workspaces.clear()  # keep the workspaces of at most two sizes
                free = self._workspaces.setdefault(rows, [])
                if len(free) < 2:
                    free.append(ws)

    def _upload(self, X, T, labels):
        memory = self._backend.memory
        return memory.asarray(X), memory.asarray(T), memory.asarray(labels)

    def _clip_limits(self, clip_grad_norm, clip_grad_value):
        norm = clip_grad_norm if clip_grad_norm is not None else self.optimizer.clip_grad_norm
        value = clip_grad_value if clip_grad_value is not None else self.optimizer.clip_grad_value
        return (np.inf if norm is None else norm), (np.inf if value is None else value)

    def _train_batches(self, data, order, n_rows, batch_size, first, n_iter, ws, stats, clip,
                       comm=None):
        """One call of the backend's compiled loop (data-parallel with ``comm``, a
        ``bundles.Comm``); returns the iterations completed."""
        X, T, labels, weights = data
        done = self._loop.train_batches(self, (X, T, labels, order, weights), n_rows, batch_size,
                                        first, n_iter, ws, stats, clip, None, comm)
        self.optimizer.t += int(done)
        return int(done)

    @contextlib.contextmanager
    def _exclusive_training(self, what):
        if not self._training.acquire(blocking=False):
            raise RuntimeError(f"{what} was called while fit or train_step already runs on this "
                               f"model (from a callback, or in another thread)")
        try:
            yield
        finally:
            self._training.release()

    # ---- training ------------------------------------------------------------------------------
    def fit(self, X, y, epochs=1, batch_size=32, shuffle=True, drop_last=False, validation_data=None,
            verbose=0, callbacks=None, clip_grad_norm=None, clip_grad_value=None,
            record_grad_norms="epoch", validation_split=0.0, class_weight=None, sample_weight=None,
            initial_epoch=0, distributed=None):
        """Train for ``epochs`` passes over (X, y) in batches of ``batch_size``.

        Each epoch has ceil(N / batch_size) iterations (floor with drop_last),
        each one a forward pass, a backward pass and one optimizer update from
        one batch. ``batch_size=None`` is full-batch gradient descent (one
        update per epoch), ``batch_size=1`` stochastic gradient descent.
        ``shuffle`` draws a new order of the samples every epoch from the
        model's seeded generator.

        verbose: 0 silent, 1 a progress bar per epoch (tqdm) with the running
        loss, 2 one line per epoch. callbacks: objects with any of
        on_train_begin(logs), on_epoch_begin(epoch, logs), on_epoch_end(epoch,
        logs), on_train_end(logs), or plain callables f(epoch, logs) run at each
        epoch's end (their signatures are checked before training starts);
        setting ``model.stop_training = True`` ends training after the epoch.
        clip_grad_norm / clip_grad_value override the optimizer's.
        record_grad_norms="iteration" also keeps every iteration's per-layer
        gradient norms (``History.grad_norms_per_iteration``).

        As Keras: ``validation_split`` (in [0, 1)) holds out the last fraction of
        the samples (before any shuffling) as validation data (not together with
        validation_data). ``sample_weight`` (one weight >= 0 per sample) and
        ``class_weight`` ({class: weight}, classification; the same as a sample
        weight on every sample of that class; both multiply) weight the loss and
        its gradient inside the compiled loop: a batch's loss is
        sum_i w_i l_i / (batch size). ``initial_epoch`` is the epoch to start from
        (for resuming): fit runs epochs initial_epoch, ..., epochs - 1, and
        callbacks see those numbers.

        Returns a ``History``. An iteration whose loss or gradient is NaN or
        infinite, or whose update would leave a parameter or an optimizer state
        element NaN or infinite, raises ``NonFiniteError`` naming the epoch, the
        iteration and which of the four it was; the model keeps the weights,
        optimizer state and counters from before that iteration.

        Interrupted (Ctrl-C, or any exception from inside an epoch), the model
        is rolled back to the start of the interrupted epoch: weights, optimizer
        state and step count, shuffling generator and ``epochs_trained`` all
        agree, so a later ``fit`` continues exactly as if the run had stopped
        after the last completed epoch.

        ``distributed="mpi"``: data-parallel training over the ranks of an MPI job
        (``mpiexec -n 4 python -m mpi4py train.py``; see ``nnumba.distributed``).
        Every rank passes the same arguments and data; ``batch_size`` is the global
        batch, of which each rank computes its share, and the result is the
        single-process training up to rounding. Outside MPI, or with one rank, it
        trains exactly as without it.
        """
        run = _distributed_run(distributed)  # None: alone, MPI not even imported
        if run is None:
            self.__dict__.pop("_replica_rank", None)
        with contextlib.nullcontext() if run is None else run:
            self._require_compiled("fit")
            with self._exclusive_training("fit"):
                return self._fit(X, y, epochs, batch_size, shuffle, drop_last, validation_data,
                                 verbose, callbacks, clip_grad_norm, clip_grad_value,
                                 record_grad_norms, validation_split, class_weight, sample_weight,
                                 initial_epoch, run)

    def _fit(self, X, y, epochs, batch_size, shuffle, drop_last, validation_data, verbose, callbacks,
             clip_grad_norm, clip_grad_value, record_grad_norms, validation_split, class_weight,
             sample_weight, initial_epoch, run=None):
        _check_in_dtype(self.optimizer, self.dtype)
        X, T, labels = self._prepare(X, y)
        weights = self._sample_weights(sample_weight, class_weight, X.shape[0], labels, T)
        validation_split = _checks.real(validation_split, "validation_split", low=0.0, high=1.0,
                                        high_open=True)
        validation = None
        if validation_split:
            if validation_data is not None:
                raise ValueError("give validation_data or validation_split, not both")
            cut = int(X.shape[0] * (1.0 - validation_split))  # Keras's split point
            if cut < 1 or cut >= X.shape[0]:
                raise ValueError(f"validation_split={validation_split:g} of {X.shape[0]} samples "
                                 f"leaves {cut} for training and {X.shape[0] - cut} for validation: "
                                 f"both need at least one")
            validation = (X[cut:], T[cut:] if T.shape[0] else T,
                          labels[cut:] if labels.shape[0] else labels)
            X, T, labels = X[:cut], (T[:cut] if T.shape[0] else T), \
                (labels[:cut] if labels.shape[0] else labels)
            weights = weights[:cut] if weights.shape[0] else weights
        n = X.shape[0]
        epochs = _checks.integer(epochs, "epochs", minimum=0)
        initial_epoch = _checks.integer(initial_epoch, "initial_epoch", minimum=0)
        if initial_epoch > epochs:
            raise ValueError(f"initial_epoch={initial_epoch} is after the last epoch "
                             f"(epochs={epochs}): fit trains epochs initial_epoch ... epochs - 1")
        if batch_size is None:
            batch_size = n
        batch_size = min(_checks.integer(batch_size, "batch_size", minimum=1), n)
        shuffle = _checks.boolean(shuffle, "shuffle")
        drop_last = _checks.boolean(drop_last, "drop_last")
        verbose = _checks.integer(verbose, "verbose", minimum=0)
        clip = self._clip_limits(_checks.optional_positive(clip_grad_norm, "clip_grad_norm"),
                                 _checks.optional_positive(clip_grad_value, "clip_grad_value"))
        if record_grad_norms not in ("epoch", "iteration"):
            raise ValueError(f"record_grad_norms must be 'epoch' or 'iteration', got {record_grad_norms!r}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            validation = self._prepare(*validation_data, x_name="X_val", y_name="y_val")
        callbacks = _checked_callbacks(callbacks)

        ipe = iterations_per_epoch(n, batch_size, drop_last)
        sizes = batch_sizes(n, batch_size, drop_last)
        n_rows = int(sizes.sum())
        history = History(n, batch_size, ipe, self.plan.layer_names, record_grad_norms == "iteration")
        self._check_batchnorm_rows(sizes)
        comm = None
        if run is not None:  # every rank got here, with the same arguments and data, or all raise
            run.agree(self, _distributed_facts(self, n, batch_size, epochs, initial_epoch, shuffle,
                                               drop_last, clip),
                      {"X": (X,), "y": (T, labels), "the sample weights": (weights,),
                       "the validation data": validation or (), "the layers": (self.plan.ops,
                                                                              self.plan.fops)})
            run.start_training(self)  # rank 0's weights, state and generator on every rank
            run.warn_small_batches(batch_size)
            comm, verbose = run.comm, (verbose if run.rank == 0 else 0)
        if epochs == initial_epoch:
            return history

        memory = self._backend.memory
        data = (*self._upload(X, T, labels), memory.asarray(weights))
        stats = memory.zeros((ipe, codes.STAT_NORMS + len(self.plan.layer_names)), np.float64)
        chunk = max(1, -(-ipe // PROGRESS_STEPS)) if verbose == 1 else ipe
        per_sample = self.loss.correct_per_sample(self.plan.n_out)
        identity = np.arange(n, dtype=np.int64)
        snapshot = self._snapshot()

        announce_compile(self._loop, self.dtype, verbose)
        self.stop_training = False
        for cb in callbacks:
            if callable(getattr(cb, "set_model", None)):
                cb.set_model(self)  # Keras's protocol: a callback knows its model
        _callback(callbacks, "on_train_begin", {})
        with self._workspace(batch_size) as ws:
            for epoch in range(initial_epoch, epochs):
                _callback(callbacks, "on_epoch_begin", {}, epoch)
                started = time.perf_counter()
                snapshot.take(self)
                bar = None
                try:
                    order = memory.asarray(self._shuffle_rng.permutation(n) if shuffle else identity)
                    bar = _progress(verbose, ipe, epoch, epochs)
                    for first in range(0, ipe, chunk):
                        n_iter = min(chunk, ipe - first)
                        done = self._train_batches(data, order, n_rows, batch_size, first, n_iter, ws,
                                                   stats[first:first + n_iter], clip, comm)
                        if done < n_iter:
                            self._diverged(stats, history, epoch, first + done, ipe, snapshot,
                                           lambda k: self._train_batches(data, order, n_rows,
                                                                         batch_size, 0, k, ws,
                                                                         stats[:k], clip, comm))
                        if bar is not None:
                            seen = memory.to_host(stats[:first + n_iter])
                            w = sizes[:first + n_iter]
                            bar.set_postfix(loss=f"{np.dot(w, seen[:, codes.STAT_LOSS]) / w.sum():.4f}",
                                            refresh=False)
                            bar.update(n_iter)
                    host = memory.to_host(stats)
                    logs = {"loss": np.dot(sizes, host[:, codes.STAT_LOSS]) / n_rows}
                    if self.loss.has_accuracy:
                        logs["accuracy"] = host[:, codes.STAT_CORRECT].sum() / (n_rows * per_sample)
                    if validation is not None:
                        logs.update({f"val_{k}": v for k, v in
                                     self._evaluate(*validation, EVAL_BATCH, run).items()})
                    norms = host[:, codes.STAT_NORMS:]
                    history.record_iterations(host[:, codes.STAT_LOSS], norms)
                    # (each column's sum from a contiguous copy: NumPy's mean over axis 0 of
                    # a tall, narrow array costs 25 us for 1797 iterations, this 5 us)
                    history.record_epoch(logs, np.ascontiguousarray(norms.T).sum(axis=1) / ipe)
                    self.epochs_trained += 1
                except NonFiniteError:
                    raise
                except BaseException:
                    # Ctrl-C (or anything else) inside the epoch: undo the whole epoch, so that
                    # the weights, the optimizer's state and step count, the generator and
                    # epochs_trained agree again
                    snapshot.restore(self)
                    raise
                finally:
                    if bar is not None:
                        bar.close()
                if verbose >= 2:
                    metrics = " - ".join(f"{k} {v:.4f}" for k, v in logs.items())
                    print(f"Epoch {epoch + 1}/{epochs} - {ipe} iterations - {metrics} "
                          f"({time.perf_counter() - started:.2f} s)")
                _callback(callbacks, "on_epoch_end", logs, epoch)
                if run is not None:  # the ranks' weights agree; a stop on any rank stops all
                    run.end_epoch(self, epoch)
                if self.stop_training:
                    break
        _callback(callbacks, "on_train_end", {})
        return history

    def _diverged(self, stats, history, epoch, iteration, ipe, snapshot, replay):
        """Raise NonFiniteError for the iteration ``iteration`` (of the epoch, or of
        train_step when epoch is None) that stopped the compiled loop. When its update was
        made (a parameter or the optimizer state turned non-finite), first undo it: back
        to the snapshot of the epoch's start, then replay the ``iteration`` iterations
        before it, which gives the same bits as before (the loop is deterministic)."""
        host = self._backend.memory.to_host(stats)
        status = int(host[iteration, codes.STAT_STATUS])
        loss = float(host[iteration, codes.STAT_LOSS])
        if status in (codes.STATUS_UPDATE, codes.STATUS_STATE, codes.STATUS_BUFFERS) \
                or self.plan.n_buffers:  # (the failing forward pass moved the running statistics)
            snapshot.restore(self, rng=False)
            if iteration:
                replay(iteration)
        history.record_iterations(host[:iteration, codes.STAT_LOSS], host[:iteration, codes.STAT_NORMS:])
        kind = codes.STATUS_NAMES.get(status, "loss")
        where = f"epoch {epoch + 1}, iteration {iteration + 1} of {ipe}" if epoch is not None \
            else "train_step"
        what = {
            "loss": f"the batch loss is {loss:g}",
            "gradient": f"the gradient is not finite (batch loss {loss:g})",
            "update": "its update would make a parameter NaN or infinite",
            "optimizer state": (f"its update would make the optimizer state "
                                f"({', '.join(self.optimizer.slots)}) NaN or infinite"),
            "running statistics": "it would make BatchNorm's running statistics NaN or infinite",
        }[kind]
        raise NonFiniteError(
            f"training diverged at {where}: {what}. That update was not kept: the model keeps the "
            f"weights, optimizer state and step count from before it. Try a smaller learning rate "
            f"(lr={self.optimizer.lr_at(self.optimizer.t + 1):g} at this step), clip_grad_norm, "
            f"or check the data.",
            epoch=None if epoch is None else epoch + 1, iteration=iteration + 1, loss=loss,
            history=history, kind=kind)

    def train_step(self, X_batch, y_batch):
        """One iteration on this batch: forward, backward, one optimizer update.

        Returns the batch's mean loss before the update, as a float. A NaN or
        infinite loss, gradient, update or optimizer state raises NonFiniteError
        and leaves the model as it was, as does an interruption.
        """
        self._require_compiled("train_step")
        with self._exclusive_training("train_step"):
            _check_in_dtype(self.optimizer, self.dtype)
            X, T, labels = self._prepare(X_batch, y_batch, "X_batch", "y_batch")
            n = X.shape[0]
            memory = self._backend.memory
            self._check_batchnorm_rows([n])
            stats = memory.zeros((1, codes.STAT_NORMS + len(self.plan.layer_names)), np.float64)
            order = memory.asarray(np.arange(n, dtype=np.int64))
            snapshot = self._snapshot()
            snapshot.take(self)
            with self._workspace(n) as ws:
                try:
                    data = (*self._upload(X, T, labels), memory.asarray(np.zeros(0, self.dtype)))
                    done = self._train_batches(data, order, n, n, 0, 1, ws,
                                               stats, self._clip_limits(None, None))
                except BaseException:
                    snapshot.restore(self)
                    raise
            if done == 0:
                self._diverged(stats, History(n, n, 1, self.plan.layer_names, False), None, 0, 1,
                               snapshot, None)
            return float(memory.to_host(stats)[0, codes.STAT_LOSS])

    def gradients(self, X, y):
        """Gradients of the mean loss over (X, y) with respect to each parameter,
        in ``get_weights()`` order, without updating anything."""
        host, _ = self._backward_pass(X, y, "gradients")
        return [g.copy() for g in self.plan.split(host)]

    def _backward_pass(self, X, y, caller, read=None):
        """One forward and backward pass over (X, y) in training mode, nothing updated:
        the flat host gradient and ``read(workspace)``, called while the workspace
        still holds the pass (the diagnostics read the recurrent layers' caches)."""
        self._require_compiled(caller)
        X, T, labels = self._prepare(X, y)
        x, t, lab = self._upload(X, T, labels)
        grads = self._backend.memory.zeros(self.plan.n_params, self.dtype)  # this call's own
        with self._workspace(X.shape[0]) as ws:
            self._loop.loss_and_gradients(self, grads, x, t, lab, ws, TRAIN)
            extra = read(ws) if read is not None else None
        return self._backend.memory.to_host(grads), extra

    # ---- inference -----------------------------------------------------------------------------
    def _chunks(self, n, batch_size):
        rows = min(n, EVAL_BATCH if batch_size is None else
                   _checks.integer(batch_size, "batch_size", minimum=1))
        return rows, [(a, min(a + rows, n)) for a in range(0, n, rows)]

    def _evaluate(self, X, T, labels, batch_size, run=None):
        memory, plan = self._backend.memory, self.plan
        n = X.shape[0]
        rows, chunks = self._chunks(n, batch_size)
        if run is not None:  # this rank's rows only; the sums and outputs are gathered below
            lo, hi = run.rows(n)
            rows, chunks = self._chunks(max(hi - lo, 1), batch_size)
            chunks = [(lo + a, min(lo + b, hi)) for a, b in chunks] if hi > lo else []
        x_all, t_all, l_all = self._upload(X, T, labels)
        loss_sum, correct = 0.0, 0.0
        outputs = np.empty((n, plan.n_out), self.dtype) if self.metrics else None
        with self._workspace(rows) as ws:
            for a, b in chunks:
                x = x_all[a:b]
                out = self._loop.forward(self, x, ws, EVAL)
                if outputs is not None:
                    outputs[a:b] = memory.to_host(out)
                self._loop.loss(
                    self, out,
                    t_all[a:b] if t_all.shape[0] else t_all, l_all[a:b] if l_all.shape[0] else l_all,
                    self._loop.output_gradient(x, ws), ws.result)
                result = memory.to_host(ws.result)
                loss_sum += result[0] * (b - a)
                correct += result[1]
        if run is not None:
            loss_sum, correct, outputs = run.combine(
                loss_sum, correct, None if outputs is None else outputs[lo:hi], n)
        metrics = {"loss": loss_sum / n}
        if self.loss.has_accuracy:
            metrics["accuracy"] = correct / (n * self.loss.correct_per_sample(plan.n_out))
        for name, fn in self.metrics.items():
            if name != "accuracy":
                metrics[name] = fn(outputs, T, labels, self.loss.code)
        return metrics

    def evaluate(self, X, y, batch_size=None, distributed=None):
        """{"loss": mean loss, "accuracy": fraction correct (classification losses only),
        and each metric given to ``compile``}. ``distributed="mpi"``: each rank of an MPI
        job evaluates its share of the rows (every rank passes the same X and y and holds
        the same weights), and every rank returns the results over all of them."""
        run = _distributed_run(distributed)
        with contextlib.nullcontext() if run is None else run:
            self._require_compiled("evaluate")
            X, T, labels = self._prepare(X, y)
            if run is not None:  # every rank got here with the same data and weights, or all raise
                run.agree(self, {}, {"X": (X,), "y": (T, labels),
                                     "the weights": (self._backend.memory.to_host(self._params),),
                                     "the layers": (self.plan.ops, self.plan.fops)},
                          training=False)
            return {k: float(v) for k, v in self._evaluate(X, T, labels, batch_size, run).items()}

    def predict(self, X, batch_size=None):
        """Network outputs for X: probabilities for the classification losses
        (softmax for cross_entropy, sigmoid for binary_cross_entropy), raw outputs
        for mse or before ``compile``."""
        X = self._inputs(X, "X")
        memory, plan = self._backend.memory, self.plan
        rows, chunks = self._chunks(X.shape[0], batch_size)
        x_all = memory.asarray(X)
        out = np.empty((X.shape[0], plan.n_out), self.dtype)
        with self._workspace(rows) as ws:
            for a, b in chunks:
                out[a:b] = memory.to_host(self._loop.forward(self, x_all[a:b], ws, EVAL))
        out = out if self.loss is None else self.loss.output_transform(out)
        return out.reshape((X.shape[0],) + plan.output_shape)

    def _check_batchnorm_rows(self, sizes):
        """BatchNorm's batch statistics need at least 2 values per channel (as torch)."""
        if self.plan.n_buffers and self.plan.batchnorm_buffers():  # (only BatchNorm has buffers)
            steps = self.plan.ops[self.plan.ops[:, codes.OP_KIND] == codes.OP_BATCHNORM][:, codes.OP_STEPS_IN]
            rows = int(min(sizes))
            smallest = rows * int(steps.min())
            if smallest < 2:
                raise ValueError(f"BatchNorm needs at least 2 values per channel in training, but a "
                                 f"batch of {rows} sample{'s' if rows != 1 else ''} gives "
                                 f"{smallest}: use batch_size >= 2, or drop_last=True when the last "
                                 f"batch would hold one sample")

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path):
        """Write the model (architecture, weights, optimizer state, counters and the
        shuffling generator's state) to one .npz file, atomically. A model trained with
        ``distributed="mpi"`` is written by rank 0 only (every rank holds the same
        model): on the other ranks save does nothing."""
        if self.__dict__.get("_replica_rank", 0):
            return
        from .persistence import save_model

        save_model(self, path)

    # ---- pickle and copy, in memory --------------------------------------------------------------
    def __getstate__(self):
        """What pickle and copy.deepcopy keep: the bytes of the model's file (see
        ``save``), so a copy trains on exactly as the original would. A pickle is for
        memory (joblib, multiprocessing, scikit-learn's clone and grid search):
        ``nn.load`` never unpickles a file."""
        from .persistence import to_bytes

        if self._training.locked():
            raise RuntimeError("a model cannot be copied or pickled while fit runs on it")
        return {"nnumba_file": to_bytes(self)}

    def __setstate__(self, state):
        from .persistence import from_bytes

        built = from_bytes(state["nnumba_file"])
        self.__dict__.update(built.__dict__)
        if self.optimizer is not None:
            self.optimizer._model = self


def _distributed_run(distributed):
    """``nnumba.distributed.Run`` for a data-parallel call, or None (training alone: no
    distributed, or no MPI, or one rank), without importing MPI for None."""
    if distributed is None or distributed is False:
        return None
    from . import distributed as dist

    world = dist.world(distributed)
    return None if world is None else dist.Run(world)


def _distributed_facts(model, n, batch_size, epochs, initial_epoch, shuffle, drop_last, clip):
    """What every rank of a distributed fit must agree on, besides the arrays."""
    opt = model.optimizer
    return {"the backend and dtype": f"{model.backend} {model.dtype.name}",
            "the number of samples": int(n), "batch_size": int(batch_size),
            "epochs": f"{initial_epoch} to {epochs}",
            "shuffle and drop_last": f"{shuffle} {drop_last}",
            "the loss": model.loss.name, "the optimizer": f"{type(opt).__name__} "
            f"{sorted((k, str(v)) for k, v in opt.hyperparameters().items())}",
            "the clipping": str(clip)}


_IN_DTYPE_PASSED = set()  # (dtype, numeric hyperparameters) that _check_in_dtype passed


def _check_in_dtype(optimizer, dtype):
    """Refuse hyperparameters that are finite as Python floats but not in the model's
    dtype (lr=1e39 is inf in float32), and eps that a float32 model would round to 0.
    (Remembers what passed: the casts cost more than a tiny model's epoch can spare.)"""
    numbers = tuple((name, value) for name, value in optimizer.hyperparameters().items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool))
    key = (dtype.char, numbers)
    if key in _IN_DTYPE_PASSED:
        return
    for name, value in numbers:
        with np.errstate(over="ignore", under="ignore"):
            cast = dtype.type(value)
        if not math.isfinite(cast):
            raise ValueError(f"{name}={value:g} is not finite in {dtype.name}, the model's dtype "
                             f"(its largest number is {np.finfo(dtype).max:.3g})")
        if name == "eps" and cast == 0:
            raise ValueError(f"eps={value:g} is 0 in {dtype.name}, the model's dtype, and eps "
                             f"divides: use at least {np.finfo(dtype).tiny:.3g}")
    if len(_IN_DTYPE_PASSED) >= 1024:
        _IN_DTYPE_PASSED.clear()
    _IN_DTYPE_PASSED.add(key)


_HOOKS = {"on_train_begin": 1, "on_epoch_begin": 2, "on_epoch_end": 2, "on_train_end": 1}


def _checked_callbacks(callbacks):
    """The callbacks as a list, each hook checked to accept the arguments fit will pass
    (logs, or epoch and logs), so a wrong signature fails before any training."""
    callbacks = list(callbacks) if callbacks is not None else []
    for cb in callbacks:
        hooks = [m for m in _HOOKS if callable(getattr(cb, m, None))]
        if not hooks and not callable(cb):
            raise TypeError(f"callbacks must be callables f(epoch, logs) or objects with "
                            f"on_epoch_end(epoch, logs) ..., got {type(cb).__name__}")
        for method, fn in ([(m, getattr(cb, m)) for m in hooks] or [("on_epoch_end", cb)]):
            try:
                signature = inspect.signature(fn)
            except (TypeError, ValueError):
                continue  # a builtin without a signature: trust it
            try:
                signature.bind(*range(_HOOKS[method]))
            except TypeError as exc:
                args = "logs" if _HOOKS[method] == 1 else "epoch, logs"
                raise TypeError(f"callback {cb!r}: {method} must accept ({args}), but its "
                                f"signature is {signature}: {exc}") from None
    return callbacks


def _callback(callbacks, method, logs, epoch=None):
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is None and method == "on_epoch_end" and callable(cb):
            fn = cb
        if fn is not None:
            fn(logs) if epoch is None else fn(epoch, logs)


def _progress(verbose, total, epoch, epochs):
    if verbose != 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"Epoch {epoch + 1}/{epochs}", unit="it", leave=True)
