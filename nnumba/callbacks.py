"""Callbacks for ``fit``, with the names and semantics of ``keras.callbacks`` (Keras 3).

``fit`` calls ``set_model(model)``, then ``on_train_begin(logs)``, and for each
epoch ``on_epoch_begin(epoch, logs)`` and ``on_epoch_end(epoch, logs)``, then
``on_train_end(logs)``. ``epoch`` is the index ``fit`` passes: from 0 (from
``initial_epoch`` where ``fit`` resumes with one, as Keras); ``logs`` at an epoch's end holds that epoch's "loss" (and "accuracy", and the
"val_" metrics with validation data). By the time ``on_epoch_end`` runs, the
epoch is complete: ``model.epochs_trained``, the optimizer's step count and the
history already include it, so a callback that raises leaves a model that a
later ``fit`` continues consistently. Setting ``model.stop_training = True``
ends ``fit`` after the current epoch. When ``fit`` raises (NonFiniteError,
Ctrl-C, an exception from a callback), ``on_train_end`` is not called.

The callbacks that watch a metric (EarlyStopping, ModelCheckpoint with
save_best_only, ReduceLROnPlateau) take ``monitor`` (a key of the logs) and
``mode``: "min", "max" or "auto", which maximises a metric whose name contains
"acc" (accuracy), "auc" or "r2" and minimises any other (a loss). When the
monitored key is missing from the logs they warn (``warnings.warn``, naming
the keys the logs have) and skip that epoch, as Keras does. Their options
after the first argument are keyword-only: Keras' positional order differs
between them.
"""
import csv
import inspect
import json
import math
import numbers
import os
import string
import sys
import warnings

import numpy as np

from . import _checks

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "CSVLogger", "ReduceLROnPlateau",
           "LearningRateScheduler", "TerminateOnNaN"]


class Callback:
    """Base class: ``set_model`` keeps the model as ``self.model``; the four hooks do nothing."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        """Called once before the first epoch; a subclass overrides what it needs."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called before each epoch (counted from 0)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after each epoch, with its logs (loss, metrics, val_ metrics)."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch."""


# ---- shared helpers ----------------------------------------------------------------------------
_MAXIMISED = ("acc", "auc", "r2")  # "acc" covers "accuracy" and "val_accuracy"


def _direction(monitor, mode):
    """'min' or 'max' for ``monitor`` under ``mode`` ('auto' decides from the name)."""
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor must be a non-empty string (a key of the logs), got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if any(key in name for key in _MAXIMISED) else "min"


def _monitored(logs, monitor, who):
    """logs[monitor] as a float, or None (with a warning) when the logs lack it."""
    logs = logs or {}
    value = logs.get(monitor)
    if value is None:
        warnings.warn(f"{who} is conditioned on the metric {monitor!r}, which is not in the logs; "
                      f"the logs have: {', '.join(map(repr, logs)) or 'nothing'}", stacklevel=3)
        return None
    return float(value)


def _verbose(verbose):
    return _checks.integer(verbose, "verbose", minimum=0)


def _current_lr(model, who):
    """model.optimizer.lr, refused (TypeError) when it is a schedule, which sets the rate
    of every step itself (Keras refuses to set a schedule's learning rate too)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise RuntimeError(f"{who} needs a compiled model (model.optimizer is None)")
    lr = optimizer.lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{who} sets model.optimizer.lr, but the optimizer's lr is {lr!r}, a "
                        f"schedule that sets the rate of every step itself: give the optimizer "
                        f"a number, or leave {who} out")
    return float(lr)


def _set_lr(model, lr, who):
    """model.optimizer.lr = lr, refusing a learning rate that is not a finite number > 0,
    also in the model's dtype (1e39 is inf in float32)."""
    _current_lr(model, who)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{who}: the learning rate must be a real number, got "
                        f"{type(lr).__name__} {lr!r}")
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{who}: the learning rate must be finite and > 0, got {lr!r}")
    dtype = getattr(model, "dtype", None)
    if dtype is not None:
        with np.errstate(over="ignore", under="ignore"):
            cast = np.dtype(dtype).type(lr)
        if not (np.isfinite(cast) and cast > 0):
            raise ValueError(f"{who}: the learning rate {lr!r} is {float(cast)!r} in "
                             f"{np.dtype(dtype).name}, the model's dtype")
    model.optimizer.lr = lr
    return lr


