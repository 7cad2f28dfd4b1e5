"""Vanishing and exploding gradients, made measurable.

Back-propagation through a deep network multiplies one factor per layer: for a
chain of one-neuron sigmoid layers (docs/topics.md, "Vanishing and exploding
gradients")

    dC/db1 = dC/dy4 * s'(z4) w4 * s'(z3) w3 * s'(z2) w2 * s'(z1),

and s'(z) <= 1/4, so with |w| < 1 every factor is at most 1/4 and the gradient
reaching the first layer shrinks exponentially with depth (*vanishing*); with
factors above 1 it grows exponentially (*exploding*). The first layers then
learn nothing (or diverge) while the last ones train normally.

This module measures it:

- ``gradient_norms(model, X, y)``: the L2 norm of each Dense layer's weight and
  bias gradient, for the mean loss over (X, y);
- ``gradient_report(model, X, y)``: those norms and the ratio
  ||dW_first|| / ||dW_last||, flagged "vanishing" below ``VANISHING_RATIO``,
  "exploding" above ``EXPLODING_RATIO`` or when any gradient is not finite,
  "healthy" otherwise; ``print(report)`` gives a table. The same test is made
  on the bias gradients ||db_first|| / ||db_last|| when both layers have a
  bias: db_k is the sum over the batch of dL/dz_k, the back-propagated signal
  alone (dC/db1 of the one-neuron chain above), while dW_k = a_{k-1}^T dL/dz_k
  also scales with the layer's input. A network whose activations shrink towards zero (a
  ReLU network with tiny initial weights) has weight gradients that are all
  tiny, so their ratio looks normal, but its bias ratio shows the vanishing;
- ``compare_initializers(layers, X, y)``: the same network under several
  initialisers, each reported before training and trained for a few epochs.

``fit(..., record_grad_norms="iteration")`` records every iteration's per-layer
norms (``History.grad_norms_per_iteration``); per-epoch means are always in
``History.grad_norms``. Remedies: ReLU instead of sigmoid, He or Xavier
initialisation (``Dense(init=...)``), and clipping (``clip_grad_norm`` /
``clip_grad_value`` in ``fit`` and the optimizers).
"""
import numpy as np

from .backends import codes
from .layers import Dense

# ||dW_first|| / ||dW_last|| below this: the first layer gets at least 100 times
# less gradient than the last, so it barely learns.
VANISHING_RATIO = 1e-2
# ... above this: the first layer's gradient is 100 times the last one's.
EXPLODING_RATIO = 1e2


class GradientNorms:
    """Per-layer L2 norms of every parameterised layer: ``weight[k] = ||dW_k||`` (gamma
    for BatchNorm), ``bias[k] = ||db_k||`` (beta; NaN for a layer without bias);
    ``layers`` names them."""

    def __init__(self, layers, weight, bias):
        self.layers = list(layers)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = np.asarray(bias, dtype=np.float64)

    def __repr__(self):
        pairs = ", ".join(f"{n}: {w:.3g}" for n, w in zip(self.layers, self.weight))
        return f"GradientNorms({pairs})"


def gradient_norms(model, X, y):
    """The L2 norm of each parameterised layer's weight gradient (W; BatchNorm's
    gamma) and bias gradient (b; beta) at (X, y)."""
    grads = model.gradients(X, y)
    plan = model.plan
    weight = [np.nan] * len(plan.layer_names)
    bias = [np.nan] * len(plan.layer_names)
    layer = -1
    for s, g in enumerate(grads):
        norm = np.linalg.norm(g.astype(np.float64))
        if plan.segs[s, codes.SEG_NORM] >= 0:
            layer = plan.segs[s, codes.SEG_NORM]
            weight[layer] = norm
        else:  # the second segment of the same layer
            bias[layer] = norm
    return GradientNorms(plan.layer_names, weight, bias)


class GradientReport:
    """The diagnosis of a network's gradients; see the module docstring.

    Attributes: ``norms`` (GradientNorms), ``ratio`` (||dW_first|| / ||dW_last||),
    ``bias_ratio`` (||db_first|| / ||db_last||, NaN unless both layers have a
    bias), ``status`` ("vanishing", "exploding" or "healthy"), ``thresholds``.
    """

    def __init__(self, norms, vanishing_ratio=VANISHING_RATIO, exploding_ratio=EXPLODING_RATIO):
        self.norms = norms
        self.thresholds = (vanishing_ratio, exploding_ratio)
        w, b = norms.weight, norms.bias
        with np.errstate(divide="ignore", invalid="ignore"):
            self.ratio = float(w[0] / w[-1])
            self.bias_ratio = float(b[0] / b[-1])
        ratios = [r for r in (self.ratio, self.bias_ratio) if not np.isnan(r)]
        finite = bool(np.all(np.isfinite(w)) and np.all(np.isfinite(b[~np.isnan(b)])))
        if not finite or not ratios or max(ratios) > exploding_ratio:
            self.status = "exploding"
        elif min(ratios) < vanishing_ratio:
            self.status = "vanishing"
        else:
            self.status = "healthy"

    @property
    def vanishing(self):
        return self.status == "vanishing"

    @property
    def exploding(self):
        return self.status == "exploding"

    def __str__(self):
        lines = [f"{'layer':<10}{'||dW||':>12}{'||db||':>12}"]
        for name, w, b in zip(self.norms.layers, self.norms.weight, self.norms.bias):
            lines.append(f"{name:<10}{w:>12.3e}{b:>12.3e}")
        low, high = self.thresholds
        lines.append(f"first/last gradient ratio: weights {self.ratio:.3e}, biases {self.bias_ratio:.3e}"
                     f" -> {self.status} (vanishing below {low:g}, exploding above {high:g} or when "
                     f"not finite)")
        return "\n".join(lines)

    def __repr__(self):
        return (f"GradientReport(status={self.status!r}, ratio={self.ratio:.3e}, "
                f"bias_ratio={self.bias_ratio:.3e})")


def gradient_report(model, X, y, vanishing_ratio=VANISHING_RATIO, exploding_ratio=EXPLODING_RATIO):
    """Diagnose the gradients of ``model`` at (X, y): per-layer norms, the
    first-to-last ratio and a status ("vanishing", "exploding", "healthy")."""
    if len(model.plan.layer_names) < 2:
        raise ValueError("gradient_report compares the first and last parameterised layers: the "
                         f"model has {len(model.plan.layer_names)}")
    return GradientReport(gradient_norms(model, X, y), vanishing_ratio, exploding_ratio)


def compare_initializers(layers, X, y, inits=("normal", "xavier", "he"), loss="cross_entropy",
                         optimizer=None, epochs=5, batch_size=32, backend="cpu", dtype="float32",
                         seed=0):
    """Build the network ``layers`` once per initialiser in ``inits`` (every Dense
    layer's ``init`` replaced), report its gradients before training, then train
    it for ``epochs``.

    ``optimizer`` is a callable returning a fresh optimizer (default SGD(lr=0.1)).
    Returns {init: {"report": GradientReport, "history": History, "model": Sequential}}.
    """
    from .model import Sequential
    from .optim import SGD

    results = {}
    for init in inits:
        copy = [Dense(l.in_features, l.out_features, bias=l.bias, init=init)
                if type(l) is Dense else l for l in layers]
        model = Sequential(copy, backend=backend, dtype=dtype, seed=seed)
        model.compile(loss, optimizer() if optimizer is not None else SGD(lr=0.1))
        report = gradient_report(model, X, y)
        history = model.fit(X, y, epochs=epochs, batch_size=batch_size)
        results[init] = {"report": report, "history": history, "model": model}
    return results
