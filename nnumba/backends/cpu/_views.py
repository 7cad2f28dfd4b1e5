"""Borrowed views for the inner loops of the fused training path.

A slice or reshape in @njit code makes a new array that holds a reference to
its buffer: an atomic increment when made, a decrement when dropped, and for a
reshape a call into Numba's helper library. A small network at batch size 1
made some 50 such views per iteration (block outputs, weights, biases), and
the reference counting took about a quarter of the iteration's time (measured
with perf on 64-32-10).

``rows_view``, ``flat_view`` and ``borrow`` (all of an array) make the same views
with no reference (a null
meminfo, which Numba's reference counting skips): they are valid only while
the buffer they view is alive, which inside one jitted call that holds the
buffer is always true. They must never be returned to Python. The buffer is
any C-contiguous array, taken as its elements in memory order (``start``
counts elements from its first one).
"""
from numba import types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


def _borrow(context, builder, buf_type, buf, start, shape, strides, out_type):
    """An out_type array over buf's elements from ``start`` on, with no meminfo."""
    source = make_array(buf_type)(context, builder, buf)
    out = make_array(out_type)(context, builder)
    itemsize = context.get_constant(types.intp,
                                    context.get_abi_sizeof(context.get_data_type(buf_type.dtype)))
    populate_array(out, data=builder.gep(source.data, [start]), shape=shape,
                   strides=[builder.mul(s, itemsize) for s in strides], itemsize=itemsize,
                   meminfo=None)
    return out._getvalue()


def _intp_args(context, builder, sig, args):
    return [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:])]


@intrinsic
def rows_view(typingctx, buf, start, n, m):
    """buf.ravel()[start:start + n * m].reshape(n, m), borrowed."""
    if not (isinstance(buf, types.Array) and buf.layout == "C"):
        return None
    out_type = types.Array(buf.dtype, 2, "C")

    def codegen(context, builder, sig, args):
        start_, n_, m_ = _intp_args(context, builder, sig, args)
        one = context.get_constant(types.intp, 1)
        return _borrow(context, builder, sig.args[0], args[0], start_, [n_, m_], [m_, one],
                       out_type)

    return out_type(buf, start, n, m), codegen


@intrinsic
def flat_view(typingctx, buf, start, n):
    """buf.ravel()[start:start + n], borrowed."""
    if not (isinstance(buf, types.Array) and buf.layout == "C"):
        return None
    out_type = types.Array(buf.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        start_, n_ = _intp_args(context, builder, sig, args)
        one = context.get_constant(types.intp, 1)
        return _borrow(context, builder, sig.args[0], args[0], start_, [n_], [one], out_type)

    return out_type(buf, start, n), codegen


@intrinsic
def borrow(typingctx, buf):
    """All of buf (any dimensions, C-contiguous), borrowed: the same array type, so the
    kernels it is passed to compile no new variant. A loop that passes its arguments
    to non-inlined kernels at every iteration borrows them first: each such call
    otherwise counts a reference to each array in and out (measured with perf on the
    64-32-10 network at batch size 1: 16% of an SGD iteration in NRT_incref and
    NRT_decref)."""
    if not (isinstance(buf, types.Array) and buf.layout == "C"):
        return None

    def codegen(context, builder, sig, args):
        source = make_array(sig.args[0])(context, builder, args[0])
        out = make_array(sig.return_type)(context, builder)
        populate_array(out, data=source.data, shape=source.shape, strides=source.strides,
                       itemsize=source.itemsize, meminfo=None)
        return out._getvalue()

    return buf(buf), codegen
