"""Layer objects: hyperparameters and shapes only. The arithmetic lives in the backends.

``Dense(in_features, out_features)`` computes y = x @ W + b with W of shape
(in_features, out_features); the activations are elementwise. A model's last
layer gives raw scores (logits): softmax and sigmoid live inside the
classification losses, in their numerically stable fused forms.

Sequence layers (Conv1D, the pools, BatchNorm over a sequence) take
channels-last input, (batch, steps, channels), as Keras does; a sample's
element (step s, channel c) is stored at s * channels + c, so ``Flatten``
moves no data. Every layer knows its output shape for a given input shape
(``output_shape``, which refuses a mismatch with the numbers involved) and its
parameters (``parameters``: name, shape, how they start, whether weight decay
applies). ``nnumba.plan`` turns a list of layers into the op table the kernels
run.
"""
from abc import ABC, abstractmethod

import numpy as np

from . import _checks
from .backends import codes
from .initializers import INITIALIZERS


class Param:
    """One parameter tensor of a layer: ``name`` ("W", "b", "gamma", ...), ``shape``,
    ``init`` ("weights": drawn by the layer's initialiser; "zeros"; "ones"; "uniform":
    U(-a, a) with a the layer's ``uniform_limit()``) and
    ``decay`` (whether an optimizer's weight_decay applies: weights yes, biases and
    normalisation parameters no, as is usual)."""

    def __init__(self, name, shape, init, decay):
        self.name, self.shape, self.init, self.decay = name, tuple(shape), init, decay


def _shape_text(shape):
    return f"{shape[0]}" if len(shape) == 1 else f"(steps={shape[0]}, channels={shape[1]})"


def _sequence(layer, shape):
    """(steps, channels) of a sequence input, or a clear error for a flat one."""
    if len(shape) != 2:
        raise ValueError(f"{layer!r} needs (steps, channels) input per sample, but the previous "
                         f"layer gives {_shape_text(shape)} values: give the model "
                         f"input_shape=(steps, channels), or reorder the layers")
    return shape


def _check_init(init):
    """init is None, a callable or the name of an initialiser."""
    if init is not None and not callable(init):
        if not isinstance(init, str):
            raise TypeError(f"init must be a name, a callable or None, got {type(init).__name__}")
        if init not in INITIALIZERS:
            raise ValueError(f"unknown initialiser init={init!r}: expected one of "
                             f"{', '.join(map(repr, INITIALIZERS))} or a callable")


def _drawn(layer, init, fans, rng):
    """A (fan_in, fan_out) float64 weight matrix drawn by ``init`` (a name in INITIALIZERS
    or a callable), checked for its shape and finiteness."""
    fn = INITIALIZERS[init] if isinstance(init, str) else init
    w = np.asarray(fn(fans[0], fans[1], rng), dtype=np.float64)
    if w.shape != tuple(fans):
        raise ValueError(f"init of {layer!r} returned shape {w.shape}, expected {tuple(fans)}")
    _checks.finite(w, f"the weights drawn by init of {layer!r}")
    return w


