"""General matrix products through NumPy's own BLAS, called from jitted code.

``np.dot`` inside @njit calls the BLAS that SciPy exports (``scipy.linalg.
cython_blas``). NumPy's pip wheels carry a BLAS of their own (scipy-openblas64,
the library behind ``numpy.matmul``), so a process that uses both has two
BLAS libraries, each with a pool of threads that keep spinning after a call:
one library's pool takes a core from the other's products. Measured here, in one
process that runs a float32 1024^3 ``numpy.matmul`` before and after each
CIFAR-shaped batch-256 epoch: the epoch took 186-221 ms on SciPy's BLAS and
100-153 ms on NumPy's, the NumPy product after it 27-37 ms and 11.6-15 ms.

``gemm_nn(a, b, out)`` is out = a @ b, ``gemm_tn`` out = a.T @ b and ``gemm_nt``
out = a @ b.T, through NumPy's ``cblas_?gemm`` when this process has found it
(``available``), and through ``np.dot`` otherwise: NumPy built against another
BLAS, matrices whose rows are not contiguous, and the products with one row or
one column of result, which np.dot makes a matrix-vector product. The jitted
code finds the function at run time, in an 8-byte slot per dtype that the
symbol ``nnumba_numpy_gemm`` names (``llvmlite.binding.add_symbol``): the
machine code Numba caches holds no address of this process, and a slot left
at 0 means "not found".
"""
import ctypes
import os

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.extending import intrinsic

from ._config import INLINE

_SYMBOL = "nnumba_numpy_gemm"
_SLOTS = (ctypes.c_int64 * 2)()  # the addresses of sgemm (slot 0) and dgemm (slot 1); 0: none
binding.add_symbol(_SYMBOL, ctypes.addressof(_SLOTS))

# CBLAS's enums (cblas.h)
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
# (symbol of sgemm, symbol of dgemm) of the ILP64 (64-bit integer) CBLAS that NumPy's
# wheels export
_NUMPY_CBLAS = ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_")


def numpy_blas_path():
    """The file of the BLAS library that NumPy loaded from its own installation, or
    None (threadpoolctl's view of the loaded libraries)."""
    from threadpoolctl import threadpool_info

    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    for lib in threadpool_info():
        path = lib.get("filepath") or ""
        if lib.get("user_api") == "blas" and os.path.abspath(path).startswith(root) and \
                "numpy" in os.path.relpath(path, root).split(os.sep)[0]:
            return path
    return None


def find_numpy_gemm():
    """Fill the slots with NumPy's ILP64 sgemm and dgemm where NumPy's BLAS exports
    them; returns whether it does."""
    path = numpy_blas_path()
    if path is not None:
        try:
            lib = ctypes.CDLL(path)
            addresses = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                         for name in _NUMPY_CBLAS]
        except (OSError, AttributeError):
            addresses = None
        if addresses and all(addresses):
            _SLOTS[0], _SLOTS[1] = addresses
            return True
    _SLOTS[0] = _SLOTS[1] = 0
    return False


def available(dtype):
    """True when the jitted products of ``dtype`` run in NumPy's BLAS."""
    return bool(_SLOTS[0 if np.dtype(dtype) == np.float32 else 1])


def _slot(builder, dtype):
    """The address in the slot of ``dtype`` (an i64 load of the global ``_SYMBOL``)."""
    module, i32 = builder.module, ir.IntType(32)
    try:
        holder = module.get_global(_SYMBOL)
    except KeyError:
        holder = ir.GlobalVariable(module, ir.ArrayType(ir.IntType(64), 2), _SYMBOL)
        holder.linkage = "external"
    index = 0 if dtype == types.float32 else 1
    return builder.load(builder.gep(holder, [i32(0), i32(index)]))


@intrinsic
def _found(typingctx, dtype_of):
    """True when the slot of the dtype of array ``dtype_of`` holds an address."""
    if not isinstance(dtype_of, types.Array) or dtype_of.dtype not in (types.float32, types.float64):
        return None

    def codegen(context, builder, sig, args):
        return builder.icmp_unsigned("!=", _slot(builder, sig.args[0].dtype), ir.IntType(64)(0))

    return types.boolean(dtype_of), codegen


