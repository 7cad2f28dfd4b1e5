"""The C callbacks the fused loops call: user-defined optimizer rules (``nn.optim.rule``),
activations and losses compiled for the loop, and the built-in losses and steps in the
same convention (``builtin_loss``, ``builtin_step``).

The contract is ``backends.reference.rules``. Here the rule (a Python function of
scalars) is compiled with @njit and inlined into a generated element loop, one
pass over the buffer like the built-in steps, with the same verdict (an
and-reduction of finiteness of w and of the state in the same pass). The loop
is a Numba C callback (``cfunc``) of the fixed signature

    status = step(w_address, g_address, state_address, hp_address, n, t)

so the training loop calls it by address (``address_caller``), as it calls the
built-in steps (``builtin_step``, below): the loop is compiled (and cached on disk) once
for all rules, and each rule only compiles its own small callback, once per
process and dtype (it is generated code, which Numba cannot cache).
"""
import numpy as np
from numba import carray, cfunc, njit, prange, types
from numba.extending import intrinsic

from . import _tiles, losses, optim
from ._config import PARALLEL_STEP_MIN_PART
from ..codes import (ADAM, BINARY_CROSS_ENTROPY, CROSS_ENTROPY, HUBER, MAE, MOMENTUM, MSE, N_HP,
                     RMSPROP, SGD, STATUS_OK, STATUS_STATE, STATUS_UPDATE)

SIGNATURE = types.int64(types.uint64, types.uint64, types.uint64, types.uint64, types.int64,
                        types.int64)
_NUMBA_TYPES = {np.dtype(np.float32): types.float32, np.dtype(np.float64): types.float64}


def address_caller(signature):
    """An intrinsic ``call(address, args)`` that calls the C function at ``address`` (an
    int: a cfunc's ``.address``), of ``signature``, with the tuple ``args``.

    The jitted loops take their callbacks as addresses, not as cfunc objects: Numba
    types a cfunc argument in Python at every call, an int at C speed (measured: 12 us
    against 0.2 us per call; with two cfunc arguments, one fit epoch of the 64-32-10
    network at batch 1 took 10 ms instead of 2.4 ms)."""

    @intrinsic
    def call(typingctx, address, args):
        if not isinstance(address, types.Integer) or not isinstance(args, types.BaseTuple) or \
                len(args) != len(signature.args):
            return None

        def codegen(context, builder, sig, llargs):
            from llvmlite import ir

            fnty = ir.FunctionType(context.get_value_type(signature.return_type),
                                   [context.get_value_type(t) for t in signature.args])
            fn = builder.inttoptr(llargs[0], fnty.as_pointer())
            values = [context.cast(builder, builder.extract_value(llargs[1], i), sig.args[1][i],
                                   signature.args[i]) for i in range(len(signature.args))]
            return builder.call(fn, values)

        return signature.return_type(address, args), codegen

    return call


def pointer_to(nb_dtype):
    """An intrinsic turning a uint64 address into a pointer to ``nb_dtype`` (for carray)."""

    @intrinsic
    def as_pointer(typingctx, address):
        signature = types.CPointer(nb_dtype)(address)

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(nb_dtype)))

        return signature, codegen

    return as_pointer


_TEMPLATE = '''
def step(w_address, g_address, state_address, hp_address, n, t):
    w = carray(as_data(w_address), n)
    g = carray(as_data(g_address), n)
{state}    hp = carray(as_float64(hp_address), {hp_size})
    dt = w.dtype.type
{hyperparameters}    big = np.finfo(w.dtype).max
    finite_w = True
    finite_state = True
    for i in range(n):
        result = rule(w[i], g[i]{slot_args}{hp_args}, t)
{stores}        finite_w &= abs(w[i]) <= big
{state_checks}    if not finite_state:
        return STATUS_STATE
    return STATUS_OK if finite_w else STATUS_UPDATE
'''