class Layer(ABC):
    """Base class of all layers."""

    @abstractmethod
    def config(self):
        """The layer as a JSON-serialisable dict (used by ``save``)."""

    def output_shape(self, shape):
        """The per-sample output shape for per-sample input ``shape`` (a tuple:
        (features,) or (steps, channels)); ValueError when the input does not fit."""
        return shape

    def parameters(self, shape):
        """The layer's parameters (``Param``) for input ``shape``, in storage order."""
        return []

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer: y = x @ W + b.

    Parameters
    ----------
    in_features, out_features : int >= 1
        W has shape (in_features, out_features) and b shape (out_features,).
    bias : bool
        Whether the layer adds b.
    init : {"xavier", "he", "lecun", "normal", "zeros"}, callable or None
        How W is drawn (see ``nnumba.initializers``). None chooses by the
        activation that follows: "he" before ReLU/LeakyReLU, "xavier" otherwise.
        Biases start at zero.
    """

    def __init__(self, in_features, out_features, bias=True, init=None):
        self.in_features = _checks.integer(in_features, "in_features", minimum=1)
        self.out_features = _checks.integer(out_features, "out_features", minimum=1)
        self.bias = _checks.boolean(bias, "bias")
        _check_init(init)
        self.init = init

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        if self.init is not None:
            extra += f", init={self.init!r}"
        return f"Dense({self.in_features}, {self.out_features}{extra})"

    def output_shape(self, shape):
        if len(shape) != 1:
            raise ValueError(f"{self!r} expects {self.in_features} inputs per sample but the previous "
                             f"layer gives {_shape_text(shape)}: add nn.Flatten() before it")
        if shape[0] != self.in_features:
            raise ValueError(f"Dense({self.in_features}, {self.out_features}) expects "
                             f"{self.in_features} inputs but the previous layer gives {shape[0]}")
        return (self.out_features,)

    def parameters(self, shape):
        params = [Param("W", (self.in_features, self.out_features), "weights", True)]
        if self.bias:
            params.append(Param("b", (self.out_features,), "zeros", False))
        return params

    def fans(self):
        """(fan_in, fan_out) of W, the shape the initialisers draw."""
        return self.in_features, self.out_features

    def initial_weights(self, init_name, rng, spec=None):
        """W drawn with ``self.init``, or with ``init_name`` when that is None, as a
        (fan_in, fan_out) float64 array (``fans``; ``spec``, the Param, is not needed)."""
        return _drawn(self, self.init if self.init is not None else init_name, self.fans(), rng)

    def config(self):
        init = self.init if self.init is None or isinstance(self.init, str) else "custom"
        return {"type": "Dense", "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias, "init": init}


class Activation(Layer):
    """An elementwise activation; subclasses set ``code`` (see ``backends.codes``)."""

    code = None
    alpha = 0.0
    he_init = False  # whether the preceding Dense layer defaults to He initialisation

    def config(self):
        return {"type": type(self).__name__}


class Identity(Activation):
    """y = z."""
    code = codes.IDENTITY


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-z)); f'(z) = y (1 - y) <= 1/4."""
    code = codes.SIGMOID


class Tanh(Activation):
    """y = tanh(z); f'(z) = 1 - y^2 <= 1."""
    code = codes.TANH


class ReLU(Activation):
    """y = max(z, 0); f'(z) = 1 for z > 0, else 0."""
    code = codes.RELU
    he_init = True


class LeakyReLU(Activation):
    """y = z for z > 0, alpha z otherwise (alpha >= 0, as in Keras; default 0.01)."""
    code = codes.LEAKY_RELU
    he_init = True

    def __init__(self, alpha=0.01):
        # The derivative is computed from the output, which needs alpha >= 0.
        self.alpha = _checks.real(alpha, "alpha", low=0.0)

    def config(self):
        return {"type": "LeakyReLU", "alpha": self.alpha}


class CustomActivation(Activation):
    """Base of the activations that ``activation`` makes from a Python function: its own
    op in the op table (not fused into the Dense before it), compiled into the fused
    forward and backward passes (``backends.<b>.rules``)."""

    function = None
    derivative = None
    derivative_of = "output"
    activation_name = None

    def config(self):
        return {"type": "CustomActivation", "name": self.activation_name}

    def __repr__(self):
        return f"{type(self).__name__}()"


CUSTOM_ACTIVATIONS = {}  # name -> CustomActivation subclass: how nn.load finds them


