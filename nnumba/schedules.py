"""Learning-rate schedules: the learning rate as a function of the optimizer's step count.

A schedule is a small object. ``schedule(t)`` is the learning rate of the
optimizer's step ``t`` (1 for the first update, as ``optimizer.t`` counts them
after that update), and ``schedule.values(first_step, n)`` the float64 array of
the learning rates of steps first_step, ..., first_step + n - 1, computed in
one vectorised pass, so that a compiled training loop can take the rates of a
whole chunk of iterations at once: a model whose optimizer has taken t0 steps
asks for ``values(t0 + 1, n)``. Every value is a pure function of its step
(``values`` gives the same bits however the steps are split into calls), and
``schedule(t) == schedule.values(t, 1)[0]``.

The formulas are those of ``torch.optim.lr_scheduler``. Mapping the counters:
torch advances a scheduler once per call of ``scheduler.step()``, made after
``optimizer.step()``; its counter ``last_epoch`` starts at 0 and the learning
rate in effect at optimizer step k (1-based) is the one computed after k - 1
calls, i.e. at ``last_epoch = k - 1``. So here ``e = t - 1`` plays the part of
torch's ``last_epoch``. Where torch's ``step()`` updates the rate recursively
(the "chainable" form of StepLR, MultiStepLR, ExponentialLR,
CosineAnnealingLR, LinearLR), these schedules use the closed form that torch
itself defines for the same schedule (its ``_get_closed_form_lr``): the
recursion rounds at every step and drifts from the closed form (by 1.6e-15
relative after 200 steps of CosineAnnealingLR, 1.4e-15 for ExponentialLR);
the closed form does not depend on the history. NumPy's vectorised power can
round the last bit differently from the C library's (gamma ** k in torch).

Every schedule checks its arguments at construction (a ``TypeError`` or
``ValueError`` naming the argument), and refuses at evaluation, with a
``ValueError`` naming the schedule and the step, a learning rate that is NaN,
infinite or <= 0 (an exponential decay that underflows, a LambdaLR whose
function returns 0, ...). ``describe()`` gives the formula in words,
``config()`` a JSON-able dict and ``schedule_from_config(config)`` the schedule
back (a LambdaLR's function is Python code and is not part of its config:
``schedule_from_config`` refuses it unless the function is passed again).
"""
import inspect
import numbers

import numpy as np

from . import _checks

#: the largest step a schedule evaluates: steps are exact integers in float64 up to 2**53
MAX_STEP = 2 ** 53


