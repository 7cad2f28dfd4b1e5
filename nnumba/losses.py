"""Loss objects, each the negative log-likelihood of a noise model.

=========================  ==========================  ==============================
name                       likelihood                  torch equivalent
=========================  ==========================  ==============================
"mse"                      Gaussian noise, fixed var.  MSELoss()
"binary_cross_entropy"     Bernoulli (sigmoid inside)  BCEWithLogitsLoss()
"cross_entropy"            categorical (softmax inside) CrossEntropyLoss()
=========================  ==========================  ==============================

Maximising the likelihood prod_n f(y_n | x_n, theta) is minimising the mean
negative log-likelihood -(1/N) sum_n log f(y_n | x_n, theta). With Gaussian
noise of fixed variance this is, up to constants, the mean squared error; with
a Bernoulli outcome of probability sigmoid(z) it is binary cross-entropy
-(1/N) sum [y log yhat + (1 - y) log(1 - yhat)]; with a categorical outcome of
probabilities softmax(z) it is the cross-entropy H(p, q) = -sum_x p(x) log q(x)
between the one-hot labels p and the predictions q. All are means over the
batch (PyTorch's reduction="mean"); the kernels and their exact formulas are in
``nnumba.backends.reference.losses``.

Each loss object offers ``value(output, target)`` and
``gradient(output, target)`` on NumPy arrays (computed by the reference
kernels), and knows how to check and prepare targets for training.
"""
from abc import ABC, abstractmethod

import numpy as np

from . import _checks
from .backends import codes
from .backends.reference import activations as _ref_activations
from .backends.reference import losses as _ref_losses


class Loss(ABC):
    """Base class: a loss computed from the network's raw outputs."""

    name = None
    code = None
    has_accuracy = False

    def __repr__(self):
        return f"{type(self).__name__}()"

    @abstractmethod
    def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
        """Check y and return (T, labels): float targets (n, n_out) for mse and BCE, or
        int64 labels (n,) for cross-entropy; the other is an empty placeholder."""

    def correct_per_sample(self, n_out):
        """How many predictions one sample contributes to the accuracy count."""
        return 1

    def output_transform(self, z):
        """Map raw outputs to what ``predict`` returns (probabilities for classification)."""
        return z

    def _evaluate(self, output, target):
        output = _checks.array_2d(output, "output")
        if not np.issubdtype(output.dtype, np.floating):
            output = output.astype(np.float64)
        T, labels = self.prepare_targets(target, output.shape[0], output.shape[1], output.dtype,
                                         name="target")
        dout = np.empty_like(output)
        result = np.zeros(2)
        _ref_losses.loss_forward_backward(self.code, output, T, labels, dout, result)
        return result, dout

    def value(self, output, target):
        """The mean loss of raw network outputs against targets, as a float."""
        return float(self._evaluate(output, target)[0][0])

    def gradient(self, output, target):
        """dL/d(output), an array shaped like output."""
        return self._evaluate(output, target)[1]


def _float_targets(y, n_samples, n_out, dtype, name):
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {y.dtype}")
    if y.ndim == 1 and n_out == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_out:
        raise ValueError(f"{name} must have shape ({y.shape[0] if y.ndim else '?'}, {n_out}) to match "
                         f"the model's {n_out} outputs, got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but {name} has {y.shape[0]}")
    y = np.ascontiguousarray(y, dtype=dtype)
    _checks.finite(y, name)
    return y


class MSE(Loss):
    """Mean squared error: L = mean over all elements of (output - target)^2."""

    name = "mse"
    code = codes.MSE

    def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
        return _float_targets(y, n_samples, n_out, dtype, name), np.zeros(0, np.int64)


class MAE(Loss):
    """Mean absolute error: L = mean over all elements of |output - target| (torch's
    L1Loss, Keras's MAE); gradient sign(output - target) / (n m), 0 at a tie."""

    name = "mae"
    code = codes.MAE

    def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
        return _float_targets(y, n_samples, n_out, dtype, name), np.zeros(0, np.int64)


class Huber(Loss):
    """Huber loss with delta = 1 (torch's HuberLoss, Keras's Huber): per element
    d^2 / 2 for |d| <= 1, |d| - 1/2 beyond, d = output - target; mean over all
    elements. Quadratic near the target, linear (robust to outliers) far from it."""

    name = "huber"
    code = codes.HUBER

    def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
        return _float_targets(y, n_samples, n_out, dtype, name), np.zeros(0, np.int64)