def activation(function, derivative=None, of="output", name=None, he_init=False, check=True):
    """A new activation layer class from y = f(z), e.g. Swish::

        def swish(z):
            return z / (1.0 + np.exp(-z))

        def swish_slope(z):
            s = 1.0 / (1.0 + np.exp(-z))
            return s + z * s * (1.0 - s)

        Swish = nn.layers.activation(swish, swish_slope, of="input")
        model = nn.Sequential([nn.Dense(4, 16), Swish(), nn.Dense(16, 3)])

    ``derivative``: f' as a function of the input z (``of="input"``) or of the output
    y (``of="output"``, as scikit-learn's DERIVATIVES: sigmoid' = y (1 - y)), or None
    for central differences of f (slower and approximate: for checking a model
    before writing the derivative). Both are scalar functions (arithmetic, ``math``,
    NumPy functions): Numba compiles them into the loops, and the numpy reference
    calls them on arrays. ``he_init``: a Dense before it defaults to He
    initialisation (as before ReLU) instead of Xavier. ``check``: compare the
    derivative with central differences of f (``nn.testing.gradcheck``) the first
    time the activation is used in a model, refusing a wrong one with a ValueError.
    Returns the class, registered under ``name`` (default: the function's name) so
    that ``nn.load`` finds it once the code defining it has run.
    """
    import inspect

    for what, f in (("function", function), ("derivative", derivative)):
        if f is not None and not inspect.isfunction(f):
            raise TypeError(f"{what} must be a Python function of one number (def or lambda), got "
                            f"{f!r}; wrap a NumPy ufunc as lambda z: np.tanh(z)")
    if of not in ("input", "output"):
        raise ValueError(f"of must be 'input' or 'output' (what the derivative takes), got {of!r}")
    activation_name = name or function.__name__
    if activation_name in LAYERS:
        raise ValueError(f"the activation's name {activation_name!r} is a built-in layer's: give "
                         f"name=...")
    cls = type(activation_name, (CustomActivation,), {
        "function": staticmethod(function),
        "derivative": None if derivative is None else staticmethod(derivative),
        "derivative_of": of, "activation_name": activation_name, "he_init": bool(he_init),
        "check": bool(check), "code": codes.IDENTITY, "__module__": function.__module__,
        "__doc__": function.__doc__ or f"The user-defined activation {activation_name}."})
    CUSTOM_ACTIVATIONS[activation_name] = cls
    return cls


BUILTIN_ACTIVATIONS = (Identity, Sigmoid, Tanh, ReLU, LeakyReLU)
# what a user might write to define an activation: the compiled loops never call any of it
_ACTIVATION_METHODS = ("__call__", "call", "forward", "backward", "apply", "f", "df", "value",
                       "derivative", "gradient", "grad")


def check_activation(layer):
    """Refuse (TypeError) an activation the compiled loops cannot run as written.

    The kernels compute an activation from its integer ``code``; nothing else of
    the object is read but ``alpha`` and ``he_init``. So a built-in activation is
    accepted, and a subclass of one that only changes defaults (LeakyReLU's alpha,
    ``he_init``); refused are a new Activation (no code), a subclass that defines
    its own function or derivative (which would silently run as the built-in), and
    one that sets attributes the kernels never read."""
    cls = type(layer)
    if cls in CUSTOM_ACTIVATIONS.values():
        return  # made by nn.layers.activation: its functions are what the loops compile
    names = ", ".join(f"nn.{c.__name__}" for c in BUILTIN_ACTIVATIONS)
    supported = (f"Supported: the built-in activations ({names}), and subclasses of them "
                 f"that only change their defaults (LeakyReLU's alpha, he_init)")
    builtin = next((c for c in cls.__mro__ if c in BUILTIN_ACTIVATIONS), None)
    if builtin is None:
        raise TypeError(f"{cls.__name__} is not one of nnumba's activations, nor a subclass of "
                        f"one: the compiled forward and backward passes run only the kernels of "
                        f"the built-in activations, so {cls.__name__} cannot be compiled. "
                        f"{supported}. A new activation function cannot be defined by subclassing")
    user = cls.__mro__[:cls.__mro__.index(builtin)]
    overridden = [n for n in (*_ACTIVATION_METHODS, "code") if any(n in c.__dict__ for c in user)]
    if "code" in overridden and layer.code == builtin.code:
        overridden.remove("code")
    known = {"he_init", *vars(builtin())}  # (the plan reads he_init; LeakyReLU sets alpha)
    ignored = sorted(k for k in vars(layer) if not k.startswith("_") and k not in known)
    if overridden or ignored:
        what = (f"defines {', '.join(overridden)}" if overridden else "") + \
            (" and " if overridden and ignored else "") + \
            (f"sets {', '.join(ignored)}" if ignored else "")
        raise TypeError(f"{cls.__name__} {what}, which the compiled passes never call or read: "
                        f"they run the kernels of nn.{builtin.__name__}, so it would silently "
                        f"train as a plain {builtin.__name__}. {supported}")


