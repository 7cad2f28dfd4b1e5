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

Through time, in a recurrent network, back-propagation multiplies one Jacobian
per step instead of per layer: dL/dh_{t-1} = dL/dh_t diag(f'(a_t)) W_hh^T for
a SimpleRNN, so the gradient reaching step t from a loss at the last step T
shrinks (or grows) like a power of the distance T - t. The LSTM's cell state
adds instead of multiplying by W_hh: dL/dc_{t-1} = f_t * dL/dc_t + ..., which
stays alive while the forget gates f_t are near 1.

- ``gradients_through_time(model, X, y)``: ||dL/dh_t|| for every step t of each
  recurrent layer (``GradientsThroughTime``);
- ``gradient_report`` adds, for each recurrent layer, the ratio of the gradient
  norm at the first processed step to the one at the last, and flags vanishing
  (or exploding) through time with the same thresholds.

``fit(..., record_grad_norms="iteration")`` records every iteration's per-layer
norms (``History.grad_norms_per_iteration``); per-epoch means are always in
``History.grad_norms``. Remedies: ReLU instead of sigmoid, He or Xavier
initialisation (``Dense(init=...)``), and clipping (``clip_grad_norm`` /
``clip_grad_value`` in ``fit`` and the optimizers).
"""
import numpy as np

from .backends import codes
from .backends.reference.recurrent import cache_views
from .layers import Dense

# ||dW_first|| / ||dW_last|| below this: the first layer gets at least 100 times
# less gradient than the last, so it barely learns.
VANISHING_RATIO = 1e-2
# ... above this: the first layer's gradient is 100 times the last one's.
EXPLODING_RATIO = 1e2


class GradientNorms:
    """Per-layer L2 norms of every parameterised layer: ``weight[k] = ||dW_k||`` (gamma
    for BatchNorm, the recurrent W_hh of SimpleRNN, LSTM and GRU), ``bias[k] = ||db_k||``
    (beta; b_hh; NaN for a layer without bias); ``layers`` names them."""

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
    segs = plan.segs
    column = {int(segs[s, codes.SEG_OP]): int(segs[s, codes.SEG_NORM])
              for s in range(segs.shape[0]) if segs[s, codes.SEG_NORM] >= 0}
    for s, g in enumerate(grads):
        norm = np.linalg.norm(g.astype(np.float64))
        layer = column[int(segs[s, codes.SEG_OP])]
        if segs[s, codes.SEG_NORM] >= 0:
            weight[layer] = norm
        elif plan.params[s][0].startswith(("b", "beta")):  # the layer's (last) bias
            bias[layer] = norm
    return GradientNorms(plan.layer_names, weight, bias)


class GradientsThroughTime:
    """``norms[name]``: ||dL/dh_t|| for t = 0 .. T-1 (time order) of each recurrent layer
    (both directions of a Bidirectional layer: ``..._forward``, ``..._backward``), the
    Frobenius norm over the batch and the units of the mean loss's gradient with respect
    to the layer's hidden state at step t, all paths included. ``reverse[name]`` says
    the layer runs from the last step to the first. ``ratio(name)``: the norm at the
    first step the layer processes over the norm at its last (with a loss at the end,
    how much of the gradient survives the whole sequence)."""

    def __init__(self, norms, reverse):
        self.norms = {k: np.asarray(v, dtype=np.float64) for k, v in norms.items()}
        self.reverse = dict(reverse)

    @property
    def layers(self):
        return list(self.norms)

    def ratio(self, name):
        norms = self.norms[name][::-1] if self.reverse[name] else self.norms[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(norms[0] / norms[-1])

    def __getitem__(self, name):
        return self.norms[name]

    def __repr__(self):
        pairs = ", ".join(f"{k}: {len(v)} steps, first/last {self.ratio(k):.3g}"
                          for k, v in self.norms.items())
        return f"GradientsThroughTime({pairs})"


def gradients_through_time(model, X, y):
    """||dL/dh_t|| at every step t of each recurrent layer of ``model``, for the mean loss
    over (X, y) (training-mode forward, nothing updated): a ``GradientsThroughTime``."""
    plan = model.plan
    ops = [i for i in range(plan.ops.shape[0]) if plan.ops[i, codes.OP_KIND] in codes.RECURRENT_KINDS]
    if not ops:
        raise ValueError("gradients_through_time needs a recurrent layer (SimpleRNN, LSTM, GRU or "
                         "Bidirectional); the model has none")
    memory = model._backend.memory

    def read(ws):
        return ws.rows, np.asarray(memory.to_host(ws.bundle.cache), dtype=np.float64)

    _, (rows, cache) = model._backward_pass(X, y, "gradients_through_time", read)
    n = len(X)
    norms, reverse = {}, {}
    for i in ops:
        row = plan.ops[i]
        kind, steps, features, units = (int(row[col]) for col in (
            codes.OP_KIND, codes.OP_STEPS_IN, codes.OP_CH_IN, codes.OP_UNITS))
        dhidden = cache_views(kind, cache[rows * int(row[codes.OP_CACHE]):], n, steps, features,
                              units)[4]
        per_step = np.sqrt(np.sum(dhidden * dhidden, axis=(1, 2)))  # processing order
        name = plan.layer_name_of_op(i)
        reverse[name] = bool(row[codes.OP_REVERSE])
        norms[name] = per_step[::-1] if reverse[name] else per_step
    return GradientsThroughTime(norms, reverse)


class GradientReport:
    """The diagnosis of a network's gradients; see the module docstring.

    Attributes: ``norms`` (GradientNorms), ``ratio`` (||dW_first|| / ||dW_last||),
    ``bias_ratio`` (||db_first|| / ||db_last||, NaN unless both layers have a
    bias), ``through_time`` (GradientsThroughTime of the recurrent layers, or None)
    and ``time_ratios`` ({recurrent layer: first-to-last step ratio}), ``status``
    ("vanishing", "exploding" or "healthy", over the layers and through time),
    ``thresholds``.
    """

    def __init__(self, norms, vanishing_ratio=VANISHING_RATIO, exploding_ratio=EXPLODING_RATIO,
                 through_time=None):
        self.norms = norms
        self.thresholds = (vanishing_ratio, exploding_ratio)
        self.through_time = through_time
        self.time_ratios = {} if through_time is None else \
            {name: through_time.ratio(name) for name in through_time.layers}
        w, b = norms.weight, norms.bias
        with np.errstate(divide="ignore", invalid="ignore"):
            self.ratio = float(w[0] / w[-1])
            self.bias_ratio = float(b[0] / b[-1])
        ratios = [r for r in (self.ratio, self.bias_ratio, *self.time_ratios.values())
                  if not np.isnan(r)]
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
        width = max([10] + [len(name) + 2 for name in self.norms.layers])
        lines = [f"{'layer':<{width}}{'||dW||':>12}{'||db||':>12}"]
        for name, w, b in zip(self.norms.layers, self.norms.weight, self.norms.bias):
            lines.append(f"{name:<{width}}{w:>12.3e}{b:>12.3e}")
        for name, ratio in self.time_ratios.items():
            lines.append(f"{name}: ||dL/dh|| at its first step / at its last step = {ratio:.3e} "
                         f"(over {len(self.through_time[name])} steps)")
        low, high = self.thresholds
        lines.append(f"first/last gradient ratio: weights {self.ratio:.3e}, biases {self.bias_ratio:.3e}"
                     f" -> {self.status} (vanishing below {low:g}, exploding above {high:g} or when "
                     f"not finite{', over the layers and through time' if self.time_ratios else ''})")
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
    recurrent = np.isin(model.plan.ops[:, codes.OP_KIND], codes.RECURRENT_KINDS).any()
    return GradientReport(gradient_norms(model, X, y), vanishing_ratio, exploding_ratio,
                          gradients_through_time(model, X, y) if recurrent else None)


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
