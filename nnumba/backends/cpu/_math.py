"""Vectorisable exp, sigmoid and tanh for the cpu kernels, in the data's dtype.

libm's exp and tanh are calls that LLVM cannot vectorise (3-12 ns each, scalar).
``_exp_neg`` is exp(x) for x <= 0: Cody-Waite reduction x = k ln2 + r, |r| <=
ln2 / 2, the Taylor polynomial of expm1(r) to degree 13 (float64) or 7
(float32), and 2^k made from its bits; plain arithmetic, branch-free. The
sigmoid is the stable form e = exp(-|z|), (1 or e) / (1 + e); tanh(x) = sign(x)
m / (2 - m) with m = -expm1(-2|x|) from the same reduction (no cancellation
near 0). Measured against NumPy in float64 over arguments of every size (in
ulps of the dtype): exp 1.0 (float64) / 1.1 (float32), sigmoid 2.0 / 2.1,
tanh 3.0 / 2.5; NaN stays NaN, tanh(+-inf) = +-1, and exp flushes to 0 below
about -708.7 (float64) / -87.7 (float32), where libm would return subnormals.
In a vectorised loop: 0.6 ns per sigmoid or tanh in float32, 1.4 ns in
float64. Used by the recurrent cells' gates and the softmax of cross-entropy.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from ._config import INLINE


# ---- vectorisable exp, sigmoid and tanh ----------------------------------------------------------

@intrinsic
def _as_float(typingctx, bits):
    """The float whose bits are ``bits`` (int64 -> float64, int32 -> float32)."""
    if bits == types.int64:
        out = types.float64
    elif bits == types.int32:
        out = types.float32
    else:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))

    return out(bits), codegen


def _math_kernels(dt, ln2_hi, ln2_lo, kmin, bias, shift, xmin, degree):
    """(exp_neg, sigmoid, tanh) for one dtype; every constant is of that dtype.

    Branch-free (selects made by ``min``/``max``, which keep their first argument when
    the second is NaN), so that they inline into loops that LLVM vectorises."""
    zero, half, one, two = dt(0), dt(0.5), dt(1), dt(2)
    log2e, ln2_hi, ln2_lo = dt(1 / math.log(2)), dt(ln2_hi), dt(ln2_lo)
    kmin, xmin = dt(kmin), dt(xmin)
    c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = \
        [dt(1 / math.factorial(i + 1)) for i in range(13)]  # expm1(r) / r, Taylor
    bits = np.int32 if dt == np.float32 else np.int64

    if degree == 7:
        @njit(**INLINE)
        def expm1_over(r):
            return c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * c7)))))
    else:
        @njit(**INLINE)
        def expm1_over(r):
            return c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * (
                c8 + r * (c9 + r * (c10 + r * (c11 + r * (c12 + r * c13)))))))))))

    @njit(**INLINE)
    def parts(x):
        """(q, s) with exp(x) = s (1 + q): s = 2^k, q = expm1(r), x = k ln2 + r, for x <= 0.
        Below the normal range k is kmin, whose bits make s = 0 (the result flushes to 0);
        -inf is clamped to a finite xmin first (so that q stays finite), NaN stays NaN."""
        x = max(x, xmin)
        k = min(zero, max(kmin, np.floor(x * log2e + half)))
        r = (x - k * ln2_hi) - k * ln2_lo      # k ln2_hi is exact: Cody-Waite
        return r * expm1_over(r), _as_float(bits((np.int64(k) + bias) << shift))

    @njit(**INLINE)
    def exp_neg(x):
        """exp(x) for x <= 0."""
        q, s = parts(x)
        return s * q + s

    @njit(**INLINE)
    def sigmoid(x):
        """1 / (1 + exp(-x)) in the stable form: e = exp(-|x|), (1 or e) / (1 + e)."""
        e = exp_neg(-abs(x))
        return max(e, math.copysign(half, x) + half) / (one + e)  # 1 for x >= 0, else e

    @njit(**INLINE)
    def tanh(x):
        """sign(x) m / (2 - m), m = -expm1(-2|x|)."""
        a = abs(x)
        q, s = parts(-(a + a))
        m = s * q + (s - one)                  # expm1(-2|x|), in [-1, 0]
        return math.copysign(-m / (two + m), x)

    return exp_neg, sigmoid, tanh


_F32 = _math_kernels(np.float32, 0.693359375, -2.12194440e-4, -127, 127, 23, -104.0, 7)
_F64 = _math_kernels(np.float64, 6.93147180369123816490e-01, 1.90821492927058770002e-10, -1023,
                     1023, 52, -750.0, 13)


def _exp_neg(x):
    """exp(x), x <= 0, in x's dtype (see the module docstring)."""


def _sigmoid(x):
    """The logistic function in x's dtype (see the module docstring)."""


def _tanh(x):
    """tanh in x's dtype (see the module docstring)."""


def _pick(index):
    def typer(x):
        if x == types.float32:
            return _F32[index].py_func
        if x == types.float64:
            return _F64[index].py_func
        return None
    return typer


overload(_exp_neg, inline="always")(_pick(0))
overload(_sigmoid, inline="always")(_pick(1))
overload(_tanh, inline="always")(_pick(2))