class Conv1D(Dense):
    """1-D convolution over (steps, channels) input, channels-last:

        y[t, o] = b[o] + sum_{tap < k, c < C_in} x[t s - p + tap, c] W[tap C_in + c, o]

    with stride s, zero padding p on both sides ("valid" = 0; "same" keeps the
    length at stride 1, for odd k) and L_out = (L_in + 2p - k) // s + 1 output
    steps. W is stored as a (k C_in, C_out) matrix in im2col order, so
    W[tap C_in + c, o] is torch.nn.Conv1d's weight[o, c, tap]: the kernels form
    the patches (L_out, k C_in) of each sample and reuse the Dense products.
    ``init`` as for Dense, with fan_in = k C_in and fan_out = C_out.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init=None):
        self.in_channels = _checks.integer(in_channels, "in_channels", minimum=1)
        self.out_channels = _checks.integer(out_channels, "out_channels", minimum=1)
        self.kernel_size = _checks.integer(kernel_size, "kernel_size", minimum=1)
        self.stride = _checks.integer(stride, "stride", minimum=1)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if self.kernel_size % 2 == 0 or self.stride != 1:
                raise ValueError(f"padding='same' needs an odd kernel_size and stride 1, got "
                                 f"kernel_size={self.kernel_size}, stride={self.stride}")
            padding = (self.kernel_size - 1) // 2
        elif isinstance(padding, str):
            raise ValueError(f"padding must be an int >= 0, 'valid' or 'same', got {padding!r}")
        self.padding = _checks.integer(padding, "padding", minimum=0)
        super().__init__(self.kernel_size * self.in_channels, self.out_channels, bias, init)

    def __repr__(self):
        return (f"Conv1D({self.in_channels}, {self.out_channels}, {self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding})")

    def output_shape(self, shape):
        steps, channels = _sequence(self, shape)
        if channels != self.in_channels:
            raise ValueError(f"Conv1D({self.in_channels}, {self.out_channels}, {self.kernel_size}) "
                             f"expects {self.in_channels} channel{'s' * (self.in_channels != 1)} but "
                             f"the input has {channels}")
        padded = steps + 2 * self.padding
        if self.kernel_size > padded:
            raise ValueError(f"{self!r}: kernel_size {self.kernel_size} is larger than the padded "
                             f"input ({steps} steps + 2 x padding {self.padding} = {padded})")
        return ((padded - self.kernel_size) // self.stride + 1, self.out_channels)

    def parameters(self, shape):
        params = [Param("W", (self.kernel_size * self.in_channels, self.out_channels), "weights",
                        True)]
        if self.bias:
            params.append(Param("b", (self.out_channels,), "zeros", False))
        return params

    def config(self):
        config = super().config()
        del config["in_features"], config["out_features"]
        return {**config, "type": "Conv1D", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding}


class _Pool1D(Layer):
    """Pooling windows of ``pool_size`` steps, ``stride`` apart (default: pool_size),
    no padding, per channel: L_out = (L_in - pool_size) // stride + 1."""

    def __init__(self, pool_size, stride=None):
        self.pool_size = _checks.integer(pool_size, "pool_size", minimum=1)
        self.stride = self.pool_size if stride is None else _checks.integer(stride, "stride",
                                                                            minimum=1)

    def output_shape(self, shape):
        steps, channels = _sequence(self, shape)
        if self.pool_size > steps:
            raise ValueError(f"{self!r}: pool_size {self.pool_size} is larger than the sequence "
                             f"({steps} steps)")
        return ((steps - self.pool_size) // self.stride + 1, channels)

    def config(self):
        return {"type": type(self).__name__, "pool_size": self.pool_size, "stride": self.stride}


class MaxPool1D(_Pool1D):
    """y[t, c] = max_{j < k} x[t s + j, c]; the gradient goes to the (first) maximum,
    as torch.nn.MaxPool1d."""


class AvgPool1D(_Pool1D):
    """y[t, c] = (1 / k) sum_{j < k} x[t s + j, c], as torch.nn.AvgPool1d."""


class GlobalAvgPool1D(Layer):
    """y[c] = the mean of x[:, c] over all steps: (steps, channels) -> (channels,)."""

    def output_shape(self, shape):
        return (_sequence(self, shape)[1],)

    def config(self):
        return {"type": "GlobalAvgPool1D"}


class Flatten(Layer):
    """(steps, channels) -> (steps * channels,): the same memory, no data moved."""

    def output_shape(self, shape):
        return (int(np.prod(shape)),)

    def config(self):
        return {"type": "Flatten"}


class Dropout(Layer):
    """Inverted dropout, active in ``fit`` only: each element is kept with
    probability 1 - rate and scaled by 1 / (1 - rate), so evaluate and predict use
    the layer as the identity. The keep mask is a counter-based hash of (the
    model's dropout seed, the optimizer step t, the layer, the batch row, the
    element), so it is the same on every backend and a resumed run draws the
    masks an uninterrupted one would."""

    def __init__(self, rate):
        self.rate = _checks.real(rate, "rate", low=0.0, high=1.0, high_open=True)

    def config(self):
        return {"type": "Dropout", "rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation over the channel axis (features of flat input, channels of
    a sequence, whose statistics then run over batch and steps), as
    torch.nn.BatchNorm1d: in ``fit``, xhat = (x - mean) / sqrt(var + eps) with the
    batch's mean and biased variance, y = gamma xhat + beta, and the running
    statistics move by ``momentum`` (running_var with the unbiased variance);
    evaluate and predict use the running statistics. gamma starts at 1, beta at 0
    (neither decayed); running mean 0, running variance 1."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        self.num_features = _checks.integer(num_features, "num_features", minimum=1)
        self.momentum = _checks.real(momentum, "momentum", low=0.0, high=1.0)
        self.eps = _checks.positive(eps, "eps")

    def output_shape(self, shape):
        if shape[-1] != self.num_features:
            raise ValueError(f"BatchNorm({self.num_features}) expects {self.num_features} "
                             f"{'features' if len(shape) == 1 else 'channels'} but the input has "
                             f"{shape[-1]}")
        return shape

    def parameters(self, shape):
        return [Param("gamma", (self.num_features,), "ones", False),
                Param("beta", (self.num_features,), "zeros", False)]

    def config(self):
        return {"type": "BatchNorm", "num_features": self.num_features, "momentum": self.momentum,
                "eps": self.eps}


class Residual(Layer):
    """y = x + f(x), f the given layers in order (e.g. [Dense(h, h), ReLU()]): the
    skip connection of residual networks. f must keep the shape of x."""

    def __init__(self, layers):
        if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError("Residual takes a non-empty list of layers, e.g. "
                            "nn.Residual([nn.Dense(100, 100), nn.ReLU()])")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Residual layers[{i}] is a {type(layer).__name__}, not a layer")
        self.layers = list(layers)

    def output_shape(self, shape):
        out = shape
        for layer in self.layers:
            out = layer.output_shape(out)
        if out != shape:
            raise ValueError(f"{self!r} changes the shape from {_shape_text(shape)} to "
                             f"{_shape_text(out)}: x + f(x) needs f to keep it")
        return shape

    def __repr__(self):
        return f"Residual([{', '.join(map(repr, self.layers))}])"

    def config(self):
        return {"type": "Residual", "layers": [layer.config() for layer in self.layers]}


class _Recurrent(Layer):
    """Base of the recurrent layers over (steps, features) input: ``in_features`` inputs
    and ``units`` hidden units per step, PyTorch's equations and gate order
    (``backends.reference.recurrent`` has them), zero initial states.

    Parameters, with G the number of gate blocks (SimpleRNN 1, LSTM 4, GRU 3):
    W_ih (in_features, G units), W_hh (units, G units), b_ih and b_hh (G units):
    torch's weight_ih_l0.T, weight_hh_l0.T, bias_ih_l0, bias_hh_l0. All four start
    uniform in +-1/sqrt(units), torch's default; ``init`` (a name or callable, as
    for Dense) draws W_ih and W_hh instead, with fans (in_features, G units) and
    (units, G units), the biases then starting at zero.

    ``return_sequences``: output h at every step, (steps, units), or (False) the
    last state only, (units,).
    """

    gates = 1
    reported_parameter = 1  # the statistics' per-layer gradient norm is ||dW_hh||, the
    # recurrent weight through which gradients vanish or explode over time

    def __init__(self, in_features, units, return_sequences=False, init=None):
        self.in_features = _checks.integer(in_features, "in_features", minimum=1)
        self.units = _checks.integer(units, "units", minimum=1)
        self.return_sequences = _checks.boolean(return_sequences, "return_sequences")
        _check_init(init)
        self.init = init

    def _args(self):
        return f"{self.in_features}, {self.units}"

    def __repr__(self):
        extra = ", return_sequences=True" if self.return_sequences else ""
        if self.init is not None:
            extra += f", init={self.init!r}"
        return f"{type(self).__name__}({self._args()}{extra})"

    def output_shape(self, shape):
        if len(shape) != 2:
            raise ValueError(f"{self!r} needs (steps, features) input per sample, but the previous "
                             f"layer gives {_shape_text(shape)} values: give the model "
                             f"input_shape=(steps, features), or reorder the layers")
        steps, features = shape
        if features != self.in_features:
            raise ValueError(f"{type(self).__name__}({self._args()}) expects {self.in_features} "
                             f"feature{'s' * (self.in_features != 1)} per step but the input has "
                             f"{features}")
        return (steps, self.units) if self.return_sequences else (self.units,)

    def parameters(self, shape):
        g = self.gates * self.units
        init = "weights" if self.init is not None else "uniform"
        bias = "zeros" if self.init is not None else "uniform"
        return [Param("W_ih", (self.in_features, g), init, True),
                Param("W_hh", (self.units, g), init, True),
                Param("b_ih", (g,), bias, False), Param("b_hh", (g,), bias, False)]

    def uniform_limit(self):
        """torch's default: every parameter uniform in +-1/sqrt(units)."""
        return 1.0 / np.sqrt(self.units)

    def initial_weights(self, init_name, rng, spec):
        """W_ih or W_hh (``spec``) drawn with ``self.init``, float64."""
        return _drawn(self, self.init, spec.shape, rng)

    def config(self):
        init = self.init if self.init is None or isinstance(self.init, str) else "custom"
        return {"type": type(self).__name__, "in_features": self.in_features, "units": self.units,
                "return_sequences": self.return_sequences, "init": init}


class SimpleRNN(_Recurrent):
    """h_t = f(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh), f = tanh or relu (torch.nn.RNN).

    Backpropagation through time multiplies the gradient by one Jacobian
    diag(f'(a_t)) W_hh^T per step, so it shrinks or grows geometrically with
    the distance from the loss: the classic vanishing and exploding gradients.
    """

    gates = 1
    kind_name = "simple_rnn"  # its name in the statistics: simple_rnn_0, ...

    def __init__(self, in_features, units, activation="tanh", return_sequences=False, init=None):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu' (as torch.nn.RNN), got "
                             f"{activation!r}")
        self.activation = activation
        super().__init__(in_features, units, return_sequences, init)

    def _args(self):
        extra = "" if self.activation == "tanh" else ", activation='relu'"
        return f"{self.in_features}, {self.units}{extra}"

    @property
    def code(self):
        return codes.TANH if self.activation == "tanh" else codes.RELU

    def config(self):
        return {**super().config(), "activation": self.activation}


