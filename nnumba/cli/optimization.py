"""The optimizer from the options, and the --lr-schedule syntax turned into a schedule."""
import difflib
import math

from .. import schedules
from ..backends import get_backend
from ..optim import OPTIMIZERS
from .parser import _flag
from .options import one_line


# ---- the optimizer and the learning-rate schedule ----------------------------------------------

def make_optimizer(args):
    """The optimizer of the options, with a constant lr (a schedule is set later)."""
    names = {"lr": args.lr, "beta": args.beta, "beta1": args.beta1, "beta2": args.beta2,
             "eps": args.eps, "weight_decay": getattr(args, "weight_decay", None)}
    cls = OPTIMIZERS[args.optimizer]
    accepted = cls().hyperparameters()
    kwargs = {k: v for k, v in names.items() if v is not None}
    unused = [k for k in kwargs if k not in accepted]
    if unused:
        raise ValueError(f"{_flag(unused[0])} does not apply to {args.optimizer}")
    if args.optimizer == "rmsprop":
        kwargs["eps_inside_sqrt"] = not args.eps_outside_sqrt
    elif args.eps_outside_sqrt:
        raise ValueError(f"--eps-outside-sqrt applies to rmsprop, not {args.optimizer}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        given = " ".join(f"{_flag(k)} {v:g}" for k, v in kwargs.items() if k in names)
        raise ValueError(f"--optimizer {args.optimizer}{' ' + given if given else ''}: "
                         f"{one_line(exc)}") from None


def _schedule_number(text, what, spec, kind=float, low=None, low_open=False, high=None,
                     high_open=False):
    try:
        value = kind(text)
    except ValueError:
        value = None
    ok = value is not None and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        noun = "an integer" if kind is int else "a number"
        if low is not None and high is not None:
            bound = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            bound = f" {'>' if low_open else '>='} {low:g}"
        else:
            bound = ""
        raise ValueError(f"--lr-schedule {spec!r}: {what} must be {noun}{bound}, got {text!r}")
    return value


def parse_schedule(spec, lr, total_steps, iterations_per_epoch):
    """The schedule (an ``nnumba.schedules`` object, or None for a constant rate) of a
    --lr-schedule ``spec`` for a run of ``total_steps`` optimizer steps of
    ``iterations_per_epoch`` per epoch, from the base rate ``lr`` (SCHEDULE_SYNTAX)."""
    parts = [part.strip() for part in spec.split(",")]
    if not spec.strip() or any(not part for part in parts):
        raise ValueError(f"--lr-schedule {spec!r}: an empty part; expected e.g. cosine, step:10:0.5, "
                         f"onecycle or warmup:100,cosine")
    ipe, total = int(iterations_per_epoch), int(total_steps)
    warmup = None
    head, *head_args = parts[0].split(":")
    if head.strip().lower() == "warmup":
        if len(head_args) != 1:
            raise ValueError(f"--lr-schedule {spec!r}: the warm-up is warmup:STEPS (iterations), "
                             f"e.g. warmup:100,cosine")
        warmup = _schedule_number(head_args[0], "STEPS of warmup:STEPS", spec, int, low=1)
        if warmup >= total:
            raise ValueError(f"--lr-schedule {spec!r}: a warm-up of {warmup} steps leaves none of "
                             f"the {total} steps of the run ({total // ipe} epochs x {ipe} "
                             f"iterations) for the rest")
        parts = parts[1:]
    if len(parts) > 1:
        raise ValueError(f"--lr-schedule {spec!r}: one schedule, optionally after a warm-up "
                         f"(warmup:STEPS,SCHEDULE), got {len(parts)}: {', '.join(parts)}")
    main = parts[0] if parts else "constant"
    name, *args = [a.strip() for a in main.split(":")]
    name = name.lower()
    steps = total - (warmup or 0)   # the steps the main schedule runs for

    def arity(low, high, syntax):
        if not low <= len(args) <= high:
            raise ValueError(f"--lr-schedule {spec!r}: {name} is {syntax}")

    try:
        if name == "constant":
            arity(0, 0, "constant")
            schedule = None
        elif name == "cosine":
            arity(0, 1, "cosine[:ETA_MIN]")
            eta_min = _schedule_number(args[0], "ETA_MIN", spec, low=0.0) if args else 0.0
            schedule = schedules.CosineAnnealingLR(lr, T_max=steps, eta_min=eta_min)
        elif name == "step":
            arity(1, 2, "step:EPOCHS[:GAMMA]")
            every = _schedule_number(args[0], "EPOCHS", spec, int, low=1)
            gamma = _schedule_number(args[1], "GAMMA", spec, low=0.0, low_open=True) \
                if len(args) > 1 else 0.1
            schedule = schedules.StepLR(lr, step_size=every * ipe, gamma=gamma)
        elif name == "multistep":
            arity(1, 2, "multistep:E1/E2/...[:GAMMA]")
            epochs = [_schedule_number(e, "each epoch of E1/E2/...", spec, int, low=1)
                      for e in args[0].split("/")]
            gamma = _schedule_number(args[1], "GAMMA", spec, low=0.0, low_open=True) \
                if len(args) > 1 else 0.1
            schedule = schedules.MultiStepLR(lr, [e * ipe for e in epochs], gamma=gamma)
        elif name == "exp":
            arity(1, 1, "exp:GAMMA")
            gamma = _schedule_number(args[0], "GAMMA", spec, low=0.0, low_open=True)
            schedule = schedules.ExponentialLR(lr, gamma ** (1.0 / ipe))
        elif name == "onecycle":
            arity(0, 1, "onecycle[:PCT]")
            if warmup is not None:
                raise ValueError(f"--lr-schedule {spec!r}: onecycle has its own warm-up; drop "
                                 f"warmup:{warmup}")
            pct = _schedule_number(args[0], "PCT", spec, low=0.0, high=1.0) if args else 0.3
            schedule = schedules.OneCycleLR(lr, total_steps=total, pct_start=pct)
        else:
            known = "constant, cosine, step, multistep, exp, onecycle, warmup"
            close = difflib.get_close_matches(name, known.split(", "), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--lr-schedule {spec!r}: unknown schedule {name!r}{hint}; expected "
                             f"{known}")
        if warmup is not None:
            schedule = schedules.LinearWarmup(schedule if schedule is not None else lr, warmup)
    except TypeError as exc:
        raise ValueError(f"--lr-schedule {spec!r}: {one_line(exc)}") from None
    except ValueError as exc:
        message = one_line(exc)
        raise ValueError(message if message.startswith("--lr-schedule")
                         else f"--lr-schedule {spec!r}: {message}") from None
    return schedule


def _base_lr(optimizer):
    """The learning rate a new schedule starts from: a constant lr, or a schedule's base."""
    lr = optimizer.lr
    if not optimizer.scheduled:
        return float(lr)
    for name in ("lr", "max_lr"):
        value = getattr(lr, name, None)
        if isinstance(value, float):
            return value
    return optimizer.lr_at(optimizer.t + 1)


def check_backend(name, option="--backend"):
    try:
        get_backend(name)
    except (RuntimeError, ValueError) as exc:  # cuda: numba-cuda missing or no GPU
        raise ValueError(f"{option} {name}: {one_line(exc)}") from None
