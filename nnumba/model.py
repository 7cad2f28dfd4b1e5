"""Sequential: a feed-forward network and its training loop.

The model owns the flat parameter buffer (and one of the same layout for the
gradients) on its backend, plus workspaces for the activations. Everything
numeric happens in the backend's kernels; this module checks arguments,
allocates, batches the epochs and keeps the records.
"""
import time

import numpy as np

from . import _checks
from .backends import codes, get_backend
from .data import batch_sizes, iterations_per_epoch
from .errors import NonFiniteError
from .history import History
from .losses import get_loss
from .optim import get_optimizer
from .plan import Plan

DTYPES = ("float32", "float64")
# rows per call of evaluate and predict when no batch_size is given
EVAL_BATCH = 1024
# progress-bar refreshes per epoch (each one returns from the compiled loop once)
PROGRESS_STEPS = 20


def _dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    return np.dtype(name)


class _Workspace:
    """Per-batch buffers for ``rows`` rows: the gathered batch and targets, the
    block activations and their gradients, and a small result vector."""

    def __init__(self, memory, plan, rows, dtype):
        self.rows = rows
        self.xb = memory.zeros((rows, plan.n_in), dtype)
        self.tb = memory.zeros((rows, plan.n_out), dtype)
        self.lb = memory.zeros(rows, np.int64)
        self.acts = memory.zeros(rows * plan.width, dtype)
        self.deltas = memory.zeros(rows * plan.width, dtype)
        self.result = memory.zeros(2, np.float64)


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
        Seeds the initial weights and the shuffling (from two independent
        streams): same seed and backend, bit-identical run. None draws fresh
        entropy; ``model.seed`` then tells which.
    """

    def __init__(self, layers, backend="cpu", dtype="float32", seed=None):
        plan = Plan(layers)
        self.dtype = _dtype(dtype)
        self._backend = get_backend(backend)
        if seed is not None:
            seed = _checks.integer(seed, "seed", minimum=0)
        sequence = np.random.SeedSequence(seed)
        self.seed = sequence.entropy
        init_sequence, shuffle_sequence = sequence.spawn(2)
        self.layers = list(layers)
        self.plan = plan
        self._shuffle_rng = np.random.default_rng(shuffle_sequence)

        init_rng = np.random.default_rng(init_sequence)
        host = np.zeros(plan.n_params, np.float64)
        weights = plan.split(host)
        k = 0
        for dense, init_name in zip(plan.dense, plan.default_inits):
            weights[k][...] = dense.initial_weights(init_name, init_rng)
            k += 2 if dense.bias else 1
        memory = self._backend.memory
        self._params = memory.to_backend(host.astype(self.dtype))
        self._grads = memory.zeros(plan.n_params, self.dtype)
        self._workspaces = {}
        self.loss = None
        self.optimizer = None
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
        """A table of the layers, their output widths and parameter counts, as a string."""
        lines = [f"{'layer':<20}{'output':>8}{'params':>10}"]
        width = self.plan.n_in
        for layer in self.layers:
            n, name = 0, repr(layer)
            if hasattr(layer, "out_features"):
                width = layer.out_features
                n = layer.in_features * layer.out_features + (layer.out_features if layer.bias else 0)
                name = f"Dense({layer.in_features}, {layer.out_features})"
            lines.append(f"{name:<20}{width:>8}{n:>10}")
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
            _checks.finite(w.astype(np.float64), f"weights for {name}")
            view[...] = w
        self._backend.memory.copy_from_host(self._params, host)

    # ---- compile -----------------------------------------------------------------------------
    def compile(self, loss, optimizer="rmsprop"):
        """Choose the loss ("mse", "binary_cross_entropy", "cross_entropy" or an
        nn.losses object) and the optimizer (an nn.optim object or its name;
        default "rmsprop", as Keras)."""
        loss = get_loss(loss)
        optimizer = get_optimizer(optimizer)
        if loss.code == codes.CROSS_ENTROPY and self.plan.n_out < 2:
            raise ValueError("cross_entropy needs at least 2 outputs, but the model has 1; "
                             "use binary_cross_entropy for a single output")
        owner = getattr(optimizer, "_model", None)
        if owner is not None and owner is not self:
            raise ValueError("this optimizer already trains another model; give each model its own")
        optimizer.bind(self.plan.n_params, self.dtype, self._backend)
        optimizer._model = self
        self.loss, self.optimizer = loss, optimizer

    def _require_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"{what} needs a loss and an optimizer: call model.compile(loss=..., "
                               f"optimizer=...) first")

    # ---- argument preparation ------------------------------------------------------------------
    def _prepare(self, X, y, x_name="X", y_name="y"):
        """Checked host arrays (X, T, labels) for the model's dtype and loss."""
        X = _checks.array_2d(X, x_name, self.plan.n_in, "the first Dense layer", self.dtype)
        if y is None:
            raise ValueError(f"{y_name} is missing: training and evaluation need targets")
        if not hasattr(y, "shape"):
            y = np.asarray(y)
        if y.ndim >= 1 and y.shape[0] != X.shape[0]:
            raise ValueError(f"{x_name} has {X.shape[0]} samples but {y_name} has {y.shape[0]}")
        T, labels = self.loss.prepare_targets(y, X.shape[0], self.plan.n_out, self.dtype, y_name)
        return X, T, labels

    def _workspace(self, rows):
        ws = self._workspaces.get(rows)
        if ws is None:
            if len(self._workspaces) >= 2:
                self._workspaces.clear()
            ws = self._workspaces[rows] = _Workspace(self._backend.memory, self.plan, rows, self.dtype)
        return ws

    def _upload(self, X, T, labels):
        memory = self._backend.memory
        return memory.asarray(X), memory.asarray(T), memory.asarray(labels)

    def _clip_limits(self, clip_grad_norm, clip_grad_value):
        norm = clip_grad_norm if clip_grad_norm is not None else self.optimizer.clip_grad_norm
        value = clip_grad_value if clip_grad_value is not None else self.optimizer.clip_grad_value
        return (np.inf if norm is None else norm), (np.inf if value is None else value)

    def _train_batches(self, data, order, n_rows, batch_size, first, n_iter, ws, stats, clip):
        """One call of the backend's compiled loop; returns the iterations completed."""
        X, T, labels = data
        plan, opt = self.plan, self.optimizer
        done = self._backend.network.train_batches(
            plan.blocks, plan.alphas, self._params, self._grads, self.loss.code, X, T, labels, order,
            n_rows, batch_size, first, n_iter, opt.code, opt.state, opt.hp_vector(), opt.t, clip[0],
            clip[1], ws.xb, ws.tb, ws.lb, ws.acts, ws.deltas, stats)
        opt.t += int(done)
        return int(done)

    # ---- training ------------------------------------------------------------------------------
    def fit(self, X, y, epochs=1, batch_size=32, shuffle=True, drop_last=False, validation_data=None,
            verbose=0, callbacks=None, clip_grad_norm=None, clip_grad_value=None,
            record_grad_norms="epoch"):
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
        epoch's end; setting ``model.stop_training = True`` ends training after
        the epoch. clip_grad_norm / clip_grad_value override the optimizer's.
        record_grad_norms="iteration" also keeps every iteration's per-layer
        gradient norms (``History.grad_norms_per_iteration``).

        Returns a ``History``. A NaN or infinite loss or gradient raises
        ``NonFiniteError`` naming the epoch and iteration; the model keeps the
        weights from before that iteration.
        """
        self._require_compiled("fit")
        X, T, labels = self._prepare(X, y)
        n = X.shape[0]
        epochs = _checks.integer(epochs, "epochs", minimum=0)
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
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            validation = self._prepare(*validation_data, x_name="X_val", y_name="y_val")
        callbacks = list(callbacks) if callbacks is not None else []
        for cb in callbacks:
            if not (callable(cb) or any(hasattr(cb, m) for m in
                                        ("on_epoch_end", "on_epoch_begin", "on_train_begin", "on_train_end"))):
                raise TypeError(f"callbacks must be callables or objects with on_epoch_end(...), "
                                f"got {type(cb).__name__}")

        ipe = iterations_per_epoch(n, batch_size, drop_last)
        sizes = batch_sizes(n, batch_size, drop_last)
        n_rows = int(sizes.sum())
        history = History(n, batch_size, ipe, self.plan.dense_names, record_grad_norms == "iteration")
        if epochs == 0:
            return history

        memory = self._backend.memory
        data = self._upload(X, T, labels)
        ws = self._workspace(batch_size)
        stats = memory.zeros((ipe, codes.STAT_NORMS + len(self.plan.dense)), np.float64)
        chunk = max(1, -(-ipe // PROGRESS_STEPS)) if verbose == 1 else ipe
        per_sample = self.loss.correct_per_sample(self.plan.n_out)
        identity = np.arange(n, dtype=np.int64)

        self.stop_training = False
        _callback(callbacks, "on_train_begin", {})
        for epoch in range(epochs):
            _callback(callbacks, "on_epoch_begin", {}, epoch)
            started = time.perf_counter()
            order = memory.asarray(self._shuffle_rng.permutation(n) if shuffle else identity)
            bar = _progress(verbose, ipe, epoch, epochs)
            for first in range(0, ipe, chunk):
                n_iter = min(chunk, ipe - first)
                done = self._train_batches(data, order, n_rows, batch_size, first, n_iter, ws,
                                           stats[first:first + n_iter], clip)
                if done < n_iter:
                    if bar is not None:
                        bar.close()
                    self._diverged(stats, history, epoch, first + done, ipe)
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
                logs.update({f"val_{k}": v for k, v in self._evaluate(*validation, EVAL_BATCH).items()})
            norms = host[:, codes.STAT_NORMS:]
            history.record_iterations(host[:, codes.STAT_LOSS], norms)
            history.record_epoch(logs, norms.mean(axis=0))
            self.epochs_trained += 1
            if bar is not None:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
                bar.close()
            elif verbose >= 2:
                metrics = " - ".join(f"{k} {v:.4f}" for k, v in logs.items())
                print(f"Epoch {epoch + 1}/{epochs} - {ipe} iterations - {metrics} "
                      f"({time.perf_counter() - started:.2f} s)")
            _callback(callbacks, "on_epoch_end", logs, epoch)
            if self.stop_training:
                break
        _callback(callbacks, "on_train_end", {})
        return history

    def _diverged(self, stats, history, epoch, iteration, ipe):
        host = self._backend.memory.to_host(stats)
        history.record_iterations(host[:iteration, codes.STAT_LOSS], host[:iteration, codes.STAT_NORMS:])
        loss = float(host[iteration, codes.STAT_LOSS])
        where = f"epoch {epoch + 1}, iteration {iteration + 1} of {ipe}" if epoch is not None \
            else "train_step"
        raise NonFiniteError(
            f"training diverged at {where}: the batch loss is {loss:g} or the gradient is not finite. "
            f"That update was not made: the model keeps the weights from before it. "
            f"Try a smaller learning rate (lr={self.optimizer.lr:g}), clip_grad_norm, or check the data.",
            epoch=None if epoch is None else epoch + 1, iteration=iteration + 1, loss=loss,
            history=history)

    def train_step(self, X_batch, y_batch):
        """One iteration on this batch: forward, backward, one optimizer update.

        Returns the batch's mean loss before the update, as a float.
        """
        self._require_compiled("train_step")
        X, T, labels = self._prepare(X_batch, y_batch, "X_batch", "y_batch")
        n = X.shape[0]
        memory = self._backend.memory
        stats = memory.zeros((1, codes.STAT_NORMS + len(self.plan.dense)), np.float64)
        order = memory.asarray(np.arange(n, dtype=np.int64))
        done = self._train_batches(self._upload(X, T, labels), order, n, n, 0, 1, self._workspace(n),
                                   stats, self._clip_limits(None, None))
        if done == 0:
            self._diverged(stats, History(n, n, 1, self.plan.dense_names, False), None, 0, 1)
        return float(memory.to_host(stats)[0, codes.STAT_LOSS])

    def gradients(self, X, y):
        """Gradients of the mean loss over (X, y) with respect to each parameter,
        in ``get_weights()`` order, without updating anything."""
        self._require_compiled("gradients")
        X, T, labels = self._prepare(X, y)
        ws = self._workspace(X.shape[0])
        x, t, lab = self._upload(X, T, labels)
        self._backend.network.loss_and_gradients(
            self.plan.blocks, self.plan.alphas, self._params, self._grads, self.loss.code, x, t, lab,
            ws.acts, ws.deltas, ws.result)
        host = self._backend.memory.to_host(self._grads)
        return [g.copy() for g in self.plan.split(host)]

    # ---- inference -----------------------------------------------------------------------------
    def _chunks(self, n, batch_size):
        rows = min(n, EVAL_BATCH if batch_size is None else
                   _checks.integer(batch_size, "batch_size", minimum=1))
        return rows, [(a, min(a + rows, n)) for a in range(0, n, rows)]

    def _evaluate(self, X, T, labels, batch_size):
        network, memory, plan = self._backend.network, self._backend.memory, self.plan
        n = X.shape[0]
        rows, chunks = self._chunks(n, batch_size)
        ws = self._workspace(rows)
        x_all, t_all, l_all = self._upload(X, T, labels)
        last = plan.blocks.shape[0] - 1
        loss_sum, correct = 0.0, 0.0
        for a, b in chunks:
            x = x_all[a:b]
            network.forward(plan.blocks, plan.alphas, self._params, x, ws.acts)
            self._backend.losses.loss_forward_backward(
                self.loss.code, network.block_view(plan.blocks, last, ws.acts, rows, b - a),
                t_all[a:b] if t_all.shape[0] else t_all, l_all[a:b] if l_all.shape[0] else l_all,
                network.block_view(plan.blocks, last, ws.deltas, rows, b - a), ws.result)
            result = memory.to_host(ws.result)
            loss_sum += result[0] * (b - a)
            correct += result[1]
        metrics = {"loss": loss_sum / n}
        if self.loss.has_accuracy:
            metrics["accuracy"] = correct / (n * self.loss.correct_per_sample(plan.n_out))
        return metrics

    def evaluate(self, X, y, batch_size=None):
        """{"loss": mean loss, "accuracy": fraction correct (classification losses only)}."""
        self._require_compiled("evaluate")
        X, T, labels = self._prepare(X, y)
        return {k: float(v) for k, v in self._evaluate(X, T, labels, batch_size).items()}

    def predict(self, X, batch_size=None):
        """Network outputs for X: probabilities for the classification losses
        (softmax for cross_entropy, sigmoid for binary_cross_entropy), raw outputs
        for mse or before ``compile``."""
        X = _checks.array_2d(X, "X", self.plan.n_in, "the first Dense layer", self.dtype)
        network, memory, plan = self._backend.network, self._backend.memory, self.plan
        rows, chunks = self._chunks(X.shape[0], batch_size)
        ws = self._workspace(rows)
        x_all = memory.asarray(X)
        out = np.empty((X.shape[0], plan.n_out), self.dtype)
        last = plan.blocks.shape[0] - 1
        for a, b in chunks:
            network.forward(plan.blocks, plan.alphas, self._params, x_all[a:b], ws.acts)
            out[a:b] = memory.to_host(network.block_view(plan.blocks, last, ws.acts, rows, b - a))
        return out if self.loss is None else self.loss.output_transform(out)

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path):
        """Write the model (architecture, weights, optimizer state, counters and the
        shuffling generator's state) to one .npz file, atomically."""
        from .persistence import save_model

        save_model(self, path)


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