def compile_rule(function, n_state, hp_columns, dtype):
    """The rule's C callback for ``dtype`` data (see the module docstring)."""
    nb = _NUMBA_TYPES[np.dtype(dtype)]
    columns = [int(c) for c in hp_columns]
    itemsize = np.dtype(dtype).itemsize
    slot_args = "".join(f", s{k}[i]" for k in range(n_state))
    hp_args = "".join(f", h{j}" for j in range(len(columns)))
    if n_state:
        stores = "        w[i] = result[0]\n" + "".join(
            f"        s{k}[i] = result[{k + 1}]\n" for k in range(n_state))
    else:
        stores = "        w[i] = result\n"
    # one 1-D array per state row (a 2-D one keeps LLVM from vectorising the loop)
    source = _TEMPLATE.format(
        state="".join(f"    s{k} = carray(as_data(state_address + {k * itemsize} * n), n)\n"
                      for k in range(n_state)),
        hp_size=max(columns, default=0) + 1,
        hyperparameters="".join(f"    h{j} = dt(hp[{c}])\n" for j, c in enumerate(columns)),
        slot_args=slot_args, hp_args=hp_args, stores=stores,
        state_checks="".join(f"        finite_state &= abs(s{k}[i]) <= big\n"
                             for k in range(n_state)))
    namespace = {"carray": carray, "np": np, "rule": njit(inline="always", error_model="numpy")(function),
                 "as_data": pointer_to(nb), "as_float64": pointer_to(types.float64),
                 "STATUS_OK": STATUS_OK, "STATUS_STATE": STATUS_STATE,
                 "STATUS_UPDATE": STATUS_UPDATE}
    exec(compile(source, f"<nnumba rule {function.__name__}>", "exec"), namespace)
    # error_model "numpy": a division by zero gives inf (then caught by the verdict) instead
    # of a check per element, which would keep LLVM from vectorising the loop
    return cfunc(SIGNATURE, cache=False, error_model="numpy")(namespace["step"])


# ---- user-defined activations (``nn.layers.activation``) ---------------------------------------
ACTIVATION_SIGNATURE = types.int64(types.int64, types.int64, types.uint64, types.uint64,
                                   types.uint64, types.int64)

_ACTIVATION_TEMPLATE = '''
def activations(index, mode, z_address, y_address, dy_address, n):
    z = carray(as_data(z_address), n)
    y = carray(as_data(y_address), n)
    dy = carray(as_data(dy_address), n)
{branches}    return -1
'''


def compile_activations(specs, dtype):
    """One C callback for all of a model's custom activations (the contract is
    ``reference.rules.Activations``): mode 0 sets y = f_index(z), mode 1 multiplies
    dy by f_index'(z); returns 0 (-1 for an unknown index)."""
    from ..reference.rules import NUMERIC_STEP

    nb = _NUMBA_TYPES[np.dtype(dtype)]
    namespace = {"carray": carray, "np": np, "as_data": pointer_to(nb), "STEP": NUMERIC_STEP}
    branches = []
    for k, (f, derivative, of) in enumerate(specs):
        namespace[f"f{k}"] = njit(inline="always", error_model="numpy")(f)
        if derivative is None:
            slope = (f"(f{k}(np.float64(z[i]) + h) - f{k}(np.float64(z[i]) - h)) / (2 * h)")
            prologue = "            h = STEP * max(1.0, abs(np.float64(z[i])))\n"
        else:
            namespace[f"d{k}"] = njit(inline="always", error_model="numpy")(derivative)
            slope, prologue = f"d{k}({'z' if of == 'input' else 'y'}[i])", ""
        branches.append(
            f"    if index == {k}:\n"
            f"        if mode == 0:\n"
            f"            for i in range(n):\n"
            f"                y[i] = f{k}(z[i])\n"
            f"            return 0\n"
            f"        for i in range(n):\n"
            f"{prologue}"
            f"            dy[i] *= {slope}\n"
            f"        return 0\n")
    source = _ACTIVATION_TEMPLATE.format(branches="".join(branches))
    exec(compile(source, "<nnumba custom activations>", "exec"), namespace)
    return cfunc(ACTIVATION_SIGNATURE, cache=False, error_model="numpy")(namespace["activations"])


# ---- user-defined losses (``nn.losses.loss``) --------------------------------------------------
LOSS_SIGNATURE = types.int64(types.uint64, types.uint64, types.uint64, types.uint64, types.uint64,
                             types.int64, types.int64, types.int64)