# ---- EarlyStopping -----------------------------------------------------------------------------
class EarlyStopping(Callback):
    """Stop training when the monitored metric has stopped improving (keras.callbacks.EarlyStopping).

    A value counts as an improvement when it beats the best so far by more than
    min_delta: current + min_delta < best (mode min), current - min_delta > best
    (mode max); NaN never improves. After each monitored epoch ``wait`` counts the
    epochs since the last improvement; when wait >= patience (and it is not the
    first epoch) training stops: ``model.stop_training = True`` and
    ``stopped_epoch`` is that epoch. With ``baseline``, an improvement resets the
    wait only if it also beats the baseline, so a run that never beats it stops
    after ``patience`` epochs. The first ``start_from_epoch`` epochs are not
    monitored.

    restore_best_weights: the weights of the best epoch (``best_epoch``; the first
    monitored epoch if none improved) are copied at that epoch's end with
    ``model.get_weights()`` and put back with ``model.set_weights`` in
    ``on_train_end`` -- whether or not training stopped early, as Keras 3 does
    (Keras 2 restored only when it stopped; a fit that raises does not reach
    ``on_train_end`` and keeps its last weights).

    Attributes: ``best`` (the best value, +-inf before any), ``best_epoch``,
    ``stopped_epoch`` (0 when training did not stop), ``wait``, ``best_weights``.
    They are reset by ``on_train_begin``, so one instance can serve several fits
    (Keras 3 keeps ``best`` from the previous fit; here every fit starts afresh).
    """

    def __init__(self, monitor="val_loss", *, patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False, baseline=None, start_from_epoch=0, verbose=0):
        self.mode = _direction(monitor, mode)
        self.monitor = monitor
        self.patience = _checks.integer(patience, "patience", minimum=0)
        self.min_delta = _checks.real(min_delta, "min_delta", low=0.0)
        self.restore_best_weights = _checks.boolean(restore_best_weights, "restore_best_weights")
        self.baseline = None if baseline is None else _checks.real(baseline, "baseline")
        self.start_from_epoch = _checks.integer(start_from_epoch, "start_from_epoch", minimum=0)
        self.verbose = _verbose(verbose)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights = None

    def _is_improvement(self, value, reference):
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()  # until one improves, the first is the best
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


# ---- ModelCheckpoint ---------------------------------------------------------------------------
SIDECAR_FORMAT = "nnumba.ModelCheckpoint"