class LSTM(_Recurrent):
    """Long short-term memory (torch.nn.LSTM; gates i, f, g, o):
    c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t).

    The cell state's path is additive: dL/dc_{t-1} = f * dL/dc_t + ..., with no
    weight matrix and no squashing derivative on it, so with forget gates near 1
    the gradient reaches early steps undiminished (the remedy for vanishing
    gradients through time).
    """

    gates = 4


class GRU(_Recurrent):
    """Gated recurrent unit (torch.nn.GRU; gates r, z, n, the reset applied to the
    hidden product): h_t = (1 - z) * n + z * h_{t-1}."""

    gates = 3


RECURRENT = (SimpleRNN, LSTM, GRU)


class Bidirectional(Layer):
    """Runs ``layer`` (a SimpleRNN, LSTM or GRU) forwards and a copy of it backwards over
    the steps, and concatenates the two per step (``merge="concat"``, the Keras and
    torch default): output (steps, 2 units) with ``return_sequences``, else (2 units,),
    the forward layer's last state then the backward one's (its state at step 0). The
    two directions have their own parameters, forward's first (torch's ``_reverse``
    weights are the second set)."""

    def __init__(self, layer, merge="concat"):
        if not isinstance(layer, RECURRENT):
            raise TypeError(f"Bidirectional wraps a recurrent layer (SimpleRNN, LSTM or GRU), got "
                            f"{layer!r}")
        if merge != "concat":
            raise ValueError(f"merge must be 'concat' (the per-step concatenation of both "
                             f"directions), got {merge!r}")
        self.layer, self.merge = layer, merge
        self.backward_layer = layer_from_config(layer.config())
        self.backward_layer.init = layer.init

    def __repr__(self):
        return f"Bidirectional({self.layer!r})"

    def output_shape(self, shape):
        inner = self.layer.output_shape(shape)
        return inner[:-1] + (2 * inner[-1],)

    def config(self):
        return {"type": "Bidirectional", "layer": self.layer.config(), "merge": self.merge}


