"""Optimizers: hyperparameters, state (named arrays and a step counter), state_dict.

The update rules are kernels (``backends.<name>.optim``), one fused pass over
the model's flat parameter buffer per step; their formulas are in
``nnumba.backends.reference.optim`` (and explained in docs/topics.md,
"Optimizers"). State starts at zero and ``t`` counts the steps taken.

Every optimizer also takes ``clip_grad_norm`` (rescale the global gradient
norm to at most this, as torch.nn.utils.clip_grad_norm_) and
``clip_grad_value`` (clamp each gradient component, as clip_grad_value_);
``fit``'s arguments of the same names override them. And ``weight_decay``
(lambda >= 0, default 0): torch's coupled L2 penalty, g <- g + lambda w after
clipping, on the weights of Dense and Conv1D layers only (biases and
BatchNorm's gamma and beta are not decayed, as usual). ``AdamW`` decouples it
instead, as torch.optim.AdamW: w <- (1 - lr lambda) w, then the Adam step.
"""
import weakref

import numpy as np

from . import _checks
from .backends import codes, get_backend


class Hyperparameter:
    """A validated attribute: setting it (in the constructor, from a callback, by
    hand) checks the value at once and raises naming it, so a schedule or a typo
    can never train with lr = -1."""

    def __init__(self, check):
        self.check = check

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else obj.__dict__[self.name]

    def __set__(self, obj, value):
        obj.__dict__[self.name] = self.check(value, self.name)


def _learning_rate(value, name):
    """A positive finite number, or a schedule (an object with ``values(first_step, n)``,
    from ``nnumba.schedules``; its saved form {"schedule": config} is rebuilt)."""
    if isinstance(value, dict) and "schedule" in value:
        from .schedules import schedule_from_config

        return schedule_from_config(value["schedule"])
    if hasattr(value, "values") and callable(value.values) and not isinstance(value, dict):
        return value
    return _checks.positive(value, name)


def _unit_interval(value, name):
    return _checks.real(value, name, low=0.0, high=1.0, high_open=True)


def _non_negative(value, name):
    return _checks.real(value, name, low=0.0)