@intrinsic
def _cblas_gemm(typingctx, a, b, out, trans_a, trans_b, m, n, k, lda, ldb, ldc):
    """cblas_?gemm(row-major, trans_a, trans_b, m, n, k, 1, a, lda, b, ldb, 0, out, ldc)
    through the address in the slot of out's dtype (which must hold one)."""
    if not all(isinstance(x, types.Array) for x in (a, b, out)) or \
            out.dtype not in (types.float32, types.float64) or len({a.dtype, b.dtype, out.dtype}) != 1:
        return None

    def codegen(context, builder, sig, args):
        dtype = sig.args[2].dtype
        elt, i32, i64 = context.get_value_type(dtype), ir.IntType(32), ir.IntType(64)
        ptr = elt.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, elt, ptr, i64, ptr,
                                               i64, elt, ptr, i64])
        fn = builder.inttoptr(_slot(builder, dtype), fnty.as_pointer())
        data = [context.make_array(ty)(context, builder, value).data
                for ty, value in zip(sig.args[:3], args[:3])]
        ints = [context.cast(builder, v, t, types.int64) for v, t in zip(args[3:], sig.args[3:])]
        ta, tb, m_, n_, k_, lda_, ldb_, ldc_ = ints
        builder.call(fn, [i32(ROW_MAJOR), builder.trunc(ta, i32), builder.trunc(tb, i32), m_, n_, k_,
                          ir.Constant(elt, 1.0), data[0], lda_, data[1], ldb_,
                          ir.Constant(elt, 0.0), data[2], ldc_])
        return context.get_dummy_value()

    return types.none(a, b, out, trans_a, trans_b, m, n, k, lda, ldb, ldc), codegen


@njit(**INLINE)
def _rows_contiguous(x):
    return x.strides[1] == x.itemsize and x.strides[0] >= x.shape[1] * x.itemsize


@njit(**INLINE)
def _direct(a, b, out):
    """True when the product can go to NumPy's gemm: found for this dtype, a result of
    at least two rows and two columns, no empty dimension, every row contiguous. A
    product with one row or one column of result goes to ``np.dot``, which makes it a
    gemv (or a dot): OpenBLAS's gemm packs all of b for it (measured, one thread:
    1 x 3072 @ 3072 x 512 in 490-530 us through gemm, 100-109 us through np.dot's
    gemv; 1 x 512 @ (3072 x 512)^T 1.5-1.8 ms against 112 us)."""
    return _found(out) and out.shape[0] > 1 and out.shape[1] > 1 and a.size > 0 and \
        _rows_contiguous(a) and _rows_contiguous(b) and _rows_contiguous(out)


@njit(**INLINE)
def _leading(x):
    return x.strides[0] // x.itemsize


@njit(**INLINE)
def _ran_in_numpy(a, b, out, trans_a, trans_b):
    """out = op(a) @ op(b) in NumPy's gemm when ``_direct`` allows it; False (nothing
    done) when the caller is to compute it."""
    if not _direct(a, b, out):
        return False
    _cblas_gemm(a, b, out, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS,
                out.shape[0], out.shape[1], a.shape[0] if trans_a else a.shape[1],
                _leading(a), _leading(b), _leading(out))
    return True


# One function per transpose, each with its own np.dot fallback: a flag argument would
# compile all three np.dot calls into every caller.

@njit(**INLINE)
def gemm_nn(a, b, out):
    """out = a @ b."""
    if not _ran_in_numpy(a, b, out, False, False):
        np.dot(a, b, out)


@njit(**INLINE)
def gemm_tn(a, b, out):
    """out = a.T @ b."""
    if not _ran_in_numpy(a, b, out, True, False):
        np.dot(a.T, b, out)


@njit(**INLINE)
def gemm_nt(a, b, out):
    """out = a @ b.T."""
    if not _ran_in_numpy(a, b, out, False, True):
        np.dot(a, b.T, out)


find_numpy_gemm()
