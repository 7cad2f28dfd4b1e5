"""Gradient checking for users: ``nn.testing.gradcheck``, as ``torch.autograd.gradcheck``.

``gradcheck(component, X, y)`` compares the analytic gradient that nnumba's
kernels compute with central finite differences, in float64:

- a compiled ``nn.Sequential``: ``model.gradients(X, y)`` against
  (L(w + eps e_j) - L(w - eps e_j)) / (2 eps) for each parameter element w_j,
  L the mean loss over (X, y);
- a loss object (``nn.losses.MSE()`` ...): dL/d(output) from the loss kernel
  against differences of the loss value, X being the outputs and y the targets;
- an activation layer (``nn.Tanh()`` ...): the kernel's f'(z) (computed from
  y = f(z)) against (f(z + eps) - f(z - eps)) / (2 eps), X being the inputs z.

The model is checked on a float64 copy of itself (the user's model is never
touched), by default on the model's own backend: the gradient to trust is the
one the kernels that train the model compute, and a bug in the compiled cpu or
cuda kernels would not show on the reference backend. ``backend="numpy"``
checks the reference kernels instead (no compilation; on cpu the first check of
a float64 model compiles the float64 loop once, later runs load it from Numba's
cache). Float64 always: in float32 the rounding error of a difference
quotient, about 1e-7 / eps, swamps the truncation error eps^2.

The loss is the one ``model.gradients`` differentiates: the training-mode
forward pass, with BatchNorm's batch statistics and the Dropout mask of the
model's next step (a hash of the seed, the step, the op and the element, the
same for every evaluation), so that models with Dropout or BatchNorm are
checked as they train. Weight decay is part of the optimizer step, not of the
loss, and is not checked.

An element passes when |analytic - numeric| <= max(atol, rtol max(|analytic|,
|numeric|)); its relative error is |analytic - numeric| / max(|analytic|,
|numeric|, atol / rtol), so it passes exactly when that error is at most rtol.
As with any finite-difference check, a point within eps of a kink (ReLU at 0,
MAE at a tie, Huber at |d| = 1, a max-pool tie) can fail although the
derivative is right: check at random points, away from them.
"""
import numpy as np

from . import _checks
from .backends import codes, get_backend
from .layers import Activation, CustomActivation, check_activation
from .losses import Loss
from .losses import check_supported as check_loss

__all__ = ["gradcheck", "GradcheckResult", "ParameterCheck"]


class ParameterCheck:
    """The check of one parameter (or of a component's one derivative).

    name ("W0", "b0", "W_ih0", ... as in ``model.plan.params``; "dL/d(output)" for
    a loss, "f'(z)" for an activation), shape, n_elements, n_checked, n_failed,
    max_abs_error, max_rel_error, and the worst element: ``worst_index`` (an index
    into the parameter's shape), ``value`` (the parameter or input there),
    ``analytic`` and ``numeric``; ``passed``."""

    def __init__(self, name, shape, n_elements, n_checked, n_failed, max_abs_error,
                 max_rel_error, worst_index, value, analytic, numeric):
        self.name, self.shape = name, tuple(shape)
        self.n_elements, self.n_checked, self.n_failed = n_elements, n_checked, n_failed
        self.max_abs_error, self.max_rel_error = max_abs_error, max_rel_error
        self.worst_index, self.value = worst_index, value
        self.analytic, self.numeric = analytic, numeric

    @property
    def passed(self):
        return self.n_failed == 0

    @property
    def element(self):
        """The worst element as text, e.g. "W0[1, 2]"."""
        return f"{self.name}[{', '.join(map(str, self.worst_index))}]"

    def __repr__(self):
        return (f"ParameterCheck({self.name!r}, max_rel_error={self.max_rel_error:.3g}, "
                f"passed={self.passed})")