class BinaryCrossEntropy(Loss):
    """Sigmoid + binary cross-entropy from logits; targets in [0, 1] (usually {0, 1})."""

    name = "binary_cross_entropy"
    code = codes.BINARY_CROSS_ENTROPY
    has_accuracy = True

    def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
        T = _float_targets(y, n_samples, n_out, dtype, name)
        if T.size and (T.min() < 0 or T.max() > 1):
            raise ValueError(f"{name} must be in [0, 1] for binary_cross_entropy, "
                             f"found {T.min():g} .. {T.max():g}")
        return T, np.zeros(0, np.int64)

    def correct_per_sample(self, n_out):
        return n_out

    def output_transform(self, z):
        return _ref_activations.sigmoid(z)


class CrossEntropy(Loss):
    """Softmax + negative log-likelihood from logits; integer class labels."""

    name = "cross_entropy"
    code = codes.CROSS_ENTROPY
    has_accuracy = True

    def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of integer class labels, got shape {y.shape}")
        if y.shape[0] != n_samples:
            raise ValueError(f"X has {n_samples} samples but {name} has {y.shape[0]}")
        if y.dtype.kind == "f":
            _checks.finite(y, name)
            if np.any(y != np.round(y)):
                raise ValueError(f"{name} must hold integer class labels, found {y[y != np.round(y)][0]!r}")
        elif y.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
        # range-checked before the conversion: 1e20 would wrap around in int64
        if y.size and (y.min() < 0 or y.max() >= n_out):
            bad = np.flatnonzero((y < 0) | (y >= n_out))
            if bad.size:
                raise ValueError(f"{name}: labels must be in [0, {n_out}), found {y[bad[0]]} "
                                 f"at index {bad[0]}")
        labels = np.ascontiguousarray(y, dtype=np.int64)
        return np.zeros((0, n_out), dtype), labels

    def output_transform(self, z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


LOSSES = {cls.name: cls for cls in (MSE, MAE, Huber, BinaryCrossEntropy, CrossEntropy)}


class CustomLoss(Loss):
    """Base of the losses that ``loss`` makes from Python functions: L is the mean over all
    n k elements of value(output, target) (times each row's sample weight), and
    dL/d(output) = gradient(output, target) / (n k), like mse; float targets of the
    output's shape. Compiled into the fused loop (``backends.<b>.rules.compile_loss``)."""

    code = codes.CUSTOM_LOSS
    value_function = gradient_function = output_function = None

    def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
        return _float_targets(y, n_samples, n_out, dtype, name), np.zeros(0, np.int64)

    def output_transform(self, z):
        if self.output_function is None:
            return z
        from .backends.reference.rules import _elementwise

        return _elementwise(self.output_function, z).astype(z.dtype)

    def _evaluate(self, output, target):
        from .backends.reference.rules import compile_loss

        output = _checks.array_2d(output, "output")
        if not np.issubdtype(output.dtype, np.floating):
            output = output.astype(np.float64)
        T, _ = self.prepare_targets(target, output.shape[0], output.shape[1], output.dtype,
                                    name="target")
        dout, result = np.empty_like(output), np.zeros(2)
        compile_loss(self.value_function, self.gradient_function, output.dtype)(
            output, T, np.zeros(0, output.dtype), dout, result)
        return result, dout


CUSTOM_LOSSES = {}  # name -> CustomLoss subclass: how nn.load finds them


def loss(value, gradient, output=None, name=None, check=True):
    """A new loss class from element-wise functions of one output o and its target t, e.g.
    the log-cosh loss::

        def log_cosh(o, t):
            return np.log(np.cosh(o - t))

        def log_cosh_grad(o, t):
            return np.tanh(o - t)

        LogCosh = nn.losses.loss(log_cosh, log_cosh_grad)
        model.compile(LogCosh(), "adam")

    L = mean over the batch's n k elements of value(o, t) (weighted per row by
    sample_weight, as the built-ins), dL/do = gradient(o, t) / (n k). ``output``:
    the transform ``predict`` applies to each raw output (e.g. a sigmoid, or exp for
    a Poisson rate), none by default. ``check``: compare the gradient with central
    differences of the value (``nn.testing.gradcheck``) at ``compile``, refusing a
    wrong one with a ValueError. The functions are scalar (arithmetic, ``math``,
    NumPy functions): Numba compiles them into the loops, the numpy reference calls
    them on arrays. Returns the class, registered under ``name`` (default: the
    value function's name) so that ``nn.load`` finds it once it has been made.
    """
    import inspect

    for what, f in (("value", value), ("gradient", gradient), ("output", output)):
        if f is not None and not inspect.isfunction(f):
            raise TypeError(f"{what} must be a Python function (def or lambda), got {f!r}")
    if value is None or gradient is None:
        raise TypeError("a loss needs both value(o, t) and gradient(o, t)")
    loss_name = name or value.__name__
    if loss_name in LOSSES:
        raise ValueError(f"the loss's name {loss_name!r} is a built-in loss's: give name=...")
    cls = type(loss_name, (CustomLoss,), {
        "name": loss_name, "value_function": staticmethod(value),
        "gradient_function": staticmethod(gradient),
        "output_function": None if output is None else staticmethod(output),
        "check": bool(check), "__module__": value.__module__,
        "__doc__": value.__doc__ or f"The user-defined loss {loss_name}."})
    CUSTOM_LOSSES[loss_name] = cls
    return cls


def get_loss(loss):
    """A loss object from a name in LOSSES or a Loss instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, CustomLoss):
        return loss()
    if isinstance(loss, str):
        if loss in CUSTOM_LOSSES:
            return CUSTOM_LOSSES[loss]()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(map(repr, LOSSES))}")
        return LOSSES[loss]()
    raise TypeError(f"loss must be a name ({', '.join(map(repr, LOSSES))}) or a loss object, "
                    f"got {type(loss).__name__}")


# what a user might write to define a loss (value and gradient are this module's own, for
# NumPy arrays): the compiled loops call none of it, they run the kernel of the loss's code
_LOSS_METHODS = ("value", "gradient", "_evaluate", "__call__", "call", "forward", "backward",
                 "loss", "grad", "derivative", "compute")


def check_supported(loss):
    """Refuse (TypeError) a loss object that ``fit`` cannot train as written.

    The compiled loops compute a loss by its integer ``code``; of the object they
    use only ``prepare_targets``, ``correct_per_sample``, ``output_transform`` and
    ``has_accuracy``. Accepted: a built-in loss, or a subclass of one that changes
    none of the rest. Refused: a new Loss subclass (no built-in kernel), a subclass
    defining its own value or gradient (``fit`` would silently train the built-in
    one), or one with attributes (hyperparameters) that no kernel reads."""
    cls = type(loss)
    if cls in CUSTOM_LOSSES.values():
        return  # made by nn.losses.loss: its functions are what the loops compile
    names = ", ".join(map(repr, LOSSES))
    classes = ", ".join(f"nn.losses.{c.__name__}()" for c in LOSSES.values())
    supported = (f"Supported: the built-in losses by name ({names}) or class ({classes}); "
                 f"they have no hyperparameters, and a subclass may not change how the loss "
                 f"or its gradient is computed")
    builtin = next((c for c in cls.__mro__ if c in LOSSES.values()), None)
    if builtin is None:
        raise TypeError(f"{cls.__name__} is not one of nnumba's losses: fit runs a loss as a "
                        f"compiled kernel chosen by its code, and there is no kernel for "
                        f"{cls.__name__}. {supported}")
    user = cls.__mro__[:cls.__mro__.index(builtin)]
    overridden = [n for n in _LOSS_METHODS if any(n in c.__dict__ for c in user)]
    if loss.code != builtin.code:
        overridden.append("code")
    ignored = sorted(k for k in vars(loss) if not k.startswith("_"))
    if overridden or ignored:
        what = (f"defines {', '.join(overridden)}" if overridden else "") + \
            (" and " if overridden and ignored else "") + \
            (f"sets {', '.join(ignored)}" if ignored else "")
        raise TypeError(f"{cls.__name__} {what}, which fit never calls or reads: fit computes "
                        f"the loss and its gradient with the compiled kernel of "
                        f"nn.losses.{builtin.__name__}, so {cls.__name__} would silently train "
                        f"as plain {builtin.__name__}. {supported}")