def compile_loss(value, gradient, dtype):
    """The loss's C callback ``loss(out, target, weights, dout, result, n, k, weighted)`` on
    addresses (the contract is ``reference.rules.compile_loss``), one pass over the
    elements."""
    nb = _NUMBA_TYPES[np.dtype(dtype)]
    as_data, as_float64 = pointer_to(nb), pointer_to(types.float64)
    f = njit(inline="always", error_model="numpy")(value)
    df = njit(inline="always", error_model="numpy")(gradient)

    def loss(out_address, target_address, weights_address, dout_address, result_address, n, k,
             weighted):
        out = carray(as_data(out_address), (n, k))
        target = carray(as_data(target_address), (n, k))
        dout = carray(as_data(dout_address), (n, k))
        weights = carray(as_data(weights_address), n if weighted else 0)
        result = carray(as_float64(result_address), 2)
        dt = out.dtype.type
        scale = dt(1) / dt(n * k)
        total = 0.0
        for i in range(n):
            w = weights[i] if weighted else dt(1)
            row_scale = scale * w
            for j in range(k):
                o, t = out[i, j], target[i, j]
                total += np.float64(w) * np.float64(dt(f(o, t))) if weighted else \
                    np.float64(dt(f(o, t)))
                dout[i, j] = dt(df(o, t)) * row_scale
        result[0] = total / (n * k)
        result[1] = 0.0
        return 0

    return cfunc(LOSS_SIGNATURE, cache=False, error_model="numpy")(loss)


def apply_activation(activations, index, mode, z, y, dy):
    """Call the activations' C callback from Python on NumPy arrays."""
    activations.ctypes(index, mode, z.ctypes.data, y.ctypes.data, dy.ctypes.data, z.size)


def apply_loss(loss, out, target, weights, dout, result):
    """Call the loss's C callback from Python on NumPy arrays."""
    return loss.ctypes(out.ctypes.data, target.ctypes.data, weights.ctypes.data, dout.ctypes.data,
                       result.ctypes.data, out.shape[0], out.shape[1], int(weights.shape[0] > 0))


# ---- the data-parallel allreduce (``nnumba.distributed``) ----------------------------------------
# status = reduce(send_address, recv_address, count, scratch_address)
REDUCE_SIGNATURE = types.int32(types.uint64, types.uint64, types.int64, types.uint64)


# ---- the built-in losses and optimizer steps as callbacks -------------------------------------
# The built-in losses and optimizer steps as C callbacks, in the calling convention of
# the user-defined ones (``rules``):
#
#     status = step(w_address, g_address, state_address, hp_address, n, t)
#     loss(out_address, target_address, weights_address, dout_address, result_address,
#          n, k, weighted)
#
# (cross-entropy takes the int64 labels' address as its target). The fused training
# loops call every loss and every optimizer step through these two signatures, at
# the callback's address (``rules.address_caller``), so that:
#
# - a loop is compiled (and cached on disk) once for all losses and optimizers, not
#   with a branch per kind: before, every model compiled the kernels of all five
#   losses, weighted and not, and of all four optimizers;
# - a model compiles only the callbacks of its own loss and optimizer, each once per
#   machine and dtype (cached on disk like the kernels: the kind, the dtype and the
#   weighting are closure constants, which Numba's cache keys on and its branch
#   pruning removes before typing, so a callback types only its own kernel).
#
# Each callback calls the same kernel the dispatchers (``losses``, ``optim``) call,
# so its bits are theirs.

_f32, _f64, _i64 = pointer_to(types.float32), pointer_to(types.float64), pointer_to(types.int64)
_made = {}  # the built-in callbacks made in this process


def builtin_loss(code, weighted, dtype):
    """The C callback of built-in loss ``code`` (codes.MSE ...) for ``dtype`` outputs,
    weighted (one weight per row) or not; made once per process."""
    key = ("loss", int(code), bool(weighted), np.dtype(dtype).name)
    if key not in _made:
        _made[key] = cfunc(LOSS_SIGNATURE, cache=True, error_model="numpy")(
            _loss(int(code), bool(weighted), np.dtype(dtype) == np.float64))
    return _made[key]


def builtin_step(code, dtype, threads=1):
    """The C callback of built-in optimizer ``code`` (codes.SGD ...) for ``dtype``
    parameters, in ``threads`` parts run in parallel (1: serial; parts of at least
    PARALLEL_STEP_MIN_PART elements); made once per process."""
    key = ("step", int(code), np.dtype(dtype).name, int(threads))
    if key not in _made:
        _made[key] = cfunc(SIGNATURE, cache=True, error_model="numpy", parallel=threads > 1)(
            _step(int(code), np.dtype(dtype) == np.float64, int(threads)))
    return _made[key]