class GradcheckResult:
    """What ``gradcheck`` found: ``checks`` (one ``ParameterCheck`` per parameter, in
    ``get_weights()`` order), ``errors`` ({name: worst relative error}), ``passed``,
    and the settings (component, backend, eps, atol, rtol). True as a bool when it
    passed; ``print(result)`` shows a table."""

    def __init__(self, component, backend, eps, atol, rtol, checks):
        self.component, self.backend = component, backend
        self.eps, self.atol, self.rtol = eps, atol, rtol
        self.checks = checks

    @property
    def passed(self):
        return all(c.passed for c in self.checks)

    @property
    def errors(self):
        return {c.name: c.max_rel_error for c in self.checks}

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return f"<GradcheckResult {self.component}: {'passed' if self.passed else 'FAILED'}>"

    def _settings(self):
        return (f"backend {self.backend!r}, float64, eps={self.eps:g}, atol={self.atol:g}, "
                f"rtol={self.rtol:g}")

    def __str__(self):
        lines = [f"gradcheck of {self.component} ({self._settings()}): "
                 f"{'passed' if self.passed else 'FAILED'}",
                 f"{'parameter':<16}{'shape':>12}{'checked':>12}{'max abs err':>13}"
                 f"{'max rel err':>13}  {'worst element':<22}{'result':>7}"]
        for c in self.checks:
            shape = "x".join(map(str, c.shape))
            lines.append(f"{c.name:<16}{shape:>12}{f'{c.n_checked}/{c.n_elements}':>12}"
                         f"{c.max_abs_error:>13.2e}{c.max_rel_error:>13.2e}  {c.element:<22}"
                         f"{'ok' if c.passed else f'{c.n_failed} bad':>7}")
        return "\n".join(lines)

    def failure_message(self):
        """The ValueError's text: the worst failing element, then the table."""
        bad = [c for c in self.checks if not c.passed]
        worst = max(bad, key=lambda c: np.nan_to_num(c.max_rel_error, nan=np.inf))
        failing = ", ".join(f"{c.name} ({c.n_failed} of {c.n_checked} checked)" for c in bad)
        return (f"gradcheck failed for {self.component} ({self._settings()}): at {worst.element} "
                f"= {worst.value:.6g} the analytic derivative is {worst.analytic:.10g} but the "
                f"numeric one is {worst.numeric:.10g}, relative error {worst.max_rel_error:.3g} "
                f"> rtol {self.rtol:g}. Failing: {failing}.\n{self}")


def gradcheck(component, X=None, y=None, *, eps=1e-6, atol=1e-5, rtol=1e-3, max_elements=None,
              seed=0, backend=None, raise_exception=True):
    """Compare analytic gradients with central finite differences, in float64.

    Parameters
    ----------
    component : a compiled nn.Sequential, a loss object or an activation layer
        See the module docstring for what is differentiated in each case.
    X, y : for a model, its inputs and targets (keep them tiny: each checked
        element costs two forward and backward passes over X). For a loss, X the outputs (n, k) and y
        the targets (as ``fit`` takes them); for an activation, X the inputs
        (any shape) and no y. For a loss or an activation both may be left out:
        a small random point (seeded) is drawn.
    eps : the finite-difference step (> 0).
    atol, rtol : tolerances (atol >= 0, rtol > 0); see the module docstring.
    max_elements : int >= 1 or None
        Check at most this many elements per parameter: a random subset (drawn
        from ``seed``, sorted) where a parameter has more; None checks all.
    seed : int >= 0, for that subset and for a random point.
    backend : None, "numpy", "cpu" or "cuda"
        Where the float64 copy runs: None is the model's own backend (the
        reference, "numpy", for a loss or an activation).
    raise_exception : bool
        True (the default, as torch): a failure raises ValueError naming the
        component, the worst element (parameter and index), the analytic and
        numeric values and the relative error. False: return the result.

    Returns a ``GradcheckResult`` (true as a bool when every element passed).
    A loss, optimizer or activation that ``compile`` refuses is refused here
    too, with the same TypeError.
    """
    eps = _checks.positive(eps, "eps")
    atol = _checks.real(atol, "atol", low=0.0)
    rtol = _checks.positive(rtol, "rtol")
    if max_elements is not None:
        max_elements = _checks.integer(max_elements, "max_elements", minimum=1)
    seed = _checks.integer(seed, "seed", minimum=0)
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be None, 'numpy', 'cpu' or 'cuda', got "
                        f"{type(backend).__name__}")
    raise_exception = _checks.boolean(raise_exception, "raise_exception")
    options = _Options(eps, atol, rtol, max_elements, np.random.default_rng(seed))

    from .model import Sequential  # (here: the model module may come to import this one)

    if isinstance(component, type) and issubclass(component, (Activation, Loss)):
        raise TypeError(f"gradcheck takes an instance, not the class {component.__name__}: "
                        f"write {component.__name__}()")
    if isinstance(component, Sequential):
        result = _check_model(component, X, y, backend, options)
    elif isinstance(component, Loss):
        result = _check_loss(component, X, y, backend or "numpy", options)
    elif isinstance(component, Activation):
        if y is not None:
            raise ValueError("an activation has no targets: give gradcheck(activation, z) only")
        result = _check_activation(component, X, backend or "numpy", options)
    else:
        raise TypeError(f"gradcheck checks a compiled nn.Sequential, a loss object "
                        f"(nn.losses.MSE(), ...) or an activation layer (nn.Tanh(), ...); got "
                        f"{type(component).__name__}")
    if raise_exception and not result.passed:
        raise ValueError(result.failure_message())
    return result


