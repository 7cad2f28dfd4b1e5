"""Argument checks shared by the public API: each raises at the call, naming the
argument and what was expected (``TypeError`` for a wrong type, ``ValueError``
for a wrong value), before any state is touched."""
import math
import numbers

import numpy as np


def integer(value, name, minimum=None):
    """``value`` as an int, refusing bools, floats and anything below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def real(value, name, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a finite float in the given interval (open where asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {value:g}")
    return value


def positive(value, name):
    return real(value, name, low=0.0, low_open=True)


def optional_positive(value, name):
    return None if value is None else positive(value, name)


def boolean(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def array_2d(X, name, n_features=None, expected_by=None, dtype=None):
    """X as a finite, non-empty, C-contiguous 2-D float array of ``dtype``."""
    if not hasattr(X, "shape"):
        if isinstance(X, (list, tuple)):
            X = np.asarray(X)
        else:
            raise TypeError(f"{name} must be a 2-D array, got {type(X).__name__}")
    X = np.asarray(X)
    real_numbers(X, name)
    if X.ndim != 2:
        hint = f" (use {name}.reshape(-1, 1) for one feature, or {name}.reshape(1, -1) for one sample)" \
            if X.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D array (samples, features), got {X.ndim}-D "
                         f"with shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but {expected_by} expects {n_features}")
    return finite_as(X, name, dtype)


def real_numbers(a, name):
    """Refuse anything but booleans, integers and real floats (objects, strings,
    complex numbers, datetimes and timedeltas)."""
    if a.dtype.kind not in "biuf":
        what = "real numbers" if a.dtype.kind == "c" else "numbers"
        raise TypeError(f"{name} must hold {what}, got dtype {a.dtype}")


def finite_as(a, name, dtype=None):
    """``a`` as a C-contiguous array of ``dtype``, finite *in that dtype*: 1e39 is a
    finite float64 but inf in float32, so the check comes after the conversion."""
    a = np.asarray(a)
    finite(a, name)  # the caller's own NaN and inf are reported as theirs
    if (dtype is None or a.dtype == dtype) and a.flags.c_contiguous:
        return a  # (nothing to convert: the common case, without errstate's cost)
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(a, dtype=dtype)
    if converted.dtype != a.dtype:
        finite(converted, name, converted.dtype)
    return converted


def finite(a, name, dtype=None):
    """Refuse NaN or inf, saying which and where the first one is; ``dtype`` names the
    type a value overflowed in when converted."""
    if a.dtype.kind == "f" and a.size:
        # a sum propagates NaN and shows inf, with no temporary array: the check of a
        # large data set costs one read of it, not a boolean copy of it (a sum that
        # overflows, or meets both infinities, is looked at element by element below)
        with np.errstate(over="ignore", invalid="ignore"):
            total = a.sum()
        if math.isfinite(total):
            return
        bad = ~np.isfinite(a)
        if bad.any():
            n_nan = int(np.isnan(a).sum())
            n_inf = int(bad.sum()) - n_nan
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            kinds = " and ".join(k for k, c in (("NaN", n_nan), ("inf", n_inf)) if c)
            where = f"first at index {first if len(first) > 1 else first[0]}"
            if dtype is not None:
                big = np.finfo(dtype).max
                raise ValueError(f"{name} is not finite in {np.dtype(dtype).name}, the model's dtype "
                                 f"({n_nan} NaN, {n_inf} inf after conversion; {where}): values "
                                 f"beyond +-{big:.3g} overflow; rescale them first")
            raise ValueError(f"{name} contains {kinds} ({n_nan} NaN, {n_inf} inf; {where}); "
                             f"remove or impute them first")


def same_length(X, y, x_name="X", y_name="y"):
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{x_name} has {X.shape[0]} samples but {y_name} has {y.shape[0]}")