class ModelCheckpoint(Callback):
    """Save the model at the end of every epoch, or of every improving one
    (keras.callbacks.ModelCheckpoint), with ``model.save`` (an atomic write).

    ``path`` may hold format fields: ``{epoch}`` (epoch + 1, as Keras: the file of
    the first epoch is number 1) and any key of the logs, e.g.
    ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``. Its folder is created if missing.

    save_best_only: save only when the monitored value improves on the best so
    far (strictly better; NaN and inf never count). The best value is kept in a
    small JSON file next to the path, ``<path>.json`` (``path`` as given, with its
    format fields unfilled), written atomically after each save, and read by
    ``on_train_begin``: a new ModelCheckpoint on the same path, in a later run,
    continues from the best value saved, and does not overwrite a better
    checkpoint with a worse one. A sidecar written for another monitor or mode,
    or whose checkpoint file no longer exists, is ignored with a warning; a
    damaged one raises ``ValueError``. Where the logs lack the monitored key the
    epoch is skipped with a warning (Keras 3 saves in that case).

    save_freq: "epoch" only (``fit`` has no per-batch hooks; Keras' integer
    save_freq counts batches).

    Attributes: ``best`` (None before any value), ``best_epoch``, ``last_saved``
    (the path last written, or None).
    """

    def __init__(self, path, monitor="val_loss", *, save_best_only=False, mode="auto",
                 save_freq="epoch", verbose=0):
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("path must not be empty")
        try:
            list(string.Formatter().parse(self.path))  # unbalanced braces raise here, not later
        except ValueError as exc:
            raise ValueError(f"path {self.path!r} is not a valid format string ({exc}); write a "
                             f"literal brace as {{{{ or }}}}") from None
        self.mode = _direction(monitor, mode)
        self.monitor = monitor
        self.save_best_only = _checks.boolean(save_best_only, "save_best_only")
        if save_freq != "epoch":
            raise ValueError(f"save_freq must be 'epoch' (fit has no per-batch hooks), "
                             f"got {save_freq!r}")
        self.save_freq = save_freq
        self.verbose = _verbose(verbose)
        self.sidecar = self.path + ".json"
        self.best = None
        self.best_epoch = None
        self.last_saved = None
        self._begun = False

    def _is_improvement(self, value):
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_begin(self, logs=None):
        self._begun = True
        if self.save_best_only:
            self._load_sidecar()

    def on_train_end(self, logs=None):
        self._begun = False

    def _format(self, epoch, logs):
        try:
            return self.path.format(epoch=epoch + 1, **(logs or {}))
        except KeyError as exc:
            raise KeyError(f"ModelCheckpoint path {self.path!r} names the field {exc}, which the "
                           f"logs do not have: available are epoch, "
                           f"{', '.join(logs or {}) or '(no logs)'}") from None
        except (ValueError, IndexError) as exc:
            raise ValueError(f"ModelCheckpoint cannot fill in the path {self.path!r}: {exc}") from None

    def on_epoch_end(self, epoch, logs=None):
        if not self._begun:  # hooks driven without on_train_begin: read the record first
            self.on_train_begin()
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if current is None:
                return
            if not self._is_improvement(current):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best}")
                return
            filepath = self._format(epoch, logs)
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to {current}, "
                      f"saving the model to {filepath}")
            self._save(filepath)
            self.best, self.best_epoch = current, epoch
            self._write_sidecar(filepath, epoch)
        else:
            filepath = self._format(epoch, logs)
            if self.verbose:
                print(f"Epoch {epoch + 1}: saving the model to {filepath}")
            self._save(filepath)

    def _save(self, filepath):
        folder = os.path.dirname(filepath)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.model.save(filepath)
        self.last_saved = filepath

    # ---- the sidecar: {"format", "monitor", "mode", "best", "epoch", "epochs_trained", "path"}
    def _write_sidecar(self, filepath, epoch):
        folder = os.path.dirname(self.sidecar)
        if folder:
            os.makedirs(folder, exist_ok=True)
        record = {"format": SIDECAR_FORMAT, "version": 1, "monitor": self.monitor,
                  "mode": self.mode, "best": self.best, "epoch": int(epoch),
                  "epochs_trained": int(getattr(self.model, "epochs_trained", epoch + 1)),
                  "path": os.fspath(filepath)}
        _write_atomically(self.sidecar, json.dumps(record, allow_nan=False, indent=1) + "\n")

    def _load_sidecar(self):
        self.best, self.best_epoch = None, None
        try:
            with open(self.sidecar, encoding="utf-8") as f:
                text = f.read(1 << 20)
        except FileNotFoundError:
            return
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
                raise ValueError("it is not a ModelCheckpoint record")
            best, path = record["best"], record["path"]
            if isinstance(best, bool) or not isinstance(best, (int, float)) or not math.isfinite(best):
                raise ValueError(f"its best value {best!r} is not a finite number")
            if not isinstance(path, str) or not isinstance(record["epoch"], int):
                raise ValueError("its path or epoch has the wrong type")
        except (ValueError, KeyError) as exc:
            raise ValueError(f"ModelCheckpoint: the record of the best checkpoint, {self.sidecar}, "
                             f"is damaged ({exc}); delete it to start afresh") from None
        if record.get("monitor") != self.monitor or record.get("mode") != self.mode:
            warnings.warn(f"ModelCheckpoint: {self.sidecar} records the best "
                          f"{record.get('monitor')!r} (mode {record.get('mode')!r}), not "
                          f"{self.monitor!r} (mode {self.mode!r}); ignoring it", stacklevel=3)
            return
        if not os.path.exists(path):
            warnings.warn(f"ModelCheckpoint: {self.sidecar} records the best checkpoint {path}, "
                          f"which no longer exists; ignoring it", stacklevel=3)
            return
        self.best, self.best_epoch = float(best), record["epoch"]