class Optimizer:
    """Base class. Subclasses set ``code``, ``slots`` (names of the state arrays)
    and implement ``hyperparameters()``. ``lr`` may be a number or a learning-rate
    schedule (``nnumba.schedules``), evaluated at every iteration of the compiled
    loop."""

    code = None
    slots = ()

    decoupled = False  # AdamW: weight decay applied to w, not added to g

    lr = Hyperparameter(_learning_rate)
    weight_decay = Hyperparameter(_non_negative)
    clip_grad_norm = Hyperparameter(_checks.optional_positive)
    clip_grad_value = Hyperparameter(_checks.optional_positive)

    def __init__(self, lr, clip_grad_norm=None, clip_grad_value=None, weight_decay=0.0):
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        self.t = 0
        self._state = None      # backend array (len(slots), n_params), made by bind()
        self._backend = None

    @property
    def name(self):
        return type(self).__name__.lower()

    @property
    def _model(self):
        """The model this optimizer trains (None when none, or when it is gone): held by
        a weak reference, so that a model and its optimizer form no reference cycle and
        a dropped model is freed at once (``nnumba._spares``)."""
        ref = self.__dict__.get("_model_ref")
        return None if ref is None else ref()

    @_model.setter
    def _model(self, model):
        self._model_ref = weakref.ref(model)

    HYPERPARAMETERS = ("lr", "clip_grad_norm", "clip_grad_value", "weight_decay")

    def hyperparameters(self):
        """The constructor's arguments, as saved (a schedule as {"schedule": config})."""
        return {key: self._hyperparameter_value(key) for key in self.HYPERPARAMETERS}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    @property
    def scheduled(self):
        """Whether lr is a schedule."""
        return not isinstance(self.lr, float)

    def lr_at(self, step):
        """The learning rate of optimizer step ``step`` (1 for the first update)."""
        return float(self.lr.values(step, 1)[0]) if self.scheduled else self.lr

    def learning_rates(self, first_step, n):
        """The learning rates of steps first_step, ..., first_step + n - 1 as a float64
        array, or an empty one when lr is a number (the loops then read hp)."""
        if not self.scheduled:
            return np.zeros(0)
        values = np.asarray(self.lr.values(first_step, n), dtype=np.float64)
        if values.shape != (n,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"the schedule {self.lr!r} gave learning rates that are not all "
                             f"positive and finite for steps {first_step} to {first_step + n - 1}")
        return values

    def _hyperparameter_value(self, key):
        value = getattr(self, key)
        if key == "lr" and self.scheduled:
            return {"schedule": value.config()}
        return value

    def hp_vector(self):
        """The hyperparameters as the float64 vector the kernels read (codes.HP_*), with
        the learning rate of the next step."""
        hp = np.zeros(codes.N_HP)
        hp[codes.HP_LR] = self.lr_at(self.t + 1)
        hp[codes.HP_WEIGHT_DECAY] = self.weight_decay
        hp[codes.HP_DECOUPLED] = float(self.decoupled)
        return hp

    # ---- state ---------------------------------------------------------------
    def bind(self, n_params, dtype, backend):
        """Allocate zero state for a parameter buffer (once); refuse a different one."""
        key = (int(n_params), np.dtype(dtype), backend.name)
        if self._state is not None:
            if key != self._key:
                raise ValueError(f"this {type(self).__name__} already holds state for "
                                 f"{self._key[0]} {self._key[1]} parameters on backend "
                                 f"{self._key[2]!r}; use a new optimizer for another model")
            return
        self._key = key
        self._backend = backend
        self._state = backend.memory.zeros((len(self.slots), n_params), dtype)

    @property
    def state(self):
        """The state arrays as the backend holds them: shape (len(slots), n_params)."""
        return self._state

    def state_dict(self):
        """{"optimizer", "hyperparameters", "t", "state": {slot: host copy}} (torch-style)."""
        state = {}
        if self._state is not None:
            host = self._backend.memory.to_host(self._state)
            state = {slot: host[i] for i, slot in enumerate(self.slots)}
        return {"optimizer": self.name, "hyperparameters": self.hyperparameters(), "t": self.t,
                "state": state}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters, step count and state saved by ``state_dict``.

        An optimizer not yet bound to a model is bound to the saved state, on
        the numpy backend; a bound one must match its number of parameters.
        """
        if not isinstance(state_dict, dict) or state_dict.get("optimizer") != self.name:
            found = state_dict.get("optimizer") if isinstance(state_dict, dict) else state_dict
            raise ValueError(f"state_dict is for optimizer {found!r}, not {self.name!r}")
        checked = type(self)(**state_dict["hyperparameters"])
        t = _checks.integer(state_dict["t"], "t", minimum=0)
        saved = state_dict.get("state") or {}
        if saved:
            if set(saved) != set(self.slots):
                raise ValueError(f"state_dict holds state {sorted(saved)}, expected {list(self.slots)}")
            host = np.stack([np.asarray(saved[slot]) for slot in self.slots])
            if host.ndim != 2:
                raise ValueError(f"each state array must be 1-D, got shape {host.shape[1:]}")
            _checks.finite(host, "optimizer state")
            if self._state is not None and host.shape != self._state.shape:
                raise ValueError(f"state_dict holds state for {host.shape[1]} parameters, "
                                 f"this optimizer for {self._state.shape[1]}")
        for key in self.hyperparameters():
            setattr(self, key, getattr(checked, key))
        self.t = t
        if saved:
            if self._state is None:
                self.bind(host.shape[1], host.dtype, get_backend("numpy"))
            self._backend.memory.copy_from_host(self._state, host.astype(self._key[1]))
        elif self._state is not None:
            self._backend.memory.copy_from_host(self._state, np.zeros(self._state.shape, self._key[1]))

    # ---- a step on plain arrays ------------------------------------------------
    def step(self, w, g):
        """Update the NumPy array w in place from its gradient g, as one training step does.

        For using an optimizer outside a model (e.g. on a 2-D test function, as
        the notebooks do). Uses the reference kernels; w keeps its dtype.
        """
        if not isinstance(w, np.ndarray) or w.ndim != 1:
            raise TypeError("w must be a 1-D NumPy array")
        g = np.ascontiguousarray(g, dtype=w.dtype)
        if g.shape != w.shape:
            raise ValueError(f"g has shape {g.shape} but w has shape {w.shape}")
        reference = get_backend("numpy")
        self.bind(w.shape[0], w.dtype, reference)
        if self.clip_grad_norm is not None:
            g = g.copy()
            reference.gradients.clip_by_norm(g, float(np.sqrt(np.dot(g, g))), self.clip_grad_norm)
        if self.clip_grad_value is not None:
            g = np.clip(g, -self.clip_grad_value, self.clip_grad_value)
        hp = self.hp_vector()
        if self.weight_decay:
            g = g.copy()
            reference.gradients.apply_weight_decay(w, g, hp)
        self.t += 1
        self._apply(reference, w, g, hp)

    def _apply(self, reference, w, g, hp):
        return reference.optim.optimizer_step(self.code, w, g, self._state, hp, self.t)


class SGD(Optimizer):
    """Plain gradient descent: w <- w - lr g."""

    code = codes.SGD

    def __init__(self, lr=0.01, clip_grad_norm=None, clip_grad_value=None, weight_decay=0.0):
        super().__init__(lr, clip_grad_norm, clip_grad_value, weight_decay)


class Momentum(Optimizer):
    """Momentum as an exponentially weighted moving average of gradients:
    v <- beta v + (1 - beta) g;  w <- w - lr v.

    Equals ``torch.optim.SGD(lr=lr * (1 - beta), momentum=beta)``.
    """

    code = codes.MOMENTUM
    slots = ("v",)
    HYPERPARAMETERS = ("lr", "beta", "clip_grad_norm", "clip_grad_value", "weight_decay")
    beta = Hyperparameter(_unit_interval)

    def __init__(self, lr=0.01, beta=0.9, clip_grad_norm=None, clip_grad_value=None,
                 weight_decay=0.0):
        super().__init__(lr, clip_grad_norm, clip_grad_value, weight_decay)
        self.beta = beta

    def hp_vector(self):
        hp = super().hp_vector()
        hp[codes.HP_BETA1] = self.beta
        return hp


class RMSprop(Optimizer):
    """RMSprop (Hinton): s <- beta s + (1 - beta) g^2; w <- w - lr g / sqrt(s + eps).

    ``eps_inside_sqrt=True`` (the default, the classic formulation) puts eps under the
    square root; False gives PyTorch's and Keras' form w <- w - lr g / (sqrt(s) + eps).
    """

    code = codes.RMSPROP
    slots = ("s",)
    HYPERPARAMETERS = ("lr", "beta", "eps", "eps_inside_sqrt", "clip_grad_norm", "clip_grad_value",
                       "weight_decay")
    beta = Hyperparameter(_unit_interval)
    eps = Hyperparameter(_checks.positive)  # it divides: 0 gives 0/0 on a zero gradient
    eps_inside_sqrt = Hyperparameter(_checks.boolean)

    def __init__(self, lr=0.001, beta=0.9, eps=1e-8, eps_inside_sqrt=True, clip_grad_norm=None,
                 clip_grad_value=None, weight_decay=0.0):
        super().__init__(lr, clip_grad_norm, clip_grad_value, weight_decay)
        self.beta, self.eps, self.eps_inside_sqrt = beta, eps, eps_inside_sqrt

    def hp_vector(self):
        hp = super().hp_vector()
        hp[codes.HP_BETA1] = self.beta
        hp[codes.HP_EPS] = self.eps
        hp[codes.HP_EPS_INSIDE] = float(self.eps_inside_sqrt)
        return hp


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015): Momentum and RMSprop with bias correction.

    m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2;
    w <- w - lr mhat / (sqrt(vhat) + eps), mhat = m / (1 - beta1^t), vhat = v / (1 - beta2^t);
    eps outside the square root, as torch.optim.Adam.
    """

    code = codes.ADAM
    slots = ("m", "v")
    HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps", "clip_grad_norm", "clip_grad_value",
                       "weight_decay")
    beta1 = Hyperparameter(_unit_interval)
    beta2 = Hyperparameter(_unit_interval)
    eps = Hyperparameter(_checks.positive)  # it divides: 0 gives 0/0 on a zero gradient

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, clip_grad_norm=None,
                 clip_grad_value=None, weight_decay=0.0):
        super().__init__(lr, clip_grad_norm, clip_grad_value, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def hp_vector(self):
        hp = super().hp_vector()
        hp[codes.HP_BETA1] = self.beta1
        hp[codes.HP_BETA2] = self.beta2
        hp[codes.HP_EPS] = self.eps
        return hp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019), as
    torch.optim.AdamW: w <- (1 - lr lambda) w, then the Adam step from the
    undecayed gradient. Default weight_decay 0.01, torch's."""

    decoupled = True

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, clip_grad_norm=None,
                 clip_grad_value=None, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, clip_grad_norm, clip_grad_value, weight_decay)


OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Momentum, RMSprop, Adam, AdamW)}


# ---- user-defined rules -------------------------------------------------------------------
RULES = {}  # name -> Rule subclass, filled by ``rule``: how nn.load finds a saved model's rule


class Rule(Optimizer):
    """Base of the optimizers that ``rule`` makes from a Python function of scalars.

    The function, ``f(w, g, s_1, ..., s_k, h_1, ..., h_m, t)``, gets one parameter w,
    its gradient g, the rule's state slots (zero at the start, saved with the model),
    its hyperparameters (rounded to the model's dtype) and the step t >= 1, and
    returns the new w, or with state the tuple (w, s_1, ..., s_k). It is compiled
    into the fused training loop: with @njit and inlined into one pass over the
    parameters on cpu (a C callback the loop takes, so the loop itself is compiled
    once for all rules), as a device function on cuda, and called on whole arrays
    by the numpy reference. Clipping, weight decay (coupled, applied to g before the
    rule), learning-rate schedules (for ``lr``) and the non-finite checks work as
    for the built-ins.
    """

    code = codes.RULE
    function = None
    rule_hyperparameters = ()   # the function's hyperparameter arguments, in order

    def __init__(self, clip_grad_norm=None, clip_grad_value=None, weight_decay=0.0, **values):
        lr = values.pop("lr", None)
        super().__init__(lr if lr is not None else 0.001, clip_grad_norm, clip_grad_value,
                         weight_decay)
        unknown = sorted(set(values) - set(self.rule_hyperparameters))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected hyperparameter(s) "
                            f"{', '.join(unknown)}; its hyperparameters are "
                            f"{', '.join(self.rule_hyperparameters)}")
        for name in self.rule_hyperparameters:
            if name != "lr":
                self.__dict__[name] = _checks.real(values.get(name, self.defaults[name]), name)
        self._steps = {}

    @property
    def name(self):
        return self.rule_name

    @property
    def HYPERPARAMETERS(self):
        return (*self.rule_hyperparameters, "clip_grad_norm", "clip_grad_value", "weight_decay")

    def hp_vector(self):
        """The built-ins' slots (lr, weight decay) and then, from codes.N_HP on, the
        rule's hyperparameters other than lr, in the function's order."""
        hp = super().hp_vector()
        extra = [getattr(self, name) for name in self.rule_hyperparameters if name != "lr"]
        return np.concatenate([hp, np.asarray(extra, dtype=np.float64)])

    def hp_columns(self):
        """Where each of the function's hyperparameters sits in ``hp_vector``."""
        columns, k = [], codes.N_HP
        for name in self.rule_hyperparameters:
            if name == "lr":
                columns.append(codes.HP_LR)
            else:
                columns.append(k)
                k += 1
        return tuple(columns)

    def compiled_step(self, backend, dtype):
        """The rule compiled for ``backend`` and ``dtype`` (``backends.<b>.rules``), made
        once per class and process."""
        key = (backend.name, np.dtype(dtype).name)
        cache = type(self)._compiled
        if key not in cache:
            cache[key] = backend.rules.compile_rule(self.function, len(self.slots),
                                                    self.hp_columns(), dtype)
        return cache[key]

    def _apply(self, reference, w, g, hp):
        return self.compiled_step(reference, w.dtype)(w, g, self._state, hp, self.t)