def builtin_outer_step(code, dtype, threads):
    """The C callback of built-in optimizer ``code``'s on-the-fly step of one weight
    matrix (``optim.outer_product_step``), its rows split in ``threads`` parts run in
    parallel; made once per process (``OUTER_SIGNATURE``)."""
    key = ("outer", int(code), np.dtype(dtype).name, int(threads))
    if key not in _made:
        _made[key] = cfunc(OUTER_SIGNATURE, cache=True, error_model="numpy", parallel=True)(
            _outer_step(int(code), np.dtype(dtype) == np.float64, int(threads)))
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
                losses._weighted_cross_entropy(out, labels, weights, dout, result)
            else:
                losses.cross_entropy(out, labels, dout, result)
        elif code == MSE:
            if weighted:
                losses._weighted_mse(out, target, weights, dout, result)
            else:
                losses.mse(out, target, dout, result)
        elif code == BINARY_CROSS_ENTROPY:
            if weighted:
                losses._weighted_binary_cross_entropy(out, target, weights, dout, result)
            else:
                losses.binary_cross_entropy(out, target, dout, result)
        elif code == MAE:
            if weighted:
                losses._weighted_mae(out, target, weights, dout, result)
            else:
                losses.mae(out, target, dout, result)
        elif code == HUBER:
            if weighted:
                losses._weighted_huber(out, target, weights, dout, result)
            else:
                losses.huber(out, target, dout, result)
        return 0

    return loss_callback