class _Options:
    def __init__(self, eps, atol, rtol, max_elements, rng):
        self.eps, self.atol, self.rtol = eps, atol, rtol
        self.max_elements, self.rng = max_elements, rng

    def subset(self, size):
        """The flat indices to check of a parameter of ``size`` elements."""
        if self.max_elements is None or size <= self.max_elements:
            return np.arange(size)
        return np.sort(self.rng.choice(size, self.max_elements, replace=False))

    def compare(self, name, shape, indices, values, analytic, numeric):
        """The ParameterCheck of the checked elements (flat ``indices`` into ``shape``)."""
        analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            abs_err = np.abs(analytic - numeric)
            scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), self.atol / self.rtol)
            rel = abs_err / scale
        rel = np.where(np.isfinite(rel), rel, np.inf)  # a NaN or inf derivative always fails
        abs_err = np.where(np.isfinite(abs_err), abs_err, np.inf)
        k = int(np.argmax(rel))
        return ParameterCheck(
            name, shape, int(np.prod(shape)), len(indices), int(np.count_nonzero(rel > self.rtol)),
            float(abs_err.max()), float(rel[k]),
            tuple(int(i) for i in np.unravel_index(int(indices[k]), shape)), float(values[k]),
            float(analytic[k]), float(numeric[k]))


# ---- a model ------------------------------------------------------------------------------
def _float64_twin(model, backend):
    """A float64 copy of a compiled model on ``backend``: the same layers, weights,
    running statistics, loss, dropout seed and step count (hence the same dropout
    masks as ``model.gradients``), and an optimizer of its own that never steps."""
    from .model import Sequential
    from .optim import SGD

    twin = Sequential(model.layers, backend=backend, dtype="float64", seed=0,
                      input_shape=model.input_shape)
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    memory = twin._backend.memory
    memory.copy_from_host(twin._buffers,
                          model._backend.memory.to_host(model._buffers).astype(np.float64))
    twin._dropout_seed = model._dropout_seed
    twin.compile(model.loss, optimizer=SGD())
    twin.optimizer.t = model.optimizer.t
    return twin


def _check_model(model, X, y, backend, opt):
    if model.loss is None:
        raise RuntimeError("gradcheck of a model needs its loss: call model.compile(loss=..., "
                           "optimizer=...) first")
    if X is None or y is None:
        raise ValueError("gradcheck of a model needs inputs X and targets y (a few samples)")
    from .loops import TRAIN

    twin = _float64_twin(model, backend or model.backend)
    analytic = twin.gradients(X, y)
    X, T, labels = twin._prepare(X, y)
    x, t, lab = twin._upload(X, T, labels)
    memory = twin._backend.memory
    host = memory.to_host(twin._params)
    scratch = memory.zeros(twin.plan.n_params, np.float64)
    checks = []
    with twin._workspace(X.shape[0]) as ws:
        def loss_at(j, value):
            # the loss of the very pass that model.gradients differentiates
            host[j] = value
            memory.copy_from_host(twin._params, host)
            twin._loop.loss_and_gradients(twin, scratch, x, t, lab, ws, TRAIN)
            return float(memory.to_host(ws.result)[0])

        for (name, off, shape), grad in zip(twin.plan.params, analytic):
            indices = opt.subset(grad.size)
            numeric = np.empty(indices.size)
            values = host[off + indices].copy()
            for k, i in enumerate(indices):
                w = values[k]
                up, down = w + opt.eps, w - opt.eps
                numeric[k] = (loss_at(off + i, up) - loss_at(off + i, down)) / (up - down)
                host[off + i] = w
            memory.copy_from_host(twin._params, host)
            checks.append(opt.compare(name, shape, indices, values, grad.ravel()[indices], numeric))
    return GradcheckResult(repr(model), twin.backend, opt.eps, opt.atol, opt.rtol, checks)


# ---- a loss -------------------------------------------------------------------------------
def _loss_kernel(backend, loss):
    """f(out, target, labels, dout, result): the backend's kernel for ``loss`` (its
    value into result[0], dL/d(out) into dout), on backend arrays."""
    code = loss.code
    if code == codes.CUSTOM_LOSS:  # compiled by the backend's rules, called as the loops do
        compiled = backend.rules.compile_loss(loss.value_function, loss.gradient_function,
                                              np.float64)
        return lambda out, target, labels, dout, result: backend.rules.apply_loss(
            compiled, out, target, out[:0, 0], dout, result)
    return lambda out, target, labels, dout, result: backend.losses.loss_forward_backward(
        code, out, target, labels, dout, result)


