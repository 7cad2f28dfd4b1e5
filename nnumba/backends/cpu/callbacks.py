"""The built-in losses and optimizer steps as C callbacks, in the calling convention of
the user-defined ones (``rules``):

    status = step(w_address, g_address, state_address, hp_address, n, t)
    loss(out_address, target_address, weights_address, dout_address, result_address,
         n, k, weighted)

(cross-entropy takes the int64 labels' address as its target). The fused training
loops call every loss and every optimizer step through these two signatures, at
the callback's address (``rules.address_caller``), so that:

- a loop is compiled (and cached on disk) once for all losses and optimizers, not
  with a branch per kind: before, every model compiled the kernels of all five
  losses, weighted and not, and of all four optimizers;
- a model compiles only the callbacks of its own loss and optimizer, each once per
  machine and dtype (cached on disk like the kernels: the kind, the dtype and the
  weighting are closure constants, which Numba's cache keys on and its branch
  pruning removes before typing, so a callback types only its own kernel).

Each callback calls the same kernel the dispatchers (``losses``, ``optim``) call,
so its bits are theirs.
"""
import numpy as np
from numba import carray, cfunc, types

from ..codes import (ADAM, BINARY_CROSS_ENTROPY, CROSS_ENTROPY, HUBER, MAE, MOMENTUM, MSE, N_HP,
                     RMSPROP, SGD)
from . import losses as L
from . import optim as O
from .rules import LOSS_SIGNATURE, SIGNATURE, pointer_to

_f32, _f64, _i64 = pointer_to(types.float32), pointer_to(types.float64), pointer_to(types.int64)
_made = {}


def loss(code, weighted, dtype):
    """The C callback of built-in loss ``code`` (codes.MSE ...) for ``dtype`` outputs,
    weighted (one weight per row) or not; made once per process."""
    key = ("loss", int(code), bool(weighted), np.dtype(dtype).name)
    if key not in _made:
        _made[key] = cfunc(LOSS_SIGNATURE, cache=True, error_model="numpy")(
            _loss(int(code), bool(weighted), np.dtype(dtype) == np.float64))
    return _made[key]


def step(code, dtype):
    """The C callback of built-in optimizer ``code`` (codes.SGD ...) for ``dtype``
    parameters; made once per process."""
    key = ("step", int(code), np.dtype(dtype).name)
    if key not in _made:
        _made[key] = cfunc(SIGNATURE, cache=True, error_model="numpy")(
            _step(int(code), np.dtype(dtype) == np.float64))
    return _made[key]


def _loss(code, weighted, wide):
    # code, weighted and wide are constants of the closure: each `if` on them is decided
    # before typing, so only one branch's kernel is compiled
    def loss_callback(out_address, target_address, weights_address, dout_address,
                      result_address, n, k, weighted_flag):
        if wide:
            out, dout = carray(_f64(out_address), (n, k)), carray(_f64(dout_address), (n, k))
            weights = carray(_f64(weights_address), n if weighted else 0)
            if code != CROSS_ENTROPY:
                target = carray(_f64(target_address), (n, k))
        else:
            out, dout = carray(_f32(out_address), (n, k)), carray(_f32(dout_address), (n, k))
            weights = carray(_f32(weights_address), n if weighted else 0)
            if code != CROSS_ENTROPY:
                target = carray(_f32(target_address), (n, k))
        result = carray(_f64(result_address), 2)
        if code == CROSS_ENTROPY:
            labels = carray(_i64(target_address), n)
            if weighted:
                L._weighted_cross_entropy(out, labels, weights, dout, result)
            else:
                L.cross_entropy(out, labels, dout, result)
        elif code == MSE:
            if weighted:
                L._weighted_mse(out, target, weights, dout, result)
            else:
                L.mse(out, target, dout, result)
        elif code == BINARY_CROSS_ENTROPY:
            if weighted:
                L._weighted_binary_cross_entropy(out, target, weights, dout, result)
            else:
                L.binary_cross_entropy(out, target, dout, result)
        elif code == MAE:
            if weighted:
                L._weighted_mae(out, target, weights, dout, result)
            else:
                L.mae(out, target, dout, result)
        elif code == HUBER:
            if weighted:
                L._weighted_huber(out, target, weights, dout, result)
            else:
                L.huber(out, target, dout, result)
        return 0

    return loss_callback


def _step(code, wide):
    def step_callback(w_address, g_address, state_address, hp_address, n, t):
        if wide:
            w, g = carray(_f64(w_address), n), carray(_f64(g_address), n)
            if code != SGD:  # SGD has no state rows (its state array may be empty)
                s0 = carray(_f64(state_address), n)
            if code == ADAM:
                s1 = carray(_f64(state_address + 8 * n), n)
        else:
            w, g = carray(_f32(w_address), n), carray(_f32(g_address), n)
            if code != SGD:
                s0 = carray(_f32(state_address), n)
            if code == ADAM:
                s1 = carray(_f32(state_address + 4 * n), n)
        c = O.constants(w, carray(_f64(hp_address), N_HP), t)
        status = -1
        if code == SGD:
            status = O.sgd_loop(w, g, c)
        elif code == MOMENTUM:
            status = O.momentum_loop(w, g, s0, c)
        elif code == RMSPROP:
            status = O.rmsprop_loop(w, g, s0, c)
        elif code == ADAM:
            status = O.adam_loop(w, g, s0, s1, c)
        return status

    return step_callback
