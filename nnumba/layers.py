"""Layer objects: hyperparameters only. The arithmetic lives in the backends.

``Dense(in_features, out_features)`` computes y = x @ W + b with W of shape
(in_features, out_features); the activations are elementwise. A model's last
layer gives raw scores (logits): softmax and sigmoid live inside the
classification losses, in their numerically stable fused forms.
"""
from abc import ABC, abstractmethod

import numpy as np

from . import _checks
from .backends import codes
from .initializers import INITIALIZERS


class Layer(ABC):
    """Base class of all layers."""

    @abstractmethod
    def config(self):
        """The layer as a JSON-serialisable dict (used by ``save``)."""

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
        if init is not None and not callable(init):
            if not isinstance(init, str):
                raise TypeError(f"init must be a name, a callable or None, got {type(init).__name__}")
            if init not in INITIALIZERS:
                raise ValueError(f"unknown initialiser init={init!r}: expected one of "
                                 f"{', '.join(map(repr, INITIALIZERS))} or a callable")
        self.init = init

    def initial_weights(self, init_name, rng):
        """W drawn with ``self.init``, or with ``init_name`` when that is None; float64."""
        init = self.init if self.init is not None else init_name
        fn = INITIALIZERS[init] if isinstance(init, str) else init
        w = np.asarray(fn(self.in_features, self.out_features, rng), dtype=np.float64)
        if w.shape != (self.in_features, self.out_features):
            raise ValueError(f"init of {self!r} returned shape {w.shape}, expected "
                             f"{(self.in_features, self.out_features)}")
        _checks.finite(w, f"the weights drawn by init of {self!r}")
        return w

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


LAYERS = {cls.__name__: cls for cls in (Dense, Identity, Sigmoid, Tanh, ReLU, LeakyReLU)}


def layer_from_config(config):
    """Rebuild a layer from ``Layer.config()`` output."""
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise ValueError(f"not a layer description: {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    if kwargs.get("init") == "custom":
        kwargs["init"] = None  # the weights are restored from the file; the callable is not needed
    return LAYERS[config["type"]](**kwargs)