def _write_atomically(path, text):
    """``text`` written to ``path`` as models are saved (``persistence.write_atomically``)."""
    from .persistence import write_atomically

    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


# ---- CSVLogger ---------------------------------------------------------------------------------
class CSVLogger(Callback):
    """One row per epoch in a CSV file (keras.callbacks.CSVLogger).

    The header is "epoch" then the keys of the first epoch's logs, in their order
    (Keras sorts them); each row is the epoch index (from 0, as passed to the
    callbacks) and the values, floats written as Python's repr (round-trip exact:
    0.1, nan, inf), "NA" for a key a later epoch lacks (keys it adds are not
    written). The file is opened, appended to and closed at every epoch's end, so
    each row is on disk (flushed) once the epoch is over, also when the fit
    raises later.

    append=False truncates the file at ``on_train_begin``; append=True keeps it
    and, when it already has a header, writes the columns of that header.
    """

    def __init__(self, path, separator=",", append=False):
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ValueError(f"separator must be one character (not a quote or a line break), "
                             f"got {separator!r}")
        self.separator = separator
        self.append = _checks.boolean(append, "append")
        self.keys = None
        self._begun = False

    def on_train_begin(self, logs=None):
        self._begun = True
        self.keys = None
        self._has_header = False
        if not self.append:
            open(self.path, "w", encoding="utf-8").close()  # a fresh, empty log
            return
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
        except FileNotFoundError:
            return
        if header:
            if header[0] != "epoch":
                raise ValueError(f"CSVLogger: {self.path} exists and its first line {header!r} is not "
                                 f"a CSVLogger header (epoch, ...); use append=False or another path")
            self.keys, self._has_header = header[1:], True

    def on_epoch_end(self, epoch, logs=None):
        if not self._begun:
            self.on_train_begin()
        logs = logs or {}
        if self.keys is None:
            self.keys = list(logs)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if not self._has_header:
                writer.writerow(["epoch", *self.keys])
                self._has_header = True
            writer.writerow([epoch, *(_cell(logs[k]) if k in logs else "NA" for k in self.keys)])
            f.flush()

    def on_train_end(self, logs=None):
        self._begun = False


def _cell(value):
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return str(value)


