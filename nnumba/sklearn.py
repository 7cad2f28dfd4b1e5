"""scikit-learn estimators around ``nnumba.Sequential``: ``NNClassifier`` and ``NNRegressor``.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from nnumba.sklearn import NNClassifier

    clf = make_pipeline(StandardScaler(),
                        NNClassifier(hidden_layer_sizes=(32,), epochs=30, random_state=0))
    clf.fit(X_train, y_train).score(X_test, y_test)      # accuracy

They follow scikit-learn's conventions (those of ``MLPClassifier`` and
``MLPRegressor`` where a choice had to be made): ``__init__`` stores its
arguments and checks nothing; ``fit`` checks them, validates the data with
``sklearn.utils.validation``, builds and trains a fresh network and sets the
fitted attributes (trailing underscore); they work in ``Pipeline``,
``GridSearchCV`` (also with ``n_jobs > 1``), ``cross_validate``, ``clone`` and
pass ``sklearn.utils.estimator_checks.check_estimator``.

The network
-----------
With ``layers=None`` the network is

    Dense(n_features, h_1), act, Dense(h_1, h_2), act, ..., Dense(h_k, n_outputs)

for ``hidden_layer_sizes=(h_1, ..., h_k)`` (``()`` gives a linear model:
logistic / softmax regression for the classifier, least squares for the
regressor), ``act`` one of "relu", "tanh", "logistic" (or "sigmoid"),
"identity", "leaky_relu". Otherwise ``layers(n_features, n_outputs)`` is called
and must return a list of nnumba layers mapping ``n_features`` inputs to
``n_outputs`` raw outputs (logits); the losses apply softmax / sigmoid.

Training minimises the mean loss over mini-batches with ``optimizer``
(a name, built as ``nn.optim.<Name>(lr=lr, weight_decay=weight_decay)``, or an
``nn.optim`` object, whose own hyperparameters are then used and ``lr`` /
``weight_decay`` ignored; the object is never trained itself: each fit gets a
fresh optimizer of its type and hyperparameters). ``weight_decay`` is
nnumba's coupled L2 penalty, g <- g + lambda w on the weights (for "adamw" the
decoupled w <- (1 - lr lambda) w). sklearn's MLP ``alpha`` is the same
penalty written on each batch's loss, + (alpha / 2B) sum ||W||^2 for a batch
of B samples, whose gradient adds (alpha / B) W: lambda = alpha / batch_size.

Classifier targets: labels are encoded with ``LabelEncoder`` (``classes_``).
With ``loss="cross_entropy"`` (default) the network has one output per class,
also for two classes, and ``predict_proba`` is the softmax
p_k = exp(z_k) / sum_j exp(z_j). With ``loss="binary_cross_entropy"`` a binary
problem has one output, p = sigmoid(z) is the probability of ``classes_[1]``
and the rows are [1 - p, p]; more classes get one sigmoid output per class
(one-vs-rest targets) and the rows are normalised, p_k / sum_j p_j.
``predict`` is ``classes_[argmax_k p_k]``.

Early stopping
--------------
``early_stopping=patience`` (an int >= 1) needs ``validation_split > 0``: that
fraction of the training data is held out (stratified by class for the
classifier where possible, drawn with ``random_state``), ``val_loss`` is
computed after every epoch, and training stops after ``patience`` epochs
without a new lowest val_loss; the weights of the best epoch are then put
back, as sklearn's MLP does (its optimizer state and counters stay those of
the last epoch). Without early stopping, ``validation_split`` only records
``val_loss_curve_``.

Continuing
----------
``warm_start=True`` makes ``fit`` continue ``model_`` (its weights, optimizer
state and shuffling generator) for ``epochs`` more epochs; the architecture
parameters, ``backend``, ``dtype`` and ``optimizer`` are then those the model
was built with, while ``lr`` and ``weight_decay`` (for a named optimizer) are
set on its optimizer, so a warm start can lower the learning rate.
``partial_fit(X, y)`` trains one epoch on the given data (no validation split,
no early stopping, as sklearn's MLP) and always continues ``model_`` if there
is one; the classifier needs ``classes`` on the first call. ``n_iter_`` and
``loss_curve_`` count every epoch the current ``model_`` was trained for;
``history_`` is the ``nn.History`` of the last call.

Determinism: with ``random_state`` an int, the initial weights, the
shuffling, the dropout masks and the validation split are fixed, so two fits
on the same backend give the same predictions, bit for bit.

Persistence: a fitted estimator pickles (joblib.dump / joblib.load, and the
worker processes of ``n_jobs``); the network travels as the bytes of its
``.npz`` file. ``model_.save(path)`` / ``nn.load(path)`` stores the network
alone in a file that is never unpickled, and is safe to read from anywhere;
a joblib or pickle file of an estimator is a pickle, which can run arbitrary
code when loaded: load those only from sources you trust.

``class_weight`` (classifier) is a dict keyed by the labels of y, or
"balanced" (n_samples / (n_classes * count of the class), as scikit-learn); it
becomes one weight per training sample (``compute_sample_weight``) passed to
``Sequential.fit(sample_weight=...)``, where a batch's loss is
sum_i w_i l_i / B. A model whose ``fit`` takes no ``sample_weight`` makes any
value other than None raise ``NotImplementedError``. Validation losses are
unweighted.
"""
import inspect
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6: the method of BaseEstimator
    def _validate_data(estimator, X="no_validation", y="no_validation", **kwargs):
        return estimator._validate_data(X, y, **kwargs)

