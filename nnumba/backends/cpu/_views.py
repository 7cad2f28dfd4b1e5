"""Borrowed views for the inner loops of the fused training path.

A slice or reshape in @njit code makes a new array that holds a reference to
its buffer: an atomic increment when made, a decrement when dropped, and for a
reshape a call into Numba's helper library. A small network at batch size 1
made some 50 such views per iteration (block outputs, weights, biases), and
the reference counting took about a quarter of the iteration's time (measured
with perf on 64-32-10).

``rows_view`` and ``flat_view`` make the same views with no reference (a null
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
