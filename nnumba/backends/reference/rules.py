"""User-defined optimizer rules (``nn.optim.rule``), in NumPy: the element-wise update
applied to the whole flat buffer.

A rule is a Python function of scalars, ``f(w, g, s_1, ..., s_k, h_1, ..., h_m, t)``,
returning the new w (no state) or the tuple (w, s_1, ..., s_k): the parameter,
its gradient, the optimizer's state slots, its hyperparameters (rounded to the
model's dtype, as the built-in rules do) and the step t >= 1. Here it is
called on the arrays themselves, so a rule written with arithmetic and NumPy
functions (np.sqrt, np.sign, np.where) runs vectorised; one that is not
array-friendly (an ``if`` on a value, ``math.sqrt``) falls back to a loop over
the elements. Either way each element gets the rule's own arithmetic.

Every backend's ``compile_rule(function, n_state, hp_columns, dtype)`` returns the
step its loop calls (the cpu one a compiled C callback, see ``cpu.rules``);
here: ``step(w, g, state, hp, t) -> status``, with the built-ins' verdict.
"""
import numpy as np

from .optim import verdict


def compile_rule(function, n_state, hp_columns, dtype):
    """``step(w, g, state, hp, t)``: w, state[0..n_state) updated in place by ``function``
    with the hyperparameters hp[hp_columns] (in w's dtype); returns the verdict."""
    dt = np.dtype(dtype).type
    columns = tuple(int(c) for c in hp_columns)

    def step(w, g, state, hp, t):
        hps = [dt(hp[c]) for c in columns]
        slots = [state[k] for k in range(n_state)]
        try:
            with np.errstate(all="ignore"):
                result = function(w, g, *slots, *hps, int(t))
            _store(result, w, slots)
        except (TypeError, ValueError):  # not array-friendly: element by element
            for i in range(w.shape[0]):
                with np.errstate(all="ignore"):
                    result = function(w[i], g[i], *(s[i] for s in slots), *hps, int(t))
                _store(result, w, slots, i)
        return verdict(w, state)

    return step


def _store(result, w, slots, i=Ellipsis):
    values = result if slots else (result,)
    if not isinstance(values, tuple) or len(values) != 1 + len(slots):
        raise TypeError(f"the rule returned {type(result).__name__}; it must return the new w"
                        f"{' and its ' + str(len(slots)) + ' state values, as a tuple' if slots else ''}")
    for target, value in zip((w, *slots), values):
        target[i] = value


# ---- user-defined activations (``nn.layers.activation``) ---------------------------------------
NUMERIC_STEP = 6.0554544523933395e-06  # cbrt(float64 eps): the central difference's best step


class Activations:
    """The custom activations of one model: ``forward(index, z, y)`` sets y = f(z) and
    ``backward(index, z, y, dy)`` multiplies dy by f'(z), for the model's index-th
    custom activation. Each spec is (f, derivative, of): the derivative a function of
    the input z ("input") or of the output y ("output"), or None: central differences
    of f at z with a step of cbrt(eps) max(1, |z|) (for checking only)."""

    def __init__(self, specs, dtype):
        self.specs, self.dtype = list(specs), np.dtype(dtype)

    def forward(self, index, z, y):
        f = self.specs[index][0]
        y[...] = _elementwise(f, z)

    def backward(self, index, z, y, dy):
        f, derivative, of = self.specs[index]
        if derivative is None:
            zz = np.asarray(z, np.float64)
            h = NUMERIC_STEP * np.maximum(1.0, np.abs(zz))
            slope = (_elementwise(f, zz + h) - _elementwise(f, zz - h)) / (2 * h)
        else:
            slope = _elementwise(derivative, z if of == "input" else y)
        dy *= np.asarray(slope, dtype=dy.dtype)


def _elementwise(f, *arrays):
    """f over arrays of one shape, element by element: called on the arrays themselves
    where f allows it, else on each element's values (f written for scalars only)."""
    shape = np.shape(arrays[0])
    with np.errstate(all="ignore"):
        try:
            out = np.asarray(f(*arrays))
        except (TypeError, ValueError):
            out = None
        if out is not None and out.shape == shape:
            return out
        return np.array([f(*v) for v in zip(*(np.ravel(a) for a in arrays))]).reshape(shape)


def compile_activations(specs, dtype):
    """The ``Activations`` of a model's custom activations, for ``dtype`` data."""
    return Activations(specs, dtype)


def apply_activation(activations, index, mode, z, y, dy):
    """Call compiled activations from Python (the same call on every backend): mode 0
    sets y = f(z), mode 1 multiplies dy by f'(z)."""
    if mode == 0:
        activations.forward(index, z, y)
    else:
        activations.backward(index, z, y, dy)


# ---- user-defined losses (``nn.losses.loss``) --------------------------------------------------
def compile_loss(value, gradient, dtype):
    """``loss(out, target, weights, dout, result)`` of an element-wise loss: the mean over
    all n k elements of value(out, target) (row i's terms times its weight w_i when
    ``weights`` is not empty) into result[0] (summed in float64; result[1] = 0), and
    dL/dout = gradient(out, target) w_i / (n k) into dout, as the built-in mse does."""

    def loss(out, target, weights, dout, result):
        e = _elementwise(value, out, target).astype(out.dtype)
        g = _elementwise(gradient, out, target).astype(out.dtype)
        scale = out.dtype.type(1) / out.dtype.type(out.size)
        if weights.shape[0]:
            result[0] = np.sum(weights.astype(np.float64)[:, None] * e, dtype=np.float64) / e.size
            dout[...] = g * (scale * weights)[:, None]
        else:
            result[0] = np.sum(e, dtype=np.float64) / e.size
            dout[...] = g * scale
        result[1] = 0.0
        return 0

    return loss


def apply_loss(loss, out, target, weights, dout, result):
    """Call a compiled loss from Python (the same call on every backend)."""
    return loss(out, target, weights, dout, result)