from . import losses as _losses
from . import optim as _optim
from .layers import Dense, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .model import Sequential

__all__ = ["NNClassifier", "NNRegressor"]

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "sigmoid": Sigmoid,
               "identity": Identity, "leaky_relu": LeakyReLU}

_FLOATS = [np.float64, np.float32]


def _model_takes_sample_weight():
    return "sample_weight" in inspect.signature(Sequential.fit).parameters


class _EarlyStopping:
    """Stop after ``patience`` epochs without a new lowest val_loss; keep the best weights.

    An nnumba callback (set_model, on_epoch_end); written here rather than taken
    from elsewhere so that the estimators depend on the model's protocol only."""

    def __init__(self, patience):
        self.patience = patience
        self.best = np.inf
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        self.model = None

    def set_model(self, model):
        self.model = model

    def on_epoch_end(self, epoch, logs):
        value = logs["val_loss"]
        if value < self.best:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True


class _NNBase(BaseEstimator):
    """What the classifier and the regressor share: parameter checks, building the
    network, one training call, the fitted attributes. Subclasses say how targets
    become the model's outputs (``_default_loss``, ``_check_loss``)."""

    _default_loss = None

    # ---- parameters -------------------------------------------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got "
                            f"{type(self.hidden_layer_sizes).__name__} {self.hidden_layer_sizes!r}") \
                from None
        for h in sizes:
            if isinstance(h, bool) or not isinstance(h, numbers.Integral):
                raise TypeError(f"hidden_layer_sizes must hold ints, got {h!r} in {sizes!r}")
            if h < 1:
                raise ValueError(f"hidden_layer_sizes must hold ints >= 1, got {int(h)} in {sizes!r}")
        return tuple(int(h) for h in sizes)

    def _loss_object(self):
        loss = self._default_loss if self.loss is None else self.loss
        loss = _losses.get_loss(loss)  # ValueError / TypeError for unknown names and types
        self._check_loss(loss)
        return loss

    def _check_params(self):
        """Every parameter nnumba does not check itself, before anything is built."""
        if self.layers is None:
            self._hidden_sizes()
            if self.activation not in ACTIVATIONS:
                raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, "
                                 f"got {self.activation!r}")
        elif not callable(self.layers):
            raise TypeError(f"layers must be None or a callable layers(n_features, n_outputs) "
                            f"returning a list of nnumba layers, got {type(self.layers).__name__}")
        self._loss_object()
        self._new_optimizer()  # checks the name, lr and weight_decay
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Integral):
            raise TypeError(f"epochs must be an integer, got {type(self.epochs).__name__} "
                            f"{self.epochs!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        v = self.validation_split
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"validation_split must be a real number, got {type(v).__name__} {v!r}")
        if not 0.0 <= v < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {v!r}")
        p = self.early_stopping
        if p is not None:
            if isinstance(p, bool) or not isinstance(p, numbers.Integral):
                raise TypeError(f"early_stopping must be None or an int >= 1 (the patience in "
                                f"epochs), got {type(p).__name__} {p!r}")
            if p < 1:
                raise ValueError(f"early_stopping must be None or an int >= 1 (the patience in "
                                 f"epochs), got {p}")
            if v == 0:
                raise ValueError(f"early_stopping={p} monitors val_loss and needs "
                                 f"validation_split > 0, got validation_split={v!r}")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be True or False, got {self.warm_start!r}")
        rs = self.random_state
        if not (rs is None or isinstance(rs, np.random.RandomState)
                or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool))):
            raise TypeError(f"random_state must be None, an int or a numpy RandomState, got "
                            f"{type(rs).__name__} {rs!r}")
        if isinstance(rs, numbers.Integral) and not 0 <= rs < 2 ** 32:
            raise ValueError(f"random_state must be in [0, 2**32), got {rs}")

    def _seed(self):
        """An int seed for the network and the validation split (sklearn's convention:
        an int is used as is, a RandomState or None draws one)."""
        rs = self.random_state
        if isinstance(rs, numbers.Integral):
            return int(rs)
        return int(check_random_state(rs).randint(np.iinfo(np.int32).max))

    def _new_optimizer(self):
        opt = self.optimizer
        if isinstance(opt, str):
            name = opt.lower()
            if name not in _optim.OPTIMIZERS:
                raise ValueError(f"unknown optimizer {opt!r}: expected one of "
                                 f"{', '.join(map(repr, _optim.OPTIMIZERS))} or an nn.optim object")
            return _optim.OPTIMIZERS[name](lr=self.lr, weight_decay=self.weight_decay)
        if isinstance(opt, _optim.Optimizer):
            # a fresh optimizer of the same kind: the given object may train another model
            return type(opt)(**opt.hyperparameters())
        raise TypeError(f"optimizer must be a name ({', '.join(map(repr, _optim.OPTIMIZERS))}) or "
                        f"an nn.optim object, got {type(opt).__name__}")

    # ---- the network --------------------------------------------------------------------------
    def _build(self, n_features, n_outputs, seed):
        if self.layers is None:
            act = ACTIVATIONS[self.activation]
            layers, width = [], n_features
            for h in self._hidden_sizes():
                layers += [Dense(width, h), act()]
                width = h
            layers.append(Dense(width, n_outputs))
        else:
            layers = self.layers(n_features, n_outputs)
            if not isinstance(layers, (list, tuple)) or not layers:
                raise TypeError(f"layers({n_features}, {n_outputs}) must return a non-empty list of "
                                f"nnumba layers, got {layers!r}")
            layers = list(layers)
        # a model of Dense layers and activations reads its input size off the first Dense
        # (and runs on the MLP loop); one that starts otherwise is told it
        input_shape = None if isinstance(layers[0], Dense) else (n_features,)
        model = Sequential(layers, backend=self.backend, dtype=self.dtype, seed=seed,
                           input_shape=input_shape)
        if model.plan.n_in != n_features or tuple(model.plan.output_shape) != (n_outputs,):
            raise ValueError(f"the network must map {n_features} features to {n_outputs} outputs, "
                             f"but it maps {model.plan.n_in} inputs to "
                             f"{'x'.join(map(str, model.plan.output_shape))} outputs"
                             + ("" if self.layers is None else
                                f" (layers({n_features}, {n_outputs}) built it)"))
        model.compile(loss=self._loss_object(), optimizer=self._new_optimizer())
        return model

    def _refresh_optimizer(self, model):
        """A warm start with a named optimizer takes the current lr and weight_decay."""
        if isinstance(self.optimizer, str):
            checked = self._new_optimizer()  # validates lr and weight_decay
            if type(checked) is type(model.optimizer):
                model.optimizer.lr = checked.lr
                model.optimizer.weight_decay = checked.weight_decay

    def _train(self, X, target, stratify, n_outputs, epochs, continuing, partial,
               sample_weight=None):
        """Build (or continue) and train the network; returns (model, history).
        Nothing of the estimator is changed here, so a failure leaves it as it was
        (a continued model_ follows nnumba's rules: rolled back to the failing epoch's start)."""
        seed = self._seed()
        if continuing:
            model = self.model_
            self._refresh_optimizer(model)
        else:
            model = self._build(X.shape[1], n_outputs, seed)
        validation, callbacks, stopper = None, [], None
        if not partial and self.validation_split > 0:
            X, target, sample_weight, validation = self._split(X, target, sample_weight, stratify,
                                                               seed)
            if self.early_stopping is not None:
                stopper = _EarlyStopping(int(self.early_stopping))
                callbacks.append(stopper)
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        history = model.fit(X, target, epochs=epochs, batch_size=self.batch_size,
                            shuffle=self.shuffle, validation_data=validation,
                            verbose=self.verbose, callbacks=callbacks, **weights)
        if stopper is not None and stopper.best_weights is not None:
            model.set_weights(stopper.best_weights)
        return model, history

    def _split(self, X, target, sample_weight, stratify, seed):
        n = X.shape[0]
        n_val = int(np.ceil(self.validation_split * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_split={self.validation_split!r} of {n} samples leaves "
                             f"{n - n_val} for training and {n_val} for validation; both need >= 1")
        index = np.arange(n)
        try:
            train, val = train_test_split(index, test_size=n_val, random_state=seed,
                                          stratify=stratify)
        except ValueError:  # a class too small to stratify: a plain random split
            train, val = train_test_split(index, test_size=n_val, random_state=seed)
        weights = None if sample_weight is None else sample_weight[train]
        return X[train], target[train], weights, (X[val], target[val])

    def _record(self, model, history, continuing):
        """Set the fitted attributes from one training call."""
        curve = list(history["loss"])
        val = list(history["val_loss"]) if "val_loss" in history else None
        if continuing and hasattr(self, "loss_curve_"):
            self.loss_curve_ = self.loss_curve_ + curve
            if val is not None:
                self.val_loss_curve_ = (self.val_loss_curve_ or []) + val
        else:
            self.loss_curve_ = curve
            self.val_loss_curve_ = val
        self.model_ = model
        self.history_ = history
        self.n_iter_ = len(self.loss_curve_)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None

    def _validate_X(self, X):
        check_is_fitted(self)
        return _validate_data(self, X, reset=False, dtype=_FLOATS)


class NNClassifier(ClassifierMixin, _NNBase):
    """A neural-network classifier: an ``nnumba.Sequential`` trained on (X, y).

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of ints, default (64,)
        Widths of the hidden Dense layers (used when ``layers`` is None).
    activation : {"relu", "tanh", "logistic", "sigmoid", "identity", "leaky_relu"}, default "relu"
        The activation after each hidden Dense layer.
    layers : callable or None, default None
        ``layers(n_features, n_outputs)`` returning a list of nnumba layers, for
        any architecture; None builds Dense / activation from the two above.
    loss : str, nn.losses object or None, default None
        "cross_entropy" (None; softmax over one output per class) or
        "binary_cross_entropy" (sigmoid; one output for two classes).
    optimizer : str or nn.optim object, default "adam"
        A name ("sgd", "momentum", "rmsprop", "adam", "adamw"), built with ``lr``
        and ``weight_decay``; or an object, whose own hyperparameters are used.
    lr : float, default 1e-3
    weight_decay : float, default 0.0
        Coupled L2 penalty lambda: g <- g + lambda W (decoupled for "adamw").
    epochs : int, default 50
    batch_size : int or None, default 32
        None is full-batch gradient descent; above N it is taken as N.
    shuffle : bool, default True
    validation_split : float in [0, 1), default 0.0
        Fraction held out for ``val_loss`` (stratified by class where possible).
    early_stopping : int or None, default None
        Patience in epochs on val_loss; needs validation_split > 0; restores the
        best epoch's weights.
    class_weight : dict {label: weight}, "balanced" or None, default None
        Weights each training sample's loss by its class's weight (through
        ``Sequential.fit(sample_weight=...)``; NotImplementedError where it has none).
    backend : {"cpu", "numpy", "cuda"}, default "cpu"
    dtype : {"float32", "float64"}, default "float32"
    random_state : int, RandomState or None, default None
    warm_start : bool, default False
    verbose : int, default 0
        Passed to ``Sequential.fit`` (1 a progress bar, 2 one line per epoch).

    Attributes
    ----------
    classes_ : the class labels, sorted (LabelEncoder)
    n_features_in_, feature_names_in_ (with a DataFrame) : as scikit-learn
    n_outputs_ : the network's outputs (len(classes_), or 1 for binary_cross_entropy on 2 classes)
    model_ : the trained ``nnumba.Sequential``
    history_ : the ``nn.History`` of the last fit / partial_fit
    loss_curve_ : per-epoch training loss of every epoch of model_; ``loss_`` its last value
    val_loss_curve_ : per-epoch val_loss with validation_split > 0, else None
    n_iter_ : epochs model_ was trained for (len(loss_curve_))
    """

    _default_loss = "cross_entropy"

    def __init__(self, hidden_layer_sizes=(64,), activation="relu", layers=None, loss=None,
                 optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=50, batch_size=32,
                 shuffle=True, validation_split=0.0, early_stopping=None, class_weight=None,
                 backend="cpu", dtype="float32", random_state=None, warm_start=False, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.layers = layers
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.validation_split = validation_split
        self.early_stopping = early_stopping
        self.class_weight = class_weight
        self.backend = backend
        self.dtype = dtype
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    def _check_loss(self, loss):
        if not isinstance(loss, (_losses.CrossEntropy, _losses.BinaryCrossEntropy)):
            raise ValueError(f"loss must be 'cross_entropy' or 'binary_cross_entropy' for "
                             f"NNClassifier, got {self.loss!r}")

    def _check_params(self):
        super()._check_params()
        if self.class_weight is not None and not _model_takes_sample_weight():
            raise NotImplementedError(
                f"class_weight={self.class_weight!r} needs sample weights, which "
                f"nnumba.Sequential.fit does not take yet; use class_weight=None (or resample "
                f"the classes)")

    # ---- targets ------------------------------------------------------------------------------
    def _n_outputs(self, loss, n_classes):
        return 1 if isinstance(loss, _losses.BinaryCrossEntropy) and n_classes == 2 else n_classes

    def _target(self, codes, loss, n_classes):
        """What the model trains on: labels for cross_entropy, 0/1 targets for BCE."""
        if isinstance(loss, _losses.CrossEntropy):
            return codes.astype(np.int64)
        if n_classes == 2:
            return codes.astype(np.float64)
        return np.eye(n_classes)[codes]

    def _encode(self, y, encoder):
        unknown = np.setdiff1d(np.unique(y), encoder.classes_)
        if unknown.size:
            raise ValueError(f"y holds {unknown.size} label{'s' if unknown.size > 1 else ''} not "
                             f"in classes_ {encoder.classes_.tolist()}: "
                             f"{unknown[:5].tolist()}{' ...' if unknown.size > 5 else ''}")
        return encoder.transform(y)

    def _fit(self, X, y, epochs, continuing, partial, classes=None):
        loss = self._loss_object()
        if continuing:
            encoder = self._label_encoder
        else:
            encoder = LabelEncoder().fit(y if classes is None else classes)
            if len(encoder.classes_) < 2:
                raise ValueError(f"NNClassifier needs at least 2 classes in y, got 1 class "
                                 f"({encoder.classes_[0]!r})")
        n_classes = len(encoder.classes_)
        codes = self._encode(y, encoder)
        target = self._target(codes, loss, n_classes)
        sample_weight = None
        if self.class_weight is not None:  # only reached where Sequential.fit takes sample_weight
            sample_weight = compute_sample_weight(self.class_weight, y)
        model, history = self._train(X, target, codes, self._n_outputs(loss, n_classes), epochs,
                                     continuing, partial, sample_weight)
        self._label_encoder = encoder
        self.classes_ = encoder.classes_
        self.n_outputs_ = model.plan.n_out
        self._record(model, history, continuing)
        return self

    def fit(self, X, y):
        """Train a network on (X, y) (or continue model_ with warm_start) for ``epochs``
        epochs. Returns self."""
        self._check_params()
        continuing = bool(self.warm_start) and hasattr(self, "model_")
        X, y = _validate_data(self, X, y, reset=not continuing, dtype=_FLOATS)
        check_classification_targets(y)
        return self._fit(X, y, self.epochs, continuing, partial=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch on (X, y), continuing model_ if there is one. ``classes`` (every
        label the classifier will see) is required on the first call, as in
        scikit-learn; later calls may omit it or must repeat the same classes."""
        self._check_params()
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit "
                             "(all the labels the classifier will ever see)")
        if not first and classes is not None:
            if not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"classes={np.unique(classes).tolist()} is not the classes_ of "
                                 f"the earlier calls, {self.classes_.tolist()}")
        X, y = _validate_data(self, X, y, reset=first, dtype=_FLOATS)
        check_classification_targets(y)
        if first:
            classes = np.unique(classes)
            check_classification_targets(classes)
        return self._fit(X, y, 1, continuing=not first, partial=True,
                         classes=classes if first else None)

    # ---- prediction -----------------------------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes) in classes_ order, float64; each
        row sums to 1."""
        X = self._validate_X(X)
        p = np.asarray(self.model_.predict(X), dtype=np.float64).reshape(X.shape[0], -1)
        if p.shape[1] == 1:  # binary cross-entropy: the probability of classes_[1]
            return np.hstack([1.0 - p, p])
        total = p.sum(axis=1, keepdims=True)
        flat = total[:, 0] == 0  # every sigmoid underflowed: no preference
        p[flat] = 1.0
        total[flat] = p.shape[1]
        return p / total

    def predict_log_proba(self, X):
        """log(predict_proba(X)); -inf where a probability is 0."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each row, a label of classes_."""
        proba = self.predict_proba(X)  # first: it checks that the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]


class NNRegressor(RegressorMixin, _NNBase):
    """A neural-network regressor: an ``nnumba.Sequential`` trained on (X, y).

    The parameters are those of ``NNClassifier`` without ``class_weight``; ``loss``
    is "mse" by default (None), or "binary_cross_entropy" for targets in [0, 1]
    (predictions are then sigmoid(z)). ``y`` may be (n_samples,) or
    (n_samples, n_targets); ``predict`` returns the same shape, as float64.

    Attributes: n_features_in_, n_outputs_, model_, history_, loss_curve_, loss_,
    val_loss_curve_, n_iter_, as for NNClassifier. ``score`` is R^2 (averaged over
    targets).
    """

    _default_loss = "mse"

    def __init__(self, hidden_layer_sizes=(64,), activation="relu", layers=None, loss=None,
                 optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=50, batch_size=32,
                 shuffle=True, validation_split=0.0, early_stopping=None, backend="cpu",
                 dtype="float32", random_state=None, warm_start=False, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.layers = layers
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.validation_split = validation_split
        self.early_stopping = early_stopping
        self.backend = backend
        self.dtype = dtype
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    def _check_loss(self, loss):
        if isinstance(loss, _losses.CrossEntropy):
            raise ValueError(f"loss must be 'mse' or 'binary_cross_entropy' for NNRegressor "
                             f"(cross_entropy is for class labels: use NNClassifier), "
                             f"got {self.loss!r}")

    def _fit(self, X, y, epochs, continuing, partial):
        y = np.asarray(y, dtype=np.float64)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if continuing and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} target{'s' if n_outputs != 1 else ''}, but the "
                             f"fitted network has {self.n_outputs_} outputs")
        model, history = self._train(X, y, None, n_outputs, epochs, continuing, partial)
        self._y_ndim = y.ndim
        self.n_outputs_ = n_outputs
        self._record(model, history, continuing)
        return self

    def fit(self, X, y):
        """Train a network on (X, y) (or continue model_ with warm_start) for ``epochs``
        epochs. Returns self."""
        self._check_params()
        continuing = bool(self.warm_start) and hasattr(self, "model_")
        X, y = _validate_data(self, X, y, reset=not continuing, dtype=_FLOATS, y_numeric=True,
                              multi_output=True)
        return self._fit(X, y, self.epochs, continuing, partial=False)

    def partial_fit(self, X, y):
        """One epoch on (X, y), continuing model_ if there is one. Returns self."""
        self._check_params()
        first = not hasattr(self, "model_")
        X, y = _validate_data(self, X, y, reset=first, dtype=_FLOATS, y_numeric=True,
                              multi_output=True)
        return self._fit(X, y, 1, continuing=not first, partial=True)

    def predict(self, X):
        """The network's outputs, float64: (n_samples,) when fit saw 1-D y, else
        (n_samples, n_targets)."""
        X = self._validate_X(X)
        out = np.asarray(self.model_.predict(X), dtype=np.float64).reshape(X.shape[0], -1)
        return out[:, 0] if self._y_ndim == 1 else out