def _random_targets(loss, n, k, rng):
    if loss.code == codes.CROSS_ENTROPY:
        return rng.integers(0, k, size=n)
    if loss.code == codes.BINARY_CROSS_ENTROPY:  # targets in [0, 1]
        return rng.uniform(0.0, 1.0, size=(n, k))
    return rng.normal(size=(n, k))


def _check_loss(loss, outputs, targets, backend, opt):
    check_loss(loss)
    be = get_backend(backend)
    memory = be.memory
    if outputs is None:
        if targets is not None:
            raise ValueError("give the outputs X together with the targets y")
        outputs = opt.rng.normal(size=(5, 3))
        targets = _random_targets(loss, 5, 3, opt.rng)
    elif targets is None:
        raise ValueError(f"a loss needs targets: gradcheck({loss!r}, outputs, targets)")
    out = _checks.array_2d(outputs, "outputs (X)", dtype=np.float64)
    n, k = out.shape
    T, labels = loss.prepare_targets(targets, n, k, np.float64, name="targets (y)")
    kernel = _loss_kernel(be, loss)
    t, lab = memory.to_backend(T), memory.to_backend(labels)
    dev = memory.to_backend(out)
    dout = memory.zeros((n, k), np.float64)
    result = memory.zeros(2, np.float64)

    def loss_at(host):
        memory.copy_from_host(dev, host)
        kernel(dev, t, lab, dout, result)
        return float(memory.to_host(result)[0])

    loss_at(out)
    analytic = memory.to_host(dout).ravel()
    indices = opt.subset(out.size)
    flat = out.ravel()  # a view: perturbing it perturbs out
    values = flat[indices].copy()
    numeric = np.empty(indices.size)
    for m, i in enumerate(indices):
        up, down = values[m] + opt.eps, values[m] - opt.eps
        flat[i] = up
        plus = loss_at(out)
        flat[i] = down
        numeric[m] = (plus - loss_at(out)) / (up - down)
        flat[i] = values[m]
    check = opt.compare("dL/d(output)", out.shape, indices, values, analytic[indices], numeric)
    return GradcheckResult(repr(loss), be.name, opt.eps, opt.atol, opt.rtol, [check])


# ---- an activation ------------------------------------------------------------------------
def _activation_kernels(backend, layer):
    """(f(z, y), df(z, y, dy)): the backend's forward (y = f(z)) and backward (dy <- dy f'(z))
    kernels of ``layer``, on 2-D float64 backend arrays (a custom activation's compiled by
    the backend's ``rules``)."""
    if isinstance(layer, CustomActivation):
        rules = backend.rules
        compiled = rules.compile_activations(
            [(layer.function, layer.derivative, layer.derivative_of)], np.float64)
        return (lambda z, y: rules.apply_activation(compiled, 0, 0, z, y, y),
                lambda z, y, dy: rules.apply_activation(compiled, 0, 1, z, y, dy))
    a = backend.activations
    code, alpha = layer.code, float(layer.alpha)
    return (lambda z, y: a.activation_forward(code, alpha, z, y),
            lambda z, y, dy: a.activation_backward(code, alpha, y, dy))


def _check_activation(layer, z, backend, opt):
    check_activation(layer)
    be = get_backend(backend)
    memory = be.memory
    if z is None:
        z = opt.rng.normal(scale=2.0, size=(4, 5))
    z = np.asarray(z)
    _checks.real_numbers(z, "inputs (X)")
    if z.size == 0:
        raise ValueError("inputs (X) is empty")
    shape = z.shape
    z = _checks.finite_as(z, "inputs (X)", np.float64).reshape(1, -1)
    forward, backward = _activation_kernels(be, layer)

    def f(values):
        out = memory.zeros(values.shape, np.float64)
        forward(memory.to_backend(values), out)
        return out

    y = f(z)
    dy = memory.to_backend(np.ones_like(z))
    backward(memory.to_backend(z), y, dy)
    analytic = memory.to_host(dy).ravel()
    up, down = z + opt.eps, z - opt.eps
    # elementwise: every element is perturbed at once, each output depends on its own input
    numeric = ((memory.to_host(f(up)) - memory.to_host(f(down))) / (up - down)).ravel()
    indices = opt.subset(z.size)
    check = opt.compare("f'(z)", shape, indices, z.ravel()[indices], analytic[indices],
                        numeric[indices])
    return GradcheckResult(repr(layer), be.name, opt.eps, opt.atol, opt.rtol, [check])