def _step(code, wide, threads):
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
        c = optim.constants(w, carray(_f64(hp_address), N_HP), t, code == ADAM)
        if code not in (SGD, MOMENTUM, RMSPROP, ADAM):
            return -1
        # in parts of whole elements (threads > 1: in parallel, else one part; slices of
        # a carray cost nothing); each element's step is its own, so the bits do not
        # depend on the split (the verdict: a max-reduction)
        parts = min(threads, max(1, n // PARALLEL_STEP_MIN_PART))
        status = STATUS_OK
        for p in prange(parts):
            lo, hi = n * p // parts, n * (p + 1) // parts
            if code == SGD:
                part = optim.sgd_loop(w[lo:hi], g[lo:hi], c)
            elif code == MOMENTUM:
                part = optim.momentum_loop(w[lo:hi], g[lo:hi], s0[lo:hi], c)
            elif code == RMSPROP:
                part = optim.rmsprop_loop(w[lo:hi], g[lo:hi], s0[lo:hi], c)
            else:
                part = optim.adam_loop(w[lo:hi], g[lo:hi], s0[lo:hi], s1[lo:hi], c)
            status = max(status, part)
        return status

    return step_callback

# The on-the-fly step of a weight matrix w (n_in x n_out, row-major) whose gradient is
# x^T dz, x: (n, n_in) and dz: (n, n_out), both C-contiguous:
#
#     status = outer(w_address, x_address, dz_address, s0_address, s1_address,
#                    hp_address, scratch_address, n, n_in, n_out, t, coef, clip_value)
#
# s0 and s1 are the state rows of w (w's own address where the rule has none), and
# scratch holds n_out elements per thread. It is a callback, not an @njit function
# the loop calls, because a cached function that calls a parallel one can crash when
# loaded from Numba's cache in another process (numba issues 8578 and 10128), and a
# callback is compiled and cached on its own.
OUTER_SIGNATURE = types.int64(*[types.uint64] * 7, *[types.int64] * 4, types.float64,
                              types.float64)


def _outer_step(code, wide, threads):
    # threads is a constant of the closure: numba.get_num_threads() inside the callback
    # would keep Numba from caching it
    def outer_callback(w_address, x_address, dz_address, s0_address, s1_address, hp_address,
                       scratch_address, n, n_in, n_out, t, coef, clip_value):
        size = n_in * n_out
        if wide:
            w, s0, s1 = (carray(_f64(w_address), size), carray(_f64(s0_address), size),
                         carray(_f64(s1_address), size))
            x, dz = carray(_f64(x_address), (n, n_in)), carray(_f64(dz_address), (n, n_out))
        else:
            w, s0, s1 = (carray(_f32(w_address), size), carray(_f32(s0_address), size),
                         carray(_f32(s1_address), size))
            x, dz = carray(_f32(x_address), (n, n_in)), carray(_f32(dz_address), (n, n_out))
        hp = carray(_f64(hp_address), N_HP)
        parts = min(threads, n_in)
        status = STATUS_OK
        # each part: a range of w's rows, and its own scratch row; the rows' steps are
        # independent, so the bits are the serial step's (the verdict: a max-reduction)
        for p in prange(parts):
            lo, hi = n_in * p // parts, n_in * (p + 1) // parts
            if wide:
                scratch = carray(_f64(scratch_address + 8 * n_out * p), n_out)
            else:
                scratch = carray(_f32(scratch_address + 4 * n_out * p), n_out)
            status = max(status, optim.outer_product_step(
                code, w[lo * n_out:hi * n_out], x[:, lo:hi], dz, coef, clip_value,
                s0[lo * n_out:hi * n_out], s1[lo * n_out:hi * n_out], hp, t, scratch))
        return status

    return outer_callback


# The matrix products of the MLP loop at moderate batch sizes, on Numba's threads
# (``network.products_address``): one callback for the three products of a Dense layer,
#
#     products(a_address, b_address, out_address, kind, n, k, m)
#
# out (n, m) = a @ b (PRODUCT_NN: a (n, k), b (k, m)), a^T @ b (PRODUCT_TN: a (k, n),
# b (k, m)) or a @ b^T (PRODUCT_NT: a (n, k), b (m, k)), by the register-tiled kernels
# (``_tiles``), out's rows split in ``threads`` parts of whole tiles. Each element's
# arithmetic is fixed by its row and column, so the bits do not depend on the split.
# Why not BLAS: at 8-64 rows OpenBLAS packs the whole weight matrix at every call
# (measured, 32 x 3072 @ 3072 x 512 on 2 threads: 905-945 us, against 593 us here), and
# its threads, spinning after each product, and Numba's take turns badly (the same
# product, when an OpenBLAS product ran between: 5 ms).
PRODUCT_NN, PRODUCT_TN, PRODUCT_NT = 0, 1, 2
PRODUCTS_SIGNATURE = types.int64(types.uint64, types.uint64, types.uint64, types.int64,
                                 types.int64, types.int64, types.int64)


def builtin_products(dtype, threads):
    """The C callback of the three products for ``dtype`` arrays, split in ``threads``
    parts run in parallel; made once per process (``PRODUCTS_SIGNATURE``)."""
    key = ("products", np.dtype(dtype).name, int(threads))
    if key not in _made:
        _made[key] = cfunc(PRODUCTS_SIGNATURE, cache=True, error_model="numpy", parallel=True)(
            _products(np.dtype(dtype) == np.float64, int(threads)))
    return _made[key]


def _products(wide, threads):
    def products_callback(a_address, b_address, out_address, kind, n, k, m):
        a_shape = (k, n) if kind == PRODUCT_TN else (n, k)
        b_shape = (m, k) if kind == PRODUCT_NT else (k, m)
        if wide:
            a, b = carray(_f64(a_address), a_shape), carray(_f64(b_address), b_shape)
            out = carray(_f64(out_address), (n, m))
        else:
            a, b = carray(_f32(a_address), a_shape), carray(_f32(b_address), b_shape)
            out = carray(_f32(out_address), (n, m))
        # a @ b: whole column blocks of out per part, so that each reads its share of b;
        # the others: whole tiles of out's rows per part. The last part ends at m or n.
        if kind == PRODUCT_NN:
            unit, count = _tiles.NN_VECTORS * (64 // a.itemsize), m
        else:
            unit, count = _tiles.NN_ROWS, n
        units = -(-count // unit)
        parts = min(threads, units)
        for p in prange(parts):
            lo = min(count, units * p // parts * unit)
            hi = min(count, units * (p + 1) // parts * unit)
            if kind == PRODUCT_NN:
                _tiles.tiled_matmul_columns(a, b, out, False, lo, hi)
            elif kind == PRODUCT_NT:
                _tiles.tiled_matmul_nt(a[lo:hi], b, out[lo:hi], False)
            else:
                _tiles.tiled_matmul_tn_rows(a, b, out, lo, hi)
        return 0

    return products_callback


# the jitted loops' calls of the kinds of callback, by address (``address_caller``)
call_reduce_at = address_caller(REDUCE_SIGNATURE)
call_step_at = address_caller(SIGNATURE)
call_activations_at = address_caller(ACTIVATION_SIGNATURE)
call_loss_at = address_caller(LOSS_SIGNATURE)
call_outer_step_at = address_caller(OUTER_SIGNATURE)
call_products_at = address_caller(PRODUCTS_SIGNATURE)