def rule(state=(), defaults=None, name=None):
    """Make an optimizer from an element-wise update rule, e.g. Lion::

        @nn.optim.rule(state=("m",), defaults=dict(lr=1e-4, beta1=0.9, beta2=0.99))
        def lion(w, g, m, lr, beta1, beta2, t):
            c = beta1 * m + (1 - beta1) * g
            return w - lr * np.sign(c), beta2 * m + (1 - beta2) * g

        model.compile("cross_entropy", lion(lr=3e-4))

    ``state``: the names of the state slots (each a buffer like the parameters,
    zero at the start); ``defaults``: every hyperparameter the function takes, with
    its default (``lr`` is the learning rate: schedules apply to it). The function's
    arguments must be w, g, the state slots in order, the hyperparameters, and t;
    it returns the new w, or with state the tuple (w, *new state). Write it with
    arithmetic, ``math`` or NumPy scalar functions: Numba compiles it (see
    ``Rule``). Returns the optimizer class, registered under ``name`` (default:
    the function's name) so that ``nn.load`` rebuilds a saved model's rule once the
    code defining it has run.
    """
    import inspect

    state = tuple(state)
    defaults = dict(defaults or {})

    def make(function):
        args = list(inspect.signature(function).parameters)
        expected_head = ["w", "g", *state]
        if args[:len(expected_head)] != expected_head or not args or args[-1] != "t":
            raise TypeError(f"the rule {function.__name__} takes ({', '.join(args)}); it must take "
                            f"(w, g{''.join(', ' + s for s in state)}, <hyperparameters>, t)")
        hps = tuple(args[len(expected_head):-1])
        missing = [h for h in hps if h not in defaults]
        extra = [h for h in defaults if h not in hps]
        if missing or extra:
            raise TypeError(f"the rule {function.__name__}: defaults must give exactly its "
                            f"hyperparameters {', '.join(hps) or '(none)'}"
                            f"{'; missing ' + ', '.join(missing) if missing else ''}"
                            f"{'; not arguments: ' + ', '.join(extra) if extra else ''}")
        if "lr" not in hps:
            raise TypeError(f"the rule {function.__name__} has no lr argument: every optimizer "
                            f"has a learning rate (schedules and the CLI set it)")
        rule_name = (name or function.__name__).lower()
        if rule_name in OPTIMIZERS:
            raise ValueError(f"the rule's name {rule_name!r} is a built-in optimizer's: give "
                             f"name=... to rule()")
        cls = type(function.__name__, (Rule,), {
            "function": staticmethod(function), "slots": state, "rule_hyperparameters": hps,
            "defaults": defaults, "rule_name": rule_name, "_compiled": {},
            "__doc__": function.__doc__ or f"The user-defined rule {function.__name__}.",
            "__module__": function.__module__})
        RULES[rule_name] = cls
        return cls

    return make