class Schedule:
    """Base class. A subclass implements ``_values(steps)`` (steps: an int64 array of
    optimizer steps, >= 1), ``_params()`` (its constructor's arguments, JSON-able)
    and ``describe()``."""

    def values(self, first_step, n):
        """The learning rates of the steps first_step, ..., first_step + n - 1 (float64, shape (n,))."""
        first_step = _checks.integer(first_step, "first_step", minimum=1)
        n = _checks.integer(n, "n", minimum=0)
        last = first_step + n - 1
        if last > MAX_STEP:
            raise ValueError(f"{self!r}: steps go up to {MAX_STEP} (2**53), got steps "
                             f"{first_step} ... {last}")
        steps = np.arange(first_step, first_step + n, dtype=np.int64)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        with np.errstate(all="ignore"):
            lr = np.asarray(self._values(steps), dtype=np.float64)
        bad = ~(np.isfinite(lr) & (lr > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{self!r} gives the learning rate {float(lr[i])!r} at step "
                             f"{int(steps[i])}: a learning rate must be finite and > 0"
                             f"{self._hint(int(steps[i]), float(lr[i]))}")
        return lr

    def __call__(self, step):
        """The learning rate of the optimizer's step ``step`` (1 for the first update)."""
        step = _checks.integer(step, "step", minimum=1)
        return float(self.values(step, 1)[0])

    def config(self):
        """A JSON-able dict: {"schedule": class name, constructor arguments ...}."""
        return {"schedule": type(self).__name__, **self._params()}

    def describe(self):
        raise NotImplementedError

    def _params(self):
        raise NotImplementedError

    def _values(self, steps):
        raise NotImplementedError

    def _hint(self, step, value):
        return ""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def _gamma(value, name="gamma"):
    return _checks.positive(value, name)


class StepLR(Schedule):
    """lr * gamma^floor((t - 1) / step_size): multiplied by gamma every step_size steps.

    As torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma) stepped once per
    optimizer step: steps 1 ... step_size get lr, the next step_size get lr * gamma, ...
    """

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = _checks.positive(lr, "lr")
        self.step_size = _checks.integer(step_size, "step_size", minimum=1)
        self.gamma = _gamma(gamma)

    def _params(self):
        return {"lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}

    def _values(self, steps):
        decays = (steps - 1) // self.step_size
        return self.lr * np.power(self.gamma, decays.astype(np.float64))

    def describe(self):
        return (f"StepLR: lr {self.lr:g} times {self.gamma:g} every {self.step_size} steps "
                f"(lr * gamma^floor((t-1)/{self.step_size}))")

    def _hint(self, step, value):
        return f" (gamma^{(step - 1) // self.step_size} is out of float64's range)"


class MultiStepLR(Schedule):
    """lr * gamma^(number of milestones m with m <= t - 1).

    As torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma): the rate is
    multiplied by gamma from the step after each milestone on (a milestone m is a
    count of scheduler steps, so optimizer step m + 1 is the first at the new rate).
    milestones: strictly increasing integers >= 1.
    """

    def __init__(self, lr, milestones, gamma=0.1):
        self.lr = _checks.positive(lr, "lr")
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"milestones must be a list of integers, got "
                            f"{type(milestones).__name__} {milestones!r}")
        ms = [_checks.integer(m, f"milestones[{i}]", minimum=1) for i, m in enumerate(milestones)]
        for i in range(1, len(ms)):
            if ms[i] <= ms[i - 1]:
                raise ValueError(f"milestones must be strictly increasing, got milestones[{i - 1}]"
                                 f"={ms[i - 1]} and milestones[{i}]={ms[i]}")
        self.milestones = ms
        self.gamma = _gamma(gamma)
        self._ms = np.array(ms, dtype=np.int64)

    def _params(self):
        return {"lr": self.lr, "milestones": list(self.milestones), "gamma": self.gamma}

    def _values(self, steps):
        passed = np.searchsorted(self._ms, steps - 1, side="right")
        return self.lr * np.power(self.gamma, passed.astype(np.float64))

    def describe(self):
        return (f"MultiStepLR: lr {self.lr:g} times {self.gamma:g} after each of the steps "
                f"{self.milestones} (lr * gamma^#(milestones <= t-1))")


class ExponentialLR(Schedule):
    """lr * gamma^(t - 1), as torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)."""

    def __init__(self, lr, gamma):
        self.lr = _checks.positive(lr, "lr")
        self.gamma = _gamma(gamma)

    def _params(self):
        return {"lr": self.lr, "gamma": self.gamma}

    def _values(self, steps):
        return self.lr * np.power(self.gamma, (steps - 1).astype(np.float64))

    def describe(self):
        return f"ExponentialLR: lr {self.lr:g} times {self.gamma:g} every step (lr * gamma^(t-1))"

    def _hint(self, step, value):
        return f" (lr * gamma^{step - 1} is out of float64's range)"


class CosineAnnealingLR(Schedule):
    """eta_min + (lr - eta_min) (1 + cos(pi (t - 1) / T_max)) / 2: torch's closed form.

    As torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max, eta_min): from lr
    at step 1 down to eta_min at step T_max + 1; beyond it the formula continues
    (torch's does too), back up to lr at step 2 T_max + 1. With eta_min = 0 the rate
    of step T_max + 1 is 0, which is refused: train for at most T_max steps, or
    give eta_min > 0.
    """

    def __init__(self, lr, T_max, eta_min=0.0):
        self.lr = _checks.positive(lr, "lr")
        self.T_max = _checks.integer(T_max, "T_max", minimum=1)
        self.eta_min = _checks.real(eta_min, "eta_min", low=0.0)
        if self.eta_min > self.lr:
            raise ValueError(f"eta_min must be <= lr, got eta_min={self.eta_min:g} and lr={self.lr:g}")

    def _params(self):
        return {"lr": self.lr, "T_max": self.T_max, "eta_min": self.eta_min}

    def _values(self, steps):
        e = steps - 1
        return self.eta_min + (self.lr - self.eta_min) * (1 + np.cos(np.pi * e / self.T_max)) / 2

    def describe(self):
        return (f"CosineAnnealingLR: from lr {self.lr:g} to eta_min {self.eta_min:g} at step "
                f"{self.T_max + 1} (eta_min + (lr - eta_min)(1 + cos(pi (t-1)/{self.T_max}))/2)")

    def _hint(self, step, value):
        return (f" (the cosine reaches eta_min={self.eta_min:g} at step T_max + 1 = {self.T_max + 1}; "
                f"train for at most T_max={self.T_max} steps or use eta_min > 0)")


class CosineAnnealingWarmRestarts(Schedule):
    """SGDR (Loshchilov and Hutter, 2017), as torch's CosineAnnealingWarmRestarts.

    eta_min + (lr - eta_min) (1 + cos(pi T_cur / T_i)) / 2, where the cycles have the
    lengths T_0, T_0 T_mult, T_0 T_mult^2, ... (in steps), T_i is the length of the
    cycle that step t falls in and T_cur = t - 1 - (the steps of the earlier cycles):
    each cycle starts at lr and ends one step short of eta_min. Computed with exact
    integers (torch's own shortcut for a given epoch goes through a float logarithm).
    """

    def __init__(self, lr, T_0, T_mult=1, eta_min=0.0):
        self.lr = _checks.positive(lr, "lr")
        self.T_0 = _checks.integer(T_0, "T_0", minimum=1)
        self.T_mult = _checks.integer(T_mult, "T_mult", minimum=1)
        self.eta_min = _checks.real(eta_min, "eta_min", low=0.0)
        if self.eta_min > self.lr:
            raise ValueError(f"eta_min must be <= lr, got eta_min={self.eta_min:g} and lr={self.lr:g}")

    def _params(self):
        return {"lr": self.lr, "T_0": self.T_0, "T_mult": self.T_mult, "eta_min": self.eta_min}

    def _cycles(self, e):
        """(T_cur, T_i) of each e = t - 1, as int64 arrays."""
        if self.T_mult == 1:
            return e % self.T_0, np.full(e.shape, self.T_0, dtype=np.int64)
        starts, lengths = [0], [self.T_0]
        top = int(e.max())
        while starts[-1] + lengths[-1] <= top:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * self.T_mult)
        starts, lengths = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
        cycle = np.searchsorted(starts, e, side="right") - 1
        return e - starts[cycle], lengths[cycle]

    def _values(self, steps):
        t_cur, t_i = self._cycles(steps - 1)
        return self.eta_min + (self.lr - self.eta_min) * (1 + np.cos(np.pi * t_cur / t_i)) / 2

    def describe(self):
        lengths = f"{self.T_0}" if self.T_mult == 1 else f"{self.T_0} * {self.T_mult}^i"
        return (f"CosineAnnealingWarmRestarts: cosine from lr {self.lr:g} towards eta_min "
                f"{self.eta_min:g} in cycles of {lengths} steps, restarting at lr")