# ---- ReduceLROnPlateau -------------------------------------------------------------------------
class ReduceLROnPlateau(Callback):
    """Multiply ``model.optimizer.lr`` by ``factor`` when the monitored metric has
    stopped improving for ``patience`` epochs (keras.callbacks.ReduceLROnPlateau).

    An improvement: current < best - min_delta (mode min), current > best +
    min_delta (mode max). At each monitored epoch's end: during a cooldown its
    counter goes down by one and the wait is 0; an improvement sets best and
    resets the wait; otherwise, outside a cooldown, wait += 1, and at wait >=
    patience, if lr > min_lr, lr <- max(lr * factor, min_lr), the cooldown counter
    is set to ``cooldown`` and wait to 0. The new rate applies from the next epoch.
    As Keras, it adds "learning_rate" (the rate the epoch trained with) to the
    logs, where later callbacks see it. State is reset by ``on_train_begin``, which
    refuses (``TypeError``) an optimizer whose lr is a step schedule.
    """

    def __init__(self, monitor="val_loss", *, factor=0.1, patience=10, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, verbose=0):
        self.mode = _direction(monitor, mode)
        self.monitor = monitor
        self.factor = _checks.real(factor, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = _checks.integer(patience, "patience", minimum=0)
        self.min_delta = _checks.real(min_delta, "min_delta", low=0.0)
        self.cooldown = _checks.integer(cooldown, "cooldown", minimum=0)
        self.min_lr = _checks.real(min_lr, "min_lr", low=0.0)
        self.verbose = _verbose(verbose)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _is_improvement(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()
        _current_lr(self.model, "ReduceLROnPlateau")  # a scheduled optimizer: refused up front

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model, "ReduceLROnPlateau")
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = _current_lr(self.model, "ReduceLROnPlateau")
                if old > self.min_lr:
                    new = _set_lr(self.model, max(old * self.factor, self.min_lr), "ReduceLROnPlateau")
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing the learning "
                              f"rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


# ---- LearningRateScheduler ---------------------------------------------------------------------
class LearningRateScheduler(Callback):
    """Set ``model.optimizer.lr`` at the start of every epoch from a function of the
    epoch (keras.callbacks.LearningRateScheduler).

    schedule: ``schedule(epoch, lr) -> new lr`` (epoch from 0 in this fit, lr the
    current rate), or ``schedule(epoch) -> lr``, which Keras also accepts; the
    form is read from its signature, once. Or a step schedule of
    ``nnumba.schedules`` (StepLR(0.1, 30), ...), then applied per epoch: epoch e
    trains with ``schedule(e + 1)``, as a torch scheduler stepped once per epoch.
    The rate returned must be a real number, finite and > 0 (also in the model's
    dtype), else ``TypeError`` / ``ValueError`` naming the epoch. As Keras, it
    adds "learning_rate" to the logs at the epoch's end. An optimizer whose lr is
    a step schedule is refused (``TypeError`` at ``on_train_begin``): the two would
    fight over the rate.
    """

    def __init__(self, schedule, verbose=0):
        from .schedules import Schedule

        if not callable(schedule):
            raise TypeError(f"schedule must be a function schedule(epoch, lr) or a step schedule, "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = _verbose(verbose)
        if isinstance(schedule, Schedule):
            self._call = lambda epoch, lr: schedule(epoch + 1)
        else:
            self._call = _epoch_function(schedule)

    def on_train_begin(self, logs=None):
        _current_lr(self.model, "LearningRateScheduler")  # a scheduled optimizer: refused up front

    def on_epoch_begin(self, epoch, logs=None):
        old = _current_lr(self.model, "LearningRateScheduler")
        value = self._call(epoch, old)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"LearningRateScheduler: schedule returned {type(value).__name__} "
                            f"{value!r} for epoch {epoch}; it must return a real number")
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"LearningRateScheduler: schedule returned the learning rate "
                             f"{float(value)!r} for epoch {epoch}; it must be finite and > 0")
        lr = _set_lr(self.model, value, f"LearningRateScheduler (epoch {epoch})")
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting the learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model, "LearningRateScheduler")


def _epoch_function(schedule):
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):
        return schedule  # a builtin without a signature: Keras' form, (epoch, lr)
    for args, call in (((0, 0.1), schedule), ((0,), lambda epoch, lr: schedule(epoch))):
        try:
            signature.bind(*args)
            return call
        except TypeError:
            continue
    raise TypeError(f"schedule must accept (epoch, lr) or (epoch), but its signature is {signature}")


# ---- TerminateOnNaN ----------------------------------------------------------------------------
class TerminateOnNaN(Callback):
    """Stop training after an epoch whose logs hold a value that is NaN or infinite
    (keras.callbacks.TerminateOnNaN checks the loss of each batch; fit already raises
    NonFiniteError for a non-finite training loss, so this one watches every logged
    number, the validation metrics too). Sets ``model.stop_training = True``,
    ``stopped_epoch`` and ``bad_keys``, and prints a line, as Keras does.
    """

    def __init__(self):
        self.stopped_epoch = None
        self.bad_keys = []

    def on_train_begin(self, logs=None):
        self.stopped_epoch, self.bad_keys = None, []

    def on_epoch_end(self, epoch, logs=None):
        bad = [k for k, v in (logs or {}).items()
               if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
               and not math.isfinite(float(v))]
        if bad:
            self.stopped_epoch, self.bad_keys = epoch, bad
            values = ", ".join(f"{k} = {float(logs[k])}" for k in bad)
            print(f"Epoch {epoch + 1}: invalid {values}, terminating training", file=sys.stdout)
            self.model.stop_training = True