def get_optimizer(optimizer):
    """An optimizer from a name in OPTIMIZERS (default hyperparameters) or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, Rule):
        return optimizer()
    if isinstance(optimizer, str):
        if optimizer.lower() in RULES:
            return RULES[optimizer.lower()]()
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}: expected one of "
                             f"{', '.join(map(repr, OPTIMIZERS))} or an nn.optim object")
        return OPTIMIZERS[optimizer.lower()]()
    raise TypeError(f"optimizer must be a name or an nn.optim object, got {type(optimizer).__name__}")


# what a user might write to define an update rule (``step`` is this module's own, for NumPy
# arrays): fit calls none of it, it runs the kernel of the optimizer's code
_RULE_METHODS = ("step", "__call__", "update", "update_step", "apply", "apply_gradients",
                 "minimize", "rule")
# class attributes that choose the kernel and its state: a subclass keeps the built-in's
_KERNEL_ATTRIBUTES = ("code", "slots", "decoupled", "HYPERPARAMETERS")


def check_supported(optimizer):
    """Refuse (TypeError) an optimizer that ``fit`` cannot train with as written.

    fit runs the update rule of the optimizer's ``code`` as one compiled pass over
    all parameters, reading the hyperparameters through ``hp_vector`` and
    ``learning_rates``. Accepted: a built-in optimizer, or a subclass of one that
    only changes the defaults of its hyperparameters (in ``__init__``). Refused:
    a new Optimizer subclass (no built-in kernel), a subclass defining its own
    ``step`` or another update method (``fit`` would silently run the built-in
    rule), one that changes ``code``, ``slots``, ``decoupled`` or
    ``HYPERPARAMETERS``, and one with attributes that no kernel reads."""
    cls = type(optimizer)
    if cls in RULES.values():
        return  # made by nn.optim.rule: its function is what fit compiles
    names = ", ".join(map(repr, OPTIMIZERS))
    builtin = next((c for c in cls.__mro__ if c in OPTIMIZERS.values()), None)
    supported = (f"Supported: the built-in optimizers by name ({names}) or class "
                 f"(nn.optim.{', nn.optim.'.join(c.__name__ for c in OPTIMIZERS.values())}), "
                 f"with their hyperparameters")
    if builtin is None:
        raise TypeError(f"{cls.__name__} is not one of nnumba's optimizers: fit runs an update "
                        f"rule as a compiled kernel chosen by its code, and there is no kernel for "
                        f"{cls.__name__}. {supported}, and subclasses of them that only change "
                        f"the defaults of those hyperparameters in __init__")
    supported += (f" ({builtin.__name__}: {', '.join(builtin.HYPERPARAMETERS)}), and subclasses "
                  f"that only change their defaults in __init__")
    user = cls.__mro__[:cls.__mro__.index(builtin)]
    overridden = [n for n in _RULE_METHODS if any(n in c.__dict__ for c in user)]
    overridden += [n for n in _KERNEL_ATTRIBUTES if getattr(cls, n) != getattr(builtin, n)]
    known = set(vars(builtin()))  # the built-in's hyperparameters and t
    ignored = sorted(k for k in vars(optimizer) if not k.startswith("_") and k not in known)
    if overridden or ignored:
        what = (f"defines {', '.join(overridden)}" if overridden else "") + \
            (" and " if overridden and ignored else "") + \
            (f"sets {', '.join(ignored)}" if ignored else "")
        raise TypeError(f"{cls.__name__} {what}, which fit never calls or reads: fit runs the "
                        f"update rule of nn.optim.{builtin.__name__} as a compiled kernel, so "
                        f"{cls.__name__} would silently train as plain {builtin.__name__}. "
                        f"{supported}")


def __getattr__(name):
    # nn.optim.schedules is nnumba.schedules (imported here on first use: it imports nothing
    # of this module at import time, but keeping it lazy avoids a cycle)
    if name == "schedules":
        from . import schedules

        return schedules
    raise AttributeError(f"module 'nnumba.optim' has no attribute {name!r}")


def trajectory(optimizer, grad, x0, n_steps):
    """The points an optimizer visits while minimising a function of a vector.

    ``grad(x)`` returns the gradient at x; starting from ``x0`` the optimizer
    takes ``n_steps`` steps (with ``Optimizer.step``). Returns an array of shape
    (n_steps + 1, len(x0)), float64: the path drawn in the optimizer notebook.
    """
    n_steps = _checks.integer(n_steps, "n_steps", minimum=0)
    x = np.array(x0, dtype=np.float64).ravel()
    path = [x.copy()]
    for _ in range(n_steps):
        optimizer.step(x, np.asarray(grad(x), dtype=np.float64))
        path.append(x.copy())
    return np.array(path)