LAYERS = {cls.__name__: cls for cls in (Dense, Identity, Sigmoid, Tanh, ReLU, LeakyReLU, Conv1D,
                                        MaxPool1D, AvgPool1D, GlobalAvgPool1D, Flatten, Dropout,
                                        BatchNorm, Residual, SimpleRNN, LSTM, GRU, Bidirectional)}
PARAMETERISED = (Dense, BatchNorm, SimpleRNN, LSTM, GRU)  # the kinds whose gradients are reported per layer


def layer_from_config(config):
    """Rebuild a layer from ``Layer.config()`` output."""
    if isinstance(config, dict) and config.get("type") == "CustomActivation":
        if config.get("name") not in CUSTOM_ACTIVATIONS:
            raise ValueError(f"the custom activation {config.get('name')!r} is not defined in this "
                             f"process: run the code that makes it with nn.layers.activation "
                             f"first, then load")
        return CUSTOM_ACTIVATIONS[config["name"]]()
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise ValueError(f"not a layer description: {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    if kwargs.get("init") == "custom":
        kwargs["init"] = None  # the weights are restored from the file; the callable is not needed
    if config["type"] == "Residual":
        if not isinstance(kwargs.get("layers"), list):
            raise ValueError(f"not a layer description: {config!r}")
        kwargs["layers"] = [layer_from_config(c) for c in kwargs["layers"]]
    if config["type"] == "Bidirectional":
        inner = kwargs.get("layer")
        if not isinstance(inner, dict) or inner.get("type") not in ("SimpleRNN", "LSTM", "GRU"):
            raise ValueError(f"not a layer description: {config!r}")
        kwargs["layer"] = layer_from_config(inner)
    return LAYERS[config["type"]](**kwargs)