class OneCycleLR(Schedule):
    """The 1cycle policy (Smith and Topin), torch's OneCycleLR with three_phase=False.

    With e = t - 1, initial = max_lr / div_factor, final = initial / final_div_factor
    and p = pct_start * total_steps - 1: for e <= p the rate goes from initial (e = 0)
    up to max_lr (e = p), then down to final at e = total_steps - 1, each phase along
    ``anneal_strategy``: "cos", end + (start - end) (1 + cos(pi x)) / 2, or
    "linear", start + (end - start) x, with x the fraction of the phase done. Steps
    beyond total_steps are refused (torch computes one more rate, outside the
    cycle, before it refuses). Where p = 0 torch divides 0 by 0 for the first
    step; here that step gets max_lr, the peak pct_start puts there.
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
                 final_div_factor=1e4):
        self.max_lr = _checks.positive(max_lr, "max_lr")
        self.total_steps = _checks.integer(total_steps, "total_steps", minimum=1)
        self.pct_start = _checks.real(pct_start, "pct_start", low=0.0, high=1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.div_factor = _checks.positive(div_factor, "div_factor")
        self.final_div_factor = _checks.positive(final_div_factor, "final_div_factor")
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor
        if not (self.initial_lr > 0 and self.min_lr > 0):
            raise ValueError(f"max_lr / div_factor / final_div_factor = {self.min_lr!r} underflows "
                             f"to 0 (max_lr={self.max_lr:g}, div_factor={self.div_factor:g}, "
                             f"final_div_factor={self.final_div_factor:g})")

    def _params(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "anneal_strategy": self.anneal_strategy, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor}

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1)
        return (end - start) * pct + start

    def _values(self, steps):
        if int(steps[-1]) > self.total_steps:
            bad = int(steps[np.argmax(steps > self.total_steps)])
            raise ValueError(f"{self!r} has no learning rate for step {bad}: the cycle ends at "
                             f"step total_steps={self.total_steps}")
        e = (steps - 1).astype(np.float64)
        peak = float(self.pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        up = self._anneal(self.initial_lr, self.max_lr, (e - 0.0) / (peak - 0.0))
        down = self._anneal(self.max_lr, self.min_lr, (e - peak) / (last - peak))
        if peak == 0:
            up = np.full(e.shape, self.max_lr)
        return np.where(e <= peak, up, down)

    def describe(self):
        return (f"OneCycleLR: {self.anneal_strategy} from {self.initial_lr:g} up to max_lr "
                f"{self.max_lr:g} over the first {self.pct_start:g} of {self.total_steps} steps, "
                f"then down to {self.min_lr:g}")


class LambdaLR(Schedule):
    """lr * fn(t - 1), as torch.optim.lr_scheduler.LambdaLR(optimizer, fn), whose
    counter (last_epoch) is t - 1 at optimizer step t: fn(0) scales the first step.

    fn is called once per step (it is Python code: not vectorised) and must return a
    real number. Its config cannot hold the function: ``config()`` stores
    ``"fn": None`` (and the function's name) and ``schedule_from_config`` refuses it
    unless the function is passed again.
    """

    def __init__(self, lr, fn):
        self.lr = _checks.positive(lr, "lr")
        if not callable(fn):
            raise TypeError(f"fn must be a callable fn(epoch) -> factor, got {type(fn).__name__}")
        try:
            inspect.signature(fn).bind(0)
        except TypeError as exc:
            raise TypeError(f"fn must accept one argument (the epoch counter t - 1): {exc}") from None
        except ValueError:
            pass  # a builtin without a signature: trust it
        self.fn = fn

    def _params(self):
        return {"lr": self.lr, "fn": None,
                "fn_name": getattr(self.fn, "__qualname__", type(self.fn).__name__)}

    def __repr__(self):
        return f"LambdaLR(lr={self.lr!r}, fn={getattr(self.fn, '__qualname__', self.fn)!s})"

    def _values(self, steps):
        factors = np.empty(steps.shape, dtype=np.float64)
        for i, e in enumerate(range(int(steps[0]) - 1, int(steps[-1]))):
            f = self.fn(e)
            if isinstance(f, bool) or not isinstance(f, numbers.Real):
                raise TypeError(f"{self!r}: fn({e}) (step {e + 1}) returned {type(f).__name__} "
                                f"{f!r}; it must return a real number")
            factors[i] = f
        return self.lr * factors

    def describe(self):
        return f"LambdaLR: lr {self.lr:g} times fn(t-1), fn = {self._params()['fn_name']}"


class LinearWarmup(Schedule):
    """A linear warm-up over the first ``warmup_steps`` steps, then a schedule.

    With W = warmup_steps, s = start_factor and target = the wrapped schedule's
    first rate (or the constant rate given): step t <= W gets
    target * (s + (1 - s) t / W), so the rate rises in equal steps from
    target (s + (1 - s) / W) at step 1 to exactly target at step W (with the default
    s = 0 the first update is already target / W, not 0); step t > W gets the
    wrapped schedule's rate for its step t - W.

    torch: SequentialLR(optimizer, [LinearLR(optimizer, start_factor=s + (1 - s) / W,
    end_factor=1, total_iters=W - 1), after], milestones=[W]) gives the same rates
    (torch's LinearLR needs start_factor > 0, hence its shifted start; for W = 1
    there is no ramp: target, then the schedule).
    """

    def __init__(self, schedule_or_lr, warmup_steps, start_factor=0.0):
        if isinstance(schedule_or_lr, Schedule):
            self.schedule = schedule_or_lr
        elif isinstance(schedule_or_lr, numbers.Real) and not isinstance(schedule_or_lr, bool):
            self.schedule = None
            self.lr = _checks.positive(schedule_or_lr, "schedule_or_lr")
        else:
            raise TypeError(f"schedule_or_lr must be a schedule or a learning rate > 0, got "
                            f"{type(schedule_or_lr).__name__} {schedule_or_lr!r}")
        self.warmup_steps = _checks.integer(warmup_steps, "warmup_steps", minimum=1)
        self.start_factor = _checks.real(start_factor, "start_factor", low=0.0, high=1.0)
        if self.schedule is not None:
            self.lr = self.schedule(1)

    def _params(self):
        after = self.schedule.config() if self.schedule is not None else self.lr
        return {"schedule_or_lr": after, "warmup_steps": self.warmup_steps,
                "start_factor": self.start_factor}

    def __repr__(self):
        after = repr(self.schedule) if self.schedule is not None else repr(self.lr)
        return (f"LinearWarmup({after}, warmup_steps={self.warmup_steps}, "
                f"start_factor={self.start_factor!r})")

    def _values(self, steps):
        w, s = self.warmup_steps, self.start_factor
        out = np.empty(steps.shape, dtype=np.float64)
        ramp = steps <= w
        k = steps[ramp]
        factor = np.where(k == w, 1.0, s + (1 - s) * (k / w))
        out[ramp] = self.lr * factor
        rest = steps[~ramp]
        if rest.size:
            if self.schedule is None:
                out[~ramp] = self.lr
            else:
                try:
                    out[~ramp] = self.schedule.values(int(rest[0]) - w, rest.size)
                except ValueError as exc:
                    raise ValueError(f"{self!r}, whose step t > {w} is its schedule's step "
                                     f"t - {w}: {exc}") from None
        return out

    def describe(self):
        after = self.schedule.describe() if self.schedule is not None else f"constant {self.lr:g}"
        return (f"LinearWarmup: linear from {self.start_factor:g} to 1 times {self.lr:g} over "
                f"steps 1 ... {self.warmup_steps}, then {after} (its step t - {self.warmup_steps})")


SCHEDULES = {cls.__name__: cls for cls in (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR,
                                           CosineAnnealingWarmRestarts, OneCycleLR, LambdaLR,
                                           LinearWarmup)}


def schedule_from_config(config, fn=None):
    """The schedule described by ``config`` (a dict from ``Schedule.config()``).

    A LambdaLR's function is not in its config: pass it as ``fn`` (used by every
    LambdaLR in the config), or this raises ``ValueError``.
    """
    if not isinstance(config, dict):
        raise TypeError(f"a schedule config must be a dict, got {type(config).__name__}")
    name = config.get("schedule")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r} in config: expected one of "
                         f"{', '.join(SCHEDULES)}")
    cls = SCHEDULES[name]
    params = {k: v for k, v in config.items() if k != "schedule"}
    if cls is LambdaLR:
        fn_name = params.pop("fn_name", None)
        if params.pop("fn", None) is not None:
            raise ValueError("a LambdaLR config holds 'fn': None (a function is not saved)")
        if fn is None:
            raise ValueError(f"LambdaLR cannot be restored from its config: its function "
                             f"({fn_name or 'unnamed'}) is Python code, which a config does not "
                             f"hold; build LambdaLR(lr, fn) again, or pass fn= to "
                             f"schedule_from_config")
        params["fn"] = fn
    if cls is LinearWarmup and isinstance(params.get("schedule_or_lr"), dict):
        params["schedule_or_lr"] = schedule_from_config(params["schedule_or_lr"], fn=fn)
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"{name} config has unknown keys {unknown}: expected {sorted(accepted)}")
    missing = [p.name for p in inspect.signature(cls).parameters.values()
               if p.default is inspect.Parameter.empty and p.name not in params]
    if missing:
        raise ValueError(f"{name} config lacks {missing}")
    return cls(**params)


__all__ = ["Schedule", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
           "CosineAnnealingWarmRestarts", "OneCycleLR", "LambdaLR", "LinearWarmup",
           "schedule_from_config", "SCHEDULES", "MAX_STEP"]
